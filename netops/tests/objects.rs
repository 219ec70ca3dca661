//! Root tests for single kernel objects in throwaway namespaces: link setters, move between namespaces,
//! addresses and routes of both families, sysctls through `run_in_netns`, netns identity.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::TestNetns;
use corral_netops::{
    current_netns, open_netns, read_sysctl, run_in_netns, same_netns, write_sysctl, IpFamily, Netlink,
    NetopsError, RouteSpec, MAIN_TABLE, SCOPE_LINK,
};

/// A veth pair v0/v1 inside `ns` (no dummy driver on every kernel), v0 up; returns v0's index.
fn pair(ns: &TestNetns, nl: &Netlink) -> u32 {
    ns.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
    let v0 = nl.link_by_name("v0").unwrap().unwrap();
    nl.set_link_up(v0.index).unwrap();
    v0.index
}

#[test]
fn link_setters_change_what_the_kernel_reports() {
    let ns = TestNetns::new("set");
    let nl = Netlink::in_netns(&ns.file).unwrap();
    let idx = pair(&ns, &nl);
    let mac = [0x02, 0, 0, 0xab, 0xcd, 0xef];
    nl.set_mtu(idx, 1280).unwrap();
    nl.set_mac(idx, mac).unwrap();
    nl.set_promisc(idx, true).unwrap();
    nl.set_alias(idx, "ctr-1/eth0").unwrap();
    let l = nl.link_by_index(idx).unwrap().unwrap();
    assert_eq!(
        (l.mtu, l.mac, l.promisc, l.alias.as_deref()),
        (1280, Some(mac), true, Some("ctr-1/eth0"))
    );
    assert!(l.up);
    assert_eq!(ns.link_json("v0")["ifalias"], "ctr-1/eth0");

    nl.set_promisc(idx, false).unwrap();
    nl.set_link_down(idx).unwrap();
    nl.rename_link(idx, "renamed0").unwrap();
    let l = nl.link_by_name("renamed0").unwrap().unwrap();
    assert_eq!(l.index, idx);
    assert!(!l.up && !l.promisc);
    assert!(nl.link_by_name("v0").unwrap().is_none());

    let br = nl.ensure_bridge("br9", None, false).unwrap();
    nl.set_master(idx, Some(br.index)).unwrap();
    assert_eq!(nl.link_by_index(idx).unwrap().unwrap().master, Some(br.index));
    nl.set_master(idx, None).unwrap();
    assert_eq!(nl.link_by_index(idx).unwrap().unwrap().master, None);

    assert!(nl.links().unwrap().iter().any(|l| l.name == "renamed0"));
    assert!(nl.delete_link_by_index(idx).unwrap());
    assert!(!nl.delete_link_by_index(idx).unwrap());
    assert!(nl.link_by_index(idx).unwrap().is_none());
    assert!(!nl.delete_link("v1").unwrap(), "peer went with its pair");
}

#[test]
fn errors_name_the_object_and_flag_absence() {
    let ns = TestNetns::new("err");
    let nl = Netlink::in_netns(&ns.file).unwrap();
    let err = nl.set_mtu(4242, 1500).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains("link #4242"), "{err}");
    let idx = pair(&ns, &nl);
    let err = nl.set_mtu(idx, 10).unwrap_err();
    assert!(!err.is_not_found() && err.errno().is_some(), "{err}");
    assert!(matches!(
        nl.link_by_name("bad name"),
        Err(NetopsError::Invalid { .. })
    ));
}

#[test]
fn link_moves_to_another_netns() {
    let a = TestNetns::new("mva");
    let b = TestNetns::new("mvb");
    let nla = Netlink::in_netns(&a.file).unwrap();
    let nlb = Netlink::in_netns(&b.file).unwrap();
    let idx = pair(&a, &nla);
    nla.move_link_to_netns(idx, &b.file).unwrap();
    assert!(nla.link_by_name("v0").unwrap().is_none());
    let moved = nlb.link_by_name("v0").unwrap().expect("v0 is in the other netns");
    assert!(!moved.up, "a moved link comes up down");
}

#[test]
fn addresses_of_both_families_are_idempotent() {
    let ns = TestNetns::new("addr");
    let nl = Netlink::in_netns(&ns.file).unwrap();
    let idx = pair(&ns, &nl);
    let v4: ipnet::IpNet = "10.77.0.5/16".parse().unwrap();
    let v6: ipnet::IpNet = "fd77::5/64".parse().unwrap();
    for net in [v4, v6] {
        nl.add_address(idx, net).unwrap();
        nl.add_address(idx, net).unwrap();
    }
    let got = nl.addresses(idx).unwrap();
    assert!(got.contains(&v4) && got.contains(&v6), "{got:?}");
    let out = ns.ip(&["-j", "addr", "show", "dev", "v0"]);
    assert!(out.contains("10.77.0.5") && out.contains("fd77::5"), "{out}");
    for net in [v4, v6] {
        nl.delete_address(idx, net).unwrap();
        nl.delete_address(idx, net).unwrap();
    }
    let got = nl.addresses(idx).unwrap();
    assert!(!got.contains(&v4) && !got.contains(&v6), "{got:?}");
}

#[test]
fn routes_with_every_field_are_added_listed_and_deleted() {
    let ns = TestNetns::new("route");
    let nl = Netlink::in_netns(&ns.file).unwrap();
    run_in_netns(&ns.file, || write_sysctl("net.ipv6.conf.default.accept_dad", "0"))
        .unwrap()
        .unwrap();
    let idx = pair(&ns, &nl);
    nl.add_address(idx, "10.66.0.1/24".parse().unwrap()).unwrap();
    nl.add_address(idx, "fd66::1/64".parse().unwrap()).unwrap();

    let v4 = RouteSpec {
        dst: "10.200.0.0/16".parse().unwrap(),
        gateway: Some("10.66.0.254".parse().unwrap()),
        oif: Some(idx),
        mtu: Some(1300),
        advmss: Some(1260),
        priority: Some(50),
        table: Some(100),
        scope: Some(0),
    };
    let v6 = RouteSpec {
        gateway: Some("fd66::fe".parse().unwrap()),
        oif: Some(idx),
        priority: Some(1024),
        table: Some(MAIN_TABLE),
        scope: Some(0),
        ..RouteSpec::to("fd01::/64".parse().unwrap())
    };
    let onlink = RouteSpec {
        oif: Some(idx),
        scope: Some(SCOPE_LINK),
        table: Some(MAIN_TABLE),
        ..RouteSpec::to("10.201.0.0/24".parse().unwrap())
    };
    for r in [&v4, &v6, &onlink] {
        nl.add_route(r).unwrap();
        nl.add_route(r).unwrap();
    }
    let routes4 = nl.routes(IpFamily::V4).unwrap();
    assert!(routes4.contains(&v4), "{routes4:#?}");
    assert!(routes4.contains(&onlink), "{routes4:#?}");
    let routes6 = nl.routes(IpFamily::V6).unwrap();
    assert!(routes6.contains(&v6), "{routes6:#?}");
    let shown = ns.ip(&["-j", "route", "show", "table", "100"]);
    assert!(
        shown.contains("10.200.0.0/16") && shown.contains("\"metric\":50"),
        "{shown}"
    );

    for r in [&v4, &v6, &onlink] {
        nl.delete_route(r).unwrap();
        nl.delete_route(r).unwrap();
    }
    assert!(!nl.routes(IpFamily::V4).unwrap().contains(&v4));
    assert!(!nl.routes(IpFamily::V6).unwrap().contains(&v6));
}

#[test]
fn sysctls_follow_the_netns_thread() {
    let ns = TestNetns::new("sysctl");
    let nl = Netlink::in_netns(&ns.file).unwrap();
    pair(&ns, &nl);
    // v0 exists only in the test netns, so these keys exist only there.
    run_in_netns(&ns.file, || write_sysctl("net/ipv4/conf/v0/forwarding", "1"))
        .unwrap()
        .unwrap();
    let v = run_in_netns(&ns.file, || read_sysctl("net.ipv4.conf.v0.forwarding"))
        .unwrap()
        .unwrap();
    assert_eq!(v, "1");
    let here = read_sysctl("net.ipv4.conf.v0.forwarding").unwrap_err();
    assert!(
        here.is_not_found(),
        "the test process's own netns has no v0: {here}"
    );
    let ip = common::run(
        "ip",
        &[
            "netns",
            "exec",
            &ns.name,
            "sysctl",
            "-n",
            "net.ipv4.conf.v0.forwarding",
        ],
    );
    assert_eq!(ip.trim(), "1");
}

#[test]
fn netns_identity_and_disappearance() {
    let a = TestNetns::new("ida");
    let b = TestNetns::new("idb");
    let a2 = open_netns(format!("/run/netns/{}", a.name)).unwrap();
    assert!(same_netns(&a.file, &a2).unwrap());
    assert!(!same_netns(&a.file, &b.file).unwrap());
    let me = current_netns().unwrap();
    assert!(!same_netns(&me, &a.file).unwrap());
    let inside = run_in_netns(&a.file, || current_netns().map(|f| same_netns(&f, &a2))).unwrap();
    assert!(inside.unwrap().unwrap(), "the worker thread is inside the netns");
    assert!(
        same_netns(&me, &current_netns().unwrap()).unwrap(),
        "the caller's thread never moved"
    );
    let _ = Netlink::in_netns(&b.file).unwrap();
    assert!(
        same_netns(&me, &current_netns().unwrap()).unwrap(),
        "in_netns returns the thread home"
    );

    let err = run_in_netns(&a.file, || -> u8 { panic!("boom") }).unwrap_err();
    assert!(matches!(err, NetopsError::ThreadPanicked));

    let path = format!("/run/netns/{}", b.name);
    drop(b);
    let err = open_netns(&path).unwrap_err();
    assert!(err.is_not_found(), "{err}");
}
