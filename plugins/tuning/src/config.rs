//! The tuning config: the reference's keys, validated before anything is changed. Sysctl keys must be under
//! `net.` with no path escape (code 7), and, when `/etc/cni/tuning/allowlist.conf` exists, match one of its
//! regular expressions (one per line), as the reference requires.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use corral_cni::{CniError, Request};
use serde::Deserialize;
use serde_json::Value;

/// Where the originals are saved when the config has no `dataDir`.
pub const DEFAULT_DATA_DIR: &str = "/run/cni/tuning";
/// The reference's allowlist of sysctl keys (regular expressions, one per line).
pub const DEFAULT_ALLOWLIST: &str = "/etc/cni/tuning/allowlist.conf";

/// The wire config (reference keys; Go-style case-insensitive matching through `Request::decode_conf`).
#[derive(Debug, Default, Deserialize)]
struct TuningConf {
    #[serde(default)]
    sysctl: BTreeMap<String, String>,
    #[serde(default)]
    mac: String,
    #[serde(default)]
    promisc: bool,
    #[serde(default)]
    mtu: u32,
    #[serde(default)]
    allmulti: Option<bool>,
    #[serde(default, rename = "txQLen")]
    tx_qlen: Option<u32>,
    #[serde(default, rename = "dataDir")]
    data_dir: Option<PathBuf>,
}

/// What to apply, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tuning {
    /// Sysctl key (dotted, under `net.`) to value.
    pub sysctl: BTreeMap<String, String>,
    /// New MAC of the interface.
    pub mac: Option<[u8; 6]>,
    /// Promiscuous mode on (the reference only ever turns it on).
    pub promisc: bool,
    /// New MTU.
    pub mtu: Option<u32>,
    /// All-multicast mode.
    pub allmulti: Option<bool>,
    /// Transmit queue length.
    pub txqlen: Option<u32>,
    /// Where the originals are saved.
    pub data_dir: PathBuf,
}

impl Tuning {
    /// Whether any link setting (not sysctl) is asked for: only then are originals saved.
    pub fn changes_link(&self) -> bool {
        self.mac.is_some()
            || self.promisc
            || self.mtu.is_some()
            || self.allmulti.is_some()
            || self.txqlen.is_some()
    }
}

/// Loads and validates the config of `req`, with the allowlist at `allowlist` (if that file exists).
pub fn load(req: &Request, allowlist: &Path) -> Result<Tuning, CniError> {
    let conf: TuningConf = req.decode_conf()?;
    let patterns = read_allowlist(allowlist)?;
    for key in conf.sysctl.keys() {
        validate_sysctl_key(key)?;
        if let Some(patterns) = &patterns {
            if !patterns.iter().any(|p| p.is_match(key)) {
                return Err(CniError::invalid_config(format!(
                    "sysctl {key:?} is not allowed by {}",
                    allowlist.display()
                )));
            }
        }
    }
    let mac_text = mac_source(req, &conf.mac);
    let mac = match mac_text.as_deref() {
        None | Some("") => None,
        Some(text) => Some(
            parse_mac(text)
                .ok_or_else(|| CniError::invalid_config(format!("invalid MAC address {text:?}")))?,
        ),
    };
    Ok(Tuning {
        sysctl: conf.sysctl,
        mac,
        promisc: conf.promisc,
        mtu: (conf.mtu != 0).then_some(conf.mtu),
        allmulti: conf.allmulti,
        txqlen: conf.tx_qlen,
        data_dir: conf
            .data_dir
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
    })
}

/// The MAC to set: `mac`, overridden by CNI_ARGS `MAC`, then `args.cni.mac`, then `runtimeConfig.mac`.
fn mac_source(req: &Request, conf_mac: &str) -> Option<String> {
    let from_value = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    from_value(req.conf.runtime("mac"))
        .or_else(|| from_value(req.conf.args_cni("mac")))
        .or_else(|| req.args.get("MAC").map(str::to_string))
        .or_else(|| (!conf_mac.is_empty()).then(|| conf_mac.to_string()))
}

/// A sysctl key tuning may write: `net.` followed by non-empty dotted parts, no `/`, no `..`.
pub fn validate_sysctl_key(key: &str) -> Result<(), CniError> {
    let ok = key.starts_with("net.")
        && !key.contains('/')
        && key.split('.').all(|p| !p.is_empty())
        && key.split('.').count() >= 2;
    if ok {
        Ok(())
    } else {
        Err(CniError::invalid_config(format!(
            "invalid net sysctl key: {key:?} (only net.* keys, no path separators)"
        )))
    }
}

fn read_allowlist(path: &Path) -> Result<Option<Vec<regex::Regex>>, CniError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CniError::io(format!("read {}: {e}", path.display()))),
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            regex::Regex::new(l)
                .map_err(|e| CniError::invalid_config(format!("{}: bad pattern {l:?}: {e}", path.display())))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Parses `aa:bb:cc:dd:ee:ff` (also `-` separated).
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = text.split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (b, p) in mac.iter_mut().zip(parts) {
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    Some(mac)
}

/// Formats a MAC as the result carries it.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_keys_outside_net_or_with_escapes_are_rejected() {
        for bad in [
            "kernel.panic",
            "net",
            "net..ipv4",
            "net/ipv4/ip_forward",
            "net.ipv4.conf.../x",
            "net.",
            ".net.x",
        ] {
            assert!(validate_sysctl_key(bad).is_err(), "{bad}");
        }
        for good in [
            "net.ipv4.conf.eth0.arp_filter",
            "net.core.somaxconn",
            "net.ipv6.conf.all.forwarding",
        ] {
            assert!(validate_sysctl_key(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn macs_parse_and_format() {
        assert_eq!(parse_mac("02:42:AC:11:00:02"), Some([2, 0x42, 0xac, 0x11, 0, 2]));
        assert_eq!(format_mac(&[2, 0x42, 0xac, 0x11, 0, 2]), "02:42:ac:11:00:02");
        assert_eq!(parse_mac("02:42:ac:11:00"), None);
        assert_eq!(parse_mac("zz:42:ac:11:00:02"), None);
    }

    #[test]
    fn allowlist_patterns_are_read_when_present() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("allowlist.conf");
        assert!(read_allowlist(&path).unwrap().is_none());
        std::fs::write(&path, "# comment\n^net\\.core\\..*\n").unwrap();
        let pats = read_allowlist(&path).unwrap().unwrap();
        assert!(pats[0].is_match("net.core.somaxconn"));
        assert!(!pats[0].is_match("net.ipv4.ip_forward"));
    }
}
