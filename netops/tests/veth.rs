//! Root test: the bridge-plugin path end to end inside throwaway namespaces (a "node" netns playing the host
//! and a container netns): bridge, veth with the peer created in the container, addresses, routes,
//! sysctls, a TCP connection through the bridge, and idempotent deletion.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::TestNetns;
use corral_netops::{
    random_veth_name, read_sysctl, run_in_netns, write_sysctl, IpFamily, Netlink, NetopsError, RouteSpec,
    VethPlan,
};

const PEER_MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x11, 0x00, 0x02];

#[test]
fn veth_into_container_reaches_gateway_and_deletes_twice() {
    let node = TestNetns::new("node");
    let ctr = TestNetns::new("ctr");
    let host_nl = Netlink::in_netns(&node.file).unwrap();

    let br = host_nl.ensure_bridge("cbr0", Some(1400), false).unwrap();
    assert!(br.is_bridge() && br.up, "{br:?}");
    assert_eq!(br.mtu, 1400);
    let again = host_nl.ensure_bridge("cbr0", None, true).unwrap();
    assert_eq!(again.index, br.index, "ensure_bridge is idempotent");
    assert!(again.promisc, "promisc requested on an existing bridge");
    assert_eq!(again.mac, br.mac, "bridge MAC is pinned");
    // `ip netns exec` mounts a sysfs of the node netns; 3 = NET_ADDR_SET, the MAC no longer follows ports.
    let assign = common::run(
        "ip",
        &[
            "netns",
            "exec",
            &node.name,
            "cat",
            "/sys/class/net/cbr0/addr_assign_type",
        ],
    );
    assert_eq!(assign.trim(), "3", "bridge MAC is pinned");

    let gw: ipnet::IpNet = "10.99.0.1/24".parse().unwrap();
    host_nl.add_address(br.index, gw).unwrap();
    host_nl.add_address(br.index, gw).unwrap();
    assert!(host_nl.addresses(br.index).unwrap().contains(&gw));

    let host_name = random_veth_name().unwrap();
    let plan = VethPlan {
        host_name: host_name.clone(),
        peer_name: "eth0".into(),
        peer_netns: &ctr.file,
        mtu: Some(1400),
        peer_mac: Some(PEER_MAC),
        master: Some(br.index),
    };
    let host = host_nl.create_veth_in_netns(&plan).unwrap();
    assert_eq!(host.name, host_name);
    assert_eq!(host.master, Some(br.index));
    assert_eq!(host.kind.as_deref(), Some("veth"));
    assert!(host.up);
    assert_eq!(host.mtu, 1400);

    // Same host name: Exists names the host end. New host name, same peer: Exists names the peer.
    match host_nl.create_veth_in_netns(&plan) {
        Err(NetopsError::Exists { name }) => assert_eq!(name, host_name),
        other => panic!("expected Exists, got {other:?}"),
    }
    let other_host = random_veth_name().unwrap();
    match host_nl.create_veth_in_netns(&VethPlan {
        host_name: other_host.clone(),
        ..plan
    }) {
        Err(NetopsError::Exists { name }) => assert_eq!(name, "eth0"),
        other => panic!("expected Exists for the peer, got {other:?}"),
    }
    assert!(
        host_nl.link_by_name(&other_host).unwrap().is_none(),
        "failed create leaves nothing behind"
    );

    let ctr_nl = Netlink::in_netns(&ctr.file).unwrap();
    let eth0 = ctr_nl
        .link_by_name("eth0")
        .unwrap()
        .expect("peer created inside the container netns");
    assert_eq!(eth0.mac, Some(PEER_MAC));
    assert_eq!(eth0.mtu, 1400);
    assert!(!eth0.up, "peer is created down");
    assert!(
        host_nl.link_by_name("eth0").unwrap().is_none(),
        "peer is not in the node netns"
    );

    // Container-side sysctls run on a thread inside the container netns.
    run_in_netns(&ctr.file, || -> Result<(), NetopsError> {
        write_sysctl("net/ipv4/conf/eth0/arp_notify", "1")?;
        write_sysctl("net.ipv6.conf.eth0.accept_dad", "0")
    })
    .unwrap()
    .unwrap();
    let arp_notify = run_in_netns(&ctr.file, || read_sysctl("net.ipv4.conf.eth0.arp_notify")).unwrap();
    assert_eq!(arp_notify.unwrap(), "1");

    let ip: ipnet::IpNet = "10.99.0.2/24".parse().unwrap();
    ctr_nl.set_link_up(1).unwrap();
    ctr_nl.add_address(eth0.index, ip).unwrap();
    ctr_nl.set_link_up(eth0.index).unwrap();
    let default = RouteSpec {
        gateway: Some(gw.addr()),
        ..RouteSpec::to("0.0.0.0/0".parse().unwrap())
    };
    ctr_nl.add_route(&default).unwrap();
    ctr_nl.add_route(&default).unwrap();
    let routes = ctr_nl.routes(IpFamily::V4).unwrap();
    assert!(
        routes
            .iter()
            .any(|r| r.dst == default.dst && r.gateway == default.gateway && r.oif == Some(eth0.index)),
        "{routes:?}"
    );
    let json = ctr.link_json("eth0");
    assert!(
        json["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "{json}"
    );

    // A listener in the node netns on the gateway address; connect from inside the container.
    let listener = run_in_netns(&node.file, || TcpListener::bind(SocketAddr::new(gw.addr(), 0)))
        .unwrap()
        .unwrap();
    let target = listener.local_addr().unwrap();
    let connected = run_in_netns(&ctr.file, || {
        let mut last = None;
        for _ in 0..20 {
            match TcpStream::connect_timeout(&target, Duration::from_millis(500)) {
                Ok(_) => return Ok(()),
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(last)
    })
    .unwrap();
    connected.unwrap_or_else(|e| panic!("container cannot reach {target} through the bridge: {e:?}"));

    assert!(host_nl.delete_link(&host_name).unwrap());
    assert!(
        !host_nl.delete_link(&host_name).unwrap(),
        "second delete reports absence, not an error"
    );
    assert!(
        ctr_nl.link_by_name("eth0").unwrap().is_none(),
        "deleting the host end removes the peer"
    );
    ctr_nl.delete_address(eth0.index, ip).unwrap();
}
