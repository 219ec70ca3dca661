//! host-local's on-disk store and config: reservation files (`Holder::parse`), corral's index entries
//! (`IndexEntry::decode`), and the `ipam` section (ranges, gateways, routes, requested IPs via CNI_ARGS).
//! No panic; every config error a CNI error; what is encoded decodes to the same value.
#![no_main]

use corral_fuzz::assert_cni_error;
use corral_ipam::config::NetConf;
use corral_ipam::{Holder, IndexEntry};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    if let Holder::Attachment(a) = Holder::parse(&text) {
        assert_eq!(
            Holder::parse(&Holder::encode(&a)),
            Holder::Attachment(a.clone()),
            "reservation {text:?} does not survive its encoding"
        );
    }

    if let Some(e) = IndexEntry::decode(&text) {
        // Encoding folds line breaks inside a value into spaces (a value is one line); the addresses and the
        // netns inode survive exactly, and a rewritten entry reads back as written.
        let once = IndexEntry::decode(&e.encode()).expect("an encoded index entry does not decode");
        assert_eq!(
            (&once.ips, once.netns_ino),
            (&e.ips, e.netns_ino),
            "index entry {text:?}"
        );
        assert_eq!(
            IndexEntry::decode(&once.encode()).as_ref(),
            Some(&once),
            "index entry {text:?} does not survive its encoding"
        );
    }

    // The text as an `ipam` section; its first line (up to ';'-separated IPs) doubles as CNI_ARGS IP.
    let conf = format!(r#"{{"cniVersion":"1.1.0","name":"fuzz","type":"host-local","ipam":{text}}}"#);
    if let Ok(nc) = corral_cni::config::decode::<NetConf>(conf.as_bytes(), "network configuration") {
        let ip = text.lines().next().filter(|l| !l.contains('{'));
        match corral_ipam::config::parse(&nc, ip) {
            Ok(c) => assert_eq!(c.requested.len(), c.range_sets.len()),
            Err(e) => assert_cni_error(&e.into()),
        }
    }
});
