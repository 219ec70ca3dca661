//! CNI spec versions: which ones corral speaks and how they compare.

/// Every version a corral plugin accepts in config and can write results in.
pub const SUPPORTED: [&str; 7] = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The newest version; used when a request names none that could be read.
pub const CURRENT: &str = "1.1.0";

/// A config without `cniVersion` is read as this version (as libcni does).
pub const DEFAULT_WHEN_ABSENT: &str = "0.1.0";

/// Parses "major.minor.patch".
pub fn parse(v: &str) -> Option<(u32, u32, u32)> {
    let mut parts = v.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((major, minor, patch))
}

/// Whether corral speaks this version.
pub fn is_supported(v: &str) -> bool {
    SUPPORTED.contains(&v)
}

/// Whether `v` is at least `min`; an unparsable `v` is not.
pub fn at_least(v: &str, min: &str) -> bool {
    match (parse(v), parse(min)) {
        (Some(a), Some(b)) => a >= b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_versions() {
        assert!(at_least("1.1.0", "1.0.0"));
        assert!(at_least("0.4.0", "0.4.0"));
        assert!(!at_least("0.3.1", "0.4.0"));
        assert!(!at_least("banana", "0.1.0"));
        assert!(!at_least("1.0", "0.1.0"));
    }

    #[test]
    fn supported_list_is_sorted_and_parses() {
        for w in SUPPORTED.windows(2) {
            assert!(parse(w[0]) < parse(w[1]), "{w:?}");
        }
        assert!(is_supported(CURRENT));
        assert!(!is_supported("2.0.0"));
    }
}
