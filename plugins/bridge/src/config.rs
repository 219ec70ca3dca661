//! The bridge plugin's configuration: wire keys as the reference names them, validated into [`Bridge`].

use corral_cni::{CniError, IpamRef, Request};
use corral_nat::model::parse_mac;
use serde::Deserialize;
use serde_json::Value;

/// Raw wire config (only the bridge's own keys; the common ones are in `NetConf`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BridgeConf {
    #[serde(default)]
    bridge: Option<String>,
    #[serde(default)]
    is_gateway: bool,
    #[serde(default)]
    is_default_gateway: bool,
    #[serde(default)]
    force_address: bool,
    #[serde(default)]
    ip_masq: bool,
    #[serde(default)]
    ip_masq_backend: Option<String>,
    #[serde(default)]
    mtu: i64,
    #[serde(default)]
    hairpin_mode: bool,
    #[serde(default)]
    promisc_mode: bool,
    #[serde(default)]
    vlan: i64,
    #[serde(default)]
    vlan_trunk: Vec<TrunkConf>,
    #[serde(default)]
    preserve_default_vlan: bool,
    #[serde(default)]
    macspoofchk: bool,
    #[serde(default)]
    enabledad: bool,
    #[serde(default)]
    disable_container_interface: bool,
    #[serde(default)]
    port_isolation: bool,
    #[serde(default)]
    ipam: Option<IpamRef>,
}

/// One `vlanTrunk` entry: a single `id` or a `minID`..`maxID` range.
#[derive(Debug, Default, Deserialize)]
pub struct TrunkConf {
    #[serde(default)]
    id: Option<i64>,
    #[serde(default, rename = "minID")]
    min_id: Option<i64>,
    #[serde(default, rename = "maxID")]
    max_id: Option<i64>,
}

/// Validated settings for one attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridge {
    /// Network name (owner key for NAT records).
    pub network: String,
    /// Bridge device name.
    pub name: String,
    /// Put the gateway address on the bridge.
    pub is_gateway: bool,
    /// Add a default route via the gateway in the container.
    pub is_default_gateway: bool,
    /// Replace a conflicting bridge address.
    pub force_address: bool,
    /// Masquerade container traffic leaving its subnet.
    pub ip_masq: bool,
    /// MTU of the bridge (on creation) and both veth ends.
    pub mtu: Option<u32>,
    /// Hairpin on the host veth port.
    pub hairpin: bool,
    /// Promiscuous bridge.
    pub promisc: bool,
    /// Access VLAN of the port (PVID, untagged).
    pub vlan: Option<u16>,
    /// Tagged VLANs on the port.
    pub trunk: Vec<u16>,
    /// Keep the bridge's default PVID on the port.
    pub preserve_default_vlan: bool,
    /// Drop frames whose source MAC is not the container's.
    pub macspoofchk: bool,
    /// Leave DAD on in the container.
    pub enable_dad: bool,
    /// Leave the container interface down.
    pub disable_container_interface: bool,
    /// Isolate the host veth port from other isolated ports.
    pub port_isolation: bool,
    /// Container MAC from runtimeConfig, args or CNI_ARGS.
    pub mac: Option<[u8; 6]>,
    /// IPAM plugin type, when configured.
    pub ipam_type: Option<String>,
}

/// Default bridge name, as the reference.
pub const DEFAULT_BRIDGE: &str = "cni0";

/// Decodes and validates the request's config.
pub fn load(req: &Request) -> Result<Bridge, CniError> {
    let raw: BridgeConf = req.decode_conf()?;
    req.args.check_known(&["MAC", "IP"])?;
    validate(raw, req)
}

fn validate(raw: BridgeConf, req: &Request) -> Result<Bridge, CniError> {
    let net = &req.conf.name;
    let bad = |msg: String| CniError::invalid_config(format!("network \"{net}\": {msg}"));
    if !(0..=4094).contains(&raw.vlan) {
        return Err(bad(format!(
            "invalid VLAN ID {} (must be between 0 and 4094)",
            raw.vlan
        )));
    }
    let trunk = collect_trunk(&raw.vlan_trunk).map_err(bad)?;
    if raw.hairpin_mode && raw.promisc_mode {
        return Err(bad(
            "cannot set hairpinMode and promiscMode at the same time".into()
        ));
    }
    let ipam_type = raw.ipam.as_ref().and_then(IpamRef::plugin).map(str::to_string);
    if raw.disable_container_interface && ipam_type.is_some() {
        return Err(bad("cannot use IPAM when disableContainerInterface is set".into()));
    }
    if !(0..=65535).contains(&raw.mtu) {
        return Err(bad(format!("invalid mtu {}", raw.mtu)));
    }
    if let Some(b) = raw.ip_masq_backend.as_deref() {
        if !matches!(b, "nftables" | "iptables") {
            return Err(CniError::unsupported_field("ipMasqBackend", format!("\"{b}\"")));
        }
    }
    let name = raw
        .bridge
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| DEFAULT_BRIDGE.to_string());
    corral_cni::skel::validate_ifname(&name).map_err(|e| bad(format!("bridge name: {}", e.msg)))?;
    Ok(Bridge {
        network: net.clone(),
        name,
        is_gateway: raw.is_gateway || raw.is_default_gateway,
        is_default_gateway: raw.is_default_gateway,
        force_address: raw.force_address,
        ip_masq: raw.ip_masq,
        mtu: u32::try_from(raw.mtu).ok().filter(|m| *m > 0),
        hairpin: raw.hairpin_mode,
        promisc: raw.promisc_mode,
        vlan: u16::try_from(raw.vlan).ok().filter(|v| *v > 0),
        trunk,
        preserve_default_vlan: raw.preserve_default_vlan,
        macspoofchk: raw.macspoofchk,
        enable_dad: raw.enabledad,
        disable_container_interface: raw.disable_container_interface,
        port_isolation: raw.port_isolation,
        mac: container_mac(req)?,
        ipam_type,
    })
}

/// Expands `vlanTrunk` into VLAN ids, checking each as the reference does.
fn collect_trunk(entries: &[TrunkConf]) -> Result<Vec<u16>, String> {
    let valid = |v: i64| (1..=4094).contains(&v);
    let mut out = Vec::new();
    for t in entries {
        if let Some(id) = t.id {
            if !valid(id) {
                return Err(format!("incorrect trunk id {id} (must be between 1 and 4094)"));
            }
            out.push(id);
        }
        match (t.min_id, t.max_id) {
            (Some(lo), Some(hi)) => {
                if !valid(lo) || !valid(hi) {
                    return Err(format!(
                        "incorrect trunk minID {lo} or maxID {hi} (must be between 1 and 4094)"
                    ));
                }
                if lo > hi {
                    return Err(format!("trunk minID {lo} is greater than maxID {hi}"));
                }
                out.extend(lo..=hi);
            }
            (None, None) => {}
            _ => return Err("trunk minID and maxID must be set together".into()),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out.into_iter().filter_map(|v| u16::try_from(v).ok()).collect())
}

/// The container MAC: runtimeConfig.mac, else args.cni.mac, else CNI_ARGS MAC (the reference's order).
fn container_mac(req: &Request) -> Result<Option<[u8; 6]>, CniError> {
    let from_json = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let raw = from_json(req.conf.runtime("mac"))
        .or_else(|| from_json(req.conf.args_cni("mac")))
        .or_else(|| req.args.get("MAC").map(str::to_string));
    match raw {
        None => Ok(None),
        Some(s) => parse_mac(&s)
            .map(Some)
            .ok_or_else(|| CniError::invalid_config(format!("invalid MAC address \"{s}\""))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_cni::{CniArgs, Command, NetConf};
    use std::collections::BTreeMap;

    fn req(conf: &str, cni_args: &str) -> Request {
        let nc: NetConf = serde_json::from_str(conf).unwrap();
        Request {
            command: Command::Add,
            container_id: "c1".into(),
            netns: None,
            ifname: "eth0".into(),
            args: CniArgs::parse(cni_args).unwrap(),
            cni_path: vec![],
            conf: nc,
            stdin: conf.as_bytes().to_vec(),
            env: BTreeMap::new(),
        }
    }

    fn load_str(conf: &str) -> Result<Bridge, CniError> {
        load(&req(conf, ""))
    }

    #[test]
    fn defaults_match_the_reference() {
        let b = load_str(r#"{"cniVersion":"1.0.0","name":"n","type":"bridge"}"#).unwrap();
        assert_eq!(b.name, "cni0");
        assert!(!b.is_gateway && !b.ip_masq && !b.hairpin && !b.preserve_default_vlan);
        assert_eq!((b.mtu, b.vlan, b.mac, b.ipam_type), (None, None, None, None));
    }

    #[test]
    fn default_gateway_implies_gateway() {
        let b = load_str(r#"{"name":"n","isDefaultGateway":true}"#).unwrap();
        assert!(b.is_gateway && b.is_default_gateway);
    }

    #[test]
    fn bad_values_are_code_7_naming_the_value() {
        for (conf, needle) in [
            (r#"{"name":"n","vlan":9999}"#, "9999"),
            (r#"{"name":"n","vlan":-1}"#, "-1"),
            (
                r#"{"name":"n","hairpinMode":true,"promiscMode":true}"#,
                "hairpinMode",
            ),
            (r#"{"name":"n","vlanTrunk":[{"id":5000}]}"#, "5000"),
            (r#"{"name":"n","vlanTrunk":[{"minID":10,"maxID":5}]}"#, "greater"),
            (r#"{"name":"n","vlanTrunk":[{"minID":10}]}"#, "together"),
            (
                r#"{"name":"n","disableContainerInterface":true,"ipam":{"type":"host-local"}}"#,
                "IPAM",
            ),
            (r#"{"name":"n","mtu":70000}"#, "70000"),
            (
                r#"{"name":"n","bridge":"a-very-long-bridge-name"}"#,
                "bridge name",
            ),
        ] {
            let e = load_str(conf).unwrap_err();
            assert_eq!(e.code, 7, "{conf}");
            assert!(e.msg.contains(needle), "{conf}: {}", e.msg);
            assert!(e.msg.contains("network \"n\""), "{conf}: {}", e.msg);
        }
    }

    #[test]
    fn wrongly_typed_value_is_decode_error() {
        assert_eq!(load_str(r#"{"name":"n","mtu":"big"}"#).unwrap_err().code, 6);
    }

    #[test]
    fn unknown_masq_backend_is_unsupported_field() {
        let e = load_str(r#"{"name":"n","ipMasqBackend":"ebtables"}"#).unwrap_err();
        assert_eq!(e.code, 2);
        assert!(e.msg.contains("ipMasqBackend") && e.msg.contains("ebtables"));
    }

    #[test]
    fn trunk_expands_ranges_and_ids() {
        let b = load_str(r#"{"name":"n","vlanTrunk":[{"id":7},{"minID":3,"maxID":5},{"id":4}]}"#).unwrap();
        assert_eq!(b.trunk, vec![3, 4, 5, 7]);
    }

    #[test]
    fn mac_precedence_runtime_then_args_then_cni_args() {
        let all = r#"{"name":"n","runtimeConfig":{"mac":"02:00:00:00:00:01"},"args":{"cni":{"mac":"02:00:00:00:00:02"}}}"#;
        let b = load(&req(all, "MAC=02:00:00:00:00:03")).unwrap();
        assert_eq!(b.mac, Some([2, 0, 0, 0, 0, 1]));
        let args = r#"{"name":"n","args":{"cni":{"mac":"02:00:00:00:00:02"}}}"#;
        assert_eq!(
            load(&req(args, "MAC=02:00:00:00:00:03")).unwrap().mac,
            Some([2, 0, 0, 0, 0, 2])
        );
        let plain = r#"{"name":"n"}"#;
        assert_eq!(
            load(&req(plain, "MAC=02:00:00:00:00:03")).unwrap().mac,
            Some([2, 0, 0, 0, 0, 3])
        );
        let e = load(&req(plain, "MAC=zz")).unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("zz"));
    }

    #[test]
    fn unknown_cni_args_rejected_unless_ignored() {
        assert_eq!(load(&req(r#"{"name":"n"}"#, "FOO=1")).unwrap_err().code, 4);
        assert!(load(&req(r#"{"name":"n"}"#, "FOO=1;IgnoreUnknown=1")).is_ok());
    }

    #[test]
    fn mac_parsing_is_strict() {
        assert_eq!(parse_mac("0a:58:0A:01:00:05"), Some([0x0a, 0x58, 0x0a, 1, 0, 5]));
        for bad in [
            "",
            "0a:58",
            "0a:58:0a:01:00:05:06",
            "0a:58:0a:01:00:5",
            "gg:00:00:00:00:00",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }
}
