//! The host-device plugin against the kernel. The "host device" is one end of a veth pair created inside each
//! test's node namespace (never in the machine's own); its peer stays in the node with the gateway address,
//! so traffic to the moved device can be tested. Every test asserts what the kernel shows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use corral_tests::conf::{self, VERSIONS};
use corral_tests::{sh, unique, wait_until, Ctr, Node};
use serde_json::{json, Value};
use std::path::PathBuf;

const NET: &str = "hdnet";
const SUBNET: &str = "10.20.0.0/24";
const GW: &str = "10.20.0.1";
const CTR_IP: &str = "10.20.0.2/24";
const HOOKS: [&str; 3] = [
    "host-device-after-rename",
    "host-device-after-move",
    "host-device-after-ipam",
];

/// A node whose bin dir has the host-device binary.
fn node() -> Node {
    let node = Node::new();
    assert!(
        node.bin.join("host-device").exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        node.bin.join("host-device").display()
    );
    node
}

/// The "host device": a veth end in the node, up, whose peer (also in the node) has the gateway address.
struct HostDev {
    name: String,
    peer: String,
    mac: String,
}

fn host_dev(node: &Node, gw: Option<&str>) -> HostDev {
    let name = unique("hd");
    let peer = unique("hp");
    node.ns
        .ip(&["link", "add", &name, "type", "veth", "peer", "name", &peer]);
    node.ns.ip(&["link", "set", &name, "up"]);
    node.ns.ip(&["link", "set", &peer, "up"]);
    if let Some(gw) = gw {
        node.ns.ip(&["addr", "add", gw, "dev", &peer]);
    }
    let mac = node.link(&name)["address"].as_str().unwrap().to_string();
    HostDev { name, peer, mac }
}

/// A host-device network choosing the device with `select`, host-local on `subnet` in the node's state dir.
fn hd_conf(node: &Node, ver: &str, subnet: &str, select: Value) -> Value {
    let base = json!({
        "cniVersion": ver,
        "name": NET,
        "type": "host-device",
        "ipam": { "type": "host-local", "dataDir": node.data_dir(), "ranges": [[{ "subnet": subnet }]],
                  "routes": [{ "dst": "192.168.77.0/24" }] },
    });
    conf::merge(base, select)
}

fn by_name(node: &Node, dev: &HostDev) -> Value {
    hd_conf(node, "1.1.0", SUBNET, json!({ "device": dev.name }))
}

fn hd(node: &Node, cmd: &str, ctr: &Ctr, conf: &Value) -> corral_tests::Outcome {
    node.call("host-device", cmd, ctr, conf, &[])
}

fn records(node: &Node) -> Vec<String> {
    let dir = node.state.join("host-device").join(NET);
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Link names in a namespace.
fn link_names(ns: &corral_tests::Netns) -> Vec<String> {
    ns.ip_json(&["link", "show"])
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ifname"].as_str().unwrap().to_string())
        .collect()
}

/// The device is in the node under its original name, up, with its MAC and no alias, and nothing of the
/// attachment is left: no record, no reservation, no transit-named link on either side.
fn assert_home(node: &Node, dev: &HostDev, ctr: Option<&Ctr>, why: &str) {
    assert!(
        node.ns.has_link(&dev.name),
        "{why}: {} is not back in the node",
        dev.name
    );
    let l = node.link(&dev.name);
    assert_eq!(l["address"], dev.mac.as_str(), "{why}: MAC");
    assert!(node.ns.is_up(&dev.name), "{why}: {} is not up: {l}", dev.name);
    assert!(l.get("ifalias").is_none(), "{why}: alias left: {l}");
    assert!(
        !link_names(&node.ns).iter().any(|n| n.starts_with("cdev")),
        "{why}: transit name left in the node"
    );
    assert_eq!(records(node), Vec::<String>::new(), "{why}: records left");
    assert_eq!(
        node.reserved_ips(NET),
        Vec::<String>::new(),
        "{why}: IP still reserved"
    );
    if let Some(ctr) = ctr {
        assert!(!ctr.ns.has_link("eth0"), "{why}: eth0 left in the container");
        assert!(
            !link_names(&ctr.ns).iter().any(|n| n.starts_with("cdev")),
            "{why}: transit name left in the container"
        );
    }
}

/// The device is in the container as eth0 with its MAC, up, with one address of the range (host-local
/// allocates round-robin, so a later attachment gets the next one); returns that address.
fn assert_attached(node: &Node, dev: &HostDev, ctr: &Ctr, why: &str) -> String {
    assert!(
        !node.ns.has_link(&dev.name),
        "{why}: {} still in the node",
        dev.name
    );
    assert_eq!(ctr.mac(), dev.mac, "{why}: eth0 is not the device");
    assert!(ctr.ns.is_up("eth0"), "{why}: eth0 is down");
    let addrs = ctr.addrs();
    assert!(
        addrs.len() == 1 && addrs[0].starts_with("10.20.0.") && addrs[0].ends_with("/24"),
        "{why}: eth0 has {addrs:?}"
    );
    assert_eq!(ctr.ns.link("eth0")["ifalias"], dev.name.as_str(), "{why}: alias");
    addrs[0].clone()
}

// ------------------------------------------------------------------------------------------------ ADD

#[test]
fn add_by_device_moves_it_into_the_container_with_its_mac_address_and_routes_and_traffic_flows() {
    let node = node();
    let dev = host_dev(&node, Some(&format!("{GW}/24")));
    let ctr = Ctr::new();
    let conf = by_name(&node, &dev);
    let r = hd(&node, "ADD", &ctr, &conf).ok();
    assert_eq!(assert_attached(&node, &dev, &ctr, "after ADD"), CTR_IP);
    assert_eq!(
        r["interfaces"],
        json!([{ "name": "eth0", "mac": dev.mac, "mtu": 1500, "sandbox": ctr.path() }])
    );
    assert_eq!(
        r["ips"],
        json!([{ "address": CTR_IP, "gateway": GW, "interface": 0 }])
    );
    assert_eq!(
        r["routes"],
        json!([{ "dst": "192.168.77.0/24" }]),
        "the result keeps IPAM's route"
    );
    let routes = ctr.ns.routes();
    assert!(
        routes.contains(&format!("192.168.77.0/24 via {GW} dev eth0")),
        "a route without gw goes via the gateway: {routes:?}"
    );
    assert_eq!(node.reserved_ips(NET), vec!["10.20.0.2".to_string()]);
    assert_eq!(records(&node), vec![format!("{}@eth0.json", ctr.id)]);
    assert!(node.ns.ping("10.20.0.2"), "node cannot reach the moved device");
    assert!(
        ctr.ns.ping(GW),
        "container cannot reach the node through the device"
    );
    assert!(node.ns.has_link(&dev.peer));
}

#[test]
fn add_by_hwaddr_finds_the_device_by_its_mac() {
    let node = node();
    let _other = host_dev(&node, None);
    let dev = host_dev(&node, None);
    let ctr = Ctr::new();
    let conf = hd_conf(
        &node,
        "1.0.0",
        SUBNET,
        json!({ "hwaddr": dev.mac.to_uppercase() }),
    );
    let r = hd(&node, "ADD", &ctr, &conf).ok();
    assert_attached(&node, &dev, &ctr, "ADD by hwaddr");
    assert!(node.ns.has_link(&_other.name), "another device moved");
    assert!(
        r["interfaces"][0].get("mtu").is_none(),
        "no mtu before 1.1.0: {r}"
    );
}

#[test]
fn add_result_has_the_shape_of_every_cni_version() {
    let node = node();
    let dev = host_dev(&node, None);
    for ver in VERSIONS {
        let ctr = Ctr::new();
        let conf = hd_conf(&node, ver, SUBNET, json!({ "device": dev.name }));
        let r = hd(&node, "ADD", &ctr, &conf).ok();
        assert_eq!(r["cniVersion"], ver, "{ver}");
        let addr = assert_attached(&node, &dev, &ctr, ver);
        if corral_cni::version::at_least(ver, "0.3.0") {
            assert_eq!(r["interfaces"][0]["name"], "eth0", "{ver}: {r}");
            assert_eq!(r["interfaces"][0]["sandbox"], ctr.path().as_str(), "{ver}");
            assert_eq!(r["ips"][0]["interface"], 0, "{ver}: {r}");
            assert_eq!(r["ips"][0]["address"], addr.as_str(), "{ver}: {r}");
        } else {
            assert_eq!(r["ip4"]["ip"], addr.as_str(), "{ver}: {r}");
        }
        hd(&node, "DEL", &ctr, &conf).ok();
        assert_home(&node, &dev, Some(&ctr), ver);
    }
}

#[test]
fn add_without_ipam_only_moves_the_device() {
    let node = node();
    let dev = host_dev(&node, None);
    let ctr = Ctr::new();
    let conf = json!({ "cniVersion": "1.1.0", "name": NET, "type": "host-device", "device": dev.name });
    let r = hd(&node, "ADD", &ctr, &conf).ok();
    assert_eq!(ctr.mac(), dev.mac);
    assert!(ctr.addrs().is_empty());
    assert!(r.get("ips").is_none(), "{r}");
    hd(&node, "DEL", &ctr, &conf).ok();
    assert_home(&node, &dev, Some(&ctr), "DEL without IPAM");
}

#[test]
fn a_container_link_named_like_the_device_does_not_clash() {
    let node = node();
    let dev = host_dev(&node, None);
    let ctr = Ctr::new();
    ctr.ns
        .ip(&["link", "add", &dev.name, "type", "veth", "peer", "name", "other0"]);
    let theirs = ctr.ns.link(&dev.name)["address"].as_str().unwrap().to_string();
    let conf = by_name(&node, &dev);
    hd(&node, "ADD", &ctr, &conf).ok();
    assert_attached(&node, &dev, &ctr, "ADD beside a namesake");
    assert_eq!(
        ctr.ns.link(&dev.name)["address"],
        theirs.as_str(),
        "the namesake changed"
    );
    hd(&node, "DEL", &ctr, &conf).ok();
    assert_home(&node, &dev, Some(&ctr), "DEL beside a namesake");
    assert_eq!(ctr.ns.link(&dev.name)["address"], theirs.as_str());
}

#[test]
fn ifname_already_in_the_container_is_code_4_and_the_device_stays_untouched() {
    let node = node();
    let dev = host_dev(&node, None);
    let ctr = Ctr::new();
    ctr.ns
        .ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"]);
    let theirs = ctr.mac();
    hd(&node, "ADD", &ctr, &by_name(&node, &dev)).err(4, "eth0");
    assert_home(&node, &dev, None, "failed ADD");
    assert_eq!(ctr.mac(), theirs, "the container's eth0 changed");
}

// ------------------------------------------------------------------------------------------ selectors

#[test]
fn bad_selection_is_code_7_naming_the_keys_and_changes_nothing() {
    let node = node();
    let dev = host_dev(&node, None);
    let ctr = Ctr::new();
    let none = hd_conf(&node, "1.1.0", SUBNET, json!({}));
    let msg = hd(&node, "ADD", &ctr, &none).err(7, "\"device\"");
    for key in ["hwaddr", "kernelpath", "pciBusID", "deviceID"] {
        assert!(msg.contains(key), "{msg}");
    }
    let two = hd_conf(
        &node,
        "1.1.0",
        SUBNET,
        json!({ "device": dev.name, "hwaddr": dev.mac }),
    );
    hd(&node, "ADD", &ctr, &two).err(7, "got \"device\" and \"hwaddr\"");
    let unknown = hd_conf(&node, "1.1.0", SUBNET, json!({ "device": "nosuchdev0" }));
    hd(&node, "ADD", &ctr, &unknown).err(7, "device \"nosuchdev0\"");
    let no_mac = hd_conf(&node, "1.1.0", SUBNET, json!({ "hwaddr": "02:de:ad:00:00:01" }));
    hd(&node, "ADD", &ctr, &no_mac).err(7, "02:de:ad:00:00:01");
    let outside = hd_conf(&node, "1.1.0", SUBNET, json!({ "kernelpath": "/etc/passwd" }));
    hd(&node, "ADD", &ctr, &outside).err(7, "/sys/devices/");
    let missing = hd_conf(
        &node,
        "1.1.0",
        SUBNET,
        json!({ "kernelpath": "/sys/devices/corral-none/x" }),
    );
    hd(&node, "ADD", &ctr, &missing).err(7, "corral-none");
    assert_home(&node, &dev, Some(&ctr), "after rejected ADDs");
}

/// A fixture sysfs: a PCI function whose `net/` holds the device, and one bound to vfio-pci (DPDK).
fn fixture_sysfs(node: &Node, netdev: &str) -> PathBuf {
    let sys = node.state.join("sys");
    let mk = |p: &str| std::fs::create_dir_all(sys.join(p)).unwrap();
    mk(&format!("devices/pci0000:00/0000:00:07.0/net/{netdev}"));
    mk("devices/pci0000:00/0000:00:08.0");
    mk("bus/pci/devices");
    mk("bus/pci/drivers/vfio-pci");
    let link = |from: &str, to: &str| std::os::unix::fs::symlink(sys.join(to), sys.join(from)).unwrap();
    link("bus/pci/devices/0000:00:07.0", "devices/pci0000:00/0000:00:07.0");
    link("bus/pci/devices/0000:00:08.0", "devices/pci0000:00/0000:00:08.0");
    link(
        "devices/pci0000:00/0000:00:08.0/driver",
        "bus/pci/drivers/vfio-pci",
    );
    sys
}

#[test]
fn kernelpath_pci_bus_id_and_device_id_resolve_through_sysfs_and_dpdk_is_unsupported() {
    let node = node();
    let dev = host_dev(&node, None);
    let sys = fixture_sysfs(&node, &dev.name);
    let sys = sys.to_str().unwrap();
    for (select, pci) in [
        (
            json!({ "kernelpath": "/sys/devices/pci0000:00/0000:00:07.0" }),
            "",
        ),
        (json!({ "pciBusID": "0000:00:07.0" }), "0000:00:07.0"),
        (
            json!({ "runtimeConfig": { "deviceID": "0000:00:07.0" } }),
            "0000:00:07.0",
        ),
    ] {
        let ctr = Ctr::new();
        let conf = hd_conf(&node, "1.1.0", SUBNET, select.clone());
        let r = node
            .call("host-device", "ADD", &ctr, &conf, &[("CORRAL_SYSFS", sys)])
            .ok();
        assert_attached(&node, &dev, &ctr, &select.to_string());
        assert_eq!(
            r["interfaces"][0]["pciID"].as_str().unwrap_or(""),
            pci,
            "{select}"
        );
        node.call("host-device", "DEL", &ctr, &conf, &[("CORRAL_SYSFS", sys)])
            .ok();
        assert_home(&node, &dev, Some(&ctr), &select.to_string());
    }
    let ctr = Ctr::new();
    let dpdk = hd_conf(&node, "1.1.0", SUBNET, json!({ "pciBusID": "0000:00:08.0" }));
    let msg = node
        .call("host-device", "ADD", &ctr, &dpdk, &[("CORRAL_SYSFS", sys)])
        .err(2, "pciBusID");
    assert!(msg.contains("vfio-pci"), "{msg}");
    let gone = hd_conf(&node, "1.1.0", SUBNET, json!({ "pciBusID": "0000:00:09.0" }));
    node.call("host-device", "ADD", &ctr, &gone, &[("CORRAL_SYSFS", sys)])
        .err(7, "0000:00:09.0");
    assert_home(&node, &dev, Some(&ctr), "after unsupported devices");
}

// ------------------------------------------------------------------------------------------------ DEL

#[test]
fn del_moves_it_back_under_its_original_name_releases_the_ip_and_twice_succeeds() {
    let node = node();
    let dev = host_dev(&node, Some(&format!("{GW}/24")));
    let ctr = Ctr::new();
    let conf = by_name(&node, &dev);
    let r = hd(&node, "ADD", &ctr, &conf).ok();
    hd(&node, "DEL", &ctr, &conf::with_prev(&conf, &r)).ok();
    assert_home(&node, &dev, Some(&ctr), "after DEL");
    hd(&node, "DEL", &ctr, &conf).ok();
    assert_home(&node, &dev, Some(&ctr), "after the second DEL");
    // And it can be attached again.
    hd(&node, "ADD", &ctr, &conf).ok();
    assert_attached(&node, &dev, &ctr, "second ADD");
}

#[test]
fn del_keeps_the_transit_name_when_the_original_name_was_taken_meanwhile() {
    let node = node();
    let dev = host_dev(&node, None);
    let ctr = Ctr::new();
    let conf = by_name(&node, &dev);
    hd(&node, "ADD", &ctr, &conf).ok();
    node.ns.ip(&[
        "link",
        "add",
        &dev.name,
        "type",
        "veth",
        "peer",
        "name",
        &unique("hq"),
    ]);
    let out = hd(&node, "DEL", &ctr, &conf);
    assert!(out.stderr.contains("taken"), "no log line: {}", out.stderr);
    out.ok();
    let transit: Vec<String> = link_names(&node.ns)
        .into_iter()
        .filter(|n| n.starts_with("cdev"))
        .collect();
    assert_eq!(transit.len(), 1, "device not back under its transit name");
    assert_eq!(node.link(&transit[0])["address"], dev.mac.as_str());
    assert!(node.reserved_ips(NET).is_empty());
}

#[test]
fn del_after_the_netns_is_gone_still_releases_the_ip() {
    let node = node();
    for empty_netns in [false, true] {
        let dev = host_dev(&node, None);
        let ctr = Ctr::new();
        let conf = by_name(&node, &dev);
        hd(&node, "ADD", &ctr, &conf).ok();
        sh("ip", &["netns", "del", &ctr.ns.name]);
        // A veth dies with its namespace (a physical device would go back to init_net instead).
        assert!(
            wait_until(5, || !node.ns.has_link(&dev.peer)),
            "the veth did not die with the netns"
        );
        assert_eq!(node.reserved_ips(NET).len(), 1);
        let netns = if empty_netns { String::new() } else { ctr.path() };
        node.call("host-device", "DEL", &ctr, &conf, &[("CNI_NETNS", &netns)])
            .ok();
        assert!(
            node.reserved_ips(NET).is_empty(),
            "empty netns {empty_netns}: IP leaked"
        );
        assert!(
            records(&node).is_empty(),
            "empty netns {empty_netns}: record left"
        );
        node.call("host-device", "DEL", &ctr, &conf, &[("CNI_NETNS", &netns)])
            .ok();
    }
}

// ------------------------------------------------------------------------------------------- rollback

#[test]
fn a_failed_ipam_add_moves_the_device_back() {
    let node = node();
    let first = host_dev(&node, None);
    let second = host_dev(&node, None);
    // A /30 has two hosts; the gateway takes one, the first container the other.
    let tiny = |dev: &HostDev| hd_conf(&node, "1.1.0", "10.30.0.0/30", json!({ "device": dev.name }));
    let (c1, c2) = (Ctr::new(), Ctr::new());
    hd(&node, "ADD", &c1, &tiny(&first)).ok();
    hd(&node, "ADD", &c2, &tiny(&second)).err(100, "");
    assert!(node.ns.has_link(&second.name), "device not moved back");
    assert!(node.ns.is_up(&second.name));
    assert!(node.link(&second.name).get("ifalias").is_none());
    assert!(!c2.ns.has_link("eth0"));
    assert_eq!(records(&node), vec![format!("{}@eth0.json", c1.id)]);
    assert_eq!(node.reserved_ips(NET), vec!["10.30.0.2".to_string()]);
}

#[test]
fn a_crash_at_each_failure_hook_is_undone_by_del() {
    let node = node();
    let dev = host_dev(&node, None);
    for hook in HOOKS {
        let ctr = Ctr::new();
        let conf = by_name(&node, &dev);
        let out = node.call("host-device", "ADD", &ctr, &conf, &[("CORRAL_FAIL_AT", hook)]);
        assert_ne!(out.status, 0, "{hook}: ADD survived its failure hook");
        assert_eq!(records(&node).len(), 1, "{hook}: no record to recover from");
        if hook != "host-device-after-rename" {
            assert!(!node.ns.has_link(&dev.name), "{hook}: device did not move");
        }
        hd(&node, "DEL", &ctr, &conf).ok();
        assert_home(&node, &dev, Some(&ctr), hook);
    }
}

// ---------------------------------------------------------------------------------------------- CHECK

#[test]
fn check_passes_on_a_fresh_attachment_and_fails_naming_what_changed() {
    let node = node();
    let dev = host_dev(&node, None);
    let ctr = Ctr::new();
    for ver in ["0.4.0", "1.0.0", "1.1.0"] {
        let conf = hd_conf(&node, ver, SUBNET, json!({ "device": dev.name }));
        let r = hd(&node, "ADD", &ctr, &conf).ok();
        hd(&node, "CHECK", &ctr, &conf::with_prev(&conf, &r)).ok();
        hd(&node, "DEL", &ctr, &conf).ok();
    }
    let conf = by_name(&node, &dev);
    let r = hd(&node, "ADD", &ctr, &conf).ok();
    let check = conf::with_prev(&conf, &r);
    hd(&node, "CHECK", &ctr, &conf).err(7, "prevResult");
    ctr.ns.ip(&["route", "del", "192.168.77.0/24"]);
    hd(&node, "CHECK", &ctr, &check).err(101, "192.168.77.0/24");
    let addr = r["ips"][0]["address"].as_str().unwrap();
    ctr.ns.ip(&["addr", "del", addr, "dev", "eth0"]);
    hd(&node, "CHECK", &ctr, &check).err(101, addr);
    ctr.ns
        .ip(&["link", "set", "eth0", "address", "02:42:de:ad:be:ef"]);
    hd(&node, "CHECK", &ctr, &check).err(101, "MAC");
    ctr.ns.ip(&["link", "set", "eth0", "name", "renamed0"]);
    hd(&node, "CHECK", &ctr, &check).err(101, "\"eth0\" is missing");
}

// ------------------------------------------------------------------------------------------ STATUS, GC

#[test]
fn status_asks_ipam_and_gc_gives_back_devices_of_attachments_no_longer_valid() {
    let node = node();
    let (keep, stale) = (host_dev(&node, None), host_dev(&node, None));
    let (c1, c2) = (Ctr::new(), Ctr::new());
    hd(&node, "ADD", &c1, &by_name(&node, &keep)).ok();
    hd(&node, "ADD", &c2, &by_name(&node, &stale)).ok();
    // STATUS and GC carry no runtimeConfig and need no device key.
    let net_conf = hd_conf(&node, "1.1.0", SUBNET, json!({}));
    node.plugin("host-device", "STATUS", &[], &net_conf.to_string())
        .ok();
    let gc = conf::gc(&net_conf, &[(&c1.id, "eth0")]);
    node.plugin("host-device", "GC", &[], &gc.to_string()).ok();
    assert_eq!(records(&node), vec![format!("{}@eth0.json", c1.id)]);
    assert_eq!(node.reserved_ips(NET), vec!["10.20.0.2".to_string()]);
    assert!(
        node.ns.has_link(&stale.name),
        "GC did not give the stale device back"
    );
    assert!(!c2.ns.has_link("eth0"));
    assert_eq!(c1.mac(), keep.mac, "GC touched a valid attachment");
}

#[test]
fn dual_stack_ipam_puts_both_families_on_the_device() {
    let node = node();
    let dev = host_dev(&node, Some(&format!("{GW}/24")));
    node.ns
        .ip(&["addr", "add", "fd20::1/64", "dev", &dev.peer, "nodad"]);
    let ctr = Ctr::new();
    let conf = conf::merge(
        by_name(&node, &dev),
        json!({ "ipam": { "type": "host-local", "dataDir": node.data_dir(),
                          "ranges": [[{ "subnet": SUBNET }], [{ "subnet": "fd20::/64" }]] } }),
    );
    let r = hd(&node, "ADD", &ctr, &conf).ok();
    assert_eq!(
        ctr.addrs(),
        vec![CTR_IP.to_string(), "fd20::2/64".to_string()],
        "{r}"
    );
    assert_eq!(ctr.ns.sysctl("net/ipv6/conf/eth0/disable_ipv6"), "0");
    assert!(ctr.ns.ping_within("fd20::1", 5), "IPv6 to the node fails");
    hd(&node, "DEL", &ctr, &conf).ok();
    assert_home(&node, &dev, Some(&ctr), "dual-stack DEL");
}
