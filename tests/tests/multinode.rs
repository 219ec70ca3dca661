//! Multi-node, Kubernetes style (as kubenet wires it): two node namespaces joined by a link, each running
//! bridge + host-local with its own pod CIDR and a route to the other node's pod CIDR. Pods on different nodes
//! reach each other by pod address, without NAT.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use corral_tests::conf;
use corral_tests::ctr::Ctr;
use corral_tests::{unique, Node};
use serde_json::json;

/// Joins two nodes with a veth pair `10.240.<n>.1/30` ↔ `.2/30` and routes each pod CIDR via the other node.
fn join(a: &Node, b: &Node, n: u8, pods_a: &str, pods_b: &str) {
    let (la, lb) = (unique("la"), unique("lb"));
    a.ns.ip(&[
        "link", "add", &la, "type", "veth", "peer", "name", &lb, "netns", &b.ns.name,
    ]);
    let (ip_a, ip_b) = (format!("10.240.{n}.1"), format!("10.240.{n}.2"));
    a.ns.ip(&["addr", "add", &format!("{ip_a}/30"), "dev", &la]);
    b.ns.ip(&["addr", "add", &format!("{ip_b}/30"), "dev", &lb]);
    a.ns.ip(&["link", "set", &la, "up"]);
    b.ns.ip(&["link", "set", &lb, "up"]);
    a.ns.ip(&["route", "add", pods_b, "via", &ip_b]);
    b.ns.ip(&["route", "add", pods_a, "via", &ip_a]);
}

fn pod_ip(result: &serde_json::Value) -> String {
    let cidr = result["ips"][0]["address"].as_str().unwrap();
    cidr.split('/').next().unwrap().to_string()
}

#[test]
fn pods_on_two_nodes_reach_each_other_by_pod_address() {
    let (a, b) = (Node::new(), Node::new());
    let (pods_a, pods_b) = ("10.241.0.0/24", "10.241.1.0/24");
    join(&a, &b, 0, pods_a, pods_b);
    let conf_a = conf::bridge(&a, "1.0.0", &[pods_a], json!({ "isDefaultGateway": true }));
    let conf_b = conf::bridge(&b, "1.0.0", &[pods_b], json!({ "isDefaultGateway": true }));
    let (pa, pb) = (Ctr::new(), Ctr::new());
    let ip_a = pod_ip(&a.add(&pa, &conf_a));
    let ip_b = pod_ip(&b.add(&pb, &conf_b));
    assert!(ip_a.starts_with("10.241.0."), "{ip_a}");
    assert!(ip_b.starts_with("10.241.1."), "{ip_b}");

    assert!(
        pa.ns.ping_within(&ip_b, 5),
        "pod on node A cannot reach {ip_b} on node B"
    );
    assert!(
        pb.ns.ping_within(&ip_a, 5),
        "pod on node B cannot reach {ip_a} on node A"
    );

    // The connection arrives from the pod's own address: no NAT between nodes.
    let listener = pa.ns.listen_tcp(7070);
    assert!(
        pb.ns.tcp_send(&ip_a, 7070, "hello across nodes"),
        "TCP from B's pod to A's pod failed"
    );
    let (peer, data) = listener.finish();
    assert!(
        peer.contains(&ip_b),
        "peer seen as {peer:?}, want the pod address {ip_b}"
    );
    assert_eq!(data.trim(), "hello across nodes");

    a.bridge("DEL", &pa, &conf_a).ok();
    b.bridge("DEL", &pb, &conf_b).ok();
    assert!(a.reserved_ips(conf::NET).is_empty() && b.reserved_ips(conf::NET).is_empty());
}

/// bridge + host-local + portmap on `node`, as a conflist run through the runtime inside the node.
fn attach_with_port(node: &Node, pods: &str, ctr: &Ctr, host_port: u16) -> serde_json::Value {
    use corral_cni::runtime::{Attachment, Conflist, Runtime};
    let list = json!({
        "cniVersion": "1.0.0", "name": conf::NET,
        "plugins": [
            {"type": "bridge", "bridge": "br0", "isDefaultGateway": true,
             "ipam": {"type": "host-local", "dataDir": node.data_dir(), "ranges": [[{"subnet": pods}]]}},
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    });
    let list = Conflist::parse(list.to_string().as_bytes()).unwrap();
    let mut env = std::collections::BTreeMap::new();
    env.insert("PATH".to_string(), std::env::var("PATH").unwrap_or_default());
    env.insert("CORRAL_STATE_DIR".to_string(), node.state.display().to_string());
    let rt = Runtime {
        cni_path: vec![node.bin.clone()],
        env,
    };
    let mut caps = serde_json::Map::new();
    caps.insert(
        "portMappings".into(),
        json!([{"hostPort": host_port, "containerPort": 80}]),
    );
    let att = Attachment {
        container_id: ctr.id.clone(),
        netns: ctr.path(),
        ifname: "eth0".into(),
        capability_args: caps,
        ..Default::default()
    };
    let path = std::path::PathBuf::from(node.ns.path());
    std::thread::scope(|s| {
        s.spawn(|| {
            let ns = std::fs::File::open(&path).unwrap();
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            list.add(&rt, &att).unwrap()
        })
        .join()
        .unwrap()
    })
}

#[test]
fn published_ports_work_on_each_node_from_the_other() {
    let (a, b) = (Node::new(), Node::new());
    let (pods_a, pods_b) = ("10.242.0.0/24", "10.242.1.0/24");
    join(&a, &b, 1, pods_a, pods_b);
    let (pa, pb) = (Ctr::new(), Ctr::new());
    attach_with_port(&a, pods_a, &pa, 30080);
    attach_with_port(&b, pods_b, &pb, 30081);
    // From the other node, to this node's own address on the link: DNAT to the local pod.
    for (server, client_node, node_ip, port, msg) in [
        (&pa, &b, "10.240.1.1", 30080, "to a"),
        (&pb, &a, "10.240.1.2", 30081, "to b"),
    ] {
        let listener = server.ns.listen_tcp(80);
        let sent = client_node.ns.exec(&[
            "sh",
            "-c",
            &format!("printf '{msg}' | nc -n -N -w 3 {node_ip} {port}"),
        ]);
        assert!(sent.status.success(), "connect {node_ip}:{port} failed: {sent:?}");
        let (_, data) = listener.finish();
        assert_eq!(data.trim(), msg);
    }
}
