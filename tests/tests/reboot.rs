//! After a reboot: the node's kernel state is gone (a fresh node namespace plays the rebooted node), every
//! container namespace is gone without a DEL, the boot id is new (`CORRAL_BOOT_ID_FILE`), and only the state
//! directory survives. IPAM reservations and NAT records of the old boot must be reclaimed by the next ADD
//! that needs them and by GC, and the kernel must hold exactly what the new attachments asked for.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod portmap_support;

use corral_tests::conf::{self, NET};
use corral_tests::{veths, Ctr, Netns, Node};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const SUBNET: &str = "10.41.0.0/29"; // .2 .. .6: five containers
const BOOT_ENV: &str = "CORRAL_BOOT_ID_FILE";

/// The simulated boot id file, inside the node's private state directory.
fn boot_file(state: &Path) -> PathBuf {
    state.join("boot_id")
}

fn set_boot(state: &Path, id: &str) {
    std::fs::write(boot_file(state), format!("{id}\n")).unwrap();
}

/// A reboot as far as the node can tell: its namespace is replaced by a fresh one (no bridge, no veth, no
/// nftables table), and the boot id changes. The state directory is kept. Container namespaces are dropped
/// by the caller, without DEL.
fn reboot(ns: &mut Netns, state: &Path, new_boot: &str) {
    *ns = Netns::new("crn");
    set_boot(state, new_boot);
}

fn net_conf(node: &Node) -> Value {
    conf::bridge(
        node,
        "1.1.0",
        &[SUBNET],
        json!({ "isGateway": true, "ipMasq": true }),
    )
}

fn addr_of(result: &Value) -> String {
    result["ips"][0]["address"].as_str().unwrap().to_string()
}

fn reservation(node: &Node, ip: &str) -> String {
    std::fs::read_to_string(node.state.join("ipam").join(NET).join(ip)).unwrap()
}

#[test]
fn after_a_reboot_the_next_add_reclaims_a_stale_address_and_gc_reclaims_the_rest() {
    let mut node = Node::new();
    let conf = net_conf(&node);
    set_boot(&node.state, "boot-one");
    let boot = boot_file(&node.state).display().to_string();
    let env = [(BOOT_ENV, boot.as_str())];

    let old: Vec<Ctr> = (0..5).map(|_| Ctr::new()).collect();
    for c in &old {
        node.call("bridge", "ADD", c, &conf, &env).ok();
    }
    assert_eq!(node.reserved_ips(NET).len(), 5);
    let full = Ctr::new();
    node.call("bridge", "ADD", &full, &conf, &env)
        .err(100, "no IP addresses available");
    let index = std::fs::read_to_string(
        node.state
            .join("ipam")
            .join(NET)
            .join(".corral")
            .join(format!("{}@eth0", old[0].id)),
    )
    .unwrap();
    assert!(index.contains("\nboot_id boot-one\n"), "{index}");
    assert!(index.contains("\nnetns_ino "), "{index}");
    assert_eq!(node.nat_records(NET).len(), 5);

    let old_ids: Vec<String> = old.iter().map(|c| c.id.clone()).collect();
    drop(old);
    drop(full);
    reboot(&mut node.ns, &node.state, "boot-two");
    assert!(veths(&node.ns).is_empty());

    // The next ADD gets the address round-robin comes to (.6 was last: wraps to .2, the first container's).
    let new = Ctr::new();
    let out = node.call("bridge", "ADD", &new, &conf, &env);
    assert!(
        out.stderr.contains("reclaiming") && out.stderr.contains(&old_ids[0]),
        "the reclaim is logged naming the old owner: {}",
        out.stderr
    );
    let r = out.ok();
    assert_eq!(addr_of(&r), "10.41.0.2/29");
    assert_eq!(new.addrs(), ["10.41.0.2/29"]);
    assert_eq!(reservation(&node, "10.41.0.2"), format!("{}\r\neth0", new.id));
    let mut index = node.ipam_index(NET);
    index.sort();
    let mut expected: Vec<String> = old_ids[1..]
        .iter()
        .chain(std::iter::once(&new.id))
        .map(|id| format!("{id}@eth0"))
        .collect();
    expected.sort();
    assert_eq!(
        index, expected,
        "the reclaimed owner's index entry is gone, the others wait"
    );
    assert_eq!(node.reserved_ips(NET).len(), 5);
    assert_eq!(
        node.elements("inet", "masq_src4"),
        ["10.41.0.2"],
        "the rebooted kernel holds the new container's masquerade only"
    );
    assert!(new.ns.ping("10.41.0.1"), "the new container reaches its gateway");

    // A second ADD reclaims the next one; the pool never reports exhaustion while stale holders remain.
    let second = Ctr::new();
    let r = node.call("bridge", "ADD", &second, &conf, &env).ok();
    assert_eq!(addr_of(&r), "10.41.0.3/29");

    // GC keeps what the runtime lists and removes the old boot's reservations, index entries and records.
    let valid = [(new.id.as_str(), "eth0"), (second.id.as_str(), "eth0")];
    node.call("bridge", "GC", &new, &conf::gc(&conf, &valid), &env)
        .ok();
    assert_eq!(node.reserved_ips(NET), ["10.41.0.2", "10.41.0.3"]);
    let mut index = node.ipam_index(NET);
    index.sort();
    let mut expected = vec![format!("{}@eth0", new.id), format!("{}@eth0", second.id)];
    expected.sort();
    assert_eq!(index, expected);
    let mut records = node.nat_records(NET);
    records.sort();
    assert_eq!(records.len(), 2, "{records:?}");
    assert!(
        records
            .iter()
            .all(|r| r.starts_with(&new.id) || r.starts_with(&second.id)),
        "{records:?}"
    );
    assert_eq!(node.elements("inet", "masq_src4"), ["10.41.0.2", "10.41.0.3"]);

    // GC with nothing valid reclaims everything, including the new boot's attachments.
    node.call("bridge", "GC", &new, &conf::gc(&conf, &[]), &env).ok();
    assert!(node.reserved_ips(NET).is_empty());
    assert!(node.ipam_index(NET).is_empty());
    assert!(node.nat_records(NET).is_empty());
    assert!(node.elements("inet", "masq_src4").is_empty());
    for c in [&new, &second] {
        node.call("bridge", "DEL", c, &conf, &env).ok();
    }
    assert!(corral_tests::wait_until(5, || veths(&node.ns).is_empty()));
    node.assert_empty(NET, "after GC and DEL");
}

#[test]
fn a_live_attachment_of_this_boot_is_never_reclaimed() {
    // Same boot, containers alive: a full pool stays full; a reference-made reservation (no index) is never
    // taken, even after a reboot.
    let mut node = Node::new();
    let conf = net_conf(&node);
    set_boot(&node.state, "boot-one");
    let boot = boot_file(&node.state).display().to_string();
    let env = [(BOOT_ENV, boot.as_str())];
    let live: Vec<Ctr> = (0..4).map(|_| Ctr::new()).collect();
    for c in &live {
        node.call("bridge", "ADD", c, &conf, &env).ok();
    }
    // .6 is the reference's: a plain reservation file, no index.
    let dir = node.state.join("ipam").join(NET);
    std::fs::write(dir.join("10.41.0.6"), "refctr\r\neth0").unwrap();
    let extra = Ctr::new();
    node.call("bridge", "ADD", &extra, &conf, &env)
        .err(100, "no IP addresses available");
    let before = node.reserved_ips(NET);

    drop(live);
    reboot(&mut node.ns, &node.state, "boot-two");
    let mut got = Vec::new();
    let fresh: Vec<Ctr> = (0..4).map(|_| Ctr::new()).collect();
    for c in &fresh {
        got.push(addr_of(&node.call("bridge", "ADD", c, &conf, &env).ok()));
    }
    got.sort();
    assert_eq!(
        got,
        ["10.41.0.2/29", "10.41.0.3/29", "10.41.0.4/29", "10.41.0.5/29"]
    );
    // Now every holder is alive or unindexed.
    node.call("bridge", "ADD", &extra, &conf, &env)
        .err(100, "no IP addresses available");
    assert_eq!(node.reserved_ips(NET), before);
    assert_eq!(
        std::fs::read_to_string(dir.join("10.41.0.6")).unwrap(),
        "refctr\r\neth0"
    );
    for c in &fresh {
        node.call("bridge", "DEL", c, &conf, &env).ok();
    }
    assert_eq!(node.reserved_ips(NET), ["10.41.0.6"]);
}

mod portmap_reboot {
    use super::portmap_support::{assert_exchange, enter_node, Ctr, Env, NET, NODE4};
    use super::*;
    use corral_cni::runtime::Conflist;

    fn mapping(port: u16) -> Value {
        json!([{"hostPort": port, "containerPort": 80}])
    }

    /// The client link of [`Env`], again, in the rebooted node.
    fn relink(env: &Env) {
        // The old node namespace is torn down asynchronously: wait for its veth's peer to go.
        assert!(corral_tests::wait_until(10, || !env.client.has_link("cl1")));
        let node = &env.node.ns;
        node.ip(&[
            "link",
            "add",
            "cl0",
            "type",
            "veth",
            "peer",
            "name",
            "cl1",
            "netns",
            &env.client.name,
        ]);
        node.ip(&["addr", "add", "192.168.77.1/24", "dev", "cl0"]);
        node.ip(&["link", "set", "cl0", "up"]);
        env.client.ip(&["addr", "add", "192.168.77.2/24", "dev", "cl1"]);
        env.client.ip(&["link", "set", "cl1", "up"]);
    }

    /// [`Env`]'s conflist at cniVersion 1.1.0, which has GC.
    fn conflist_1_1(node: &corral_tests::Node) -> Conflist {
        let list = json!({
            "cniVersion": "1.1.0",
            "name": NET,
            "plugins": [
                {"type": "bridge", "bridge": "pmbr0", "isGateway": true, "hairpinMode": true,
                 "ipam": {"type": "host-local", "dataDir": node.data_dir(),
                          "ranges": [[{"subnet": "10.77.0.0/24"}], [{"subnet": "fd00:77::/64"}]],
                          "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}},
                {"type": "portmap", "capabilities": {"portMappings": true}},
            ]
        });
        Conflist::parse(list.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn a_host_port_of_the_old_boot_goes_to_the_new_add_and_gc_removes_the_rest() {
        let mut env = Env::new();
        env.list = conflist_1_1(&env.node);
        let state = env.node.state.clone();
        set_boot(&state, "boot-one");
        env.rt
            .env
            .insert(BOOT_ENV.into(), boot_file(&state).display().to_string());
        let a = Ctr::new();
        let b = Ctr::new();
        env.add(&a, mapping(8080));
        env.add(&b, mapping(8081));
        assert_eq!(env.records().len(), 2);
        assert_eq!(env.elements("hostports4").len(), 2);
        let (a_id, b_id) = (a.id.clone(), b.id.clone());

        drop(a);
        drop(b);
        reboot(&mut env.node.ns, &state, "boot-two");
        relink(&env);

        // The same host port, for a new container: the old owner is stale, so it is replaced, not refused.
        let c = Ctr::new();
        env.add(&c, mapping(8080));
        let mut records = env.records();
        records.sort();
        let mut expected = vec![
            format!("{b_id}.eth0.portmap.json"),
            format!("{}.eth0.portmap.json", c.id),
        ];
        expected.sort();
        assert_eq!(records, expected, "a's record replaced, b's waits for GC");
        assert!(!records.iter().any(|r| r.starts_with(&a_id)));
        let dnat = env.elements("hostports4");
        assert_eq!(dnat.len(), 1, "{dnat:?}");
        assert!(
            dnat[0].contains("8080") && dnat[0].contains("10.77.0."),
            "{dnat:?}"
        );
        assert_exchange(&c.ns, &env.client, "tcp", NODE4, 8080, 80);

        // GC of the whole chain (bridge with host-local, portmap), c alone valid: a's and b's records and
        // reservations go; c's stay, in the store and in the kernel.
        let valid = [corral_cni::config::Attachment {
            container_id: c.id.clone(),
            ifname: "eth0".into(),
        }];
        enter_node(&env.node, || env.list.gc(&env.rt, &valid)).unwrap();
        assert_eq!(env.records(), [format!("{}.eth0.portmap.json", c.id)]);
        assert_eq!(env.elements("hostports4").len(), 1);
        let ipam_dir = state.join("ipam").join(NET);
        let mut reserved: Vec<String> = std::fs::read_dir(&ipam_dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
            .collect();
        reserved.sort();
        assert_eq!(reserved.len(), 2, "c's v4 and v6 only: {reserved:?}");
        for ip in &reserved {
            assert_eq!(
                std::fs::read_to_string(ipam_dir.join(ip)).unwrap(),
                format!("{}\r\neth0", c.id)
            );
        }
        assert_exchange(&c.ns, &env.client, "tcp", NODE4, 8080, 80);

        env.del(&c, mapping(8080), None);
        assert!(env.records().is_empty());
        assert!(env.elements("hostports4").is_empty());
    }
}
