//! End to end with containerd (Debian's 1.6), driven through its CRI API the way the kubelet drives it, on a
//! corral conflist written as for the reference plugins: a pod sandbox with a published port, a busybox
//! container serving HTTP in it, the port reached from the node (localhost and the bridge address), a second
//! pod reaching the first by its IP and through the published port, `corral list-nat` naming the sandbox as
//! the owner, and StopPodSandbox (twice, as the kubelet does) + RemovePodSandbox leaving nothing in the node.
//! Every CNI call containerd makes is recorded (environment, stdin, exit code) and checked: CNI_ARGS with
//! `IgnoreUnknown` and the K8S_* keys, loopback with its older cniVersion, and the repeated DEL with an empty
//! netns and no prevResult.
//!
//! containerd runs inside a throwaway node namespace (`nsenter --net`), with a private root, state, socket,
//! runc root and CNI directories under the node's state directory; everything is removed on every exit path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod containerd_support;

use containerd_support::cri::{container_config, sandbox_config};
use containerd_support::{Call, Containerd, GATEWAY, IMAGE, SUBNET};
use corral_tests::state::nft_elements;
use corral_tests::{unique, veths, wait_until, Node};
use serde_json::{json, Value};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Instant;

/// A conflist as written for the reference plugins (bridge + host-local + portmap); only the IPAM `dataDir`
/// (a key of the reference host-local) points into the test's private state.
fn conflist(node: &Node, network: &str) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": network,
        "plugins": [
            {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
             "ipam": {"type": "host-local", "dataDir": node.data_dir(),
                      "ranges": [[{"subnet": SUBNET}]], "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
        ]
    })
}

fn in_subnet(ip: &str) -> bool {
    ip.parse::<Ipv4Addr>()
        .map(|a| a.octets()[0] == 10 && a.octets()[1] == 88)
        .unwrap_or(false)
}

/// `curl` from the node namespace; the body, or "" when the connection failed.
fn fetch(node: &Node, addr: &str, port: u16) -> String {
    let url = format!("http://{addr}:{port}/");
    let out = node.ns.exec(&["curl", "-s", "--max-time", "3", &url]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `corral list-nat --json --network <network>` in the node.
fn list_nat(node: &Node, network: &str) -> Value {
    let state = format!("CORRAL_STATE_DIR={}", node.state.display());
    let bin = node.bin.join("corral");
    let out = node.ns.run(&[
        "env",
        &state,
        bin.to_str().unwrap(),
        "list-nat",
        "--json",
        "--network",
        network,
    ]);
    serde_json::from_str(&out).unwrap()
}

fn calls_text(calls: &[Call]) -> String {
    calls.iter().map(Call::summary).collect::<Vec<_>>().join("\n")
}

#[test]
fn kubelet_style_pods_on_a_corral_network() {
    let started = Instant::now();
    let node = Node::new();
    let network = unique("ctrd");
    let host_port = 30000 + (std::process::id() % 2000) as u16;
    let state = node.state.display().to_string();
    let mut ctrd = Containerd::start(
        &node,
        &conflist(&node, &network),
        &[("CORRAL_LOG", "debug"), ("CORRAL_STATE_DIR", &state)],
    );
    ctrd.cache_prefixes.push(format!("{network}-"));
    eprintln!("containerd up, image imported: {:?}", started.elapsed());

    // Pod A: published port 80 -> host_port, as a Service-less hostPort pod.
    let cg = ctrd.cgroup_parent.clone();
    let web_conf = || sandbox_config("web", "uid-web-1", "default", &[(80, host_port)], &cg);
    let web = ctrd.run_pod(web_conf());
    ctrd.cache_prefixes.push(format!("cni-loopback-{web}"));
    let (st, web_ip, web_netns) = ctrd.pod_status(&web);
    assert_eq!(st, 0, "sandbox not READY");
    assert!(in_subnet(&web_ip), "pod IP {web_ip:?} not in {SUBNET}");
    assert!(
        web_netns.starts_with("/var/run/netns/") || web_netns.starts_with("/run/netns/"),
        "pod netns {web_netns:?}"
    );
    let eth0 = corral_tests::sh(
        "nsenter",
        &[
            &format!("--net={web_netns}"),
            "ip",
            "-j",
            "addr",
            "show",
            "dev",
            "eth0",
        ],
    );
    assert!(
        eth0.contains(&format!("\"{web_ip}\"")),
        "eth0 of the pod lacks {web_ip}: {eth0}"
    );
    let lo = corral_tests::sh(
        "nsenter",
        &[
            &format!("--net={web_netns}"),
            "ip",
            "-j",
            "link",
            "show",
            "dev",
            "lo",
        ],
    );
    assert!(lo.contains("\"UP\""), "lo of the pod is down: {lo}");
    assert_eq!(veths(&node.ns).len(), 1, "one veth in the node");

    let server = ctrd.start_container(
        &web,
        web_conf(),
        container_config("httpd", IMAGE, &["/bin/httpd", "-f", "-p", "80", "-h", "/www"]),
    );
    let payload = "corral-e2e-payload";
    assert!(
        wait_until(10, || fetch(&node, "127.0.0.1", host_port).contains(payload)),
        "127.0.0.1:{host_port} from the node did not reach the pod"
    );
    assert!(
        fetch(&node, GATEWAY, host_port).contains(payload),
        "{GATEWAY}:{host_port} from the node did not reach the pod"
    );
    assert!(
        fetch(&node, &web_ip, 80).contains(payload),
        "pod IP from the node"
    );
    let _ = server;

    // Pod B: no ports; reaches pod A by IP and through the published port on the node's bridge address.
    let client_conf = || sandbox_config("client", "uid-client-1", "default", &[], &cg);
    let client = ctrd.run_pod(client_conf());
    ctrd.cache_prefixes.push(format!("cni-loopback-{client}"));
    let (_, client_ip, client_netns) = ctrd.pod_status(&client);
    assert!(
        in_subnet(&client_ip) && client_ip != web_ip,
        "pod B IP {client_ip:?}"
    );
    let sleeper = ctrd.start_container(
        &client,
        client_conf(),
        container_config("sleeper", IMAGE, &["/bin/sleep", "2147483647"]),
    );
    let get = "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc";
    for (addr, port) in [(web_ip.as_str(), 80), (GATEWAY, host_port)] {
        let (rc, out, err) = ctrd.exec(&sleeper, &["/bin/sh", "-c", &format!("{get} {addr} {port}")], 10);
        assert!(
            rc == 0 && out.contains(payload),
            "pod B -> {addr}:{port}: rc {rc}, stdout {out:?}, stderr {err:?}"
        );
    }

    // corral's view: the mapping, owned by the sandbox.
    let nat = list_nat(&node, &network);
    let row = nat["dnat"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["hostPort"] == host_port)
        .unwrap_or_else(|| panic!("no DNAT row for {host_port}: {nat:#}"));
    assert_eq!(row["owner"]["containerID"], web.as_str(), "{row:#}");
    assert_eq!(row["owner"]["network"], network.as_str(), "{row:#}");
    assert_eq!(row["protocol"], "tcp", "{row:#}");
    assert_eq!(row["state"], "active", "{row:#}");

    // What containerd sent on ADD.
    let adds = ctrd.calls();
    eprintln!("CNI calls for RunPodSandbox:\n{}", calls_text(&adds));
    for c in &adds {
        assert_eq!(
            c.rc,
            Some(0),
            "corral failed: {}\n{}\n{}",
            c.summary(),
            c.stdout,
            c.stderr
        );
        assert_eq!(c.command(), "ADD", "{}", c.summary());
    }
    for id in [&web, &client] {
        let of: Vec<&Call> = adds
            .iter()
            .filter(|c| c.var("CNI_CONTAINERID") == Some(id.as_str()))
            .collect();
        // containerd runs the loopback network and the conflist concurrently; the chain runs in order.
        let mut plugins: Vec<&str> = of.iter().map(|c| c.plugin.as_str()).collect();
        plugins.sort_unstable();
        assert_eq!(
            plugins,
            ["bridge", "loopback", "portmap"],
            "{}",
            calls_text(&adds)
        );
        let by = |p: &str| *of.iter().find(|c| c.plugin == p).unwrap();
        let (lo, br, pm) = (by("loopback"), by("bridge"), by("portmap"));
        assert!(br.key < pm.key, "portmap ran before bridge");
        assert_eq!(lo.var("CNI_IFNAME"), Some("lo"));
        assert_eq!(lo.stdin["type"], "loopback");
        // The loopback network is containerd's own, with an older cniVersion than the conflist's.
        assert_eq!(lo.stdin["cniVersion"], "0.3.1", "{}", lo.stdin);
        let args = br.var("CNI_ARGS").unwrap_or("");
        for needle in [
            "IgnoreUnknown=1",
            "K8S_POD_NAMESPACE=default",
            "K8S_POD_UID=",
            &format!("K8S_POD_INFRA_CONTAINER_ID={id}"),
        ] {
            assert!(args.contains(needle), "CNI_ARGS {args:?} lacks {needle}");
        }
        assert_eq!(br.var("CNI_IFNAME"), Some("eth0"));
        assert_eq!(br.stdin["cniVersion"], "1.0.0");
        assert!(pm.stdin.get("prevResult").is_some(), "portmap without prevResult");
    }
    let web_pm = adds
        .iter()
        .find(|c| c.plugin == "portmap" && c.var("CNI_CONTAINERID") == Some(web.as_str()))
        .unwrap();
    // containerd 1.6 (go-cni) marshals its PortMapping struct without JSON tags: the keys are Go's field
    // names (`HostPort`, ...), which Go's encoding/json, and so the reference portmap, matches
    // case-insensitively.
    let mappings = web_pm.stdin["runtimeConfig"]["portMappings"].as_array().unwrap();
    assert_eq!(mappings.len(), 1, "{}", web_pm.stdin);
    let field = |k: &str| {
        mappings[0]
            .as_object()
            .unwrap()
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(field("hostPort"), json!(host_port), "{}", web_pm.stdin);
    assert_eq!(field("containerPort"), json!(80), "{}", web_pm.stdin);
    assert_eq!(field("protocol"), json!("tcp"), "{}", web_pm.stdin);
    for c in adds
        .iter()
        .filter(|c| c.var("CNI_CONTAINERID") == Some(web.as_str()))
    {
        eprintln!(
            "{} ADD: CNI_ARGS={:?} CNI_PATH={:?}\n  stdin: {}",
            c.plugin,
            c.var("CNI_ARGS").unwrap_or(""),
            c.var("CNI_PATH").unwrap_or(""),
            c.stdin
        );
    }

    // Pod deletion as the kubelet does it: StopPodSandbox (the kubelet may repeat it), RemovePodSandbox.
    let before = adds.len();
    for id in [&web, &client] {
        ctrd.stop_pod(id);
        ctrd.stop_pod(id);
        ctrd.remove_pod(id);
    }
    let dels: Vec<Call> = ctrd.calls().into_iter().skip(before).collect();
    eprintln!(
        "CNI calls for StopPodSandbox x2 + RemovePodSandbox:\n{}",
        calls_text(&dels)
    );
    for c in &dels {
        assert_eq!(
            c.rc,
            Some(0),
            "corral failed: {}\n{}\n{}",
            c.summary(),
            c.stdout,
            c.stderr
        );
        assert_eq!(c.command(), "DEL", "{}", c.summary());
    }
    for id in [&web, &client] {
        let of: Vec<&Call> = dels
            .iter()
            .filter(|c| c.var("CNI_CONTAINERID") == Some(id.as_str()))
            .collect();
        for p in ["loopback", "bridge", "portmap"] {
            assert!(
                of.iter().any(|c| c.plugin == p),
                "no {p} DEL for {id}:\n{}",
                calls_text(&dels)
            );
        }
    }
    // The second StopPodSandbox (and RemovePodSandbox) repeat DEL after containerd removed the netns: an
    // empty CNI_NETNS and no prevResult (libcni's cache is gone). corral must succeed on each (checked above).
    for id in [&web, &client] {
        for p in ["loopback", "bridge", "portmap"] {
            let repeated = dels
                .iter()
                .filter(|c| c.var("CNI_CONTAINERID") == Some(id.as_str()) && c.plugin == p)
                .filter(|c| {
                    c.var("CNI_NETNS").unwrap_or("").is_empty() && c.stdin.get("prevResult").is_none()
                })
                .count();
            assert!(
                repeated >= 1,
                "no repeated {p} DEL with an empty netns for {id}:\n{}",
                calls_text(&dels)
            );
        }
    }
    eprintln!(
        "DELs with an empty CNI_NETNS and no prevResult: {} of {}",
        dels.iter()
            .filter(|c| c.var("CNI_NETNS").unwrap_or("").is_empty() && c.stdin.get("prevResult").is_none())
            .count(),
        dels.len()
    );

    // Nothing of the network is left in the node.
    assert!(
        wait_until(5, || veths(&node.ns).is_empty()),
        "veths left: {:?}",
        veths(&node.ns)
    );
    node.assert_empty(&network, "after RemovePodSandbox");
    let nat = list_nat(&node, &network);
    assert_eq!(nat["dnat"], json!([]), "{nat:#}");
    assert_eq!(nat["snat"], json!([]), "{nat:#}");
    for map in ["hostports4", "hostports6"] {
        let out = node.ns.exec(&["nft", "list", "map", "inet", "corral", map]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !text.contains(&format!("{host_port} :")),
            "{map} still maps {host_port}:\n{text}"
        );
    }
    assert!(nft_elements(&node.ns, "inet", "masq_src4").is_empty());
    for ns in [&web_netns, &client_netns] {
        assert!(!Path::new(ns).exists(), "pod netns {ns} left behind");
    }
    drop(ctrd);
    eprintln!("total {:?}", started.elapsed());
}
