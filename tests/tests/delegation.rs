//! IPAM delegation: the bridge runs host-local in-process only when the `host-local` in CNI_PATH is corral's
//! own build (saving an exec per verb); any other binary of that name, such as the reference's, is exec'd as
//! the spec says, and the node's store is the same either way.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use corral_tests::conf;
use corral_tests::ctr::Ctr;
use corral_tests::Node;
use serde_json::json;
use std::path::Path;

/// A CNI_PATH with corral's bridge and the given host-local.
fn plugin_dir(node: &Node, host_local: &Path) -> std::path::PathBuf {
    let dir = node.state.join("bin");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(node.bin.join("bridge"), dir.join("bridge")).unwrap();
    std::fs::copy(host_local, dir.join("host-local")).unwrap();
    dir
}

fn add(node: &Node, dir: &Path, ctr: &Ctr, conf: &serde_json::Value) -> corral_tests::Outcome {
    let path = ctr.path();
    let env = [
        ("CNI_CONTAINERID", ctr.id.as_str()),
        ("CNI_NETNS", path.as_str()),
        ("CNI_IFNAME", "eth0"),
        ("CORRAL_LOG", "debug"),
    ];
    node.plugin_in(dir, "bridge", "ADD", &env, &conf.to_string())
}

#[test]
fn corral_host_local_runs_in_process() {
    let node = Node::new();
    let dir = plugin_dir(&node, &node.bin.join("host-local"));
    let conf = conf::bridge(&node, "1.0.0", &["10.61.0.0/24"], json!({}));
    let ctr = Ctr::new();
    let out = add(&node, &dir, &ctr, &conf);
    assert!(out.stderr.contains("delegate runs in-process"), "{}", out.stderr);
    let r = out.ok();
    assert_eq!(r["ips"][0]["address"], "10.61.0.2/24");
    assert_eq!(node.reserved_ips(conf::NET), ["10.61.0.2"]);
    assert!(
        Path::new(&node.data_dir())
            .join(conf::NET)
            .join(".corral")
            .exists(),
        "corral's index is written"
    );
}

#[test]
fn a_foreign_host_local_is_executed() {
    let reference = Path::new("/usr/lib/cni/host-local");
    assert!(
        reference.exists(),
        "the reference plugins are missing: install containernetworking-plugins"
    );
    let node = Node::new();
    let dir = plugin_dir(&node, reference);
    let conf = conf::bridge(&node, "1.0.0", &["10.62.0.0/24"], json!({}));
    let ctr = Ctr::new();
    let out = add(&node, &dir, &ctr, &conf);
    assert!(!out.stderr.contains("in-process"), "{}", out.stderr);
    let r = out.ok();
    assert_eq!(r["ips"][0]["address"], "10.62.0.2/24");
    assert_eq!(ctr.addrs(), ["10.62.0.2/24"]);
    assert_eq!(node.reserved_ips(conf::NET), ["10.62.0.2"]);
    assert!(
        !Path::new(&node.data_dir())
            .join(conf::NET)
            .join(".corral")
            .exists(),
        "the reference host-local wrote the reservation, not corral"
    );
    // DEL through the same CNI_PATH releases it.
    let path = ctr.path();
    let env = [
        ("CNI_CONTAINERID", ctr.id.as_str()),
        ("CNI_NETNS", path.as_str()),
        ("CNI_IFNAME", "eth0"),
    ];
    node.plugin_in(&dir, "bridge", "DEL", &env, &conf.to_string())
        .ok();
    assert!(node.reserved_ips(conf::NET).is_empty());
}
