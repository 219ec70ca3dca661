//! The portmap plugin's configuration: the reference plugin's keys, validated into [`Portmap`].
//!
//! Accepted but without effect: `markMasqBit` (range-checked: corral's masquerade uses a set, not a mark) and
//! `externalSetMarkChain` (iptables only in the reference). Refused with code 2: `backend: "iptables"` and
//! non-empty `conditionsV4`/`conditionsV6` (corral's DNAT is one map lookup shared by every network, so
//! per-network match conditions have nowhere to go). See docs/portmap.md.

use corral_cni::gojson::lookup;
use std::net::IpAddr;

use corral_cni::{CniError, Request};
use corral_nat::Protocol;
use serde::Deserialize;
use serde_json::Value;

/// Raw wire config (only portmap's own keys; the common ones are in `NetConf`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PortmapConf {
    #[serde(default)]
    snat: Option<bool>,
    #[serde(default)]
    masq_all: Option<bool>,
    #[serde(default)]
    mark_masq_bit: Option<i64>,
    #[serde(default)]
    external_set_mark_chain: Option<String>,
    #[serde(default)]
    conditions_v4: Option<Vec<String>>,
    #[serde(default)]
    conditions_v6: Option<Vec<String>>,
    #[serde(default)]
    backend: Option<String>,
}

/// One requested mapping, validated, before container addresses are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requested {
    /// Position in `runtimeConfig.portMappings`, for messages.
    pub index: usize,
    /// Transport protocol (`tcp` by default).
    pub protocol: Protocol,
    /// `hostIP`, if set (`0.0.0.0`/`::` mean every address of that family).
    pub host_ip: Option<IpAddr>,
    /// `hostPort`.
    pub host_port: u16,
    /// `containerPort`.
    pub container_port: u16,
}

/// Validated settings for one attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Portmap {
    /// The requested mappings (empty: nothing to forward).
    pub mappings: Vec<Requested>,
    /// Masquerade hairpin and localhost connections (default true).
    pub snat: bool,
    /// Masquerade every forwarded connection (only with `snat`).
    pub masq_all: bool,
}

/// Decodes and validates the request's config and `runtimeConfig.portMappings`.
pub fn load(req: &Request) -> Result<Portmap, CniError> {
    let raw: PortmapConf = req.decode_conf()?;
    validate_keys(&raw)?;
    let mappings = match req.conf.runtime("portMappings") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(entries)) => entries
            .iter()
            .enumerate()
            .map(|(i, e)| parse_mapping(i, e))
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(CniError::invalid_config(format!(
                "runtimeConfig.portMappings must be a list, not {other}"
            )))
        }
    };
    let snat = raw.snat.unwrap_or(true);
    Ok(Portmap {
        mappings,
        snat,
        masq_all: snat && raw.masq_all.unwrap_or(false),
    })
}

fn validate_keys(raw: &PortmapConf) -> Result<(), CniError> {
    match raw.backend.as_deref() {
        None | Some("nftables") => {}
        Some(other) => return Err(CniError::unsupported_field("backend", format!("\"{other}\""))),
    }
    for (key, conditions) in [
        ("conditionsV4", &raw.conditions_v4),
        ("conditionsV6", &raw.conditions_v6),
    ] {
        if let Some(c) = conditions.as_ref().filter(|c| !c.is_empty()) {
            return Err(CniError::unsupported_field(
                key,
                serde_json::to_string(c).unwrap_or_default(),
            ));
        }
    }
    if let Some(bit) = raw.mark_masq_bit {
        if !(0..=31).contains(&bit) {
            return Err(CniError::invalid_config(format!(
                "invalid markMasqBit {bit}: must be between 0 and 31"
            )));
        }
        if raw.external_set_mark_chain.is_some() {
            return Err(CniError::invalid_config(
                "cannot set both markMasqBit and externalSetMarkChain",
            ));
        }
    }
    Ok(())
}

/// One `portMappings` entry; every problem is code 7 naming the entry.
fn parse_mapping(index: usize, entry: &Value) -> Result<Requested, CniError> {
    let bad = |why: String| CniError::invalid_config(format!("portMappings[{index}] {entry}: {why}"));
    if !entry.is_object() {
        return Err(bad("must be an object".into()));
    }
    let port = |key: &str| -> Result<u16, CniError> {
        let value = lookup(entry, key).unwrap_or(&Value::Null);
        value
            .as_i64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0)
            .ok_or_else(|| bad(format!("{key} {value} is not a port number between 1 and 65535")))
    };
    let host_port = port("hostPort")?;
    let container_port = port("containerPort")?;
    let protocol = match lookup(entry, "protocol") {
        None | Some(Value::Null) => Protocol::Tcp,
        Some(Value::String(p)) if p.is_empty() => Protocol::Tcp,
        Some(Value::String(p)) => {
            Protocol::parse(p).ok_or_else(|| bad(format!("unknown protocol \"{p}\" (tcp, udp or sctp)")))?
        }
        Some(other) => return Err(bad(format!("protocol {other} is not a string"))),
    };
    let host_ip = match lookup(entry, "hostIP") {
        None | Some(Value::Null) => None,
        Some(Value::String(h)) if h.is_empty() => None,
        Some(Value::String(h)) => Some(
            h.parse::<IpAddr>()
                .map_err(|_| bad(format!("hostIP \"{h}\" is not an IP address")))?,
        ),
        Some(other) => return Err(bad(format!("hostIP {other} is not a string"))),
    };
    Ok(Requested {
        index,
        protocol,
        host_ip,
        host_port,
        container_port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_cni::{CniArgs, Command, NetConf};
    use serde_json::json;
    use std::collections::BTreeMap;

    pub(crate) fn req(conf: &Value) -> Request {
        let text = conf.to_string();
        let nc: NetConf = corral_cni::config::decode(text.as_bytes(), "config").unwrap();
        Request {
            command: Command::Add,
            container_id: "c1".into(),
            netns: None,
            ifname: "eth0".into(),
            args: CniArgs::parse("").unwrap(),
            cni_path: vec![],
            conf: nc,
            stdin: text.into_bytes(),
            env: BTreeMap::new(),
        }
    }

    fn conf(extra: Value, mappings: Value) -> Value {
        let mut c = json!({"cniVersion": "1.0.0", "name": "n", "type": "portmap",
            "runtimeConfig": {"portMappings": mappings}});
        if let (Some(c), Value::Object(e)) = (c.as_object_mut(), extra) {
            c.extend(e);
        }
        c
    }

    #[test]
    fn defaults_match_the_reference() {
        let p = load(&req(&conf(
            json!({}),
            json!([{"hostPort": 8080, "containerPort": 80}]),
        )))
        .unwrap();
        assert!(p.snat && !p.masq_all);
        assert_eq!(p.mappings[0].protocol, Protocol::Tcp);
        assert_eq!(p.mappings[0].host_ip, None);
        let none = load(&req(&json!({"cniVersion": "1.0.0", "name": "n"}))).unwrap();
        assert!(none.mappings.is_empty());
    }

    #[test]
    fn go_field_names_from_containerd_are_accepted() {
        // containerd 1.6 (go-cni) marshals its PortMapping struct without JSON tags.
        let c = json!({"cniVersion": "1.0.0", "name": "n", "type": "portmap",
            "RuntimeConfig": {"PortMappings": [{"HostPort": 30080, "ContainerPort": 80, "Protocol": "tcp", "HostIP": ""}]}});
        let p = load(&req(&c)).unwrap();
        assert_eq!(
            (p.mappings[0].host_port, p.mappings[0].container_port),
            (30080, 80)
        );
        assert_eq!(p.mappings[0].host_ip, None);
    }

    #[test]
    fn protocol_is_case_insensitive_and_host_ip_parsed() {
        let p = load(&req(&conf(
            json!({"masqAll": true}),
            json!([{"hostPort": 53, "containerPort": 53, "protocol": "UDP", "hostIP": "10.0.0.1"},
                   {"hostPort": 9, "containerPort": 9, "protocol": "Sctp", "hostIP": ""}]),
        )))
        .unwrap();
        assert_eq!(p.mappings[0].protocol, Protocol::Udp);
        assert_eq!(p.mappings[0].host_ip, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(p.mappings[1].protocol, Protocol::Sctp);
        assert_eq!(p.mappings[1].host_ip, None);
        assert!(p.masq_all);
    }

    #[test]
    fn masq_all_needs_snat() {
        let p = load(&req(&conf(json!({"snat": false, "masqAll": true}), json!([])))).unwrap();
        assert!(!p.snat && !p.masq_all);
    }

    #[test]
    fn every_bad_mapping_is_code_7_naming_the_entry() {
        for (mapping, needle) in [
            (json!({"hostPort": 0, "containerPort": 80}), "hostPort 0"),
            (json!({"hostPort": 65536, "containerPort": 80}), "hostPort 65536"),
            (json!({"hostPort": -1, "containerPort": 80}), "hostPort -1"),
            (json!({"hostPort": "80", "containerPort": 80}), "hostPort \"80\""),
            (json!({"containerPort": 80}), "hostPort null"),
            (json!({"hostPort": 80, "containerPort": 0}), "containerPort 0"),
            (
                json!({"hostPort": 80, "containerPort": 70000}),
                "containerPort 70000",
            ),
            (
                json!({"hostPort": 80, "containerPort": 80, "protocol": "icmp"}),
                "icmp",
            ),
            (
                json!({"hostPort": 80, "containerPort": 80, "protocol": 6}),
                "protocol 6",
            ),
            (
                json!({"hostPort": 80, "containerPort": 80, "hostIP": "1.2.3"}),
                "1.2.3",
            ),
            (
                json!({"hostPort": 80, "containerPort": 80, "hostIP": 5}),
                "hostIP 5",
            ),
            (json!("8080:80"), "must be an object"),
        ] {
            let c = conf(json!({}), json!([{"hostPort": 1, "containerPort": 1}, mapping]));
            let e = load(&req(&c)).unwrap_err();
            assert_eq!(e.code, 7, "{mapping}: {e}");
            assert!(e.msg.contains("portMappings[1]"), "{mapping}: {}", e.msg);
            assert!(e.msg.contains(needle), "{mapping}: {}", e.msg);
        }
        let e = load(&req(&conf(json!({}), json!({"hostPort": 1})))).unwrap_err();
        assert_eq!(e.code, 7, "{e}");
    }

    #[test]
    fn unsupported_keys_are_code_2_naming_key_and_value() {
        for (extra, key, value) in [
            (json!({"backend": "iptables"}), "backend", "iptables"),
            (json!({"backend": "ebpf"}), "backend", "ebpf"),
            (
                json!({"conditionsV4": ["ip saddr 10.0.0.0/8"]}),
                "conditionsV4",
                "ip saddr 10.0.0.0/8",
            ),
            (json!({"conditionsV6": ["-s", "::1"]}), "conditionsV6", "::1"),
        ] {
            let e = load(&req(&conf(extra.clone(), json!([])))).unwrap_err();
            assert_eq!(e.code, 2, "{extra}: {e}");
            assert!(e.msg.contains(key) && e.msg.contains(value), "{extra}: {}", e.msg);
        }
    }

    #[test]
    fn accepted_but_ignored_keys() {
        for extra in [
            json!({"backend": "nftables", "conditionsV4": [], "conditionsV6": []}),
            json!({"markMasqBit": 0}),
            json!({"markMasqBit": 31}),
            json!({"externalSetMarkChain": "KUBE-MARK-MASQ"}),
        ] {
            load(&req(&conf(extra.clone(), json!([])))).unwrap_or_else(|e| panic!("{extra}: {e}"));
        }
    }

    #[test]
    fn mark_bit_range_and_exclusivity_are_code_7() {
        for (extra, needle) in [
            (json!({"markMasqBit": 32}), "32"),
            (json!({"markMasqBit": -1}), "-1"),
            (
                json!({"markMasqBit": 13, "externalSetMarkChain": "KUBE-MARK-MASQ"}),
                "externalSetMarkChain",
            ),
        ] {
            let e = load(&req(&conf(extra.clone(), json!([])))).unwrap_err();
            assert_eq!(e.code, 7, "{extra}: {e}");
            assert!(e.msg.contains(needle), "{extra}: {}", e.msg);
        }
    }

    #[test]
    fn wrongly_typed_key_is_decode_error() {
        let e = load(&req(&conf(json!({"snat": "yes"}), json!([])))).unwrap_err();
        assert_eq!(e.code, 6, "{e}");
    }
}
