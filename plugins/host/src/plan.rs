//! Pure decisions: the transit name, the on-disk record of an attachment, which link is the attachment's
//! device in the container and in the node, what restoring it in the node takes, and the ADD result.

use corral_cni::{CniResult, Dns, Interface};
use corral_nat::model::{format_mac, parse_mac};
use corral_netops::{LinkInfo, RouteSpec};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Prefix of the unique name a device carries while it moves (`cdev` + 8 hex digits).
pub const TEMP_PREFIX: &str = "cdev";

/// The transit name made from 4 random bytes.
pub fn temp_name(random: [u8; 4]) -> String {
    format!("{TEMP_PREFIX}{:08x}", u32::from_be_bytes(random))
}

/// What ADD writes before it touches the device, so DEL and GC can give the device back after a crash or
/// after the alias was lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// Network name.
    pub network: String,
    /// CNI_CONTAINERID.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// CNI_IFNAME.
    pub ifname: String,
    /// The device's name in the node before ADD.
    pub original: String,
    /// The unique name it carries in transit.
    pub temp: String,
    /// Its MAC (`aa:bb:cc:dd:ee:ff`), when it has an Ethernet address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Whether it was administratively up in the node (DEL restores that).
    #[serde(rename = "wasUp")]
    pub was_up: bool,
    /// CNI_NETNS at ADD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<PathBuf>,
    /// Inode of the container netns at ADD (tells a reused path from the same namespace).
    #[serde(default, rename = "netnsInode", skip_serializing_if = "Option::is_none")]
    pub netns_inode: Option<u64>,
    /// The kernel's boot id at ADD.
    #[serde(default, rename = "bootID", skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
}

impl DeviceRecord {
    /// The recorded MAC as bytes.
    pub fn mac_bytes(&self) -> Option<[u8; 6]> {
        self.mac.as_deref().and_then(parse_mac)
    }

    /// Whether `link` is the recorded device: it carries the original name as alias, or the recorded MAC.
    pub fn owns(&self, link: &LinkInfo) -> bool {
        link.alias.as_deref() == Some(self.original.as_str())
            || (self.mac_bytes().is_some() && link.mac == self.mac_bytes())
    }
}

/// Formats a link's MAC for records and results.
pub fn mac_text(link: &LinkInfo) -> Option<String> {
    link.mac.as_ref().map(format_mac)
}

/// The attachment's device among the container's links: the one called CNI_IFNAME (it belongs to this
/// attachment when there is a record, or when it carries an alias as the reference leaves it), else the
/// one still under the transit name after a crash between the move and the rename.
pub fn pick_container_link(
    by_ifname: Option<LinkInfo>,
    by_temp: Option<LinkInfo>,
    rec: Option<&DeviceRecord>,
) -> Option<LinkInfo> {
    if let Some(l) = by_ifname {
        if rec.is_some() || l.alias.is_some() {
            return Some(l);
        }
    }
    let rec = rec?;
    by_temp.filter(|l| rec.owns(l))
}

/// The name the device gets back in the node: the recorded one (the container cannot change it), else the
/// alias (an attachment made by the reference plugin, or state lost).
pub fn original_name(rec: Option<&DeviceRecord>, link: &LinkInfo) -> Option<String> {
    rec.map(|r| r.original.clone())
        .or_else(|| link.alias.clone())
        .filter(|n| !n.is_empty())
}

/// The recorded device among the node's links: under its transit name (moved back, or a crash before the
/// move), or carrying the original name as alias and the recorded MAC (a physical device the kernel returned
/// to the node when the container's namespace died).
pub fn find_in_node<'a>(links: &'a [LinkInfo], rec: &DeviceRecord) -> Option<&'a LinkInfo> {
    links.iter().find(|l| l.name == rec.temp).or_else(|| {
        let mac = rec.mac_bytes()?;
        links
            .iter()
            .find(|l| l.alias.as_deref() == Some(rec.original.as_str()) && l.mac == Some(mac))
    })
}

/// What giving the device back in the node takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRestore {
    /// Rename to this (None: keep the current name).
    pub rename_to: Option<String>,
    /// The original name is taken by another link, so the device keeps its current name.
    pub name_taken: bool,
    /// Clear the alias that carried the original name.
    pub clear_alias: bool,
    /// Bring it up (it was up before ADD).
    pub set_up: bool,
}

/// Plans the node-side restore of `dev` to `original`; `taken` says whether another link has that name.
pub fn plan_node_restore(dev: &LinkInfo, original: &str, taken: bool, was_up: bool) -> NodeRestore {
    let needs_rename = dev.name != original;
    NodeRestore {
        rename_to: (needs_rename && !taken).then(|| original.to_string()),
        name_taken: needs_rename && taken,
        clear_alias: dev.alias.is_some(),
        set_up: was_up && !dev.up,
    }
}

/// The device as it is in the container after ADD.
#[derive(Debug, Clone)]
pub struct Moved {
    /// CNI_IFNAME.
    pub ifname: String,
    /// Its MAC.
    pub mac: Option<[u8; 6]>,
    /// Its MTU.
    pub mtu: u32,
    /// CNI_NETNS.
    pub sandbox: String,
    /// The PCI id it was chosen by.
    pub pci_id: Option<String>,
}

/// The ADD result: the one container interface, IPAM's addresses on it (`interface: 0`), IPAM's routes, and
/// the config's `dns` in place of IPAM's when set.
pub fn build_result(dev: &Moved, ipam: &CniResult, conf_dns: Option<&Dns>) -> CniResult {
    let mut ips = ipam.ips.clone();
    for ip in &mut ips {
        ip.interface = Some(0);
    }
    CniResult {
        interfaces: vec![Interface {
            name: dev.ifname.clone(),
            mac: dev.mac.as_ref().map(format_mac).unwrap_or_default(),
            mtu: Some(dev.mtu),
            sandbox: dev.sandbox.clone(),
            pci_id: dev.pci_id.clone().unwrap_or_default(),
            ..Default::default()
        }],
        ips,
        routes: ipam.routes.clone(),
        dns: conf_dns
            .filter(|d| !d.is_empty())
            .cloned()
            .unwrap_or_else(|| ipam.dns.clone()),
    }
}

/// The routes to add in the container, out of the device (`index`), with family gateways filled in.
pub fn container_routes(ipam: &CniResult, index: u32) -> Vec<RouteSpec> {
    ipam.routes_via_family_gateways()
        .into_iter()
        .map(|r| RouteSpec {
            dst: r.dst,
            gateway: r.gw,
            oif: Some(index),
            mtu: r.mtu,
            advmss: r.advmss,
            priority: r.priority,
            table: r.table,
            scope: r.scope,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_cni::{IpConfig, Route};

    fn record() -> DeviceRecord {
        DeviceRecord {
            network: "n".into(),
            container_id: "c1".into(),
            ifname: "eth0".into(),
            original: "enp1s0".into(),
            temp: "cdev0000abcd".into(),
            mac: Some("02:00:00:00:00:07".into()),
            was_up: true,
            netns: Some("/run/netns/c1".into()),
            netns_inode: Some(4026532000),
            boot_id: Some("b".into()),
        }
    }

    fn link(name: &str, alias: Option<&str>, mac: u8) -> LinkInfo {
        LinkInfo {
            index: 5,
            name: name.into(),
            alias: alias.map(str::to_string),
            mac: Some([2, 0, 0, 0, 0, mac]),
            ..Default::default()
        }
    }

    #[test]
    fn temp_names_are_unique_valid_interface_names() {
        let a = temp_name([0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(a, "cdevdeadbeef");
        assert!(corral_netops::validate_ifname(&a).is_ok());
        assert_ne!(temp_name([0, 0, 0, 1]), temp_name([0, 0, 0, 2]));
    }

    #[test]
    fn record_round_trips_through_json_with_reference_style_keys() {
        let r = record();
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["containerID"], "c1");
        assert_eq!(v["wasUp"], true);
        assert_eq!(serde_json::from_value::<DeviceRecord>(v).unwrap(), r);
    }

    #[test]
    fn container_link_under_ifname_is_ours_with_a_record_or_an_alias() {
        let rec = record();
        let plain = link("eth0", None, 9);
        assert_eq!(
            pick_container_link(Some(plain.clone()), None, Some(&rec)).map(|l| l.name),
            Some("eth0".into())
        );
        assert!(
            pick_container_link(Some(plain), None, None).is_none(),
            "someone else's eth0"
        );
        let aliased = link("eth0", Some("enp1s0"), 9);
        assert!(pick_container_link(Some(aliased), None, None).is_some());
    }

    #[test]
    fn container_link_under_transit_name_is_ours_only_when_it_matches_the_record() {
        let rec = record();
        let by_alias = link("cdev0000abcd", Some("enp1s0"), 1);
        let by_mac = link("cdev0000abcd", None, 7);
        let other = link("cdev0000abcd", None, 1);
        assert!(pick_container_link(None, Some(by_alias.clone()), Some(&rec)).is_some());
        assert!(pick_container_link(None, Some(by_mac), Some(&rec)).is_some());
        assert!(pick_container_link(None, Some(other), Some(&rec)).is_none());
        assert!(pick_container_link(None, Some(by_alias), None).is_none());
    }

    #[test]
    fn original_name_prefers_the_record_over_the_alias() {
        let rec = record();
        let l = link("eth0", Some("renamed-by-container"), 7);
        assert_eq!(original_name(Some(&rec), &l).as_deref(), Some("enp1s0"));
        assert_eq!(original_name(None, &l).as_deref(), Some("renamed-by-container"));
        assert_eq!(original_name(None, &link("eth0", None, 7)), None);
    }

    #[test]
    fn node_side_device_is_found_by_transit_name_or_alias_and_mac() {
        let rec = record();
        let links = vec![
            link("lo", None, 0),
            link("enp1s0", None, 1),
            link("cdev0000abcd", None, 3),
        ];
        assert_eq!(find_in_node(&links, &rec).unwrap().name, "cdev0000abcd");
        // Returned by the kernel under the container's name, alias intact.
        let links = vec![link("eth0", Some("enp1s0"), 7), link("dev3", Some("enp1s0"), 8)];
        assert_eq!(find_in_node(&links, &rec).unwrap().name, "eth0");
        // Already restored and the alias cleared: nothing to do.
        assert!(find_in_node(&[link("enp1s0", None, 7)], &rec).is_none());
    }

    #[test]
    fn node_restore_renames_unless_the_name_is_taken() {
        let mut dev = link("cdev0000abcd", Some("enp1s0"), 7);
        let p = plan_node_restore(&dev, "enp1s0", false, true);
        assert_eq!(p.rename_to.as_deref(), Some("enp1s0"));
        assert!(p.clear_alias && p.set_up && !p.name_taken);
        let p = plan_node_restore(&dev, "enp1s0", true, false);
        assert_eq!(p.rename_to, None);
        assert!(p.name_taken && !p.set_up);
        dev.name = "enp1s0".into();
        dev.alias = None;
        dev.up = true;
        let p = plan_node_restore(&dev, "enp1s0", true, true);
        assert_eq!(
            p,
            NodeRestore {
                rename_to: None,
                name_taken: false,
                clear_alias: false,
                set_up: false
            }
        );
    }

    #[test]
    fn result_puts_every_address_on_interface_0_and_prefers_config_dns() {
        let dev = Moved {
            ifname: "eth0".into(),
            mac: Some([2, 0, 0, 0, 0, 7]),
            mtu: 1500,
            sandbox: "/run/netns/c1".into(),
            pci_id: Some("0000:00:1f.6".into()),
        };
        let ipam = CniResult {
            ips: vec![IpConfig {
                address: "10.5.0.2/24".parse().unwrap(),
                gateway: Some("10.5.0.1".parse().unwrap()),
                interface: None,
            }],
            routes: vec![Route::new("0.0.0.0/0".parse().unwrap(), None)],
            dns: Dns {
                nameservers: vec!["1.1.1.1".into()],
                ..Default::default()
            },
            ..Default::default()
        };
        let r = build_result(&dev, &ipam, None);
        assert_eq!(r.interfaces.len(), 1);
        assert_eq!(r.interfaces[0].mac, "02:00:00:00:00:07");
        assert_eq!(r.interfaces[0].pci_id, "0000:00:1f.6");
        assert_eq!(r.ips[0].interface, Some(0));
        assert_eq!(r.routes[0].gw, None, "the result keeps IPAM's route");
        assert_eq!(r.dns, ipam.dns);
        let conf_dns = Dns {
            domain: "example".into(),
            ..Default::default()
        };
        assert_eq!(build_result(&dev, &ipam, Some(&conf_dns)).dns, conf_dns);
        let routes = container_routes(&ipam, 9);
        assert_eq!(routes[0].gateway, Some("10.5.0.1".parse().unwrap()));
        assert_eq!(routes[0].oif, Some(9));
    }
}
