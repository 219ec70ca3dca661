//! Root tests for finding links by something other than their name.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::TestNetns;
use corral_netops::Netlink;

#[test]
fn link_by_mac_finds_the_link_carrying_that_address() {
    let ns = TestNetns::new("mac");
    let nl = Netlink::in_netns(&ns.file).unwrap();
    ns.ip(&["link", "add", "m0", "type", "veth", "peer", "name", "m1"]);
    let mac = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
    ns.ip(&["link", "set", "m1", "address", "02:11:22:33:44:55"]);
    let found = nl.link_by_mac(mac).unwrap().unwrap();
    assert_eq!(found.name, "m1");
    assert_eq!(found.mac, Some(mac));
    assert!(nl.link_by_mac([0x02, 0, 0, 0, 0, 0x99]).unwrap().is_none());
}
