//! The bridge plugin against the kernel: every config key, the result of every cniVersion, connectivity,
//! masquerade seen from outside, CHECK after tampering, DEL in all its forms. Each test has its own node.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use corral_tests::conf::{self, check_versions, NET, VERSIONS};
use corral_tests::{sh, veths, wait_until, Ctr, Netns, Node};
use serde_json::{json, Value};

const V4: &str = "10.10.0.0/24";
const V6: &str = "fd10::/64";
const GW4: &str = "10.10.0.1";
const GW6: &str = "fd10::1";

fn is_legacy(ver: &str) -> bool {
    !corral_cni::version::at_least(ver, "0.3.0")
}

/// The address of `ctr`'s eth0 in one family, without prefix.
fn ip_of(ctr: &Ctr, v4: bool) -> String {
    ctr.addrs()
        .iter()
        .map(|a| a.split('/').next().unwrap().to_string())
        .find(|a| a.contains('.') == v4)
        .unwrap_or_else(|| {
            panic!(
                "no {} address on eth0 of {}",
                if v4 { "v4" } else { "v6" },
                ctr.id
            )
        })
}

/// The host veth of the only attachment in a node.
fn only_veth(node: &Node) -> String {
    let v = veths(&node.ns);
    assert_eq!(v.len(), 1, "expected one veth in the node: {v:?}");
    v[0].clone()
}

fn str_list(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------------- results

#[test]
fn add_result_has_the_shape_of_every_cni_version() {
    let node = Node::new();
    for ver in VERSIONS {
        let ctr = Ctr::new();
        let before = veths(&node.ns);
        let conf = conf::bridge(&node, ver, &[V4, V6], json!({ "isDefaultGateway": true }));
        let r = node.add(&ctr, &conf);
        let addrs = ctr.addrs();
        assert_eq!(addrs.len(), 2, "{ver}: eth0 has {addrs:?}");
        assert_eq!(r["cniVersion"], ver, "{ver}: {r}");
        let routes = ctr.ns.routes();
        for want in [
            format!("default via {GW4} dev eth0"),
            format!("default via {GW6} dev eth0"),
        ] {
            assert!(
                routes.contains(&want),
                "{ver}: container routes {routes:?} lack {want}"
            );
        }
        if is_legacy(ver) {
            assert!(
                r.get("interfaces").is_none() && r.get("ips").is_none(),
                "{ver}: {r}"
            );
            let mut got = vec![
                r["ip4"]["ip"].as_str().unwrap().to_string(),
                r["ip6"]["ip"].as_str().unwrap().to_string(),
            ];
            got.sort();
            assert_eq!(got, addrs, "{ver}: result vs eth0");
            assert_eq!(r["ip4"]["gateway"], GW4, "{ver}: {r}");
            assert_eq!(r["ip6"]["gateway"], GW6, "{ver}: {r}");
            assert_eq!(
                r["ip4"]["routes"],
                json!([{ "dst": "0.0.0.0/0", "gw": GW4 }]),
                "{ver}"
            );
            assert_eq!(r["ip6"]["routes"], json!([{ "dst": "::/0", "gw": GW6 }]), "{ver}");
            continue;
        }
        let ifs = r["interfaces"].as_array().unwrap();
        assert_eq!(ifs.len(), 3, "{ver}: {r}");
        let host_veth = ifs[1]["name"].as_str().unwrap();
        let new: Vec<String> = veths(&node.ns)
            .into_iter()
            .filter(|v| !before.contains(v))
            .collect();
        assert_eq!(
            new,
            vec![host_veth.to_string()],
            "{ver}: host veth in result vs node"
        );
        assert_eq!(ifs[0]["name"], "br0", "{ver}");
        assert_eq!(ifs[0]["mac"], node.link("br0")["address"], "{ver}: bridge MAC");
        assert_eq!(
            ifs[1]["mac"],
            node.link(host_veth)["address"],
            "{ver}: host veth MAC"
        );
        assert_eq!(node.link(host_veth)["master"], "br0", "{ver}");
        assert_eq!(ifs[2]["name"], "eth0", "{ver}");
        assert_eq!(ifs[2]["mac"], ctr.mac(), "{ver}: container MAC");
        assert_eq!(ifs[2]["sandbox"], ctr.path(), "{ver}");
        assert!(
            ifs[0].get("sandbox").is_none(),
            "{ver}: host interfaces have no sandbox: {r}"
        );
        let want_mtu = ver == "1.1.0";
        for i in ifs {
            assert_eq!(i.get("mtu").is_some(), want_mtu, "{ver}: mtu only in 1.1.0: {i}");
        }
        if want_mtu {
            assert_eq!(ifs[2]["mtu"], 1500, "{ver}");
        }
        let ips = r["ips"].as_array().unwrap();
        let mut got: Vec<String> = ips
            .iter()
            .map(|i| i["address"].as_str().unwrap().to_string())
            .collect();
        got.sort();
        assert_eq!(got, addrs, "{ver}: result vs eth0");
        let with_version = !corral_cni::version::at_least(ver, "1.0.0");
        for ip in ips {
            assert_eq!(ip["interface"], 2, "{ver}: {ip}");
            assert_eq!(ip.get("version").is_some(), with_version, "{ver}: {ip}");
            let gw = if ip["address"].as_str().unwrap().contains(':') {
                GW6
            } else {
                GW4
            };
            assert_eq!(ip["gateway"], gw, "{ver}: {ip}");
        }
        assert_eq!(
            r["routes"],
            json!([{ "dst": "0.0.0.0/0", "gw": GW4 }, { "dst": "::/0", "gw": GW6 }]),
            "{ver}"
        );
    }
}

#[test]
fn check_passes_on_a_fresh_attachment_for_every_version_that_has_check() {
    let node = Node::new();
    for ver in VERSIONS {
        let ctr = Ctr::new();
        let conf = conf::bridge(
            &node,
            ver,
            &[V4, V6],
            json!({ "isDefaultGateway": true, "ipMasq": true, "macspoofchk": true }),
        );
        let r = node.add(&ctr, &conf);
        let out = node.bridge("CHECK", &ctr, &conf::with_prev(&conf, &r));
        if corral_cni::version::at_least(ver, "0.4.0") {
            out.ok();
        } else {
            out.err(1, "");
        }
        assert_eq!(
            ctr.addrs().len(),
            2,
            "{ver}: CHECK must not change the attachment"
        );
    }
    assert_eq!(check_versions().count(), 3);
}

// ------------------------------------------------------------------------------------------- each key

#[test]
fn bridge_key_names_the_bridge_the_port_joins() {
    let node = Node::new();
    let ctr = Ctr::new();
    let r = node.add(
        &ctr,
        &conf::bridge(&node, "1.0.0", &[V4], json!({ "bridge": "brtest" })),
    );
    let br = node.link("brtest");
    assert_eq!(br["linkinfo"]["info_kind"], "bridge");
    assert_eq!(node.link(&only_veth(&node))["master"], "brtest");
    assert_eq!(r["interfaces"][0]["name"], "brtest");
    assert!(!node.ns.has_link("cni0") && !node.ns.has_link("br0"));
}

#[test]
fn bridge_defaults_to_cni0() {
    let node = Node::new();
    let ctr = Ctr::new();
    let r = node.add(
        &ctr,
        &conf::bridge(&node, "1.0.0", &[V4], json!({ "bridge": null })),
    );
    assert_eq!(node.link("cni0")["linkinfo"]["info_kind"], "bridge");
    assert_eq!(node.link(&only_veth(&node))["master"], "cni0");
    assert_eq!(r["interfaces"][0]["name"], "cni0");
}

#[test]
fn is_gateway_puts_the_gateway_on_the_bridge_and_enables_forwarding() {
    let node = Node::new();
    assert_eq!(
        node.sysctl("net/ipv4/ip_forward"),
        "0",
        "fresh node forwards already"
    );
    let ctr = Ctr::new();
    let r = node.add(
        &ctr,
        &conf::bridge(&node, "1.0.0", &[V4], json!({ "isGateway": true })),
    );
    assert_eq!(node.ns.global_addrs("br0"), vec![format!("{GW4}/24")]);
    assert_eq!(node.sysctl("net/ipv4/ip_forward"), "1");
    assert_eq!(r["ips"][0]["gateway"], GW4);
    assert!(r.get("routes").is_none(), "isGateway alone adds no route: {r}");
    let routes = ctr.ns.routes();
    assert!(!routes.iter().any(|r| r.starts_with("default")), "{routes:?}");
    assert!(ctr.ns.ping(GW4), "container cannot ping its gateway");
}

#[test]
fn without_is_gateway_the_bridge_has_no_address_and_forwarding_stays_off() {
    let node = Node::new();
    let ctr = Ctr::new();
    node.add(&ctr, &conf::bridge(&node, "1.0.0", &[V4], json!({})));
    assert!(node.ns.global_addrs("br0").is_empty());
    assert_eq!(node.sysctl("net/ipv4/ip_forward"), "0");
    assert_eq!(ctr.addrs(), vec!["10.10.0.2/24".to_string()]);
}

#[test]
fn is_default_gateway_routes_everything_via_the_bridge_in_both_families() {
    let node = Node::new();
    let ctr = Ctr::new();
    let r = node.add(
        &ctr,
        &conf::bridge(&node, "1.0.0", &[V4, V6], json!({ "isDefaultGateway": true })),
    );
    let routes = ctr.ns.routes();
    assert!(
        routes.contains(&format!("default via {GW4} dev eth0")),
        "{routes:?}"
    );
    assert!(
        routes.contains(&format!("default via {GW6} dev eth0")),
        "{routes:?}"
    );
    let mut br = node.ns.global_addrs("br0");
    br.sort();
    assert_eq!(br, vec![format!("{GW4}/24"), format!("{GW6}/64")]);
    assert_eq!(node.sysctl("net/ipv4/ip_forward"), "1");
    assert_eq!(node.sysctl("net/ipv6/conf/all/forwarding"), "1");
    assert_eq!(r["routes"].as_array().unwrap().len(), 2, "{r}");
    // The node's own address (on its lo) is reachable only through the default route.
    node.ns.ip(&["addr", "add", "172.30.0.1/32", "dev", "lo"]);
    assert!(
        ctr.ns.ping("172.30.0.1"),
        "container cannot reach the node via its default route"
    );
    assert!(ctr.ns.ping_within(GW6, 5), "ping6 to the gateway failed");
}

#[test]
fn a_conflicting_bridge_address_fails_without_force_address_and_is_replaced_with_it() {
    let node = Node::new();
    node.ns.ip(&["link", "add", "br0", "type", "bridge"]);
    node.ns.ip(&["addr", "add", "10.99.0.1/24", "dev", "br0"]);
    let ctr = Ctr::new();
    let conf = conf::bridge(&node, "1.0.0", &[V4], json!({ "isGateway": true }));
    let msg = node.bridge("ADD", &ctr, &conf).err(7, "10.99.0.1/24");
    assert!(msg.contains("forceAddress"), "{msg}");
    node.assert_empty(NET, "failed ADD (address conflict)");
    assert!(!ctr.ns.has_link("eth0"));
    assert_eq!(node.ns.global_addrs("br0"), vec!["10.99.0.1/24".to_string()]);

    let conf = conf::bridge(
        &node,
        "1.0.0",
        &[V4],
        json!({ "isGateway": true, "forceAddress": true }),
    );
    node.add(&ctr, &conf);
    assert_eq!(node.ns.global_addrs("br0"), vec![format!("{GW4}/24")]);
    assert!(ctr.ns.ping(GW4));
}

/// A third namespace, "outside", linked to the node as 192.168.200.2 with no route back to the containers.
fn outside(node: &Node) -> Netns {
    let out = Netns::new("cro");
    node.ns.ip(&[
        "link", "add", "vout", "type", "veth", "peer", "name", "eth0", "netns", &out.name,
    ]);
    node.ns.ip(&["addr", "add", "192.168.200.1/24", "dev", "vout"]);
    node.ns.ip(&["link", "set", "vout", "up"]);
    out.ip(&["addr", "add", "192.168.200.2/24", "dev", "eth0"]);
    out.ip(&["link", "set", "eth0", "up"]);
    out
}

#[test]
fn ip_masq_gives_traffic_leaving_the_subnet_the_node_address() {
    let node = Node::new();
    let out = outside(&node);
    let masq = conf::bridge(
        &node,
        "1.1.0",
        &[V4],
        json!({ "isDefaultGateway": true, "ipMasq": true }),
    );
    let (a, b, plain) = (Ctr::new(), Ctr::new(), Ctr::new());
    node.add(&a, &masq);
    node.add(&b, &masq);
    node.add(&plain, &conf::merge(masq.clone(), json!({ "ipMasq": false })));
    let (a_ip, b_ip) = (ip_of(&a, true), ip_of(&b, true));
    let mut want = vec![a_ip.clone(), b_ip.clone()];
    want.sort();
    assert_eq!(node.elements("inet", "masq_src4"), want);
    assert!(node
        .elements("inet", "masq_skip4")
        .contains(&format!("{a_ip} . 10.10.0.0/24")));
    assert_eq!(node.nat_records(NET).len(), 2);

    let l = out.listen_tcp(8080);
    assert!(
        a.ns.tcp_send("192.168.200.2", 8080, "hello"),
        "connect from a masqueraded container failed"
    );
    let (peer, data) = l.finish();
    assert_eq!(peer, "192.168.200.1", "outside saw the container's own address");
    assert_eq!(data, "hello");

    // Inside the subnet the source is kept.
    let l = b.ns.listen_tcp(8081);
    assert!(a.ns.tcp_send(&b_ip, 8081, "hi"));
    assert_eq!(l.finish().0, a_ip, "traffic inside the subnet was masqueraded");

    // Without ipMasq the outside cannot answer: there is no route back.
    let _l = out.listen_tcp(8082);
    assert!(
        !plain.ns.tcp_send("192.168.200.2", 8082, "x"),
        "unmasqueraded connect worked"
    );
}

#[test]
fn mtu_applies_to_the_new_bridge_and_both_veth_ends() {
    let node = Node::new();
    let ctr = Ctr::new();
    let r = node.add(
        &ctr,
        &conf::bridge(&node, "1.1.0", &[V4], json!({ "mtu": 1400, "isGateway": true })),
    );
    assert_eq!(node.link("br0")["mtu"], 1400);
    assert_eq!(node.link(&only_veth(&node))["mtu"], 1400);
    assert_eq!(ctr.ns.link("eth0")["mtu"], 1400);
    assert_eq!(r["interfaces"][2]["mtu"], 1400, "{r}");
    let big = ctr
        .ns
        .exec(&["ping", "-c1", "-W1", "-M", "do", "-s", "1372", GW4]);
    assert!(big.status.success(), "a 1400-byte packet did not pass");
}

#[test]
fn hairpin_mode_turns_hairpin_on_for_the_host_port() {
    let node = Node::new();
    let (a, b) = (Ctr::new(), Ctr::new());
    node.add(
        &a,
        &conf::bridge(&node, "1.0.0", &[V4], json!({ "hairpinMode": true })),
    );
    let hairpin = only_veth(&node);
    node.add(&b, &conf::bridge(&node, "1.0.0", &[V4], json!({})));
    for v in veths(&node.ns) {
        let on = node.link(&v)["linkinfo"]["info_slave_data"]["hairpin"]
            .as_bool()
            .unwrap();
        assert_eq!(on, v == hairpin, "hairpin of {v}");
    }
}

#[test]
fn promisc_mode_makes_the_bridge_promiscuous() {
    let node = Node::new();
    let ctr = Ctr::new();
    node.add(
        &ctr,
        &conf::bridge(&node, "1.0.0", &[V4], json!({ "promiscMode": true })),
    );
    let br = node.link("br0");
    assert!(
        br["flags"].as_array().unwrap().iter().any(|f| f == "PROMISC"),
        "{br}"
    );
    let other = Node::new();
    other.add(&Ctr::new(), &conf::bridge(&other, "1.0.0", &[V4], json!({})));
    let br = other.link("br0");
    assert!(
        !br["flags"].as_array().unwrap().iter().any(|f| f == "PROMISC"),
        "{br}"
    );
}

#[test]
fn vlan_and_vlan_trunk_fail_cleanly_without_kernel_vlan_filtering() {
    let node = Node::new();
    // Establish the premise: this kernel cannot filter VLANs on a bridge.
    let probe = node.ns.exec(&[
        "ip",
        "link",
        "add",
        "vfprobe",
        "type",
        "bridge",
        "vlan_filtering",
        "1",
    ]);
    assert!(
        !probe.status.success(),
        "this kernel supports bridge VLAN filtering: the test expects it not to (rewrite it to check PVIDs)"
    );
    for extra in [
        json!({ "vlan": 100, "ipMasq": true, "macspoofchk": true }),
        json!({ "vlanTrunk": [{ "id": 5 }, { "minID": 10, "maxID": 12 }], "ipMasq": true }),
        json!({ "vlan": 100, "preserveDefaultVlan": true, "ipMasq": true }),
    ] {
        let ctr = Ctr::new();
        let conf = conf::bridge(&node, "1.1.0", &[V4], extra.clone());
        let out = node.bridge("ADD", &ctr, &conf);
        assert_ne!(out.status, 0, "{extra}: ADD succeeded");
        let msg = out.json["msg"].as_str().unwrap_or_default().to_string();
        assert!(
            msg.contains("VLAN filtering") && msg.contains("br0") && msg.contains("vlan"),
            "{extra}: unclear error {}",
            out.json
        );
        assert_eq!(out.json["cniVersion"], "1.1.0", "{}", out.json);
        node.assert_empty(NET, &format!("failed ADD with {extra}"));
        assert!(!ctr.ns.has_link("eth0"), "{extra}: eth0 left in the container");
    }
}

#[test]
fn preserve_default_vlan_is_accepted_without_vlans() {
    let node = Node::new();
    let ctr = Ctr::new();
    node.add(
        &ctr,
        &conf::bridge(
            &node,
            "1.0.0",
            &[V4],
            json!({ "preserveDefaultVlan": true, "isGateway": true }),
        ),
    );
    assert!(ctr.ns.ping(GW4));
}

#[test]
fn macspoofchk_drops_frames_once_the_container_changes_its_mac() {
    let node = Node::new();
    let conf = conf::bridge(
        &node,
        "1.0.0",
        &[V4],
        json!({ "isGateway": true, "macspoofchk": true }),
    );
    let a = Ctr::new();
    let r = node.add(&a, &conf);
    let veth = r["interfaces"][1]["name"].as_str().unwrap().to_string();
    let mac = a.mac();
    assert_eq!(
        node.elements("bridge", "spoof_allowed"),
        vec![format!("{veth} . {mac}")]
    );
    assert_eq!(node.elements("bridge", "spoof_ports"), vec![veth.clone()]);
    let b = Ctr::new();
    node.add(&b, &conf);
    let b_ip = ip_of(&b, true);
    assert!(
        a.ns.ping(&b_ip) && a.ns.ping(GW4),
        "no connectivity before the MAC change"
    );

    a.ns.ip(&["link", "set", "eth0", "address", "02:42:de:ad:be:ef"]);
    assert!(
        a.ns.ping_fails(&b_ip),
        "spoofed frames reached the other container"
    );
    assert!(a.ns.ping_fails(GW4), "spoofed frames reached the gateway");

    a.ns.ip(&["link", "set", "eth0", "address", &mac]);
    assert!(
        a.ns.ping_within(&b_ip, 3),
        "no connectivity after restoring the MAC"
    );
}

#[test]
fn enabledad_turns_dad_on_in_the_container_and_it_is_off_otherwise() {
    let node = Node::new();
    for (enabled, want) in [(true, "1"), (false, "0")] {
        let ctr = Ctr::new();
        node.add(
            &ctr,
            &conf::bridge(&node, "1.0.0", &[V4, V6], json!({ "enabledad": enabled })),
        );
        for key in ["accept_dad", "enhanced_dad"] {
            assert_eq!(
                ctr.ns.sysctl(&format!("net/ipv6/conf/eth0/{key}")),
                want,
                "enabledad={enabled}: {key}"
            );
        }
    }
}

#[test]
fn disable_container_interface_leaves_eth0_down_on_the_bridge() {
    let node = Node::new();
    let ctr = Ctr::new();
    let r = node.add(
        &ctr,
        &conf::bridge(
            &node,
            "1.0.0",
            &[],
            json!({ "ipam": null, "disableContainerInterface": true }),
        ),
    );
    assert!(ctr.ns.has_link("eth0"));
    assert!(!ctr.ns.is_up("eth0"), "eth0 is up");
    assert_eq!(node.link(&only_veth(&node))["master"], "br0");
    assert!(r.get("ips").is_none(), "{r}");
    assert_eq!(r["interfaces"][2]["name"], "eth0");
}

#[test]
fn port_isolation_isolates_containers_from_each_other_but_not_from_the_gateway() {
    let node = Node::new();
    let iso = conf::bridge(
        &node,
        "1.0.0",
        &[V4],
        json!({ "isGateway": true, "portIsolation": true }),
    );
    let (a, b, open) = (Ctr::new(), Ctr::new(), Ctr::new());
    node.add(&a, &iso);
    node.add(&b, &iso);
    let isolated = veths(&node.ns);
    node.add(
        &open,
        &conf::merge(iso.clone(), json!({ "portIsolation": false })),
    );
    for v in veths(&node.ns) {
        let on = node.link(&v)["linkinfo"]["info_slave_data"]["isolated"]
            .as_bool()
            .unwrap();
        assert_eq!(on, isolated.contains(&v), "isolated flag of {v}");
    }
    assert!(a.ns.ping(GW4), "isolated container cannot reach the gateway");
    assert!(
        a.ns.ping(&ip_of(&open, true)),
        "isolated container cannot reach a non-isolated one"
    );
    assert!(
        a.ns.ping_fails(&ip_of(&b, true)),
        "two isolated containers reached each other"
    );
}

#[test]
fn mac_comes_from_runtime_config_args_or_cni_args_in_that_order() {
    let node = Node::new();
    let base = conf::bridge(&node, "1.0.0", &[V4], json!({}));
    let rc = json!({ "runtimeConfig": { "mac": "02:00:00:00:aa:01" } });
    let args = json!({ "args": { "cni": { "mac": "02:00:00:00:aa:02" } } });
    let cni_args = "IgnoreUnknown=1;MAC=02:00:00:00:aa:03";
    for (what, extra, env, want) in [
        ("runtimeConfig", rc.clone(), "", "02:00:00:00:aa:01"),
        ("args.cni", args.clone(), "", "02:00:00:00:aa:02"),
        ("CNI_ARGS", json!({}), cni_args, "02:00:00:00:aa:03"),
        (
            "runtimeConfig over CNI_ARGS",
            rc.clone(),
            cni_args,
            "02:00:00:00:aa:01",
        ),
        (
            "args.cni over CNI_ARGS",
            args.clone(),
            cni_args,
            "02:00:00:00:aa:02",
        ),
    ] {
        let ctr = Ctr::new();
        let conf = conf::merge(base.clone(), extra);
        let r = node.call("bridge", "ADD", &ctr, &conf, &[("CNI_ARGS", env)]).ok();
        assert_eq!(ctr.mac(), want, "{what}: eth0 MAC");
        assert_eq!(r["interfaces"][2]["mac"], want, "{what}: result");
    }
}

#[test]
fn config_dns_replaces_ipam_dns_in_the_result_of_every_version() {
    let node = Node::new();
    let resolv = node.state.join("resolv.conf");
    std::fs::write(&resolv, "nameserver 9.9.9.9\nsearch ipam.example\n").unwrap();
    let ipam = json!({
        "type": "host-local", "dataDir": node.data_dir(), "resolvConf": resolv,
        "ranges": [[{ "subnet": V4 }]],
    });
    let mine = json!({ "nameservers": [GW4], "search": ["cfg.example"], "options": ["ndots:2"] });
    for ver in VERSIONS {
        let ctr = Ctr::new();
        let plain = conf::bridge(&node, ver, &[], json!({ "ipam": ipam }));
        let r = node.add(&ctr, &plain);
        assert_eq!(
            str_list(&r["dns"]["nameservers"]),
            vec!["9.9.9.9"],
            "{ver}: IPAM's dns: {r}"
        );
        assert_eq!(ctr.addrs().len(), 1, "{ver}");
        let ctr = Ctr::new();
        let r = node.add(&ctr, &conf::merge(plain, json!({ "dns": mine })));
        assert_eq!(r["dns"], mine, "{ver}: config dns must win: {r}");
        assert_eq!(ctr.addrs().len(), 1, "{ver}");
    }
}

#[test]
fn dual_stack_gives_an_address_of_each_family_and_ipv6_reaches_the_gateway() {
    let node = Node::new();
    let (a, b) = (Ctr::new(), Ctr::new());
    let conf = conf::bridge(&node, "1.1.0", &[V4, V6], json!({ "isGateway": true }));
    node.add(&a, &conf);
    node.add(&b, &conf);
    assert_eq!(
        a.addrs(),
        vec!["10.10.0.2/24".to_string(), "fd10::2/64".to_string()]
    );
    assert_eq!(
        b.addrs(),
        vec!["10.10.0.3/24".to_string(), "fd10::3/64".to_string()]
    );
    assert!(a.ns.ping_within("fd10::3", 5), "ping6 container to container");
    assert!(a.ns.ping_within(GW6, 5), "ping6 to the gateway");
    assert!(a.ns.ping(GW4), "ping to the v4 gateway");
}

#[test]
fn containers_reach_each_other_the_gateway_and_the_node() {
    let node = Node::new();
    node.ns.ip(&["addr", "add", "172.30.0.1/32", "dev", "lo"]);
    let (a, b) = (Ctr::new(), Ctr::new());
    let conf = conf::bridge(&node, "1.0.0", &[V4], json!({ "isDefaultGateway": true }));
    node.add(&a, &conf);
    node.add(&b, &conf);
    let (a_ip, b_ip) = (ip_of(&a, true), ip_of(&b, true));
    assert!(a.ns.ping(&b_ip), "a -> b");
    assert!(b.ns.ping(&a_ip), "b -> a");
    assert!(a.ns.ping(GW4), "a -> gateway");
    assert!(a.ns.ping("172.30.0.1"), "a -> node");
    assert!(node.ns.ping(&a_ip), "node -> a");
    let l = b.ns.listen_tcp(9000);
    assert!(a.ns.tcp_send(&b_ip, 9000, "tcp works"));
    assert_eq!(l.finish(), (a_ip, "tcp works".to_string()));
}

// ---------------------------------------------------------------------------------------------- CHECK

/// ADDs a dual-stack, masqueraded, spoof-checked attachment, checks CHECK passes, applies `tamper`, and
/// returns the CHECK error message (asserting code 101 and `needle`).
fn check_after(tamper: impl Fn(&Node, &Ctr, &Value), needle: impl Fn(&Value) -> String) -> String {
    let node = Node::new();
    let ctr = Ctr::new();
    let conf = conf::bridge(
        &node,
        "1.1.0",
        &[V4, V6],
        json!({ "isDefaultGateway": true, "ipMasq": true, "macspoofchk": true }),
    );
    let r = node.add(&ctr, &conf);
    let check = conf::with_prev(&conf, &r);
    node.bridge("CHECK", &ctr, &check).ok();
    tamper(&node, &ctr, &r);
    node.bridge("CHECK", &ctr, &check).err(101, &needle(&r))
}

#[test]
fn check_fails_naming_the_address_when_it_is_deleted() {
    check_after(
        |_, ctr, _| {
            ctr.ns.ip(&["addr", "del", "10.10.0.2/24", "dev", "eth0"]);
        },
        |_| "10.10.0.2/24".into(),
    );
}

#[test]
fn check_fails_naming_the_route_when_it_is_deleted() {
    check_after(
        |_, ctr, _| {
            ctr.ns.ip(&["-6", "route", "del", "default"]);
        },
        |_| "::/0".into(),
    );
}

#[test]
fn check_fails_when_the_host_veth_is_deleted() {
    // Deleting one end of a veth deletes the pair, so CHECK finds the container side missing.
    check_after(
        |node, _, r| {
            node.ns
                .ip(&["link", "del", r["interfaces"][1]["name"].as_str().unwrap()]);
        },
        |_| "\"eth0\" is missing".into(),
    );
}

#[test]
fn check_fails_naming_the_host_veth_when_it_leaves_the_bridge() {
    check_after(
        |node, _, r| {
            node.ns.ip(&[
                "link",
                "set",
                r["interfaces"][1]["name"].as_str().unwrap(),
                "nomaster",
            ]);
        },
        |r| r["interfaces"][1]["name"].as_str().unwrap().to_string(),
    );
}

#[test]
fn check_fails_naming_the_element_when_a_masquerade_element_is_deleted() {
    check_after(
        |node, _, _| {
            node.ns.run(&[
                "nft",
                "delete",
                "element",
                "inet",
                "corral",
                "masq_src4",
                "{ 10.10.0.2 }",
            ]);
        },
        |_| "10.10.0.2".into(),
    );
}

#[test]
fn check_fails_naming_the_element_when_a_spoof_check_element_is_deleted() {
    check_after(
        |node, _, r| {
            let veth = r["interfaces"][1]["name"].as_str().unwrap();
            node.ns.run(&[
                "nft",
                "delete",
                "element",
                "bridge",
                "corral",
                "spoof_ports",
                &format!("{{ {veth} }}"),
            ]);
        },
        |_| "spoof_ports".into(),
    );
}

#[test]
fn check_fails_naming_the_address_when_its_reservation_is_gone() {
    check_after(
        |node, _, _| {
            std::fs::remove_file(node.state.join("ipam").join(NET).join("10.10.0.2")).unwrap();
        },
        |_| "10.10.0.2".into(),
    );
}

#[test]
fn check_fails_when_the_container_mac_changes() {
    check_after(
        |_, ctr, _| {
            ctr.ns
                .ip(&["link", "set", "eth0", "address", "02:42:de:ad:be:ef"]);
        },
        |_| "MAC".into(),
    );
}

// ------------------------------------------------------------------------------------------------ DEL

fn full_conf(node: &Node) -> Value {
    conf::bridge(
        node,
        "1.1.0",
        &[V4, V6],
        json!({ "isDefaultGateway": true, "ipMasq": true, "macspoofchk": true }),
    )
}

#[test]
fn del_removes_the_veth_the_addresses_and_the_nat_elements() {
    let node = Node::new();
    let ctr = Ctr::new();
    let conf = full_conf(&node);
    let r = node.add(&ctr, &conf);
    let s = node.snapshot(NET);
    assert_eq!(s.veths.len(), 1);
    assert_eq!(s.reserved, vec!["10.10.0.2".to_string(), "fd10::2".to_string()]);
    assert_eq!(s.nat_records.len(), 1);
    assert_eq!(s.elements.len(), 6, "{s:#?}");
    node.bridge("DEL", &ctr, &conf::with_prev(&conf, &r)).ok();
    node.assert_empty(NET, "after DEL");
    assert!(!ctr.ns.has_link("eth0"));
    assert!(node.ns.has_link("br0"), "the bridge is never deleted");
}

#[test]
fn del_succeeds_when_netns_is_gone_and_still_releases_ip_and_nat() {
    let node = Node::new();
    let ctr = Ctr::new();
    let conf = full_conf(&node);
    node.add(&ctr, &conf);
    sh("ip", &["netns", "del", &ctr.ns.name]);
    assert!(
        wait_until(5, || veths(&node.ns).is_empty()),
        "the veth pair did not die with the netns"
    );
    assert_eq!(node.reserved_ips(NET).len(), 2);
    node.bridge("DEL", &ctr, &conf).ok();
    node.assert_empty(NET, "DEL after the netns was deleted");
    // And with CNI_NETNS empty, as runtimes pass it for a dead container.
    let ctr2 = Ctr::new();
    node.add(&ctr2, &conf);
    sh("ip", &["netns", "del", &ctr2.ns.name]);
    assert!(wait_until(5, || veths(&node.ns).is_empty()));
    node.call("bridge", "DEL", &ctr2, &conf, &[("CNI_NETNS", "")])
        .ok();
    node.assert_empty(NET, "DEL with empty CNI_NETNS");
}

#[test]
fn del_twice_succeeds() {
    let node = Node::new();
    let ctr = Ctr::new();
    let conf = full_conf(&node);
    node.add(&ctr, &conf);
    node.bridge("DEL", &ctr, &conf).ok();
    node.bridge("DEL", &ctr, &conf).ok();
    node.assert_empty(NET, "after two DELs");
    assert!(!ctr.ns.has_link("eth0"));
}

#[test]
fn del_of_an_unknown_attachment_succeeds_and_touches_nothing_else() {
    let node = Node::new();
    let (ctr, stranger) = (Ctr::new(), Ctr::new());
    let conf = full_conf(&node);
    node.add(&ctr, &conf);
    let before = node.snapshot(NET);
    node.bridge("DEL", &stranger, &conf).ok();
    assert_eq!(node.snapshot(NET), before);
    assert!(ctr.ns.ping(GW4));
}

#[test]
fn del_in_the_plugins_own_netns_never_deletes_a_node_interface() {
    // A reused /proc/<pid>/ns/net can name the host (reference plugins#714).
    let node = Node::new();
    node.ns
        .ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "eth0peer"]);
    let ctr = Ctr::new();
    let conf = full_conf(&node);
    node.add(&ctr, &conf);
    let own = node.ns.path();
    node.call("bridge", "DEL", &ctr, &conf, &[("CNI_NETNS", &own)])
        .ok();
    assert!(node.ns.has_link("eth0"), "DEL deleted the node's own eth0");
    assert!(node.reserved_ips(NET).is_empty(), "the IP was not released");
    assert!(node.nat_records(NET).is_empty(), "the NAT record was not removed");
    node.bridge("DEL", &ctr, &conf).ok();
    node.assert_empty(NET, "after the real DEL");
}
