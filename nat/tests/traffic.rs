//! Root tests with real packets: a *node* namespace with a bridge plays the host, a *container* namespace hangs
//! off the bridge, an *outside* namespace sits behind the node's uplink with no route back to the container
//! subnet. nft runs only in the node namespace.

// Test code: a failed setup step should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use common::Netns;
use corral_nat::Source;
use corral_nat::{AttachmentRecord, MasqEntry, NatManager, NftCli, Owner, SpoofEntry};
use nix::sched::{setns, CloneFlags};

const CTR_MAC: &str = "02:42:ac:11:00:02";

struct Topology {
    node: Netns,
    ctr: Netns,
    outside: Netns,
}

fn topology() -> Topology {
    let (node, ctr, outside) = (Netns::new(), Netns::new(), Netns::new());
    node.ip(&["link", "add", "br0", "type", "bridge"]);
    node.ip(&["addr", "add", "10.88.0.1/16", "dev", "br0"]);
    node.ip(&["link", "set", "br0", "up"]);
    node.ip(&[
        "link", "add", "vethc", "type", "veth", "peer", "name", "eth0", "netns", &ctr.name,
    ]);
    node.ip(&["link", "set", "vethc", "master", "br0", "up"]);
    ctr.ip(&["link", "set", "eth0", "address", CTR_MAC]);
    ctr.ip(&["addr", "add", "10.88.0.2/16", "dev", "eth0"]);
    ctr.ip(&["link", "set", "eth0", "up"]);
    ctr.ip(&["link", "set", "lo", "up"]);
    ctr.ip(&["route", "add", "default", "via", "10.88.0.1"]);
    node.ip(&[
        "link",
        "add",
        "up0",
        "type",
        "veth",
        "peer",
        "name",
        "down0",
        "netns",
        &outside.name,
    ]);
    node.ip(&["addr", "add", "192.0.2.1/24", "dev", "up0"]);
    node.ip(&["link", "set", "up0", "up"]);
    outside.ip(&["addr", "add", "192.0.2.2/24", "dev", "down0"]);
    outside.ip(&["link", "set", "down0", "up"]);
    assert!(node.exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]));
    Topology { node, ctr, outside }
}

/// Runs `f` on a thread that has entered `netns` (sockets made there stay in that namespace).
fn in_netns<T: Send>(netns: &Path, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(File::open(netns).unwrap(), CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    })
}

/// Connects from `from` to a listener opened in `to` at `addr`; the peer address the listener saw, if any.
fn connect(from: &Netns, to: &Netns, addr: &str) -> Option<SocketAddr> {
    let addr: SocketAddr = addr.parse().unwrap();
    let listener = in_netns(&to.path(), || TcpListener::bind(addr).unwrap());
    listener.set_nonblocking(true).unwrap();
    let connected = in_netns(&from.path(), || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(700)).is_ok()
    });
    if !connected {
        return None;
    }
    listener.accept().ok().map(|(_, peer)| peer)
}

fn masq_record() -> AttachmentRecord {
    let mut r = AttachmentRecord::new(Owner::new("net1", "aaaa", "eth0"));
    r.masq = vec![MasqEntry {
        ip: "10.88.0.2".parse().unwrap(),
        subnet: "10.88.0.0/16".parse().unwrap(),
    }];
    r
}

#[test]
fn masquerade_rewrites_the_source_only_while_recorded() {
    let t = topology();
    let dir = tempfile::tempdir().unwrap();
    let m = NatManager::new(dir.path(), NftCli::in_netns(t.node.path()));
    assert_eq!(
        connect(&t.ctr, &t.outside, "192.0.2.2:4001"),
        None,
        "no route back without masquerade"
    );

    m.add(&masq_record()).unwrap();
    let peer = connect(&t.ctr, &t.outside, "192.0.2.2:4002").expect("masqueraded connection");
    assert_eq!(peer.ip().to_string(), "192.0.2.1");
    let peer = connect(&t.ctr, &t.node, "10.88.0.1:4003").expect("own subnet");
    assert_eq!(
        peer.ip().to_string(),
        "10.88.0.2",
        "own subnet keeps the source address"
    );

    m.del(&masq_record().owner, Source::Bridge).unwrap();
    assert_eq!(
        connect(&t.ctr, &t.outside, "192.0.2.2:4004"),
        None,
        "masquerade gone after DEL"
    );
}

#[test]
fn spoof_check_drops_frames_from_another_mac() {
    let t = topology();
    let dir = tempfile::tempdir().unwrap();
    let m = NatManager::new(dir.path(), NftCli::in_netns(t.node.path()));
    let mut r = AttachmentRecord::new(Owner::new("net1", "aaaa", "eth0"));
    r.spoof = Some(SpoofEntry {
        host_ifname: "vethc".into(),
        mac: [0x02, 0x42, 0xac, 0x11, 0x00, 0x02],
    });
    m.add(&r).unwrap();
    assert!(
        connect(&t.ctr, &t.node, "10.88.0.1:4101").is_some(),
        "own MAC passes"
    );

    t.ctr.ip(&["link", "set", "eth0", "address", "02:42:ac:11:00:99"]);
    assert_eq!(
        connect(&t.ctr, &t.node, "10.88.0.1:4102"),
        None,
        "spoofed MAC is dropped"
    );

    m.del(&r.owner, Source::Bridge).unwrap();
    assert!(
        connect(&t.ctr, &t.node, "10.88.0.1:4103").is_some(),
        "no check after DEL"
    );
}
