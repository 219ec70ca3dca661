//! Sysctls under /proc/sys, for the calling thread's network namespace.
//!
//! `/proc/sys/net` follows the netns of the *thread* that opens the file, so to set a container's sysctls run
//! these inside [`crate::run_in_netns`].

use std::io::Write;
use std::path::PathBuf;

use crate::error::{NetopsError, Result};

const PROC_SYS: &str = "/proc/sys";

/// The /proc/sys path of a sysctl key.
///
/// A key with a `/` is taken as a path ("net/ipv4/conf/eth0.100/forwarding"); a key without one uses dots
/// as separators ("net.ipv4.ip_forward"). Use the slash form when an interface name contains a dot.
pub fn sysctl_path(key: &str) -> Result<PathBuf> {
    let rel = if key.contains('/') {
        key.to_string()
    } else {
        key.replace('.', "/")
    };
    let ok = !rel.is_empty()
        && !rel.starts_with('/')
        && rel
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    if !ok {
        return Err(NetopsError::Invalid {
            what: "sysctl key",
            value: key.to_string(),
        });
    }
    Ok(PathBuf::from(PROC_SYS).join(rel))
}

/// Writes `value` to the sysctl `key` in the calling thread's netns.
pub fn write_sysctl(key: &str, value: &str) -> Result<()> {
    let path = sysctl_path(key)?;
    tracing::debug!(key, value, "write sysctl");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| NetopsError::io("write sysctl", path, e))
}

/// Reads the sysctl `key` in the calling thread's netns, without the trailing newline.
pub fn read_sysctl(key: &str) -> Result<String> {
    let path = sysctl_path(key)?;
    let text = std::fs::read_to_string(&path).map_err(|e| NetopsError::io("read sysctl", path, e))?;
    Ok(text.trim_end_matches('\n').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_and_slashed_keys_map_to_proc_sys() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            sysctl_path("net/ipv4/conf/eth0.100/forwarding").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0.100/forwarding")
        );
    }

    #[test]
    fn keys_cannot_escape_proc_sys() {
        for bad in [
            "",
            "/etc/passwd",
            "net/../../etc/passwd",
            "net//x",
            "..",
            "net.ipv4.",
        ] {
            let err = sysctl_path(bad).unwrap_err();
            assert_eq!(err.code(), 7, "{bad:?}");
        }
    }

    #[test]
    fn reads_a_sysctl_without_newline() {
        let v = read_sysctl("kernel.ostype").unwrap();
        assert_eq!(v, "Linux");
    }

    #[test]
    fn missing_sysctl_is_not_found() {
        let err = read_sysctl("net.ipv4.conf.corral-nope0.forwarding").unwrap_err();
        assert!(err.is_not_found(), "{err}");
    }
}
