//! Conflist bytes (`Conflist::parse`, list or single config): no panic, every error a CNI error; each plugin's
//! request config (name, cniVersion, runtimeConfig, prevResult added) is JSON the plugin side decodes.
#![no_main]

use corral_cni::runtime::{Attachment, Conflist};
use corral_cni::NetConf;
use corral_fuzz::check;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map};

fuzz_target!(|data: &[u8]| {
    let Some(list) = check(Conflist::parse(data)) else {
        return;
    };
    assert!(!list.plugins.is_empty(), "a conflist without plugins parsed");
    assert!(!list.cni_version.is_empty(), "a conflist without cniVersion");
    let mut caps = Map::new();
    caps.insert(
        "portMappings".into(),
        json!([{"hostPort": 8080, "containerPort": 80}]),
    );
    let att = Attachment {
        container_id: "fuzz".into(),
        netns: "/run/netns/fuzz".into(),
        ifname: "eth0".into(),
        capability_args: caps,
        ..Default::default()
    };
    let prev = json!({"cniVersion": list.cni_version, "ips": [{"address": "10.0.0.2/24"}]});
    for i in 0..list.plugins.len() {
        let conf = list.plugin_config(i, &att, Some(&prev));
        assert_eq!(conf["name"], json!(list.name));
        assert_eq!(conf["cniVersion"], json!(list.cni_version));
        let bytes = serde_json::to_vec(&conf).expect("a plugin config that does not serialize");
        if let Some(nc) = check(corral_cni::config::decode::<NetConf>(
            &bytes,
            "network configuration",
        )) {
            let _ = nc.validate_name();
        }
    }
    // A parsed list parses again from its plugins (as a runtime re-reading its cache would).
    let again = json!({"cniVersion": list.cni_version, "name": list.name, "plugins": list.plugins});
    let reparsed = Conflist::parse(again.to_string().as_bytes()).expect("a parsed conflist does not reparse");
    assert_eq!(reparsed.plugins, list.plugins);
});
