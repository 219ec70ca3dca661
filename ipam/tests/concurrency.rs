//! Parallel plugin processes on one network: the lock serialises them and every address is handed out once.

mod common;

use common::*;
use serde_json::json;
use std::collections::HashSet;

#[test]
fn fifty_parallel_adds_get_distinct_addresses_and_dels_free_them() {
    let tmp = tempfile::tempdir().unwrap();
    let c = conf(tmp.path(), json!({"subnet": "10.1.0.0/24"}));
    let bin = ours();
    let adds: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|i| {
                let (bin, c) = (&bin, &c);
                s.spawn(move || addr(&run(bin, "ADD", &format!("c{i}"), c, &[]).ok()))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let distinct: HashSet<&String> = adds.iter().collect();
    assert_eq!(distinct.len(), 50, "{adds:?}");
    let net = tmp.path().join("net1");
    assert_eq!(reserved(&net).len(), 50);
    std::thread::scope(|s| {
        for i in 0..50 {
            let (bin, c) = (&bin, &c);
            s.spawn(move || run(bin, "DEL", &format!("c{i}"), c, &[]).ok());
        }
    });
    assert!(reserved(&net).is_empty());
    assert!(names(&net.join(".corral")).is_empty());
}

#[test]
fn corral_and_the_reference_in_parallel_never_share_an_address() {
    let tmp = tempfile::tempdir().unwrap();
    let c = conf(tmp.path(), json!({"subnet": "10.1.0.0/24"}));
    let (mine, theirs) = (ours(), reference());
    let adds: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..40)
            .map(|i| {
                let bin = if i % 2 == 0 { &mine } else { &theirs };
                let c = &c;
                s.spawn(move || addr(&run(bin, "ADD", &format!("c{i}"), c, &[]).ok()))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let distinct: HashSet<&String> = adds.iter().collect();
    assert_eq!(distinct.len(), 40, "{adds:?}");
    assert_eq!(reserved(&tmp.path().join("net1")).len(), 40);
}
