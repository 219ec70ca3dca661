//! DEL hands the veth's unregister (which waits on the kernel's RCU grace periods) to a background child: the
//! runtime gets its answer once the link is down and renamed, the address released and the NAT entries gone.
//! These tests pin what is true when DEL returns and what follows shortly after.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use corral_tests::conf;
use corral_tests::ctr::Ctr;
use corral_tests::{veths, wait_until, Node};
use serde_json::json;

fn links_in(ctr: &Ctr) -> Vec<String> {
    ctr.ns
        .ip_json(&["link", "show"])
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["ifname"].as_str().map(str::to_string))
        .filter(|n| n != "lo")
        .collect()
}

#[test]
fn del_frees_the_name_and_address_at_once_and_the_link_soon_after() {
    let node = Node::new();
    let conf = conf::bridge(
        &node,
        "1.0.0",
        &["10.64.0.0/24"],
        json!({ "isGateway": true, "ipMasq": true }),
    );
    let ctr = Ctr::new();
    node.add(&ctr, &conf);
    node.bridge("DEL", &ctr, &conf).ok();
    // When DEL returns: no eth0 (parked or gone), nothing up, address and NAT released.
    assert!(
        !ctr.ns.has_link("eth0"),
        "CNI_IFNAME must be free when DEL returns"
    );
    for l in links_in(&ctr) {
        assert!(l.starts_with("cdel"), "unexpected link {l}");
        assert!(!ctr.ns.is_up(&l), "parked link {l} is still up");
    }
    assert!(node.reserved_ips(conf::NET).is_empty());
    assert!(corral_tests::state::nft_elements(&node.ns, "inet", "masq_src4").is_empty());
    // Shortly after: the pair is gone on both sides.
    assert!(
        wait_until(3, || links_in(&ctr).is_empty() && veths(&node.ns).is_empty()),
        "veth pair not deleted"
    );
}

#[test]
fn re_add_with_the_same_ifname_right_after_del_works() {
    let node = Node::new();
    let conf = conf::bridge(&node, "1.0.0", &["10.65.0.0/24"], json!({ "isGateway": true }));
    let ctr = Ctr::new();
    node.add(&ctr, &conf);
    node.bridge("DEL", &ctr, &conf).ok();
    let again = node.add(&ctr, &conf);
    assert_eq!(again["ips"][0]["address"], "10.65.0.3/24", "round-robin moves on");
    assert!(ctr.ns.ping_within("10.65.0.1", 3));
}

#[test]
fn netns_deleted_right_after_del_leaves_nothing() {
    let node = Node::new();
    let conf = conf::bridge(&node, "1.0.0", &["10.66.0.0/24"], json!({}));
    let ctr = Ctr::new();
    node.add(&ctr, &conf);
    node.bridge("DEL", &ctr, &conf).ok();
    drop(ctr); // the runtime removes the netns as soon as DEL returns
    assert!(
        wait_until(3, || veths(&node.ns).is_empty()),
        "host veth left behind"
    );
}

#[test]
fn sync_del_deletes_before_returning() {
    let node = Node::new();
    let conf = conf::bridge(&node, "1.0.0", &["10.67.0.0/24"], json!({}));
    let ctr = Ctr::new();
    node.add(&ctr, &conf);
    node.call("bridge", "DEL", &ctr, &conf, &[("CORRAL_SYNC_DEL", "1")])
        .ok();
    assert!(links_in(&ctr).is_empty());
    assert!(veths(&node.ns).is_empty());
}
