//! The reference host-local and corral's share one store: each reads, respects and releases the other's
//! reservations.

mod common;

use common::*;
use serde_json::json;

#[test]
fn corral_continues_and_releases_what_the_reference_reserved() {
    let tmp = tempfile::tempdir().unwrap();
    let c = conf(tmp.path(), json!({"subnet": "10.1.0.0/24"}));
    let net = tmp.path().join("net1");
    let reference = reference();
    assert_eq!(addr(&run(&reference, "ADD", "r1", &c, &[]).ok()), "10.1.0.2/24");
    assert_eq!(addr(&run(&reference, "ADD", "r2", &c, &[]).ok()), "10.1.0.3/24");
    // Round-robin continues from the reference's last_reserved_ip.0.
    assert_eq!(addr(&run(&ours(), "ADD", "c1", &c, &[]).ok()), "10.1.0.4/24");
    // CHECK and DEL of a reservation without an index fall back to the walk.
    let mut check = c.clone();
    check["prevResult"] = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.1.0.2/24"}]});
    run(&ours(), "CHECK", "r1", &check, &[]).ok();
    run(&ours(), "DEL", "r1", &c, &[]).ok();
    assert_eq!(reserved(&net), ["10.1.0.3", "10.1.0.4"]);
    // A legacy id-only file is released by id.
    std::fs::write(net.join("10.1.0.50"), "old").unwrap();
    run(&ours(), "DEL", "old", &c, &[]).ok();
    assert_eq!(reserved(&net), ["10.1.0.3", "10.1.0.4"]);
    // Files the reference wrote are left byte-identical by corral's writes.
    assert_eq!(std::fs::read(net.join("10.1.0.3")).unwrap(), b"r2\r\neth0");
}

#[test]
fn the_reference_respects_and_releases_what_corral_reserved() {
    let tmp = tempfile::tempdir().unwrap();
    let c = conf(
        tmp.path(),
        json!({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00::/64"}]]}),
    );
    let net = tmp.path().join("net1");
    let reference = reference();
    let r = run(&ours(), "ADD", "c1", &c, &[]).ok();
    assert_eq!(addr(&r), "10.1.0.2/24");
    // The reference sees corral's reservation: as taken, and as a duplicate for the same attachment.
    let (_, msg) = run(&reference, "ADD", "c1", &c, &[]).error();
    assert!(msg.contains("duplicate allocation is not allowed"), "{msg}");
    let r2 = run(&reference, "ADD", "r2", &c, &[]).ok();
    assert_eq!(addr(&r2), "10.1.0.3/24");
    assert_eq!(r2["ips"][1]["address"], "fd00::3/64");
    let mut check = c.clone();
    check["prevResult"] = r.clone();
    run(&reference, "CHECK", "c1", &check, &[]).ok();
    // The reference's DEL releases corral's files and ignores its index and temp names.
    run(&reference, "DEL", "c1", &c, &[]).ok();
    assert_eq!(reserved(&net), ["10.1.0.3", "fd00::3"]);
    assert!(
        net.join(".corral/c1@eth0").exists(),
        "the reference leaves corral's index alone"
    );
    // The stale index holds nothing: corral allocates again and its DEL cleans up.
    assert_eq!(addr(&run(&ours(), "ADD", "c1", &c, &[]).ok()), "10.1.0.4/24");
    run(&ours(), "DEL", "c1", &c, &[]).ok();
    assert_eq!(reserved(&net), ["10.1.0.3", "fd00::3"]);
    assert!(!net.join(".corral/c1@eth0").exists());
    // And the reference's reservation is released by corral's DEL.
    run(&ours(), "DEL", "r2", &c, &[]).ok();
    assert!(reserved(&net).is_empty());
}

#[test]
fn results_match_the_reference_for_the_same_config() {
    let tmp = tempfile::tempdir().unwrap();
    let ipam = json!({"ranges": [[{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.10", "gateway": "10.1.0.254"}],
                                 [{"subnet": "fd00::/120"}]],
                      "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.9.0.0/16", "gw": "10.1.0.254"}]});
    for ver in ["0.3.1", "0.4.0", "1.0.0"] {
        let mut a = conf(&tmp.path().join("ref"), ipam.clone());
        let mut b = conf(&tmp.path().join("ours"), ipam.clone());
        a["cniVersion"] = json!(ver);
        b["cniVersion"] = json!(ver);
        let theirs = run(&reference(), "ADD", "x", &a, &[]).ok();
        let mine = run(&ours(), "ADD", "x", &b, &[]).ok();
        // Byte for byte the same JSON, down to the empty "dns": {} the reference always prints.
        assert_eq!(mine, theirs, "{ver}");
        run(&reference(), "DEL", "x", &a, &[]).ok();
        run(&ours(), "DEL", "x", &b, &[]).ok();
    }
}
