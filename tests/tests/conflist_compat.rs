//! A conflist written for the reference plugins works unchanged with CNI_PATH pointed at corral's binaries:
//! the same chain is run through the runtime (as libcni does) once with corral and once with the reference
//! plugins in /usr/lib/cni, each in its own node namespace, and the results and effects are compared.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use corral_cni::runtime::{Attachment, Conflist, Runtime};
use corral_tests::{unique, veths, Netns, Node};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const REFERENCE_DIR: &str = "/usr/lib/cni";

/// The shape of a typical containerd/podman bridge conflist, as written for the reference plugins.
fn reference_style_conflist(name: &str, bridge: &str, subnet: &str, data_dir: &str) -> String {
    format!(
        r#"{{
  "cniVersion": "1.0.0",
  "name": "{name}",
  "plugins": [
    {{
      "type": "bridge",
      "bridge": "{bridge}",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {{
        "type": "host-local",
        "ranges": [[{{ "subnet": "{subnet}" }}]],
        "routes": [{{ "dst": "0.0.0.0/0" }}],
        "dataDir": "{data_dir}"
      }}
    }}
  ]
}}"#
    )
}

fn runtime(node: &Node, dir: &Path) -> Runtime {
    let mut env = BTreeMap::new();
    env.insert("PATH".to_string(), std::env::var("PATH").unwrap_or_default());
    env.insert("CORRAL_STATE_DIR".to_string(), node.state.display().to_string());
    Runtime {
        cni_path: vec![dir.to_path_buf()],
        env,
    }
}

/// Replaces values that legitimately differ per run (MACs, random veth names) so shapes compare.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| match k.as_str() {
                    "mac" => (k.clone(), Value::String("<mac>".into())),
                    "name" if v.as_str().is_some_and(|n| n.starts_with("veth")) => {
                        (k.clone(), Value::String("<veth>".into()))
                    }
                    "sandbox" => (k.clone(), Value::String("<netns>".into())),
                    "address" => (k.clone(), Value::String("<addr>".into())),
                    "gateway" => (k.clone(), Value::String("<gw>".into())),
                    _ => (k.clone(), shape(v)),
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(shape).collect()),
        other => other.clone(),
    }
}

struct Side {
    result: Value,
    container_addr: Vec<String>,
    gateway_ping: bool,
    check_ok: bool,
    reserved_after_del: Vec<String>,
    veths_after_del: Vec<String>,
}

/// Runs ADD, CHECK and DEL of the conflist with the plugins in `dir`, in a fresh node.
fn run_side(dir: &Path, subnet: &str, gateway: &str) -> Side {
    let node = Node::new();
    let ctr = Netns::new("crc");
    let name = unique("cmp");
    let bridge = "cmpbr0"; // each side has its own node namespace
    let list = Conflist::parse(reference_style_conflist(&name, bridge, subnet, &node.data_dir()).as_bytes())
        .unwrap();
    let rt = runtime(&node, dir);
    let att = Attachment {
        container_id: unique("ctr"),
        netns: ctr.path(),
        ifname: "eth0".into(),
        args: vec![
            ("IgnoreUnknown".into(), "1".into()),
            ("K8S_POD_NAME".into(), "web".into()),
        ],
        ..Default::default()
    };
    let result = enter_node(&node, || list.add(&rt, &att))
        .unwrap_or_else(|e| panic!("ADD with {}: {e}", dir.display()));
    let container_addr = ctr.addrs("eth0");
    let gateway_ping = ctr.ping(gateway);
    let check_ok = enter_node(&node, || list.check(&rt, &att, &result)).is_ok();
    enter_node(&node, || list.del(&rt, &att, Some(&result))).unwrap();
    enter_node(&node, || list.del(&rt, &att, Some(&result))).expect("second DEL succeeds");
    Side {
        result,
        container_addr,
        gateway_ping,
        check_ok,
        reserved_after_del: node.reserved_ips(&name),
        veths_after_del: veths(&node.ns),
    }
}

/// Runs `f` on a thread that entered the node's network namespace, so the plugins it starts run there.
fn enter_node<R: Send>(node: &Node, f: impl FnOnce() -> R + Send) -> R {
    let path = PathBuf::from(node.ns.path());
    std::thread::scope(|s| {
        s.spawn(move || {
            let ns = std::fs::File::open(&path).unwrap();
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    })
}

#[test]
fn reference_conflist_works_unchanged_and_matches_reference_results() {
    assert!(
        Path::new(REFERENCE_DIR).join("bridge").exists(),
        "the reference plugins are missing: install Debian's containernetworking-plugins"
    );
    let corral = run_side(&corral_tests::bin_dir(), "10.231.0.0/24", "10.231.0.1");
    let reference = run_side(Path::new(REFERENCE_DIR), "10.232.0.0/24", "10.232.0.1");

    assert_eq!(
        shape(&corral.result),
        shape(&reference.result),
        "result shapes differ"
    );
    assert_eq!(corral.result["ips"][0]["address"], "10.231.0.2/24");
    assert_eq!(corral.result["ips"][0]["gateway"], "10.231.0.1");
    assert_eq!(corral.result["routes"][0]["dst"], "0.0.0.0/0");
    for (who, side) in [("corral", &corral), ("reference", &reference)] {
        assert_eq!(
            side.container_addr.iter().filter(|a| a.contains('.')).count(),
            1,
            "{who}: {:?}",
            side.container_addr
        );
        assert!(side.gateway_ping, "{who}: container cannot reach its gateway");
        assert!(side.check_ok, "{who}: CHECK failed on a fresh attachment");
        assert!(
            side.reserved_after_del.is_empty(),
            "{who}: IP leaked: {:?}",
            side.reserved_after_del
        );
        assert!(
            side.veths_after_del.is_empty(),
            "{who}: veth leaked: {:?}",
            side.veths_after_del
        );
    }
}

#[test]
fn loopback_called_with_older_version_beside_the_chain() {
    // Runtimes call loopback on its own with an older cniVersion (containerd: 0.3.1).
    let node = Node::new();
    let ctr = Netns::new("crl");
    ctr.ip(&["link", "set", "lo", "down"]);
    let list = Conflist::parse(br#"{"cniVersion":"0.3.1","name":"cni-loopback","type":"loopback"}"#).unwrap();
    let rt = runtime(&node, &corral_tests::bin_dir());
    let att = Attachment {
        container_id: unique("ctr"),
        netns: ctr.path(),
        ifname: "lo".into(),
        ..Default::default()
    };
    let r = enter_node(&node, || list.add(&rt, &att)).unwrap();
    assert_eq!(r["cniVersion"], "0.3.1");
    assert_eq!(r["interfaces"][0]["name"], "lo");
    assert_eq!(r["ips"][0]["version"], "4");
    assert_eq!(r["ips"][0]["address"], "127.0.0.1/8");
    let lo = ctr.ip_json(&["link", "show", "lo"]);
    assert!(
        lo[0]["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "lo is not up: {lo}"
    );
}

#[test]
fn keys_are_matched_case_insensitively_as_the_reference_does() {
    // Go's encoding/json matches object keys to fields case-insensitively; configs in the wild rely on it.
    let node = Node::new();
    let ctr = Netns::new("crg");
    let conf = format!(
        r#"{{"cniVersion":"1.0.0","Name":"{}","type":"bridge","Bridge":"gobr0","IsGateway":true,
            "IPAM":{{"Type":"host-local","Subnet":"10.233.0.0/24","DataDir":"{}"}}}}"#,
        unique("go"),
        node.data_dir()
    );
    let r = node
        .attach("bridge", "ADD", &unique("ctr"), &ctr.path(), &conf)
        .ok();
    assert_eq!(r["interfaces"][0]["name"], "gobr0");
    assert_eq!(r["ips"][0]["address"], "10.233.0.2/24");
    assert_eq!(r["ips"][0]["gateway"], "10.233.0.1");
    assert!(
        node.ns.addrs("gobr0").contains(&"10.233.0.1/24".to_string()),
        "IsGateway took effect"
    );
    assert!(ctr.ping("10.233.0.1"));
}
