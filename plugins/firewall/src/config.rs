//! The firewall config: the reference's keys, with what corral does not implement refused by name (code 2).

use corral_cni::{CniError, Request};
use serde::Deserialize;

/// The wire config.
#[derive(Debug, Default, Deserialize)]
struct FirewallConf {
    #[serde(default)]
    backend: String,
    #[serde(default, rename = "ingressPolicy")]
    ingress_policy: String,
    /// Accepted and unused: corral adds no iptables chains.
    #[serde(default, rename = "iptablesAdminChainName")]
    _admin_chain: String,
    /// Accepted and unused (only read with the firewalld backend, which is refused).
    #[serde(default, rename = "firewalldZone")]
    _zone: String,
}

/// Validates the config of `req`: `backend` "" / "iptables" / "nftables", `ingressPolicy` "" / "open".
pub fn load(req: &Request) -> Result<(), CniError> {
    let conf: FirewallConf = req.decode_conf()?;
    match conf.backend.as_str() {
        "" | "iptables" | "nftables" => {}
        "firewalld" => return Err(CniError::unsupported_field("backend", "firewalld")),
        other => {
            return Err(CniError::invalid_config(format!(
                "unknown firewall backend {other:?} (\"\", \"iptables\" or \"firewalld\")"
            )))
        }
    }
    match conf.ingress_policy.as_str() {
        "" | "open" => Ok(()),
        "same-bridge" | "isolated" => Err(CniError::unsupported_field("ingressPolicy", &conf.ingress_policy)),
        other => Err(CniError::invalid_config(format!(
            "unknown ingressPolicy {other:?} (\"open\" or \"same-bridge\")"
        ))),
    }
}
