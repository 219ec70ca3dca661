//! Crash safety: the binary is killed (SIGKILL, via the CORRAL_FAIL_AT test hook) at each point of an ADD;
//! the next ADD, DEL and GC leave a consistent store: no leaked address, no address given twice.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::Path;

fn crash_add(c: &Value, id: &str, point: &str) {
    let o = run(&ours(), "ADD", id, c, &[("CORRAL_FAIL_AT", point)]);
    assert_eq!(o.signal, Some(9), "{point}: expected SIGKILL, got {o:?}");
}

fn no_temp_files(net: &Path) {
    for dir in [net.to_path_buf(), net.join(".corral")] {
        assert!(
            names(&dir).iter().all(|n| !n.ends_with(".tmp")),
            "{:?}",
            names(&dir)
        );
    }
}

#[test]
fn killed_after_the_index_the_address_is_still_free() {
    let tmp = tempfile::tempdir().unwrap();
    let c = conf(tmp.path(), json!({"subnet": "10.1.0.0/24"}));
    let net = tmp.path().join("net1");
    crash_add(&c, "c1", "ipam-after-index");
    assert!(net.join(".corral/c1@eth0").exists() && reserved(&net).is_empty());
    no_temp_files(&net);
    // The address the index names was never reserved: the next ADD takes it.
    assert_eq!(addr(&run(&ours(), "ADD", "c2", &c, &[]).ok()), "10.1.0.2/24");
    // c1 holds nothing, so its retry is not a duplicate.
    assert_eq!(addr(&run(&ours(), "ADD", "c1", &c, &[]).ok()), "10.1.0.3/24");
    run(&ours(), "DEL", "c1", &c, &[]).ok();
    assert_eq!(reserved(&net), ["10.1.0.2"], "c2 keeps its address");
    // Crash again, then GC with c2 valid: the stale index goes, c2 stays.
    crash_add(&c, "c3", "ipam-after-index");
    let mut gc = c.clone();
    gc["cniVersion"] = json!("1.1.0");
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "c2", "ifname": "eth0"}]);
    run(&ours(), "GC", "", &gc, &[]).ok();
    assert_eq!(reserved(&net), ["10.1.0.2"]);
    assert_eq!(names(&net.join(".corral")), ["c2@eth0"]);
}

#[test]
fn killed_after_the_reservation_the_address_is_held_until_del_or_gc() {
    let tmp = tempfile::tempdir().unwrap();
    let c = conf(tmp.path(), json!({"subnet": "10.1.0.0/24"}));
    let net = tmp.path().join("net1");
    crash_add(&c, "c1", "ipam-after-ipfile");
    assert_eq!(reserved(&net), ["10.1.0.2"]);
    assert_eq!(std::fs::read(net.join("10.1.0.2")).unwrap(), b"c1\r\neth0");
    no_temp_files(&net);
    // c1 holds .2: a retry is a duplicate, another container skips it.
    let (code, msg) = run(&ours(), "ADD", "c1", &c, &[]).error();
    assert_eq!(code, 7, "{msg}");
    assert!(msg.contains("10.1.0.2 has been allocated to c1"), "{msg}");
    assert_eq!(addr(&run(&ours(), "ADD", "c2", &c, &[]).ok()), "10.1.0.3/24");
    // The runtime's DEL after the failed ADD releases it.
    run(&ours(), "DEL", "c1", &c, &[]).ok();
    assert_eq!(reserved(&net), ["10.1.0.3"]);
    // If the runtime never DELs, GC does.
    crash_add(&c, "c3", "ipam-after-ipfile");
    assert_eq!(reserved(&net), ["10.1.0.3", "10.1.0.4"]);
    let mut gc = c.clone();
    gc["cniVersion"] = json!("1.1.0");
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "c2", "ifname": "eth0"}]);
    run(&ours(), "GC", "", &gc, &[]).ok();
    assert_eq!(reserved(&net), ["10.1.0.3"]);
    assert_eq!(names(&net.join(".corral")), ["c2@eth0"]);
}

#[test]
fn killed_in_a_second_range_set_the_first_is_released_by_del() {
    let tmp = tempfile::tempdir().unwrap();
    let c = conf(
        tmp.path(),
        json!({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00::/64"}]]}),
    );
    let net = tmp.path().join("net1");
    crash_add(&c, "c1", "ipam-after-ipfile"); // dies after the first file: 10.1.0.2
    assert_eq!(reserved(&net), ["10.1.0.2"]);
    run(&ours(), "DEL", "c1", &c, &[]).ok();
    assert!(reserved(&net).is_empty());
    let r = run(&ours(), "ADD", "c1", &c, &[]).ok();
    assert_eq!(r["ips"][1]["address"], "fd00::2/64");
}
