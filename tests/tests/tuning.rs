//! The tuning plugin in a node namespace: a bridge + host-local + tuning conflist through
//! `corral_cni::runtime::Conflist` (sysctl, mtu, mac, promisc, allmulti, txQLen applied in the container and
//! the new MAC in the result), CHECK catching a changed value, DEL restoring the originals (tuning alone,
//! before the bridge removes the veth), DEL twice, and invalid sysctl keys rejected with nothing changed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod portmap_support;

use corral_cni::runtime::{Attachment, Conflist, Runtime};
use corral_tests::{unique, Netns, Node};
use portmap_support::enter_node;
use serde_json::{json, Value};
use std::collections::BTreeMap;

const NET: &str = "tunenet";
const MAC: &str = "02:11:22:33:44:55";

fn runtime(node: &Node) -> Runtime {
    let mut env = BTreeMap::new();
    env.insert("PATH".to_string(), std::env::var("PATH").unwrap_or_default());
    env.insert("CORRAL_STATE_DIR".to_string(), node.state.display().to_string());
    Runtime {
        cni_path: vec![node.bin.clone()],
        env,
    }
}

fn tuning_conf(node: &Node) -> Value {
    json!({"type": "tuning",
           "sysctl": {"net.ipv4.conf.eth0.arp_filter": "1", "net.core.somaxconn": "1000"},
           "mtu": 1400, "mac": MAC, "promisc": true, "allmulti": true, "txQLen": 500,
           "dataDir": node.state.join("tuning").display().to_string()})
}

fn conflist(node: &Node, plugins: &[Value]) -> Conflist {
    let mut all = vec![json!({"type": "bridge", "bridge": "tunbr0", "isGateway": true,
        "ipam": {"type": "host-local", "dataDir": node.data_dir(), "ranges": [[{"subnet": "10.78.0.0/24"}]]}})];
    all.extend_from_slice(plugins);
    let list = json!({"cniVersion": "1.0.0", "name": NET, "plugins": all});
    Conflist::parse(list.to_string().as_bytes()).unwrap()
}

fn attachment(id: &str, ctr: &Netns) -> Attachment {
    Attachment {
        container_id: id.into(),
        netns: ctr.path(),
        ifname: "eth0".into(),
        ..Default::default()
    }
}

fn link(ctr: &Netns) -> Value {
    ctr.ip_json(&["-d", "link", "show", "eth0"])[0].clone()
}

fn flags(link: &Value) -> Vec<String> {
    link["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect()
}

fn sysctl(ctr: &Netns, path: &str) -> String {
    ctr.run(&["cat", path]).trim().to_string()
}

fn tuning(
    node: &Node,
    cmd: &str,
    id: &str,
    ctr: &Netns,
    conf: &Value,
    prev: &Value,
) -> corral_tests::Outcome {
    let mut c = conf.clone();
    c["cniVersion"] = json!("1.0.0");
    c["name"] = json!(NET);
    c["prevResult"] = prev.clone();
    node.attach("tuning", cmd, id, &ctr.path(), &c.to_string())
}

#[test]
fn chain_applies_sysctls_and_link_settings_and_del_leaves_no_saved_state() {
    let node = Node::new();
    let rt = runtime(&node);
    let list = conflist(&node, &[tuning_conf(&node)]);
    let ctr = Netns::new("tunc");
    let id = unique("tun");
    let att = attachment(&id, &ctr);
    let result = enter_node(&node, || list.add(&rt, &att)).unwrap();

    let eth0 = result["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "eth0")
        .unwrap();
    assert_eq!(eth0["mac"], MAC, "{result}");
    let l = link(&ctr);
    assert_eq!(l["mtu"], 1400, "{l}");
    assert_eq!(l["address"], MAC, "{l}");
    assert_eq!(l["txqlen"], 500, "{l}");
    let f = flags(&l);
    assert!(
        f.contains(&"PROMISC".into()) && f.contains(&"ALLMULTI".into()),
        "{f:?}"
    );
    assert_eq!(sysctl(&ctr, "/proc/sys/net/ipv4/conf/eth0/arp_filter"), "1");
    assert_eq!(sysctl(&ctr, "/proc/sys/net/core/somaxconn"), "1000");
    // Only inside the container: the node's own value is untouched.
    assert_ne!(sysctl(&node.ns, "/proc/sys/net/core/somaxconn"), "1000");

    enter_node(&node, || list.check(&rt, &att, &result)).unwrap();
    ctr.ip(&["link", "set", "eth0", "mtu", "1450"]);
    let err = enter_node(&node, || list.check(&rt, &att, &result)).unwrap_err();
    assert_eq!(err.code, 101, "{err}");
    assert!(err.msg.contains("mtu"), "{err}");

    let saved = node.state.join("tuning").join(format!("{id}_eth0.json"));
    assert!(saved.exists(), "no saved originals at {}", saved.display());
    enter_node(&node, || list.del(&rt, &att, Some(&result))).unwrap();
    assert!(!saved.exists(), "saved originals left after DEL");
    enter_node(&node, || list.del(&rt, &att, Some(&result))).unwrap();
}

#[test]
fn del_restores_the_original_values() {
    let node = Node::new();
    let rt = runtime(&node);
    let base = conflist(&node, &[]);
    let ctr = Netns::new("tunr");
    let id = unique("tur");
    let att = attachment(&id, &ctr);
    let prev = enter_node(&node, || base.add(&rt, &att)).unwrap();
    let before = link(&ctr);
    let arp_before = sysctl(&ctr, "/proc/sys/net/ipv4/conf/eth0/arp_filter");
    let conf = tuning_conf(&node);

    tuning(&node, "ADD", &id, &ctr, &conf, &prev).ok();
    assert_eq!(link(&ctr)["mtu"], 1400);
    tuning(&node, "CHECK", &id, &ctr, &conf, &prev).ok();
    tuning(&node, "DEL", &id, &ctr, &conf, &prev).ok();
    let after = link(&ctr);
    for key in ["mtu", "address", "txqlen"] {
        assert_eq!(after[key], before[key], "{key} not restored: {after}");
    }
    assert_eq!(flags(&after), flags(&before));
    assert_eq!(
        sysctl(&ctr, "/proc/sys/net/ipv4/conf/eth0/arp_filter"),
        arp_before
    );
    // DEL twice, and DEL with the netns gone, succeed.
    tuning(&node, "DEL", &id, &ctr, &conf, &prev).ok();
    tuning(&node, "ADD", &id, &ctr, &conf, &prev).ok();
    enter_node(&node, || base.del(&rt, &att, Some(&prev))).unwrap();
    let c = {
        let mut c = conf.clone();
        c["cniVersion"] = json!("1.0.0");
        c["name"] = json!(NET);
        c
    };
    node.attach(
        "tuning",
        "DEL",
        &id,
        "/run/netns/corral-no-such-ns",
        &c.to_string(),
    )
    .ok();
    assert!(!node.state.join("tuning").join(format!("{id}_eth0.json")).exists());
}

#[test]
fn invalid_sysctl_keys_and_missing_prev_result_are_code_7_and_change_nothing() {
    let node = Node::new();
    let rt = runtime(&node);
    let base = conflist(&node, &[]);
    let ctr = Netns::new("tunb");
    let id = unique("tub");
    let att = attachment(&id, &ctr);
    let prev = enter_node(&node, || base.add(&rt, &att)).unwrap();
    let before = link(&ctr);
    let somax = sysctl(&ctr, "/proc/sys/net/core/somaxconn");
    for bad in [
        "kernel.panic",
        "net.ipv4/../../kernel/panic",
        "net..core.somaxconn",
    ] {
        let mut conf = tuning_conf(&node);
        conf["sysctl"][bad] = json!("1");
        tuning(&node, "ADD", &id, &ctr, &conf, &prev).err(7, "sysctl");
        assert_eq!(link(&ctr)["mtu"], before["mtu"], "{bad}: mtu changed");
        assert_eq!(
            sysctl(&ctr, "/proc/sys/net/core/somaxconn"),
            somax,
            "{bad}: sysctl changed"
        );
    }
    tuning(&node, "ADD", &id, &ctr, &tuning_conf(&node), &Value::Null).err(7, "chained");
    assert_eq!(link(&ctr)["mtu"], before["mtu"]);
    enter_node(&node, || base.del(&rt, &att, Some(&prev))).unwrap();
}

#[test]
fn mac_from_cni_args_and_runtime_config_override_the_key() {
    let node = Node::new();
    let rt = runtime(&node);
    let base = conflist(&node, &[]);
    let ctr = Netns::new("tunm");
    let id = unique("tum");
    let att = attachment(&id, &ctr);
    let prev = enter_node(&node, || base.add(&rt, &att)).unwrap();
    let dir = node.state.join("tuning").display().to_string();
    let conf = json!({"cniVersion": "1.0.0", "name": NET, "type": "tuning", "mac": MAC, "dataDir": dir,
                      "prevResult": prev});
    let run = |conf: &Value, args: &str| {
        node.plugin(
            "tuning",
            "ADD",
            &[
                ("CNI_CONTAINERID", &id),
                ("CNI_NETNS", &ctr.path()),
                ("CNI_IFNAME", "eth0"),
                ("CNI_ARGS", args),
            ],
            &conf.to_string(),
        )
        .ok()
    };
    run(&conf, "IgnoreUnknown=1;MAC=02:00:00:00:00:aa");
    assert_eq!(link(&ctr)["address"], "02:00:00:00:00:aa");
    let mut with_rc = conf.clone();
    with_rc["runtimeConfig"] = json!({"mac": "02:00:00:00:00:bb"});
    let out = run(&with_rc, "IgnoreUnknown=1;MAC=02:00:00:00:00:aa");
    assert_eq!(link(&ctr)["address"], "02:00:00:00:00:bb");
    assert_eq!(out["interfaces"][2]["mac"], "02:00:00:00:00:bb", "{out}");
    enter_node(&node, || base.del(&rt, &att, Some(&prev))).unwrap();
}
