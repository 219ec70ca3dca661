//! Image layers: writing one as a gzip blob (hashing the input, the tar and the blob on the way), and unpacking
//! one (a tar stream) into a directory that serves as an overlayfs lower dir: OCI whiteouts become overlayfs
//! whiteouts (`.wh.NAME` → a 0:0 character device `NAME`; `.wh..wh..opq` → the directory's
//! `trusted.overlay.opaque` xattr). Entries never land outside the directory.

use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use sha2::{Digest as _, Sha256};
use std::io::{BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

fn err(ctx: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> String {
    move |e| format!("{ctx}: {e}")
}

struct HashingWriter<W: Write> {
    inner: W,
    hash: Sha256,
    size: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hash: Sha256::new(),
            size: 0,
        }
    }
    fn digest(&self) -> String {
        format!("sha256:{:x}", self.hash.clone().finalize())
    }
}

/// A reader that copies what it reads into a writer (a gzip layer kept as it came, hashed on the way).
struct Tee<R: Read, W: Write> {
    from: R,
    to: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.from.read(buf)?;
        self.to.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// A layer blob written to a temporary file.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerBlob {
    /// Digest of the input as given (checked against an archive's descriptor).
    pub input_digest: String,
    /// Size of the input as given.
    pub input_size: u64,
    /// sha256 of the uncompressed tar.
    pub diff_id: String,
    /// Size of the uncompressed tar.
    pub tar_size: u64,
    /// Digest of the stored gzip blob.
    pub digest: String,
    /// Size of the stored gzip blob.
    pub size: u64,
}

/// How a layer is compressed, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd (not supported).
    Zstd,
}

/// Tells gzip and zstd from a plain tar by their magic numbers.
pub fn compression_of(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Writes a layer (a plain or gzip tar stream) to `tmp` as a gzip blob: a gzip input is kept byte for byte (so
/// its digest stays the one an archive names), a plain tar is compressed. Hashes the input, the tar (diff id)
/// and the blob on the way.
pub fn write_layer_blob(input: impl Read, tmp: &Path) -> Result<LayerBlob, String> {
    use std::io::BufRead;
    let mut input = BufReader::new(input);
    let head = input.fill_buf().map_err(err("read layer"))?;
    let compression = compression_of(head);
    if compression == Compression::Zstd {
        return Err("zstd-compressed layers are not supported: use gzip or plain tar layers".into());
    }
    let out = std::fs::File::create(tmp).map_err(err(tmp.display()))?;
    if compression == Compression::Gzip {
        let mut tee = Tee {
            from: input,
            to: HashingWriter::new(out),
        };
        let mut tar = HashingWriter::new(std::io::sink());
        std::io::copy(&mut flate2::read::MultiGzDecoder::new(&mut tee), &mut tar)
            .map_err(err("decompress gzip layer"))?;
        // Whatever follows the last gzip member still belongs to the blob (and its digest).
        std::io::copy(&mut tee, &mut std::io::sink()).map_err(err("read layer"))?;
        tee.to.inner.sync_all().map_err(err("sync layer"))?;
        return Ok(LayerBlob {
            input_digest: tee.to.digest(),
            input_size: tee.to.size,
            diff_id: tar.digest(),
            tar_size: tar.size,
            digest: tee.to.digest(),
            size: tee.to.size,
        });
    }
    let enc = flate2::write::GzEncoder::new(HashingWriter::new(out), flate2::Compression::fast());
    let mut tar = HashingWriter::new(enc);
    std::io::copy(&mut input, &mut tar).map_err(err("read layer"))?;
    let (diff_id, tar_size) = (tar.digest(), tar.size);
    let blob = tar.inner.finish().map_err(err("compress layer"))?;
    blob.inner.sync_all().map_err(err("sync layer"))?;
    Ok(LayerBlob {
        input_digest: diff_id.clone(),
        input_size: tar_size,
        diff_id,
        tar_size,
        digest: blob.digest(),
        size: blob.size,
    })
}

/// What an entry of a layer means for the lower dir.
#[derive(Debug, PartialEq, Eq)]
pub enum Entry {
    /// A regular entry, unpacked as is.
    Plain,
    /// `dir/.wh.name`: `dir/name` is deleted.
    Whiteout(PathBuf),
    /// `dir/.wh..wh..opq`: `dir` hides lower content.
    Opaque(PathBuf),
}

/// Classifies an entry path; refuses paths that climb out with `..`.
pub fn classify(path: &Path) -> Result<Entry, String> {
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!("layer entry {} climbs out of the layer", path.display()));
    }
    let rel: PathBuf = path
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let parent = rel.parent().map(Path::to_path_buf).unwrap_or_default();
    if name == OPAQUE {
        Ok(Entry::Opaque(parent))
    } else if let Some(target) = name.strip_prefix(WHITEOUT) {
        Ok(Entry::Whiteout(parent.join(target)))
    } else {
        Ok(Entry::Plain)
    }
}

/// Unpacks a tar stream into `dir` (which must exist and be empty).
pub fn unpack<R: Read>(tar_stream: R, dir: &Path) -> Result<(), String> {
    let mut archive = tar::Archive::new(tar_stream);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    let entries = archive.entries().map_err(|e| format!("read layer: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("read layer entry: {e}"))?;
        let path = entry
            .path()
            .map_err(|e| format!("layer entry path: {e}"))?
            .into_owned();
        match classify(&path)? {
            Entry::Plain => {
                entry
                    .unpack_in(dir)
                    .map_err(|e| format!("unpack {}: {e}", path.display()))?;
            }
            Entry::Whiteout(target) => {
                let at = dir.join(&target);
                if let Some(parent) = at.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
                }
                mknod(&at, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
                    .map_err(|e| format!("whiteout {}: {e}", at.display()))?;
            }
            Entry::Opaque(target) => {
                let at = dir.join(&target);
                std::fs::create_dir_all(&at).map_err(|e| format!("{}: {e}", at.display()))?;
                xattr::set(&at, "trusted.overlay.opaque", b"y")
                    .map_err(|e| format!("opaque dir {}: {e}", at.display()))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_whiteouts() {
        assert_eq!(classify(Path::new("./etc/passwd")).unwrap(), Entry::Plain);
        assert_eq!(
            classify(Path::new("./etc/.wh.shadow")).unwrap(),
            Entry::Whiteout("etc/shadow".into())
        );
        assert_eq!(
            classify(Path::new("var/.wh..wh..opq")).unwrap(),
            Entry::Opaque("var".into())
        );
        assert!(classify(Path::new("../x")).is_err());
    }

    #[test]
    fn layer_blobs_keep_gzip_and_compress_plain_tars() {
        let tmp = std::env::temp_dir().join(format!("corral-layer-{}", crate::file::random_hex(4).unwrap()));
        let tar = b"pretend this is a tar".to_vec();
        let diff_id = format!("sha256:{:x}", Sha256::digest(&tar));
        let plain = write_layer_blob(&tar[..], &tmp).unwrap();
        assert_eq!(
            (plain.diff_id.as_str(), plain.input_digest.as_str()),
            (diff_id.as_str(), diff_id.as_str())
        );
        let blob = std::fs::read(&tmp).unwrap();
        assert_eq!(compression_of(&blob), Compression::Gzip);
        assert_eq!(plain.digest, format!("sha256:{:x}", Sha256::digest(&blob)));
        // That gzip blob as input is kept byte for byte.
        let gz = write_layer_blob(&blob[..], &tmp).unwrap();
        assert_eq!(std::fs::read(&tmp).unwrap(), blob);
        assert_eq!(
            (gz.digest, gz.input_digest, gz.diff_id),
            (plain.digest.clone(), plain.digest, diff_id)
        );
        let zstd = write_layer_blob(&[0x28, 0xb5, 0x2f, 0xfd, 0][..], &tmp).unwrap_err();
        assert!(zstd.contains("zstd"), "{zstd}");
        let _ = std::fs::remove_file(&tmp);
    }
}
