//! Network config bytes: the common keys (`decode::<NetConf>`, Go-style key matching), host-local's full
//! config (ranges, routes, requested IPs), and the whole plugin skeleton (env checks, version rules, result
//! conversion) with a plugin that parses nothing itself. No panic; every error a CNI error; a successful
//! ADD prints a result that parses back.
#![no_main]

use corral_cni::skel::{self, Io, Plugin};
use corral_cni::{CniError, CniResult, IpamRef, NetConf, Request};
use corral_fuzz::{assert_cni_error, check};
use corral_ipam::config::NetConf as IpamNetConf;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::collections::BTreeMap;

/// Returns prevResult on ADD (so the skeleton converts it to the config's version), reads the GC list.
struct Nop;

impl Plugin for Nop {
    fn add(&self, req: &Request) -> Result<CniResult, CniError> {
        Ok(req.prev_result()?.unwrap_or_default())
    }
    fn del(&self, _req: &Request) -> Result<(), CniError> {
        Ok(())
    }
    fn check(&self, req: &Request) -> Result<(), CniError> {
        req.prev_result().map(drop)
    }
    fn gc(&self, req: &Request) -> Result<(), CniError> {
        let _ = req.conf.gc_valid_attachments();
        Ok(())
    }
}

const COMMANDS: [&str; 7] = ["ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION", "BOGUS"];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    if let Some(conf) = check(corral_cni::config::decode::<NetConf>(
        bytes,
        "network configuration",
    )) {
        let _ = conf.validate_name();
        let _ = conf.gc_valid_attachments();
        if let Some(ipam) = &conf.ipam {
            // A delegating plugin's view of the `ipam` object (its type, Go key rules).
            let bytes = serde_json::to_vec(ipam).expect("a decoded ipam object that does not serialize");
            if let Some(r) = check(corral_cni::config::decode::<IpamRef>(&bytes, "ipam")) {
                let _ = r.plugin();
            }
        }
    }
    // host-local's own view of the same bytes, as its ADD and DEL read them.
    if let Some(conf) = check(corral_cni::config::decode::<IpamNetConf>(
        bytes,
        "network configuration",
    )) {
        if let Err(e) = corral_ipam::config::parse(&conf, None) {
            assert_cni_error(&e.into());
        }
        if let Err(e) = corral_ipam::config::parse_data_dir(&conf) {
            assert_cni_error(&e.into());
        }
    }

    let cmd = COMMANDS[usize::from(selector) % COMMANDS.len()];
    let mut env = BTreeMap::new();
    env.insert("CNI_COMMAND".to_string(), cmd.to_string());
    env.insert("CNI_CONTAINERID".to_string(), "fuzz".to_string());
    env.insert("CNI_IFNAME".to_string(), "eth0".to_string());
    env.insert("CNI_NETNS".to_string(), "/nonexistent/corral-fuzz".to_string());
    let mut stdin: &[u8] = bytes;
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let status = skel::run(
        &Nop,
        "fuzz",
        Io {
            env: &env,
            stdin: &mut stdin,
            stdout: &mut stdout,
            stderr: &mut stderr,
        },
    );
    let out: Option<Value> = if stdout.is_empty() {
        None
    } else {
        Some(serde_json::from_slice(&stdout).expect("the skeleton printed something that is not JSON"))
    };
    match status {
        0 => {
            if let (Some(v), "ADD") = (&out, cmd) {
                let ver = v["cniVersion"].as_str().expect("ADD result without cniVersion");
                CniResult::parse(v, ver).expect("the skeleton printed a result it cannot read back");
            }
        }
        1 => {
            let v = out.expect("failure without an error object");
            assert!(v["cniVersion"].is_string(), "error without cniVersion: {v}");
            let e = CniError::from_json(&v).expect("not an error object");
            assert_cni_error(&e);
        }
        other => panic!("exit status {other}"),
    }
});
