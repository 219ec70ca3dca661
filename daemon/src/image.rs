//! The image store: an OCI image layout under `<state>/images` (content-addressed blobs, `index.json` whose
//! manifests carry `org.opencontainers.image.ref.name`), with every layer unpacked once under
//! `<state>/layers/<diff-id>` as a read-only overlayfs lower dir. `import` turns a rootfs tarball (plain or
//! gzip) into a one-layer image, like `docker import`.

use crate::file;
use crate::layer::{self, write_layer_blob};
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, Digest, ImageConfiguration, ImageConfigurationBuilder, ImageIndex,
    ImageIndexBuilder, ImageManifest, ImageManifestBuilder, MediaType, Os, RootFsBuilder,
};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub(crate) const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An image resolved for a container.
#[derive(Debug, Clone)]
pub struct Image {
    /// The reference it is stored under.
    pub reference: String,
    /// Manifest digest (`sha256:…`).
    pub id: String,
    /// Unpacked layer dirs, lowest first.
    pub layers: Vec<PathBuf>,
    /// The image's config (`Env`, `Cmd`, `Entrypoint`, `WorkingDir`).
    pub config: ImageConfiguration,
}

/// The store.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    layers: PathBuf,
}

/// `name` → `name:latest`; refuses what is not `name[:tag]`.
pub fn normalize(reference: &str) -> Result<String, String> {
    let (name, tag) = match reference.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, t),
        _ => (reference, "latest"),
    };
    let ok = |s: &str, extra: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || extra.contains(c))
    };
    if !(ok(name, "._-/") && ok(&tag.to_ascii_lowercase(), "._-") && tag.len() <= 128) {
        return Err(format!(
            "invalid image reference \"{reference}\": want name[:tag] (lowercase name)"
        ));
    }
    Ok(format!("{name}:{tag}"))
}

fn err(ctx: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> String {
    move |e| format!("{ctx}: {e}")
}

/// An OCI manifest of a config and gzip layers (digest, size each), serialized.
pub fn manifest_bytes(config: (&str, u64), layers: &[(String, u64)]) -> Result<Vec<u8>, String> {
    let layers = layers
        .iter()
        .map(|(d, size)| {
            Ok(Descriptor::new(
                MediaType::ImageLayerGzip,
                *size,
                parse_digest(d)?,
            ))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(Descriptor::new(
            MediaType::ImageConfig,
            config.1,
            parse_digest(config.0)?,
        ))
        .layers(layers)
        .build()
        .map_err(|e| e.to_string())?;
    serde_json::to_vec(&manifest).map_err(|e| e.to_string())
}

/// Adds a manifest (digest, size) to the index under each name (a name moves from the image that had it); an
/// image without names is listed once, by id.
pub fn add_to_index(
    index: &mut ImageIndex,
    manifest: (String, u64),
    media_type: MediaType,
    names: &[String],
) -> Result<(), String> {
    let mut manifests = index.manifests().clone();
    let digest = parse_digest(&manifest.0)?;
    let entry = |name: Option<&String>| {
        let mut desc = Descriptor::new(media_type.clone(), manifest.1, digest.clone());
        if let Some(n) = name {
            desc.set_annotations(Some(HashMap::from([(REF_NAME.to_string(), n.clone())])));
        }
        desc
    };
    if !names.is_empty() {
        // The name-less entry of this image goes once it has a name.
        manifests.retain(|m| !(ref_name(m).is_none() && m.digest() == &digest));
    }
    for name in names {
        manifests.retain(|m| ref_name(m) != Some(name.as_str()));
        manifests.push(entry(Some(name)));
    }
    if names.is_empty() && !manifests.iter().any(|m| m.digest() == &digest) {
        manifests.push(entry(None));
    }
    index.set_manifests(manifests);
    Ok(())
}

impl Store {
    /// Opens (creating) the store under the state dir.
    pub fn open(state: &Path) -> Result<Store, String> {
        let s = Store {
            root: state.join("images"),
            layers: state.join("layers"),
        };
        for d in [s.root.join("blobs/sha256"), s.layers.clone()] {
            std::fs::create_dir_all(&d).map_err(err(d.display()))?;
        }
        let layout = s.root.join("oci-layout");
        if !layout.exists() {
            file::write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)
                .map_err(err(layout.display()))?;
        }
        Ok(s)
    }

    pub(crate) fn blob(&self, digest: &str) -> PathBuf {
        self.root
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    }

    pub(crate) fn index(&self) -> Result<ImageIndex, String> {
        let p = self.root.join("index.json");
        if !p.exists() {
            return ImageIndexBuilder::default()
                .schema_version(2u32)
                .manifests(vec![])
                .build()
                .map_err(|e| e.to_string());
        }
        file::read_json(&p).map_err(err(p.display()))
    }

    pub(crate) fn save_index(&self, index: &ImageIndex) -> Result<(), String> {
        let p = self.root.join("index.json");
        file::write_json(&p, index).map_err(err(p.display()))
    }

    pub(crate) fn write_blob(&self, bytes: &[u8]) -> Result<(String, u64), String> {
        let digest = format!("sha256:{:x}", Sha256::digest(bytes));
        let p = self.blob(&digest);
        if !p.exists() {
            file::write_atomic(&p, bytes).map_err(err(p.display()))?;
        }
        Ok((digest, bytes.len() as u64))
    }

    /// Imports a rootfs tarball (plain or gzip) as `reference`; returns the image id. Nothing is stored when the
    /// tarball cannot be read or unpacked.
    pub fn import(&self, tarball: &Path, reference: &str) -> Result<String, String> {
        let reference = normalize(reference)?;
        // 1. The layer blob (gzip, digest and diff id computed while streaming), unpacked once as a lower dir.
        let tmp = self.temp_path("import")?;
        let stored = std::fs::File::open(tarball)
            .map_err(err(tarball.display()))
            .and_then(|f| write_layer_blob(f, &tmp))
            .and_then(|layer| {
                if layer.tar_size == 0 {
                    return Err(format!("{}: empty tarball", tarball.display()));
                }
                self.unpack_once(&tmp, &layer.diff_id)?;
                Ok(layer)
            });
        let layer = match stored {
            Ok(layer) => layer,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        std::fs::rename(&tmp, self.blob(&layer.digest)).map_err(err("store layer blob"))?;
        // 2. Config, manifest, index.
        let config = ImageConfigurationBuilder::default()
            .architecture(Arch::Amd64)
            .os(Os::Linux)
            .created(format!("@{}", file::now()))
            .config(
                ConfigBuilder::default()
                    .env(vec![
                        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
                    ])
                    .build()
                    .map_err(|e| e.to_string())?,
            )
            .rootfs(
                RootFsBuilder::default()
                    .typ("layers")
                    .diff_ids(vec![layer.diff_id.clone()])
                    .build()
                    .map_err(|e| e.to_string())?,
            )
            .build()
            .map_err(|e| e.to_string())?;
        let config_bytes = serde_json::to_vec(&config).map_err(|e| e.to_string())?;
        let (config_digest, config_size) = self.write_blob(&config_bytes)?;
        let manifest = self.write_blob(&manifest_bytes(
            (&config_digest, config_size),
            &[(layer.digest, layer.size)],
        )?)?;
        let mut index = self.index()?;
        add_to_index(
            &mut index,
            manifest.clone(),
            MediaType::ImageManifest,
            &[reference],
        )?;
        self.save_index(&index)?;
        Ok(manifest.0)
    }

    /// A fresh temporary path in the store (on the blobs' file system, so a rename stores it).
    pub(crate) fn temp_path(&self, what: &str) -> Result<PathBuf, String> {
        Ok(self
            .root
            .join(format!(".{what}-{}", file::random_hex(8).map_err(err("random"))?)))
    }

    /// Unpacks a stored or staged gzip layer blob into `layers/<diff-id>` unless that dir exists; returns
    /// whether it unpacked (the caller then owns the new dir).
    pub(crate) fn unpack_once(&self, gz_blob: &Path, diff_id: &str) -> Result<bool, String> {
        let dir = self.layer_dir(diff_id);
        if dir.exists() {
            return Ok(false);
        }
        self.unpack(gz_blob, &dir)?;
        Ok(true)
    }

    pub(crate) fn layer_dir(&self, diff_id: &str) -> PathBuf {
        self.layers.join(diff_id.trim_start_matches("sha256:"))
    }

    fn unpack(&self, gz_blob: &Path, dir: &Path) -> Result<(), String> {
        let tmp = dir.with_extension("unpacking");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(err(tmp.display()))?;
        let f = std::fs::File::open(gz_blob).map_err(err(gz_blob.display()))?;
        if let Err(e) = layer::unpack(flate2::read::GzDecoder::new(BufReader::new(f)), &tmp) {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(format!("not a usable rootfs tarball: {e}"));
        }
        std::fs::rename(&tmp, dir).map_err(err(dir.display()))
    }

    pub(crate) fn read_doc<T: serde::de::DeserializeOwned>(&self, digest: &str) -> Result<T, String> {
        file::read_json(&self.blob(digest)).map_err(err(digest))
    }

    /// Finds an image by reference (`name[:tag]`) or id (digest, or a prefix of at least 4 hex digits).
    pub fn resolve(&self, wanted: &str) -> Result<Image, String> {
        let index = self.index()?;
        let norm = normalize(wanted).ok();
        let hex = wanted.trim_start_matches("sha256:");
        let desc = index
            .manifests()
            .iter()
            .find(|m| norm.is_some() && ref_name(m) == norm.as_deref())
            .or_else(|| {
                index
                    .manifests()
                    .iter()
                    .find(|m| hex.len() >= 4 && m.digest().digest().starts_with(hex))
            })
            .ok_or_else(|| format!("no such image: {wanted}"))?;
        let manifest: ImageManifest = self.read_doc(desc.digest().as_ref())?;
        let config: ImageConfiguration = self.read_doc(manifest.config().digest().as_ref())?;
        let layers = config
            .rootfs()
            .diff_ids()
            .iter()
            .map(|d| self.layer_dir(d))
            .collect();
        Ok(Image {
            reference: ref_name(desc).unwrap_or(wanted).to_string(),
            id: desc.digest().to_string(),
            layers,
            config,
        })
    }

    /// Every image: reference, id, size of its layers (compressed).
    pub fn list(&self) -> Result<Vec<Value>, String> {
        let index = self.index()?;
        let mut out = Vec::new();
        for m in index.manifests() {
            let manifest: ImageManifest = self.read_doc(m.digest().as_ref())?;
            let size: u64 = manifest.layers().iter().map(|l| l.size()).sum();
            out.push(json!({ "Reference": ref_name(m), "Id": m.digest().to_string(), "Size": size }));
        }
        Ok(out)
    }

    /// Removes a reference; blobs and layer dirs no other reference uses go with it.
    pub fn remove(&self, wanted: &str) -> Result<String, String> {
        let image = self.resolve(wanted)?;
        let mut index = self.index()?;
        let mut manifests = index.manifests().clone();
        // A named image loses that name; an image known by id only loses its name-less entry.
        let by_name = manifests
            .iter()
            .any(|m| ref_name(m) == Some(image.reference.as_str()));
        manifests.retain(|m| match ref_name(m) {
            Some(n) => !by_name || n != image.reference,
            None => by_name || m.digest().to_string() != image.id,
        });
        index.set_manifests(manifests);
        self.save_index(&index)?;
        // Collect what the remaining manifests keep.
        let mut keep = std::collections::HashSet::new();
        for m in index.manifests() {
            keep.insert(m.digest().digest().to_string());
            let manifest: ImageManifest = self.read_doc(m.digest().as_ref())?;
            keep.insert(manifest.config().digest().digest().to_string());
            for l in manifest.layers() {
                keep.insert(l.digest().digest().to_string());
            }
            let config: ImageConfiguration = self.read_doc(manifest.config().digest().as_ref())?;
            for d in config.rootfs().diff_ids() {
                keep.insert(format!("layer:{}", d.trim_start_matches("sha256:")));
            }
        }
        if !keep.contains(image.id.trim_start_matches("sha256:")) {
            let manifest: ImageManifest = self.read_doc(&image.id)?;
            let mut blobs = vec![image.id.clone(), manifest.config().digest().to_string()];
            blobs.extend(manifest.layers().iter().map(|l| l.digest().to_string()));
            for b in blobs {
                if !keep.contains(b.trim_start_matches("sha256:")) {
                    let _ = std::fs::remove_file(self.blob(&b));
                }
            }
            for d in image.config.rootfs().diff_ids() {
                if !keep.contains(&format!("layer:{}", d.trim_start_matches("sha256:"))) {
                    let _ = std::fs::remove_dir_all(self.layer_dir(d));
                }
            }
        }
        Ok(image.reference)
    }
}

pub(crate) fn parse_digest(d: &str) -> Result<Digest, String> {
    Digest::from_str(d).map_err(|e| format!("{d}: {e}"))
}

pub(crate) fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get(REF_NAME))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_references() {
        assert_eq!(normalize("busybox").unwrap(), "busybox:latest");
        assert_eq!(normalize("corral/bb:1.36").unwrap(), "corral/bb:1.36");
        for bad in ["", "Busybox", "a b", "x:", ":tag"] {
            assert!(normalize(bad).is_err(), "{bad}");
        }
    }
}
