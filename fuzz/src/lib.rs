//! Invariants shared by corral's fuzz targets.

use corral_cni::CniError;

/// Codes the CNI spec defines (1–11, 50, 51; 8 is the reference skeleton's "own netns"); 100 and above are
/// plugin specific.
pub const SPEC_CODES: [u32; 11] = [1, 2, 3, 4, 5, 6, 7, 8, 11, 50, 51];

/// Panics unless `e` is a well-formed CNI error: a code of the spec's set or ≥ 100, and a message.
pub fn assert_cni_error(e: &CniError) {
    assert!(
        SPEC_CODES.contains(&e.code) || e.code >= 100,
        "error code {} is neither a spec code nor ≥ 100: {e:?}",
        e.code
    );
    assert!(!e.msg.is_empty(), "error without a message: {e:?}");
    let json = e.to_json(corral_cni::version::CURRENT);
    assert_eq!(
        CniError::from_json(&json).as_ref(),
        Some(e),
        "error does not survive its JSON"
    );
}

/// `assert_cni_error` on the error of `r`, if any; the value otherwise.
pub fn check<T>(r: Result<T, CniError>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            assert_cni_error(&e);
            None
        }
    }
}
