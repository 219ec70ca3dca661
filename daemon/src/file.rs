//! Small file helpers: atomic writes (temporary file, rename) for every piece of launcher state, durable
//! (fsync before the rename) where a reboot must find the file, and random identifiers.

use std::io::{Read, Write};
use std::path::Path;

/// Writes `bytes` to `path` atomically and durably: a reader sees the old content or the new, never a mix, and
/// the new content survives a power loss once this returns.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_renamed(path, bytes, true)
}

/// Writes `bytes` to `path` atomically without waiting for the disk: for files that are rewritten on every
/// start (bundle, /etc files) or that describe kernel state a reboot discards anyway (a container's record
/// while it runs). A killed process still leaves the old or the new content; each fsync costs about 1 ms.
pub fn write_replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_renamed(path, bytes, false)
}

fn write_renamed(path: &Path, bytes: &[u8], durable: bool) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    if durable {
        f.sync_all()?;
    }
    drop(f);
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Flushes a file written with [`write_replace`] to disk, making it durable after the fact.
pub fn sync(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

/// Rewrites a file in place, keeping its inode (for files bind-mounted into containers): the new bytes from
/// offset 0, then the file cut to their length, so a reader sees old or new text, never an empty file.
pub fn write_in_place(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    f.write_all(bytes)?;
    f.set_len(bytes.len() as u64)
}

/// Serializes `value` as pretty JSON and writes it atomically and durably.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    write_atomic(path, &bytes)
}

/// Serializes `value` as JSON and writes it atomically, not durably (see [`write_replace`]).
pub fn replace_json<T: serde::Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    write_replace(path, &bytes)
}

/// Reads and decodes a JSON file.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> std::io::Result<T> {
    let bytes = std::fs::read(path)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}

/// `n` random bytes as lowercase hex, from the kernel's random source.
pub fn random_hex(n: usize) -> std::io::Result<String> {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_content_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("corral-file-{}", random_hex(4).unwrap()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.json");
        write_json(&p, &serde_json::json!({"a": 1})).unwrap();
        write_json(&p, &serde_json::json!({"a": 2})).unwrap();
        let v: serde_json::Value = read_json(&p).unwrap();
        assert_eq!(v["a"], 2);
        assert_eq!(std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
