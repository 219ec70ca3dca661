//! End to end under Podman 4.x with its CNI backend: rootful podman runs inside a throwaway node namespace
//! with corral's binaries as its only CNI plugin directory and a corral network written by hand as for the
//! reference plugins (bridge + host-local + portmap). Two busybox containers: a published port reached from
//! the node (localhost and the gateway address), container-to-container traffic and hairpin through the
//! published port, the NAT state in `corral list-nat` owned by the container's id, `podman restart` (DEL then
//! ADD) leaving no duplicates, and `podman rm -f` leaving no veth, reservation, NAT element, record or libcni
//! cache entry. The machine's own network and podman state are compared before and after.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod podman_support;

use corral_tests::{require_root, unique, veths, wait_until};
use podman_support::{http_from_ctr, http_from_node, require_podman, Podman, RootState, GW};
use serde_json::Value;
use std::path::Path;
use std::time::Instant;

/// `(hostPort, protocol, containerIP, containerPort, owner containerID, state, stale)` of the DNAT rows.
type Dnat = (u64, String, String, u64, String, String, bool);

fn dnat_rows(v: &Value) -> Vec<Dnat> {
    v["dnat"]
        .as_array()
        .unwrap_or_else(|| panic!("no dnat in {v}"))
        .iter()
        .map(|e| {
            (
                e["hostPort"].as_u64().unwrap(),
                e["protocol"].as_str().unwrap().to_string(),
                e["containerIP"].as_str().unwrap_or("-").to_string(),
                e["containerPort"].as_u64().unwrap(),
                e["owner"]["containerID"].as_str().unwrap_or("-").to_string(),
                e["state"].as_str().unwrap().to_string(),
                !e["stale"].is_null(),
            )
        })
        .collect()
}

/// `(source, owner containerID, state, stale)` of the SNAT rows.
fn snat_rows(v: &Value) -> Vec<(String, String, String, bool)> {
    let mut rows: Vec<_> = v["snat"]
        .as_array()
        .unwrap_or_else(|| panic!("no snat in {v}"))
        .iter()
        .map(|e| {
            (
                e["source"].as_str().unwrap().to_string(),
                e["owner"]["containerID"].as_str().unwrap_or("-").to_string(),
                e["state"].as_str().unwrap().to_string(),
                !e["stale"].is_null(),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// The NAT state of the network: exactly one active 8080/tcp mapping to `web_ip:80` owned by `web_id`, and
/// exactly one active masquerade entry per container.
fn assert_nat(pm: &Podman, web_id: &str, web_ip: &str, other: (&str, &str), when: &str) {
    let nat = pm.list_nat();
    let dnat = dnat_rows(&nat);
    assert_eq!(
        dnat,
        vec![(
            8080,
            "tcp".to_string(),
            web_ip.to_string(),
            80,
            web_id.to_string(),
            "active".to_string(),
            false
        )],
        "{when}: DNAT rows of {} (want one 8080/tcp -> {web_ip}:80 owned by {web_id}): {nat:#}",
        pm.net
    );
    let mut want = vec![
        (
            web_ip.to_string(),
            web_id.to_string(),
            "active".to_string(),
            false,
        ),
        (
            other.1.to_string(),
            other.0.to_string(),
            "active".to_string(),
            false,
        ),
    ];
    want.sort();
    assert_eq!(snat_rows(&nat), want, "{when}: SNAT rows: {nat:#}");
    assert!(
        nat["unreadableRecords"]
            .as_array()
            .map(Vec::is_empty)
            .unwrap_or(true),
        "{when}: unreadable records: {nat:#}"
    );
    // The kernel side, independently of list-nat: one DNAT element and one masquerade source per container.
    let elems = pm.nft_elements();
    let count = |set: &str| elems.iter().filter(|(s, _)| s == set).count();
    assert_eq!(count("hostports4"), 1, "{when}: hostports4 elements: {elems:#?}");
    assert_eq!(count("masq_src4"), 2, "{when}: masq_src4 elements: {elems:#?}");
}

/// No plugin run (ADD by podman, DEL by conmon's `podman container cleanup`) fell back to corral's default
/// state directory: `CORRAL_STATE_DIR` reached them all through the environment and `conmon_env_vars`.
fn assert_no_default_state(pm: &Podman) {
    let dir = Path::new(podman_support::CORRAL_DEFAULT_STATE)
        .join("nat")
        .join(&pm.net);
    assert!(
        !dir.exists(),
        "{} exists: a plugin run did not get CORRAL_STATE_DIR",
        dir.display()
    );
}

#[test]
fn podman_runs_containers_on_a_corral_network() {
    require_root();
    let version = require_podman();
    let t0 = Instant::now();
    let pm = Podman::new();
    let before = RootState::take(&pm.net);
    let token = unique("payload");
    let web = unique("pweb");
    let cli = unique("pcli");
    eprintln!("{version}; node {}, network {}", pm.node.ns.name, pm.net);

    // Two containers; the first serves HTTP on 80, published as 8080 on the node.
    let w = pm.start(
        &web,
        &token,
        &["-p", "8080:80"],
        &["httpd", "-f", "-p", "80", "-h", "/www"],
    );
    let c = pm.start(&cli, "client", &[], &["sleep", "300"]);
    let (web_id, web_ip) = (w["Id"].as_str().unwrap().to_string(), pm.ip(&w));
    let (cli_id, cli_ip) = (c["Id"].as_str().unwrap().to_string(), pm.ip(&c));
    assert_ne!(web_ip, cli_ip);
    for ip in [&web_ip, &cli_ip] {
        assert!(
            ip.starts_with("10.89.0."),
            "address {ip} not from the conflist's subnet"
        );
    }
    eprintln!("started in {:?}: {web_ip}, {cli_ip}", t0.elapsed());

    // The published port from the node: localhost and the gateway (the node's address on the bridge).
    for addr in ["127.0.0.1", GW] {
        let reply = http_from_node(&pm.node, addr, 8080, &token, 10);
        assert!(
            reply.contains("200 OK") && reply.contains(&token),
            "GET http://{addr}:8080/ from the node: {reply:?}"
        );
    }
    // Container to container by address, and hairpin: the client through the gateway's published port.
    let reply = http_from_ctr(&pm, &cli, &web_ip, 80, &token, 10);
    assert!(reply.contains(&token), "{cli} -> {web_ip}:80: {reply:?}");
    let reply = http_from_ctr(&pm, &cli, GW, 8080, &token, 10);
    assert!(reply.contains(&token), "{cli} -> {GW}:8080 (hairpin): {reply:?}");

    assert_nat(&pm, &web_id, &web_ip, (&cli_id, &cli_ip), "after run");
    assert_eq!(pm.node.reserved_ips(&pm.net).len(), 2);
    assert_eq!(veths(&pm.node.ns).len(), 2, "veths in the node");
    assert_eq!(pm.cni_cache().len(), 2, "libcni cache entries");

    // `podman network reload --all` after the node's ruleset was flushed (what a firewall reload does): podman
    // tears down and sets up every container's network again, and the NAT state comes back.
    pm.node.ns.run(&["nft", "flush", "ruleset"]);
    assert!(
        !http_from_node(&pm.node, "127.0.0.1", 8080, &token, 0).contains(&token),
        "8080 still forwarded after `nft flush ruleset`"
    );
    pm.run(&["network", "reload", "--all"]);
    let web_ip = pm.ip(&pm.inspect(&web));
    let cli_ip = pm.ip(&pm.inspect(&cli));
    let reply = http_from_node(&pm.node, "127.0.0.1", 8080, &token, 10);
    assert!(reply.contains(&token), "after reload, 127.0.0.1:8080: {reply:?}");
    assert_nat(&pm, &web_id, &web_ip, (&cli_id, &cli_ip), "after network reload");
    assert_eq!(
        pm.node.reserved_ips(&pm.net).len(),
        2,
        "reservations after reload"
    );

    // Restart: podman runs DEL then ADD (new netns, maybe a new address); nothing doubles.
    pm.run(&["restart", "-t", "0", &web]);
    let w2 = pm.inspect(&web);
    let web_ip2 = pm.ip(&w2);
    assert_eq!(w2["Id"].as_str().unwrap(), web_id);
    let reply = http_from_node(&pm.node, "127.0.0.1", 8080, &token, 10);
    assert!(reply.contains(&token), "after restart, 127.0.0.1:8080: {reply:?}");
    let reply = http_from_ctr(&pm, &cli, &web_ip2, 80, &token, 10);
    assert!(
        reply.contains(&token),
        "after restart, {cli} -> {web_ip2}:80: {reply:?}"
    );
    assert_nat(&pm, &web_id, &web_ip2, (&cli_id, &cli_ip), "after restart");
    let reserved = pm.node.reserved_ips(&pm.net);
    let mut want = vec![web_ip2.clone(), cli_ip.clone()];
    want.sort();
    assert_eq!(reserved, want, "IPAM reservations after restart");
    assert!(
        wait_until(5, || veths(&pm.node.ns).len() == 2),
        "veths after restart: {:?}",
        veths(&pm.node.ns)
    );

    // A container that exits by itself: its DEL is run by `podman container cleanup`, which conmon starts with
    // only `conmon_env_vars` as environment; its NAT entries must go from the same state as its ADD's.
    let exiter = unique("pexit");
    let x = pm.start(&exiter, "x", &["-p", "8081:80"], &["sleep", "1"]);
    let x_id = x["Id"].as_str().unwrap().to_string();
    let owned_by_x = |nat: &Value| {
        dnat_rows(nat).iter().any(|r| r.4 == x_id) || snat_rows(nat).iter().any(|r| r.1 == x_id)
    };
    assert!(
        owned_by_x(&pm.list_nat()),
        "no NAT entry for {exiter} after its run"
    );
    pm.run(&["wait", &exiter]);
    assert!(
        wait_until(10, || !owned_by_x(&pm.list_nat())),
        "NAT entries of {exiter} left after it exited (the cleanup DEL did not see the ADD's state): {:#}",
        pm.list_nat()
    );
    assert_no_default_state(&pm);
    pm.run(&["rm", "-f", "-t", "0", &exiter]);

    // rm -f: every trace of both attachments goes.
    let sandboxes = pm.sandboxes();
    pm.run(&["rm", "-f", "-t", "0", &web, &cli]);
    assert!(
        wait_until(10, || veths(&pm.node.ns).is_empty()),
        "veths left in the node: {:?}",
        veths(&pm.node.ns)
    );
    assert_eq!(
        pm.node.reserved_ips(&pm.net),
        Vec::<String>::new(),
        "IPAM reservations left"
    );
    let nat = pm.list_nat();
    assert!(
        dnat_rows(&nat).is_empty() && snat_rows(&nat).is_empty(),
        "NAT entries left for {}: {nat:#}",
        pm.net
    );
    assert_eq!(pm.nft_elements(), vec![], "nft elements left");
    let records = pm.node.state.join("nat").join(&pm.net);
    let left: Vec<_> = std::fs::read_dir(&records)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "NAT records left in {}: {left:?}",
        records.display()
    );
    assert_eq!(pm.cni_cache(), Vec::<String>::new(), "libcni cache entries left");
    for sb in &sandboxes {
        assert!(!Path::new(sb).exists(), "container netns {sb} left");
    }
    assert_eq!(pm.run(&["ps", "-aq"]).trim(), "", "containers left");
    assert_no_default_state(&pm);
    eprintln!("done in {:?}", t0.elapsed());

    // The machine: no new link or nft table in the root namespace, no podman or corral state outside the
    // private directories (the plugins never fell back to /var/lib/corral).
    let net = pm.net.clone();
    let node_ns = pm.node.ns.path();
    drop(pm);
    assert!(!Path::new(&node_ns).exists(), "node namespace {node_ns} left");
    assert_eq!(RootState::take(&net), before, "the machine's own state changed");
}

/// A network made by `podman network create`: podman 4.3 writes a conflist (cniVersion 0.4.0) of bridge (with
/// `"capabilities": {"ips": true}`), host-local, portmap, `firewall` and `tuning`. corral has no `firewall` or
/// `tuning`, so with corral's directory alone podman drops the network as invalid; with `/usr/lib/cni` after
/// it in `cni_plugin_dirs`, corral runs bridge, host-local and portmap and the reference runs the other two.
/// A static address and MAC (`--ip`, `--mac-address`: CNI_ARGS `IP=`/`MAC=`) are honoured.
#[test]
fn podman_created_network_with_reference_firewall_and_tuning() {
    require_root();
    require_podman();
    assert!(
        Path::new("/usr/lib/cni/firewall").exists() && Path::new("/usr/lib/cni/tuning").exists(),
        "/usr/lib/cni/{{firewall,tuning}} are missing: install containernetworking-plugins"
    );
    let pm = Podman::generated(&["/usr/lib/cni"]);
    let before = RootState::take(&pm.net);
    pm.run(&["network", "create", "--subnet", "10.89.1.0/24", &pm.net]);
    let list: Value = serde_json::from_str(
        &std::fs::read_to_string(pm.root.join("cni/net.d").join(format!("{}.conflist", pm.net))).unwrap(),
    )
    .unwrap();
    let types: Vec<&str> = list["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["bridge", "portmap", "firewall", "tuning"],
        "podman's generated conflist: {list:#}"
    );

    let token = unique("payload");
    let web = unique("pgen");
    let w = pm.start(
        &web,
        &token,
        &[
            "--ip",
            "10.89.1.50",
            "--mac-address",
            "02:89:01:00:00:50",
            "-p",
            "8080:80",
        ],
        &["httpd", "-f", "-p", "80", "-h", "/www"],
    );
    let id = w["Id"].as_str().unwrap().to_string();
    assert_eq!(pm.ip(&w), "10.89.1.50");
    assert_eq!(
        w["NetworkSettings"]["Networks"][&pm.net]["MacAddress"], "02:89:01:00:00:50",
        "{:#}",
        w["NetworkSettings"]
    );
    let reply = http_from_node(&pm.node, "127.0.0.1", 8080, &token, 10);
    assert!(reply.contains(&token), "127.0.0.1:8080: {reply:?}");
    let rows = dnat_rows(&pm.list_nat());
    assert_eq!(
        rows,
        vec![(
            8080,
            "tcp".into(),
            "10.89.1.50".into(),
            80,
            id,
            "active".into(),
            false
        )]
    );
    assert_eq!(pm.default_reserved_ips(), ["10.89.1.50"]);

    pm.run(&["rm", "-f", "-t", "0", &web]);
    assert!(wait_until(10, || veths(&pm.node.ns).is_empty()), "veths left");
    assert_eq!(
        pm.default_reserved_ips(),
        Vec::<String>::new(),
        "reservations left"
    );
    let nat = pm.list_nat();
    assert!(
        dnat_rows(&nat).is_empty() && snat_rows(&nat).is_empty(),
        "NAT left: {nat:#}"
    );
    assert_eq!(pm.cni_cache(), Vec::<String>::new(), "libcni cache entries left");
    assert_no_default_state(&pm);
    let net = pm.net.clone();
    drop(pm);
    assert_eq!(RootState::take(&net), before, "the machine's own state changed");
}
