//! The host-device plugin's configuration: the reference's keys, validated into [`HostDevice`] with at most
//! one way to find the device ([`Selector`]). ADD and CHECK need exactly one; DEL, STATUS and GC work without
//! (they find the device through the container and the on-disk record, and runtimes send
//! `runtimeConfig.deviceID` only with attachment verbs).

use corral_cni::{CniError, IpamRef, Request};
use corral_nat::model::parse_mac;
use serde::Deserialize;
use std::path::{Component, Path, PathBuf};

/// Raw wire config: the plugin's own keys (the common ones are in `NetConf`).
#[derive(Debug, Default, Deserialize)]
pub struct HostConf {
    #[serde(default)]
    device: Option<String>,
    #[serde(default)]
    hwaddr: Option<String>,
    #[serde(default)]
    kernelpath: Option<String>,
    #[serde(default, rename = "pciBusID")]
    pci_bus_id: Option<String>,
    #[serde(default, rename = "runtimeConfig")]
    runtime_config: Option<RuntimeConf>,
    #[serde(default)]
    ipam: Option<IpamRef>,
}

/// The capability arguments host-device reads.
#[derive(Debug, Default, Deserialize)]
struct RuntimeConf {
    #[serde(default, rename = "deviceID")]
    device_id: Option<String>,
}

/// How the device to move is found in the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// `device`: the link's name.
    Name(String),
    /// `hwaddr`: the link's MAC.
    Mac([u8; 6]),
    /// `kernelpath`: a device under /sys/devices whose `net/` directory names the link.
    KernelPath(PathBuf),
    /// `pciBusID` or `runtimeConfig.deviceID`: a PCI (or auxiliary-bus) device id.
    Pci {
        /// The key it came from, for messages.
        key: &'static str,
        /// The id, e.g. `0000:00:1f.6`.
        id: String,
    },
}

impl Selector {
    /// The config key this selector came from.
    pub fn key(&self) -> &'static str {
        match self {
            Selector::Name(_) => "device",
            Selector::Mac(_) => "hwaddr",
            Selector::KernelPath(_) => "kernelpath",
            Selector::Pci { key, .. } => key,
        }
    }

    /// The value as configured (a MAC in lower case).
    pub fn value(&self) -> String {
        match self {
            Selector::Name(n) => n.clone(),
            Selector::Mac(m) => corral_nat::model::format_mac(m),
            Selector::KernelPath(p) => p.display().to_string(),
            Selector::Pci { id, .. } => id.clone(),
        }
    }

    /// `key "value"`, for messages.
    pub fn describe(&self) -> String {
        format!("{} \"{}\"", self.key(), self.value())
    }

    /// The PCI id to report in the 1.1.0 result (`pciID`), when the device was chosen by one.
    pub fn pci_id(&self) -> Option<&str> {
        match self {
            Selector::Pci { id, .. } => Some(id),
            _ => None,
        }
    }
}

/// Validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDevice {
    /// Network name.
    pub network: String,
    /// How to find the device; `None` only when the config names none (allowed for DEL, STATUS, GC).
    pub selector: Option<Selector>,
    /// IPAM plugin type, when configured.
    pub ipam_type: Option<String>,
}

/// The keys that select a device, in messages.
const KEYS: &str = "\"device\", \"hwaddr\", \"kernelpath\", \"pciBusID\" or runtimeConfig \"deviceID\"";

impl HostDevice {
    /// The selector, or code 7 naming the keys (ADD and CHECK need one).
    pub fn require_selector(&self) -> Result<&Selector, CniError> {
        self.selector.as_ref().ok_or_else(|| {
            CniError::invalid_config(format!(
                "network \"{}\": specify one of {KEYS} to choose the device",
                self.network
            ))
        })
    }
}

/// Decodes and validates the request's config.
pub fn load(req: &Request) -> Result<HostDevice, CniError> {
    let raw: HostConf = req.decode_conf()?;
    req.args.check_known(&["IP"])?;
    validate(raw, &req.conf.name)
}

fn validate(raw: HostConf, network: &str) -> Result<HostDevice, CniError> {
    let bad = |msg: String| CniError::invalid_config(format!("network \"{network}\": {msg}"));
    let set = |v: Option<String>| v.filter(|s| !s.is_empty());
    let candidates: Vec<(&'static str, String)> = [
        ("device", set(raw.device)),
        ("hwaddr", set(raw.hwaddr)),
        ("kernelpath", set(raw.kernelpath)),
        ("pciBusID", set(raw.pci_bus_id)),
        (
            "runtimeConfig.deviceID",
            set(raw.runtime_config.and_then(|r| r.device_id)),
        ),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    if candidates.len() > 1 {
        let names: Vec<String> = candidates.iter().map(|(k, _)| format!("\"{k}\"")).collect();
        return Err(bad(format!(
            "specify only one of {KEYS}; got {}",
            names.join(" and ")
        )));
    }
    let selector = match candidates.into_iter().next() {
        None => None,
        Some((key, value)) => Some(parse_selector(key, value).map_err(bad)?),
    };
    let ipam_type = raw.ipam.as_ref().and_then(IpamRef::plugin).map(str::to_string);
    Ok(HostDevice {
        network: network.to_string(),
        selector,
        ipam_type,
    })
}

fn parse_selector(key: &'static str, value: String) -> Result<Selector, String> {
    match key {
        "device" => {
            corral_cni::skel::validate_ifname(&value)
                .map_err(|_| format!("device \"{value}\" is not a valid interface name"))?;
            Ok(Selector::Name(value))
        }
        "hwaddr" => parse_mac(&value.replace('-', ":"))
            .map(Selector::Mac)
            .ok_or_else(|| format!("hwaddr \"{value}\" is not a MAC address (aa:bb:cc:dd:ee:ff)")),
        "kernelpath" => validate_kernelpath(&value).map(Selector::KernelPath),
        _ => validate_device_id(key, &value).map(|()| Selector::Pci { key, id: value }),
    }
}

/// `kernelpath` must be an absolute path under /sys/devices/ with no `..` (it is read as root).
fn validate_kernelpath(value: &str) -> Result<PathBuf, String> {
    let path = Path::new(value);
    let under_devices = path.is_absolute()
        && path.starts_with("/sys/devices")
        && path.components().count() > 3
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if under_devices {
        Ok(path.to_path_buf())
    } else {
        Err(format!(
            "kernelpath \"{value}\" must be an absolute path under /sys/devices/"
        ))
    }
}

/// A PCI or auxiliary-bus id names one entry of a sysfs directory: no `/`, not `.` or `..`.
fn validate_device_id(key: &str, value: &str) -> Result<(), String> {
    let ok = value != "."
        && value != ".."
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(format!("{key} \"{value}\" is not a valid device id"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(conf: &str) -> Result<HostDevice, CniError> {
        let raw: HostConf = serde_json::from_str(conf).unwrap();
        validate(raw, "n")
    }

    fn selector(conf: &str) -> Selector {
        load_str(conf).unwrap().selector.unwrap()
    }

    #[test]
    fn each_key_selects_the_device() {
        assert_eq!(selector(r#"{"device":"eth1"}"#), Selector::Name("eth1".into()));
        assert_eq!(
            selector(r#"{"hwaddr":"02:AA:bb:cc:dd:0e"}"#),
            Selector::Mac([2, 0xaa, 0xbb, 0xcc, 0xdd, 0x0e])
        );
        assert_eq!(
            selector(r#"{"hwaddr":"02-aa-bb-cc-dd-0e"}"#),
            Selector::Mac([2, 0xaa, 0xbb, 0xcc, 0xdd, 0x0e])
        );
        assert_eq!(
            selector(r#"{"kernelpath":"/sys/devices/pci0000:00/0000:00:1f.6"}"#),
            Selector::KernelPath("/sys/devices/pci0000:00/0000:00:1f.6".into())
        );
        assert_eq!(
            selector(r#"{"pciBusID":"0000:00:1f.6"}"#),
            Selector::Pci {
                key: "pciBusID",
                id: "0000:00:1f.6".into()
            }
        );
        let s = selector(r#"{"runtimeConfig":{"deviceID":"0000:3b:02.1","mac":"x"}}"#);
        assert_eq!(s.key(), "runtimeConfig.deviceID");
        assert_eq!(s.pci_id(), Some("0000:3b:02.1"));
    }

    #[test]
    fn no_key_is_allowed_by_load_but_not_by_require_selector() {
        let h = load_str(r#"{"ipam":{"type":"host-local"}}"#).unwrap();
        assert_eq!(h.selector, None);
        assert_eq!(h.ipam_type.as_deref(), Some("host-local"));
        let e = h.require_selector().unwrap_err();
        assert_eq!(e.code, 7);
        for key in ["device", "hwaddr", "kernelpath", "pciBusID", "deviceID"] {
            assert!(e.msg.contains(key), "{}", e.msg);
        }
        // Empty strings count as unset, as in the reference.
        assert_eq!(load_str(r#"{"device":""}"#).unwrap().selector, None);
    }

    #[test]
    fn two_keys_are_code_7_naming_both() {
        for (conf, a, b) in [
            (
                r#"{"device":"eth1","hwaddr":"02:00:00:00:00:01"}"#,
                "device",
                "hwaddr",
            ),
            (
                r#"{"pciBusID":"0000:00:01.0","runtimeConfig":{"deviceID":"0000:00:02.0"}}"#,
                "pciBusID",
                "runtimeConfig.deviceID",
            ),
        ] {
            let e = load_str(conf).unwrap_err();
            assert_eq!(e.code, 7, "{conf}");
            assert!(e.msg.contains(&format!("got \"{a}\" and \"{b}\"")), "{}", e.msg);
            assert!(e.msg.contains("network \"n\""), "{}", e.msg);
        }
    }

    #[test]
    fn bad_values_are_code_7_naming_key_and_value() {
        for (conf, needle) in [
            (r#"{"device":"a/b"}"#, "device \"a/b\""),
            (r#"{"device":"waytoolonginterfacename"}"#, "waytoolong"),
            (r#"{"hwaddr":"02:00:00"}"#, "hwaddr \"02:00:00\""),
            (r#"{"kernelpath":"/sys/class/net/eth0"}"#, "/sys/class/net/eth0"),
            (r#"{"kernelpath":"sys/devices/x"}"#, "absolute"),
            (r#"{"kernelpath":"/sys/devices/../../etc"}"#, "/sys/devices/"),
            (r#"{"kernelpath":"/sys/devices"}"#, "/sys/devices/"),
            (r#"{"pciBusID":"../../etc"}"#, "pciBusID \"../../etc\""),
            (r#"{"runtimeConfig":{"deviceID":".."}}"#, "deviceID"),
        ] {
            let e = load_str(conf).unwrap_err();
            assert_eq!(e.code, 7, "{conf}");
            assert!(e.msg.contains(needle), "{conf}: {}", e.msg);
        }
    }

    #[test]
    fn wrongly_typed_value_is_a_decode_error() {
        let r: Result<HostConf, _> = serde_json::from_str(r#"{"device":5}"#);
        assert!(r.is_err());
    }

    #[test]
    fn describe_names_key_and_value() {
        assert_eq!(
            Selector::Mac([2, 0, 0, 0, 0, 1]).describe(),
            "hwaddr \"02:00:00:00:00:01\""
        );
        assert_eq!(Selector::Name("eth1".into()).describe(), "device \"eth1\"");
    }
}
