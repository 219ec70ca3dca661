//! `load` and `save`: image archives in and out of the store. `load` reads an OCI image layout archive
//! (`oci-layout`, `index.json`, `blobs/sha256/…`, as `podman save --format oci-archive` or skopeo write it) or a
//! `docker save` tarball (`manifest.json` with `Config`, `RepoTags`, `Layers`: `<id>/layer.tar` in old docker,
//! `blobs/sha256/…` since docker 25, which writes both layouts); the whole archive may be gzip-compressed. Every
//! blob is checked against its digest and every layer against the config's `rootfs.diff_ids` before the index
//! names the image; a failed load removes what it stored. `save` writes one archive that is both layouts.

use crate::image::{add_to_index, manifest_bytes, normalize, ref_name, Store, REF_NAME};
use crate::layer::write_layer_blob;
use oci_spec::image::{Arch, Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType, Os};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};

/// containerd's (and docker 25's) annotation with the full image name, beside a tag-only `ref.name`.
const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// Largest JSON document (index, manifest, config) read from an archive.
const DOC_LIMIT: u64 = 16 << 20;
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// One image a load stored: its id (manifest digest) and the names it now has.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// Manifest digest.
    pub id: String,
    /// `name:tag`s.
    pub names: Vec<String>,
}

/// A name from an archive as the store keeps it: Docker Hub's `docker.io/library/` and `docker.io/` prefixes
/// dropped (`docker.io/library/busybox:1` → `busybox:1`), then `name[:tag]` normalized.
pub fn familiar_name(name: &str) -> Result<String, String> {
    let short = name
        .strip_prefix("docker.io/library/")
        .or_else(|| name.strip_prefix("docker.io/"))
        .unwrap_or(name);
    normalize(short).map_err(|e| format!("archive names an image {name:?}: {e}"))
}

/// The names of an OCI index entry: `io.containerd.image.name`, else `org.opencontainers.image.ref.name` when
/// it is a full `name:tag` (a bare tag such as `latest` names no repository and is refused).
pub fn oci_names(annotations: Option<&HashMap<String, String>>) -> Result<Vec<String>, String> {
    let get = |k: &str| annotations.and_then(|a| a.get(k)).map(String::as_str);
    if let Some(full) = get(CONTAINERD_NAME) {
        return Ok(vec![familiar_name(full)?]);
    }
    match get(REF_NAME) {
        None => Ok(vec![]),
        Some(r) if r.contains(':') || r.contains('/') => Ok(vec![familiar_name(r)?]),
        Some(tag) => Err(format!(
            "the archive names an image only by the tag {tag:?} ({REF_NAME}) and gives no repository \
             ({CONTAINERD_NAME}): write the archive with a full name, e.g. `skopeo copy … oci-archive:FILE:name:{tag}`"
        )),
    }
}

/// Whether an index entry is for this machine: no platform given, or linux/amd64.
pub fn for_this_platform(d: &Descriptor) -> bool {
    d.platform()
        .as_ref()
        .is_none_or(|p| *p.os() == Os::Linux && *p.architecture() == Arch::Amd64)
}

/// A layer's media type, checked: gzip or plain tar (OCI or docker); zstd and anything else are refused.
pub fn check_layer_type(media_type: &str) -> Result<(), String> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.v1.tar+gzip"
        | DOCKER_LAYER
        | DOCKER_LAYER_GZIP => Ok(()),
        t if t.ends_with("+zstd") || t.ends_with(".zstd") => Err(format!(
            "layer media type {t}: zstd-compressed layers are not supported (use gzip)"
        )),
        t => Err(format!(
            "layer media type {t}: not a supported image layer (tar or tar+gzip)"
        )),
    }
}

/// A path inside an archive, as a key: `./a//b/../c` → `a/c`; climbing above the archive's root is refused.
fn member_key(path: &Path) -> Result<String, String> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            // `<id>/../<hex>.tar`, as docker-save symlinks point at shared layers; never above the root.
            Component::ParentDir => {
                parts
                    .pop()
                    .ok_or_else(|| format!("archive entry {} climbs out", path.display()))?;
            }
            _ => {}
        }
    }
    Ok(parts.join("/"))
}

/// Where an archive entry's bytes are, or what it links to.
#[derive(Debug, Clone)]
enum Member {
    File { offset: u64, size: u64 },
    Link(String),
}

/// An uncompressed archive on disk with its entries indexed, read in place (nothing is unpacked).
struct Archive {
    file: std::fs::File,
    members: HashMap<String, Member>,
}

impl Archive {
    /// Indexes `path` (a tar); a gzip archive is first decompressed into `scratch`.
    fn open(path: &Path, scratch: &Path) -> Result<Archive, String> {
        let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut magic = [0u8; 2];
        let n = f.read(&mut magic).map_err(|e| format!("read archive: {e}"))?;
        f.seek(SeekFrom::Start(0))
            .map_err(|e| format!("read archive: {e}"))?;
        if n == 2 && magic == [0x1f, 0x8b] {
            let mut out =
                std::fs::File::create(scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
            std::io::copy(&mut flate2::read::MultiGzDecoder::new(f), &mut out)
                .map_err(|e| format!("decompress archive: {e}"))?;
            f = std::fs::File::open(scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
        }
        let len = f.metadata().map_err(|e| format!("read archive: {e}"))?.len();
        let mut members = HashMap::new();
        let mut tar = tar::Archive::new(&f);
        let entries = tar.entries().map_err(|e| format!("not a tar archive: {e}"))?;
        for entry in entries {
            let entry =
                entry.map_err(|e| format!("not a tar archive, or a damaged or truncated one: {e}"))?;
            let path = entry.path().map_err(|e| format!("archive entry: {e}"))?;
            let key = member_key(&path)?;
            let member = match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let (offset, size) = (entry.raw_file_position(), entry.size());
                    if offset + size > len {
                        return Err(format!("archive is truncated: {key} is cut short"));
                    }
                    Member::File { offset, size }
                }
                kind @ (tar::EntryType::Symlink | tar::EntryType::Link) => {
                    let target = entry
                        .link_name()
                        .map_err(|e| format!("archive entry {key}: {e}"))?
                        .ok_or_else(|| format!("archive entry {key}: link without target"))?;
                    // A symlink is relative to its directory, a hard link to the archive's root.
                    let base = match kind {
                        tar::EntryType::Symlink => {
                            Path::new(&key).parent().unwrap_or(Path::new("")).join(target)
                        }
                        _ => target.into_owned(),
                    };
                    Member::Link(member_key(&base)?)
                }
                _ => continue,
            };
            members.insert(key, member);
        }
        Ok(Archive { file: f, members })
    }

    fn has(&self, name: &str) -> bool {
        self.members.contains_key(name)
    }

    /// Offset and size of a file in the archive, following links (inside the archive only).
    fn locate(&self, name: &str) -> Result<(u64, u64), String> {
        let mut key = name.to_string();
        for _ in 0..8 {
            match self.members.get(&key) {
                Some(Member::File { offset, size }) => return Ok((*offset, *size)),
                Some(Member::Link(to)) => key = to.clone(),
                None => return Err(format!("the archive has no {name}")),
            }
        }
        Err(format!("archive entry {name}: too many links"))
    }

    /// A reader over a file in the archive.
    fn reader(&self, name: &str) -> Result<(impl Read + '_, u64), String> {
        let (offset, size) = self.locate(name)?;
        let mut f = &self.file;
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| format!("read {name}: {e}"))?;
        Ok((f.take(size), size))
    }

    /// A whole (small) file.
    fn read(&self, name: &str) -> Result<Vec<u8>, String> {
        let (mut r, size) = self.reader(name)?;
        if size > DOC_LIMIT {
            return Err(format!("{name}: {size} bytes is too large for a JSON document"));
        }
        let mut buf = Vec::with_capacity(size as usize);
        r.read_to_end(&mut buf).map_err(|e| format!("read {name}: {e}"))?;
        Ok(buf)
    }

    /// Checks a (large) member against a digest, streaming.
    fn check_member(&self, name: &str, digest: &str) -> Result<(), String> {
        let (mut r, _) = self.reader(name)?;
        let mut hash = Sha256::new();
        std::io::copy(&mut r, &mut hash).map_err(|e| format!("read {name}: {e}"))?;
        let actual = format!("sha256:{:x}", hash.finalize());
        if actual != digest {
            return Err(format!(
                "blob {digest} is corrupt: its content hashes to {actual}"
            ));
        }
        Ok(())
    }

    /// A blob's bytes, checked against its descriptor (sha256 and size).
    fn blob(&self, d: &Descriptor) -> Result<Vec<u8>, String> {
        let bytes = self.read(&blob_member(d)?)?;
        check_digest(&bytes, d.digest().as_ref(), Some(d.size()))?;
        Ok(bytes)
    }
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("{what}: {e}"))
}

/// `blobs/sha256/<hex>` of a descriptor; digests other than sha256 are refused.
fn blob_member(d: &Descriptor) -> Result<String, String> {
    let digest = d.digest();
    if digest.algorithm().to_string() != "sha256" {
        return Err(format!("{digest}: only sha256 digests are supported"));
    }
    Ok(format!("blobs/sha256/{}", digest.digest()))
}

/// Checks bytes against a `sha256:…` digest (and a size, when known).
pub fn check_digest(bytes: &[u8], digest: &str, size: Option<u64>) -> Result<(), String> {
    let actual = format!("sha256:{:x}", Sha256::digest(bytes));
    if actual != digest {
        return Err(format!(
            "blob {digest} is corrupt: its content hashes to {actual}"
        ));
    }
    match size {
        Some(s) if s != bytes.len() as u64 => Err(format!(
            "blob {digest} has {} bytes, its descriptor says {s}",
            bytes.len()
        )),
        _ => Ok(()),
    }
}

/// An image found in an archive, its documents checked, its layers not yet read.
struct Found {
    /// The archive's manifest (bytes) when it has one (OCI layout); a docker-save image has none.
    manifest: Option<Vec<u8>>,
    config: Vec<u8>,
    diff_ids: Vec<String>,
    /// The manifest's media type (OCI or docker), for the index entry.
    media_type: MediaType,
    /// Archive member of each layer, and its digest when the archive names one.
    layers: Vec<(String, Option<String>)>,
    names: Vec<String>,
}

/// A `docker save` `manifest.json` entry.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// The digest a docker-save member path names: `blobs/sha256/<hex>` or `<hex>.json`.
fn digest_in_path(member: &str) -> Option<String> {
    let hex = member
        .strip_prefix("blobs/sha256/")
        .or_else(|| member.strip_suffix(".json"))?;
    (hex.len() == 64 && hex.bytes().all(|c| c.is_ascii_hexdigit())).then(|| format!("sha256:{hex}"))
}

/// Every image of an archive: through `index.json` when there is one (names from its annotations and from
/// `manifest.json`'s `RepoTags` for the same config), else through `manifest.json`.
fn find_images(a: &Archive) -> Result<Vec<Found>, String> {
    let docker: Vec<DockerEntry> = if a.has("manifest.json") {
        parse("manifest.json", &a.read("manifest.json")?)?
    } else {
        vec![]
    };
    let mut out = Vec::new();
    if a.has("index.json") {
        let index: ImageIndex = parse("index.json", &a.read("index.json")?)?;
        let mut leaves: Vec<(Descriptor, Vec<String>)> = Vec::new();
        let mut skipped = Vec::new();
        walk_index(a, &index, &[], 0, &mut leaves, &mut skipped)?;
        if leaves.is_empty() {
            return Err(match skipped.is_empty() {
                true => "the archive's index.json lists no image".into(),
                false => format!(
                    "the archive has no linux/amd64 image (only {})",
                    skipped.join(", ")
                ),
            });
        }
        for (desc, mut names) in leaves {
            let manifest_bytes = a.blob(&desc)?;
            let manifest: ImageManifest = parse(&format!("manifest {}", desc.digest()), &manifest_bytes)?;
            let config_digest = manifest.config().digest().to_string();
            for e in docker
                .iter()
                .filter(|e| digest_in_path(&e.config).as_deref() == Some(&config_digest))
            {
                for t in e.repo_tags.iter().flatten() {
                    names.push(familiar_name(t)?);
                }
            }
            let config = a.blob(manifest.config())?;
            let layers = manifest
                .layers()
                .iter()
                .map(|l| {
                    check_layer_type(l.media_type().as_ref())?;
                    Ok((blob_member(l)?, Some(l.digest().to_string())))
                })
                .collect::<Result<Vec<_>, String>>()?;
            check_config_type(manifest.config().media_type().as_ref())?;
            let media_type = manifest.media_type().clone().unwrap_or(MediaType::ImageManifest);
            out.push(found(Some((manifest_bytes, media_type)), config, layers, names)?);
        }
    } else if !docker.is_empty() {
        for e in docker {
            let config_member = member_key(Path::new(&e.config))?;
            let config = a.read(&config_member)?;
            if let Some(d) = digest_in_path(&config_member) {
                check_digest(&config, &d, None)?;
            }
            let layers = e
                .layers
                .iter()
                .map(|l| {
                    let m = member_key(Path::new(l))?;
                    let digest = m.starts_with("blobs/").then(|| digest_in_path(&m)).flatten();
                    Ok((m, digest))
                })
                .collect::<Result<Vec<_>, String>>()?;
            let names = e
                .repo_tags
                .iter()
                .flatten()
                .map(|t| familiar_name(t))
                .collect::<Result<Vec<_>, _>>()?;
            out.push(found(None, config, layers, names)?);
        }
    } else {
        return Err(
            "not an image archive: it has neither index.json (OCI layout) nor manifest.json (docker save)"
                .into(),
        );
    }
    Ok(out)
}

fn check_config_type(t: &str) -> Result<(), String> {
    if t == MediaType::ImageConfig.to_string() || t == DOCKER_CONFIG {
        Ok(())
    } else {
        Err(format!("config media type {t}: not a container image"))
    }
}

fn found(
    manifest: Option<(Vec<u8>, MediaType)>,
    config: Vec<u8>,
    layers: Vec<(String, Option<String>)>,
    mut names: Vec<String>,
) -> Result<Found, String> {
    let parsed: ImageConfiguration = parse("image config", &config)?;
    let diff_ids = parsed.rootfs().diff_ids().clone();
    if diff_ids.len() != layers.len() {
        return Err(format!(
            "the image has {} layers but its config lists {} diff ids",
            layers.len(),
            diff_ids.len()
        ));
    }
    names.sort();
    names.dedup();
    let (manifest, media_type) = match manifest {
        Some((bytes, t)) => (Some(bytes), t),
        None => (None, MediaType::ImageManifest),
    };
    Ok(Found {
        manifest,
        media_type,
        config,
        diff_ids,
        layers,
        names,
    })
}

/// Collects the manifests an index leads to (through nested indexes), for this platform, with the names of
/// the outermost entry that has any.
fn walk_index(
    a: &Archive,
    index: &ImageIndex,
    inherited: &[String],
    depth: usize,
    leaves: &mut Vec<(Descriptor, Vec<String>)>,
    skipped: &mut Vec<String>,
) -> Result<(), String> {
    if depth > 4 {
        return Err("index.json: indexes nested too deep".into());
    }
    for d in index.manifests() {
        if !for_this_platform(d) {
            if let Some(p) = d.platform() {
                skipped.push(format!("{}/{}", p.os(), p.architecture()));
            }
            continue;
        }
        let own = oci_names(d.annotations().as_ref())?;
        let names = if own.is_empty() { inherited.to_vec() } else { own };
        let t = d.media_type().to_string();
        if t == MediaType::ImageIndex.to_string() || t == DOCKER_LIST {
            let child: ImageIndex = parse(&format!("index {}", d.digest()), &a.blob(d)?)?;
            walk_index(a, &child, &names, depth + 1, leaves, skipped)?;
        } else if t == MediaType::ImageManifest.to_string() || t == DOCKER_MANIFEST {
            match leaves.iter_mut().find(|(l, _)| l.digest() == d.digest()) {
                Some((_, n)) => n.extend(names),
                None => leaves.push((d.clone(), names)),
            }
        }
        // Other entries (artifacts, attestations) are not images.
    }
    Ok(())
}

/// What a load has stored so far, removed again if the load fails.
#[derive(Default)]
struct Created(Vec<PathBuf>);

impl Created {
    fn undo(&self) {
        for p in self.0.iter().rev() {
            if p.is_dir() {
                let _ = std::fs::remove_dir_all(p);
            } else {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

impl Store {
    /// Loads every image of an archive; returns them with their names. Nothing stays stored when any blob is
    /// corrupt or missing, a layer does not match its diff id, or a layer cannot be unpacked.
    pub fn load(&self, archive: &Path) -> Result<Vec<Loaded>, String> {
        let scratch = self.temp_path("load")?;
        let mut created = Created::default();
        let result = self.load_into(archive, &scratch, &mut created);
        let _ = std::fs::remove_file(&scratch);
        if result.is_err() {
            created.undo();
        }
        result
    }

    fn load_into(&self, path: &Path, scratch: &Path, created: &mut Created) -> Result<Vec<Loaded>, String> {
        let a = Archive::open(path, scratch)?;
        let images = find_images(&a)?;
        let mut index = self.index()?;
        let mut loaded = Vec::new();
        for image in images {
            let mut blobs = Vec::new();
            let mut kept_as_is = true;
            for ((member, digest), diff_id) in image.layers.iter().zip(&image.diff_ids) {
                if let Some(d) = digest {
                    a.check_member(member, d)?;
                }
                let (reader, size) = a.reader(member)?;
                let tmp = self.temp_path("layer")?;
                created.0.push(tmp.clone());
                let layer = write_layer_blob(reader, &tmp).map_err(|e| format!("layer {member}: {e}"))?;
                if layer.input_size != size {
                    return Err(format!(
                        "layer {member}: read {} of {size} bytes",
                        layer.input_size
                    ));
                }
                if layer.diff_id != *diff_id {
                    return Err(format!(
                        "layer {member} does not match the image config: its tar hashes to {}, the config says {diff_id}",
                        layer.diff_id
                    ));
                }
                kept_as_is &= layer.digest == layer.input_digest;
                if self.unpack_once(&tmp, diff_id)? {
                    created.0.push(self.layer_dir(diff_id));
                }
                let blob = self.blob(&layer.digest);
                if blob.exists() {
                    let _ = std::fs::remove_file(&tmp);
                } else {
                    std::fs::rename(&tmp, &blob).map_err(|e| format!("{}: {e}", blob.display()))?;
                    created.0.push(blob);
                }
                blobs.push((layer.digest, layer.size));
            }
            let config = self.write_new_blob(&image.config, created)?;
            // The archive's own manifest when every layer is stored as it came (the id stays the same);
            // else one naming the stored gzip layers.
            let (manifest, media_type) = match &image.manifest {
                Some(m) if kept_as_is => (self.write_new_blob(m, created)?, image.media_type.clone()),
                _ => (
                    self.write_new_blob(&manifest_bytes((&config.0, config.1), &blobs)?, created)?,
                    MediaType::ImageManifest,
                ),
            };
            add_to_index(&mut index, manifest.clone(), media_type, &image.names)?;
            loaded.push(Loaded {
                id: manifest.0,
                names: image.names,
            });
        }
        self.save_index(&index)?;
        Ok(loaded)
    }

    /// Stores a blob, recording it as created when it was not there yet.
    fn write_new_blob(&self, bytes: &[u8], created: &mut Created) -> Result<(String, u64), String> {
        let digest = format!("sha256:{:x}", Sha256::digest(bytes));
        let existed = self.blob(&digest).exists();
        let out = self.write_blob(bytes)?;
        if !existed {
            created.0.push(self.blob(&out.0));
        }
        Ok(out)
    }

    /// Writes the images `refs` (names or ids) as one archive that is both an OCI image layout (`oci-layout`,
    /// `index.json`, `blobs/sha256/…`) and a `docker save` tarball (`manifest.json`).
    pub fn save(&self, refs: &[String], out: impl Write) -> Result<(), String> {
        let index = self.index()?;
        let mut entries: Vec<(Descriptor, Vec<String>)> = Vec::new();
        for wanted in refs {
            let image = self.resolve(wanted)?;
            // By name: that name; by id: every name of the image.
            let names: Vec<String> = if normalize(wanted).ok().as_deref() == Some(image.reference.as_str()) {
                vec![image.reference.clone()]
            } else {
                index
                    .manifests()
                    .iter()
                    .filter(|m| m.digest().to_string() == image.id)
                    .filter_map(|m| ref_name(m).map(str::to_string))
                    .collect()
            };
            let desc = index
                .manifests()
                .iter()
                .find(|m| m.digest().to_string() == image.id)
                .ok_or_else(|| format!("no such image: {wanted}"))?;
            match entries.iter_mut().find(|(d, _)| d.digest() == desc.digest()) {
                Some((_, n)) => n.extend(names),
                None => entries.push((desc.clone(), names)),
            }
        }
        let mut tar = tar::Builder::new(out);
        let mut written = std::collections::HashSet::new();
        let mut oci_index = Vec::new();
        let mut docker = Vec::new();
        for (desc, mut names) in entries {
            names.sort();
            names.dedup();
            let manifest: ImageManifest = self.read_doc(desc.digest().as_ref())?;
            let mut blobs = vec![desc.digest().to_string(), manifest.config().digest().to_string()];
            blobs.extend(manifest.layers().iter().map(|l| l.digest().to_string()));
            for b in &blobs {
                if written.insert(b.clone()) {
                    let path = self.blob(b);
                    let mut f = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                    let len = f
                        .metadata()
                        .map_err(|e| format!("{}: {e}", path.display()))?
                        .len();
                    append(
                        &mut tar,
                        &format!("blobs/sha256/{}", b.trim_start_matches("sha256:")),
                        len,
                        &mut f,
                    )?;
                }
            }
            let member = |d: &str| format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
            docker.push(serde_json::json!({
                "Config": member(manifest.config().digest().as_ref()),
                "RepoTags": names,
                "Layers": manifest.layers().iter().map(|l| member(l.digest().as_ref())).collect::<Vec<_>>(),
            }));
            // JSON values (sorted maps) rather than oci-spec's annotation HashMap: the same images give the same
            // archive, byte for byte.
            let entry = |name: Option<&String>| -> Result<Value, String> {
                let d = Descriptor::new(desc.media_type().clone(), desc.size(), desc.digest().clone());
                let mut v = serde_json::to_value(&d).map_err(|e| e.to_string())?;
                if let Some(n) = name {
                    v["annotations"] = serde_json::json!({ REF_NAME: n, CONTAINERD_NAME: n });
                }
                Ok(v)
            };
            if names.is_empty() {
                oci_index.push(entry(None)?);
            }
            for n in &names {
                oci_index.push(entry(Some(n))?);
            }
        }
        let oci = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MediaType::ImageIndex.to_string(),
            "manifests": oci_index,
        });
        let docs = [
            ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
            ("index.json", serde_json::to_vec(&oci).map_err(|e| e.to_string())?),
            (
                "manifest.json",
                serde_json::to_vec(&docker).map_err(|e| e.to_string())?,
            ),
        ];
        for (name, bytes) in docs {
            append(&mut tar, name, bytes.len() as u64, &mut bytes.as_slice())?;
        }
        tar.into_inner()
            .and_then(|mut w| w.flush())
            .map_err(|e| format!("write archive: {e}"))
    }
}

/// Appends a regular file (mode 0644, owned by root, time 0) to the archive being written.
fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    len: u64,
    data: &mut impl Read,
) -> Result<(), String> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(len);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    tar.append_data(&mut h, name, data)
        .map_err(|e| format!("write archive {name}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn familiar_names_drop_docker_hub_prefixes() {
        assert_eq!(
            familiar_name("docker.io/library/busybox:1.36").unwrap(),
            "busybox:1.36"
        );
        assert_eq!(familiar_name("docker.io/me/app").unwrap(), "me/app:latest");
        assert_eq!(familiar_name("localhost/bb:t").unwrap(), "localhost/bb:t");
        assert!(familiar_name("Busybox").is_err());
    }

    #[test]
    fn oci_names_need_a_repository() {
        let ann = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(oci_names(None).unwrap(), Vec::<String>::new());
        assert_eq!(
            oci_names(Some(&ann(&[(REF_NAME, "bb:test")]))).unwrap(),
            vec!["bb:test"]
        );
        assert_eq!(
            oci_names(Some(&ann(&[
                (REF_NAME, "latest"),
                (CONTAINERD_NAME, "docker.io/library/bb:latest")
            ])))
            .unwrap(),
            vec!["bb:latest"]
        );
        let e = oci_names(Some(&ann(&[(REF_NAME, "latest")]))).unwrap_err();
        assert!(e.contains("only by the tag \"latest\""), "{e}");
    }

    #[test]
    fn platforms_and_layer_types() {
        let json = |p: &str| -> Descriptor {
            serde_json::from_str(&format!(
                r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,
                "digest":"sha256:{}"{p}}}"#,
                "a".repeat(64)
            ))
            .unwrap()
        };
        assert!(for_this_platform(&json("")));
        assert!(for_this_platform(&json(
            r#","platform":{"os":"linux","architecture":"amd64"}"#
        )));
        assert!(!for_this_platform(&json(
            r#","platform":{"os":"linux","architecture":"arm64"}"#
        )));
        assert!(check_layer_type("application/vnd.oci.image.layer.v1.tar+gzip").is_ok());
        assert!(check_layer_type(DOCKER_LAYER_GZIP).is_ok());
        assert!(check_layer_type("application/vnd.oci.image.layer.v1.tar+zstd")
            .unwrap_err()
            .contains("zstd"));
        assert!(check_layer_type("application/x-foo").is_err());
    }

    #[test]
    fn digests_and_member_paths() {
        let d = format!("sha256:{:x}", Sha256::digest(b"abc"));
        assert!(check_digest(b"abc", &d, Some(3)).is_ok());
        assert!(check_digest(b"abd", &d, None).unwrap_err().contains("corrupt"));
        assert!(check_digest(b"abc", &d, Some(4)).is_err());
        let hex = "b".repeat(64);
        assert_eq!(
            digest_in_path(&format!("blobs/sha256/{hex}")),
            Some(format!("sha256:{hex}"))
        );
        assert_eq!(
            digest_in_path(&format!("{hex}.json")),
            Some(format!("sha256:{hex}"))
        );
        assert_eq!(digest_in_path("abc/layer.tar"), None);
        assert_eq!(
            member_key(Path::new("./a//b/layer.tar")).unwrap(),
            "a/b/layer.tar"
        );
        assert_eq!(member_key(Path::new("abc/../def.tar")).unwrap(), "def.tar");
        assert!(member_key(Path::new("../etc/passwd")).is_err());
        assert!(member_key(Path::new("a/../../etc/passwd")).is_err());
    }

    /// A tar file in the temp dir with these members.
    fn tar_of(members: &[(String, Vec<u8>)]) -> PathBuf {
        let p = std::env::temp_dir().join(format!(
            "corral-archive-{}.tar",
            crate::file::random_hex(6).unwrap()
        ));
        let mut b = tar::Builder::new(std::fs::File::create(&p).unwrap());
        for (name, bytes) in members {
            append(&mut b, name, bytes.len() as u64, &mut bytes.as_slice()).unwrap();
        }
        b.into_inner().unwrap();
        p
    }

    fn blob(members: &mut Vec<(String, Vec<u8>)>, media_type: &str, bytes: Vec<u8>) -> Value {
        let digest = format!("sha256:{:x}", Sha256::digest(&bytes));
        let v = serde_json::json!({"mediaType": media_type, "digest": digest, "size": bytes.len()});
        members.push((format!("blobs/sha256/{}", &digest[7..]), bytes));
        v
    }

    fn images_of(members: &[(String, Vec<u8>)]) -> Result<Vec<Found>, String> {
        let p = tar_of(members);
        let scratch = p.with_extension("scratch");
        let res = Archive::open(&p, &scratch).and_then(|a| find_images(&a));
        let _ = std::fs::remove_file(&p);
        let _ = std::fs::remove_file(&scratch);
        res
    }

    /// An OCI layout: index.json → a multi-platform index (arm64 absent, amd64 present) → a manifest.
    fn oci_layout(layer_type: &str) -> Vec<(String, Vec<u8>)> {
        let mut m = Vec::new();
        let layer = blob(&mut m, layer_type, b"layer".to_vec());
        let diff = format!("sha256:{:x}", Sha256::digest(b"layer"));
        let config = serde_json::json!({"architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff]}});
        let cfg = blob(
            &mut m,
            "application/vnd.oci.image.config.v1+json",
            config.to_string().into_bytes(),
        );
        let manifest = serde_json::json!({"schemaVersion": 2, "config": cfg, "layers": [layer]});
        let mut md = blob(
            &mut m,
            "application/vnd.oci.image.manifest.v1+json",
            manifest.to_string().into_bytes(),
        );
        md["platform"] = serde_json::json!({"os": "linux", "architecture": "amd64"});
        let arm = serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1,
            "digest": format!("sha256:{}", "0".repeat(64)), "platform": {"os": "linux", "architecture": "arm64"}});
        let inner = serde_json::json!({"schemaVersion": 2, "manifests": [arm, md]});
        let mut id = blob(
            &mut m,
            "application/vnd.oci.image.index.v1+json",
            inner.to_string().into_bytes(),
        );
        id["annotations"] = serde_json::json!({REF_NAME: "1", CONTAINERD_NAME: "docker.io/library/app:1"});
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [id]});
        m.push(("index.json".into(), index.to_string().into_bytes()));
        m
    }

    #[test]
    fn finds_the_amd64_image_through_nested_indexes() {
        let found = images_of(&oci_layout("application/vnd.oci.image.layer.v1.tar")).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].names, vec!["app:1"]);
        assert_eq!(found[0].layers.len(), 1);
        assert!(found[0].manifest.is_some());
        let e = images_of(&oci_layout("application/vnd.oci.image.layer.v1.tar+zstd"))
            .err()
            .unwrap();
        assert!(e.contains("zstd"), "{e}");
    }

    #[test]
    fn refuses_a_corrupt_blob_and_a_missing_one() {
        let mut m = oci_layout("application/vnd.oci.image.layer.v1.tar");
        let config = m
            .iter_mut()
            .find(|(_, b)| b.starts_with(b"{\"architecture"))
            .unwrap();
        config.1.push(b' ');
        let e = images_of(&m).err().unwrap();
        assert!(e.contains("is corrupt") || e.contains("bytes"), "{e}");
        let mut m = oci_layout("application/vnd.oci.image.layer.v1.tar");
        m.retain(|(_, b)| !b.starts_with(b"{\"architecture"));
        assert!(images_of(&m)
            .err()
            .unwrap()
            .contains("the archive has no blobs/sha256/"));
        assert!(images_of(&[("x".into(), b"y".to_vec())])
            .err()
            .unwrap()
            .contains("not an image archive"));
    }

    #[test]
    fn reads_docker_save_tarballs() {
        let diff = format!("sha256:{:x}", Sha256::digest(b"layer"));
        let config = serde_json::json!({"architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff]}})
        .to_string();
        let cfg_name = format!("{:x}.json", Sha256::digest(config.as_bytes()));
        let manifest = serde_json::json!([{"Config": cfg_name, "RepoTags": ["docker.io/library/app:2"],
            "Layers": ["abc/layer.tar"]}]);
        let m = vec![
            (cfg_name.clone(), config.into_bytes()),
            ("abc/layer.tar".to_string(), b"layer".to_vec()),
            ("manifest.json".to_string(), manifest.to_string().into_bytes()),
        ];
        let found = images_of(&m).unwrap();
        assert_eq!(found[0].names, vec!["app:2"]);
        assert_eq!(found[0].layers[0].0, "abc/layer.tar");
        assert!(found[0].manifest.is_none());
        let mut bad = m.clone();
        bad[0].1.push(b' ');
        assert!(images_of(&bad).err().unwrap().contains("is corrupt"));
    }
}
