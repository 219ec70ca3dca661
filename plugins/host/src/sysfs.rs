//! Finding the network interface of a kernel device through sysfs (`kernelpath`, `pciBusID`,
//! `runtimeConfig.deviceID`). Reads only; the sysfs root is injectable so fixtures stand in for /sys in tests.
//!
//! sysfs shows the network namespace of whoever mounted it, not the caller's: a plugin running in a node
//! namespace other than the machine's reads the names of the root namespace. The name found here is therefore
//! only a name; the caller looks it up with netlink in its own namespace.

use crate::config::Selector;
use corral_cni::CniError;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// The default sysfs mount.
pub const SYS: &str = "/sys";

/// Drivers that take a PCI function away from the kernel's network stack (DPDK and friends).
const USERSPACE_DRIVERS: [&str; 3] = ["vfio-pci", "uio_pci_generic", "igb_uio"];

/// A sysfs tree rooted at `root` (normally `/sys`).
#[derive(Debug, Clone)]
pub struct Sysfs {
    root: PathBuf,
}

impl Sysfs {
    /// sysfs at `root`, which stands for `/sys`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Sysfs { root: root.into() }
    }

    /// Maps an absolute `/sys/...` path into this tree.
    fn map(&self, abs: &Path) -> PathBuf {
        match abs.strip_prefix(SYS) {
            Ok(rest) => self.root.join(rest),
            Err(_) => abs.to_path_buf(),
        }
    }

    /// The name of the device's network interface for sysfs-based selectors; `None` for `device`/`hwaddr`.
    ///
    /// A device that does not exist is code 7 naming the key; one that exists but has no network interface
    /// (bound to a DPDK driver, or an auxiliary device without a netdev) is code 2, unsupported.
    pub fn netdev_name(&self, sel: &Selector) -> Result<Option<String>, CniError> {
        match sel {
            Selector::Name(_) | Selector::Mac(_) => Ok(None),
            Selector::KernelPath(p) => {
                let dev = self.map(p);
                if !dev.is_dir() {
                    return Err(CniError::invalid_config(format!(
                        "{}: no such device",
                        sel.describe()
                    )));
                }
                self.first_netdev(sel, &[dev.join("net")], &dev).map(Some)
            }
            Selector::Pci { id, .. } => {
                let bases = [
                    self.root.join("bus/pci/devices").join(id),
                    self.root.join("bus/auxiliary/devices").join(id),
                ];
                let Some(dev) = bases.into_iter().find(|b| b.is_dir()) else {
                    return Err(CniError::invalid_config(format!(
                        "{}: no such PCI or auxiliary-bus device",
                        sel.describe()
                    )));
                };
                let mut dirs = vec![dev.join("net")];
                dirs.extend(virtio_net_dirs(&dev));
                self.first_netdev(sel, &dirs, &dev).map(Some)
            }
        }
    }

    /// The first interface name (in name order) in the first of `dirs` that has one.
    fn first_netdev(&self, sel: &Selector, dirs: &[PathBuf], dev: &Path) -> Result<String, CniError> {
        for dir in dirs {
            let mut names = match fs::read_dir(dir) {
                Ok(rd) => rd
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect::<Vec<_>>(),
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(
                        CniError::io(format!("{}: reading {}", sel.describe(), dir.display()))
                            .with_details(e),
                    )
                }
            };
            names.sort();
            if let Some(first) = names.into_iter().next() {
                return Ok(first);
            }
        }
        let why = match driver(dev) {
            Some(d) if USERSPACE_DRIVERS.contains(&d.as_str()) => {
                format!("it is bound to the userspace (DPDK) driver {d} and has no network interface")
            }
            _ => "it has no network interface".to_string(),
        };
        Err(
            CniError::unsupported_field(sel.key(), format!("\"{}\"", sel.value())).with_details(format!(
                "corral's host-device moves network interfaces only: {why}"
            )),
        )
    }
}

/// `<dev>/virtio*/net`: virtio devices keep their interface one level down.
fn virtio_net_dirs(dev: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dev)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("virtio"))
                .map(|e| e.path().join("net"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The name of the driver bound to a device (the target of its `driver` link).
fn driver(dev: &Path) -> Option<String> {
    let target = fs::read_link(dev.join("driver")).ok()?;
    Some(target.file_name()?.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let mk = |p: &str| fs::create_dir_all(t.path().join(p)).unwrap();
        mk("devices/pci0000:00/0000:00:1f.6/net/enp0s31f6");
        mk("devices/pci0000:00/0000:00:1f.6/net/enp0s31f6d1");
        mk("devices/pci0000:00/0000:00:03.0/virtio0/net/ens3");
        mk("devices/pci0000:00/0000:00:04.0");
        mk("devices/pci0000:00/0000:00:05.0");
        mk("bus/pci/drivers/vfio-pci");
        mk("bus/pci/devices");
        mk("bus/auxiliary/devices/mlx5_core.sf.4/net/en3f0pf0sf88");
        mk("bus/auxiliary/devices/mlx5_core.sf.5");
        let link = |dev: &str, target: &str| {
            std::os::unix::fs::symlink(t.path().join(target), t.path().join(dev)).unwrap()
        };
        link("bus/pci/devices/0000:00:1f.6", "devices/pci0000:00/0000:00:1f.6");
        link("bus/pci/devices/0000:00:03.0", "devices/pci0000:00/0000:00:03.0");
        link("bus/pci/devices/0000:00:04.0", "devices/pci0000:00/0000:00:04.0");
        link("bus/pci/devices/0000:00:05.0", "devices/pci0000:00/0000:00:05.0");
        link(
            "devices/pci0000:00/0000:00:04.0/driver",
            "bus/pci/drivers/vfio-pci",
        );
        t
    }

    fn pci(id: &str) -> Selector {
        Selector::Pci {
            key: "pciBusID",
            id: id.into(),
        }
    }

    #[test]
    fn kernelpath_gives_the_first_interface_in_name_order() {
        let t = fixture();
        let s = Sysfs::new(t.path());
        let sel = Selector::KernelPath("/sys/devices/pci0000:00/0000:00:1f.6".into());
        assert_eq!(s.netdev_name(&sel).unwrap().as_deref(), Some("enp0s31f6"));
    }

    #[test]
    fn pci_id_finds_plain_virtio_and_auxiliary_devices() {
        let t = fixture();
        let s = Sysfs::new(t.path());
        assert_eq!(
            s.netdev_name(&pci("0000:00:1f.6")).unwrap().as_deref(),
            Some("enp0s31f6")
        );
        assert_eq!(
            s.netdev_name(&pci("0000:00:03.0")).unwrap().as_deref(),
            Some("ens3")
        );
        let aux = Selector::Pci {
            key: "runtimeConfig.deviceID",
            id: "mlx5_core.sf.4".into(),
        };
        assert_eq!(s.netdev_name(&aux).unwrap().as_deref(), Some("en3f0pf0sf88"));
    }

    #[test]
    fn missing_device_is_code_7_naming_key_and_value() {
        let t = fixture();
        let s = Sysfs::new(t.path());
        let e = s.netdev_name(&pci("0000:99:00.0")).unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("pciBusID \"0000:99:00.0\""), "{}", e.msg);
        let e = s
            .netdev_name(&Selector::KernelPath("/sys/devices/nope/x".into()))
            .unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("/sys/devices/nope/x"), "{}", e.msg);
    }

    #[test]
    fn device_without_netdev_is_unsupported_and_names_a_dpdk_driver() {
        let t = fixture();
        let s = Sysfs::new(t.path());
        let e = s.netdev_name(&pci("0000:00:04.0")).unwrap_err();
        assert_eq!(e.code, 2);
        assert!(
            e.msg.contains("pciBusID") && e.msg.contains("0000:00:04.0"),
            "{}",
            e.msg
        );
        assert!(e.details.contains("vfio-pci"), "{}", e.details);
        let e = s.netdev_name(&pci("0000:00:05.0")).unwrap_err();
        assert_eq!(e.code, 2);
        assert!(e.details.contains("no network interface"), "{}", e.details);
        let aux = Selector::Pci {
            key: "runtimeConfig.deviceID",
            id: "mlx5_core.sf.5".into(),
        };
        assert_eq!(s.netdev_name(&aux).unwrap_err().code, 2);
    }

    #[test]
    fn name_and_mac_need_no_sysfs() {
        let s = Sysfs::new("/nonexistent");
        assert_eq!(s.netdev_name(&Selector::Name("eth1".into())).unwrap(), None);
        assert_eq!(s.netdev_name(&Selector::Mac([2, 0, 0, 0, 0, 1])).unwrap(), None);
    }
}
