//! Result JSON (prevResult, a delegate's result): `CniResult::parse` read as each version, then
//! `to_version` into each version. No panic; every error a CNI error; whatever is written reads back, and
//! at the newest version the round trip is lossless.
#![no_main]

use corral_cni::version::{CURRENT, SUPPORTED};
use corral_cni::CniResult;
use corral_fuzz::check;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    for fallback in SUPPORTED {
        let Some(r) = check(CniResult::parse(&v, fallback)) else {
            continue;
        };
        let _ = r.routes_via_family_gateways();
        for ver in SUPPORTED {
            let Some(out) = check(r.to_version(ver)) else {
                continue;
            };
            assert_eq!(out["cniVersion"], ver, "to_version({ver}) wrote {out}");
            let back = CniResult::parse(&out, ver)
                .unwrap_or_else(|e| panic!("to_version({ver}) wrote {out}, which does not parse: {e}"));
            if ver == CURRENT {
                assert_eq!(back, r, "{ver} round trip lost something: {out}");
            }
        }
    }
    let _ = check(CniResult::parse(&v, "9.9.9"));
});
