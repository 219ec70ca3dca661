//! CNI_ARGS strings: `CniArgs::parse`, `check_known`, `get`, `IgnoreUnknown`. No panic; every error a CNI
//! error (code 4); parsed pairs joined again parse to the same pairs.
#![no_main]

use corral_cni::CniArgs;
use corral_fuzz::check;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    let Some(args) = check(CniArgs::parse(&raw)) else {
        return;
    };
    let _ = args.get("IP");
    let _ = args.ignore_unknown();
    if let Err(e) = args.check_known(&["IP", "MAC"]) {
        corral_fuzz::assert_cni_error(&e);
        assert_eq!(e.code, 4, "{e:?}");
        assert!(!args.ignore_unknown());
    }
    let joined: Vec<String> = args.pairs().iter().map(|(k, v)| format!("{k}={v}")).collect();
    let again = CniArgs::parse(&joined.join(";")).expect("joined pairs do not parse");
    assert_eq!(again, args);
});
