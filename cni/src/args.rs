//! CNI_ARGS: `K=V;K=V` pairs passed by the runtime, and the `IgnoreUnknown` convention.

use crate::error::CniError;

/// Parsed CNI_ARGS, in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    pairs: Vec<(String, String)>,
}

/// Keys every plugin accepts: runtimes send them to all plugins of a chain.
const ALWAYS_KNOWN: [&str; 5] = [
    "IgnoreUnknown",
    "K8S_POD_NAMESPACE",
    "K8S_POD_NAME",
    "K8S_POD_INFRA_CONTAINER_ID",
    "K8S_POD_UID",
];

impl CniArgs {
    /// Parses `K=V;K=V`. Empty input gives no pairs; a pair without `=` is an env error (code 4).
    pub fn parse(raw: &str) -> Result<Self, CniError> {
        let mut pairs = Vec::new();
        for pair in raw.split(';').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some((k, v)) if !k.is_empty() && !v.contains('=') => {
                    pairs.push((k.to_string(), v.to_string()))
                }
                _ => {
                    return Err(CniError::invalid_env(format!(
                        "CNI_ARGS: invalid pair \"{pair}\" (want KEY=VALUE separated by ';')"
                    )))
                }
            }
        }
        Ok(CniArgs { pairs })
    }

    /// The value of a key, if present (the last one wins).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the runtime asked plugins to ignore keys they do not know.
    pub fn ignore_unknown(&self) -> bool {
        matches!(
            self.get("IgnoreUnknown").map(str::to_ascii_lowercase).as_deref(),
            Some("1" | "true")
        )
    }

    /// Fails (code 4, naming key and value) on a key the plugin does not know, unless `IgnoreUnknown`.
    pub fn check_known(&self, known: &[&str]) -> Result<(), CniError> {
        if self.ignore_unknown() {
            return Ok(());
        }
        for (k, v) in &self.pairs {
            if !known.contains(&k.as_str()) && !ALWAYS_KNOWN.contains(&k.as_str()) {
                return Err(CniError::invalid_env(format!(
                    "CNI_ARGS: unknown key \"{k}\" with value \"{v}\" (set IgnoreUnknown=1 to allow it)"
                )));
            }
        }
        Ok(())
    }

    /// All pairs.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs_and_ignore_unknown() {
        let a = CniArgs::parse("IgnoreUnknown=1;IP=10.0.0.5;K8S_POD_NAME=web").unwrap();
        assert_eq!(a.get("IP"), Some("10.0.0.5"));
        assert!(a.ignore_unknown());
        assert!(a.check_known(&[]).is_ok());
    }

    #[test]
    fn empty_is_no_pairs() {
        assert!(CniArgs::parse("").unwrap().pairs().is_empty());
        assert!(CniArgs::parse(";;").unwrap().pairs().is_empty());
    }

    #[test]
    fn bad_pair_is_env_error() {
        for raw in ["IP", "=x", "A=b=c"] {
            let e = CniArgs::parse(raw).unwrap_err();
            assert_eq!(e.code, 4, "{raw}");
            assert!(e.msg.contains("CNI_ARGS"), "{raw}");
        }
    }

    #[test]
    fn unknown_key_rejected_without_ignore_unknown() {
        let a = CniArgs::parse("FOO=bar").unwrap();
        let e = a.check_known(&["IP"]).unwrap_err();
        assert_eq!(e.code, 4);
        assert!(e.msg.contains("FOO") && e.msg.contains("bar"));
        let a = CniArgs::parse("FOO=bar;IgnoreUnknown=true").unwrap();
        assert!(a.check_known(&["IP"]).is_ok());
        assert!(CniArgs::parse("K8S_POD_NAME=x").unwrap().check_known(&[]).is_ok());
    }
}
