//! The ADD result, held internally in the 1.1.0 shape and written in whatever version the request asked for
//! (0.1.0/0.2.0 `ip4`/`ip6`, 0.3.x/0.4.0 `ips[].version`, 1.0.0, 1.1.0 with the new route fields).

use crate::error::CniError;
use crate::version;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::net::IpAddr;

/// An interface created or configured by a plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// Interface name.
    pub name: String,
    /// Hardware address, `aa:bb:cc:dd:ee:ff`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// MTU (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The netns path for container interfaces; empty for host interfaces.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
    /// Socket path for vhost-user style interfaces (1.1.0).
    #[serde(default, rename = "socketPath", skip_serializing_if = "String::is_empty")]
    pub socket_path: String,
    /// PCI id (1.1.0).
    #[serde(default, rename = "pciID", skip_serializing_if = "String::is_empty")]
    pub pci_id: String,
}

/// An address assigned to an interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Address with prefix length, e.g. `10.1.0.5/24`.
    pub address: IpNet,
    /// The default gateway for this subnet, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

/// A route; the fields after `gw` are 1.1.0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination.
    pub dst: IpNet,
    /// Next hop; absent means the gateway of the interface's subnet (or on-link).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    /// Route MTU (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Advertised MSS (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    /// Priority / metric (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// Routing table (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    /// Scope (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u8>,
}

impl Route {
    /// A route with only a destination and an optional gateway.
    pub fn new(dst: IpNet, gw: Option<IpAddr>) -> Self {
        Route {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }
}

/// DNS settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// Name servers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// Local domain.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    /// Search domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// Resolver options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_empty()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

/// A plugin's result in the newest shape.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniResult {
    /// Interfaces (empty in an IPAM result).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    /// Addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    /// Routes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// DNS.
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
}

impl CniResult {
    /// Reads a result written in any supported version. `fallback_version` is used when the JSON has no
    /// `cniVersion` (a prevResult inherits the config's).
    pub fn parse(v: &Value, fallback_version: &str) -> Result<Self, CniError> {
        let ver = v
            .get("cniVersion")
            .and_then(Value::as_str)
            .unwrap_or(fallback_version);
        if !version::is_supported(ver) {
            return Err(CniError::incompatible_version(ver).context("result"));
        }
        let decode =
            |e: serde_json::Error| CniError::decode(format!("cannot decode {ver} result")).with_details(e);
        if version::at_least(ver, "0.3.0") {
            let mut copy = v.clone();
            if let Some(ips) = copy.get_mut("ips").and_then(Value::as_array_mut) {
                for ip in ips.iter_mut().filter_map(Value::as_object_mut) {
                    ip.remove("version");
                }
            }
            serde_json::from_value(copy).map_err(decode)
        } else {
            let legacy: Legacy020 = serde_json::from_value(v.clone()).map_err(decode)?;
            Ok(legacy.into_current())
        }
    }

    /// The addresses assigned to interface `index` (those naming no interface count for every one).
    pub fn addresses_of(&self, index: usize) -> Vec<IpNet> {
        self.ips
            .iter()
            .filter(|ip| ip.interface.is_none_or(|i| i == index))
            .map(|ip| ip.address)
            .collect()
    }

    /// The container interface named `ifname` in `sandbox` and its index, for CHECK; a missing one is code 101.
    pub fn sandbox_interface(&self, ifname: &str, sandbox: &str) -> Result<(usize, &Interface), CniError> {
        self.interfaces
            .iter()
            .enumerate()
            .find(|(_, i)| i.name == ifname && i.sandbox == sandbox)
            .ok_or_else(|| {
                CniError::check_mismatch(format!("prevResult has no interface \"{ifname}\" in {sandbox}"))
            })
    }

    /// The routes as they go into the container: a route without `gw` goes via the gateway of the first
    /// address of its family that has one, as the reference's `ipam.ConfigureIface` does; with no such
    /// gateway it stays on-link. The result itself keeps the routes as IPAM returned them.
    pub fn routes_via_family_gateways(&self) -> Vec<Route> {
        let gateway_of = |v4: bool| {
            self.ips
                .iter()
                .filter(|i| i.address.addr().is_ipv4() == v4)
                .find_map(|i| i.gateway)
        };
        self.routes
            .iter()
            .map(|r| Route {
                gw: r.gw.or_else(|| gateway_of(r.dst.addr().is_ipv4())),
                ..r.clone()
            })
            .collect()
    }

    /// Writes the result in the requested version. Fails (code 1) for versions that cannot carry it, such as
    /// two addresses of one family in 0.2.0.
    pub fn to_version(&self, ver: &str) -> Result<Value, CniError> {
        if !version::is_supported(ver) {
            return Err(CniError::incompatible_version(ver));
        }
        if !version::at_least(ver, "0.3.0") {
            return self.to_020(ver);
        }
        let mut out = Map::new();
        out.insert("cniVersion".into(), json!(ver));
        let is_11 = version::at_least(ver, "1.1.0");
        if !self.interfaces.is_empty() {
            let ifs: Vec<Value> = self
                .interfaces
                .iter()
                .map(|i| {
                    let mut i = i.clone();
                    if !is_11 {
                        i.mtu = None;
                        i.socket_path.clear();
                        i.pci_id.clear();
                    }
                    json!(i)
                })
                .collect();
            out.insert("interfaces".into(), Value::Array(ifs));
        }
        if !self.ips.is_empty() {
            let with_version = !version::at_least(ver, "1.0.0");
            let ips: Vec<Value> = self
                .ips
                .iter()
                .map(|ip| {
                    let mut o = json!(ip);
                    if with_version {
                        o["version"] = json!(if ip.address.addr().is_ipv4() { "4" } else { "6" });
                    }
                    o
                })
                .collect();
            out.insert("ips".into(), Value::Array(ips));
        }
        if !self.routes.is_empty() {
            let routes: Vec<Value> = self
                .routes
                .iter()
                .map(|r| {
                    if is_11 {
                        json!(r)
                    } else {
                        json!(Route::new(r.dst, r.gw))
                    }
                })
                .collect();
            out.insert("routes".into(), Value::Array(routes));
        }
        // Always present, even empty, as the reference writes it (Go's omitempty never omits a struct).
        out.insert("dns".into(), json!(self.dns));
        Ok(Value::Object(out))
    }

    fn to_020(&self, ver: &str) -> Result<Value, CniError> {
        let mut out = Map::new();
        out.insert("cniVersion".into(), json!(ver));
        for (key, v4) in [("ip4", true), ("ip6", false)] {
            let mut of_family = self.ips.iter().filter(|ip| ip.address.addr().is_ipv4() == v4);
            let Some(first) = of_family.next() else { continue };
            if of_family.next().is_some() {
                return Err(CniError::new(
                    crate::error::codes::INCOMPATIBLE_VERSION,
                    format!("cannot write a {ver} result with more than one {key} address"),
                ));
            }
            let routes: Vec<Value> = self
                .routes
                .iter()
                .filter(|r| r.dst.addr().is_ipv4() == v4)
                .map(|r| json!(Route::new(r.dst, r.gw)))
                .collect();
            let mut o = json!({ "ip": first.address });
            if let Some(gw) = first.gateway {
                o["gateway"] = json!(gw);
            }
            if !routes.is_empty() {
                o["routes"] = Value::Array(routes);
            }
            out.insert(key.into(), o);
        }
        out.insert("dns".into(), json!(self.dns));
        Ok(Value::Object(out))
    }
}

/// The 0.1.0/0.2.0 shape.
#[derive(Deserialize)]
struct Legacy020 {
    #[serde(default)]
    ip4: Option<LegacyIp>,
    #[serde(default)]
    ip6: Option<LegacyIp>,
    #[serde(default)]
    dns: Dns,
}

#[derive(Deserialize)]
struct LegacyIp {
    ip: IpNet,
    #[serde(default)]
    gateway: Option<IpAddr>,
    #[serde(default)]
    routes: Vec<Route>,
}

impl Legacy020 {
    fn into_current(self) -> CniResult {
        let mut r = CniResult {
            dns: self.dns,
            ..Default::default()
        };
        for ip in [self.ip4, self.ip6].into_iter().flatten() {
            r.ips.push(IpConfig {
                address: ip.ip,
                gateway: ip.gateway,
                interface: None,
            });
            r.routes.extend(ip.routes);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface {
                    name: "cni0".into(),
                    mac: "0a:58:0a:01:00:01".into(),
                    mtu: Some(1500),
                    ..Default::default()
                },
                Interface {
                    name: "eth0".into(),
                    mac: "0a:58:0a:01:00:05".into(),
                    mtu: Some(1500),
                    sandbox: "/run/netns/x".into(),
                    ..Default::default()
                },
            ],
            ips: vec![
                IpConfig {
                    address: "10.1.0.5/24".parse().unwrap(),
                    gateway: Some("10.1.0.1".parse().unwrap()),
                    interface: Some(1),
                },
                IpConfig {
                    address: "fd00::5/64".parse().unwrap(),
                    gateway: Some("fd00::1".parse().unwrap()),
                    interface: Some(1),
                },
            ],
            routes: vec![
                Route {
                    priority: Some(10),
                    table: Some(100),
                    ..Route::new("0.0.0.0/0".parse().unwrap(), None)
                },
                Route::new("::/0".parse().unwrap(), Some("fd00::1".parse().unwrap())),
            ],
            dns: Dns {
                nameservers: vec!["10.1.0.1".into()],
                ..Default::default()
            },
        }
    }

    #[test]
    fn routes_without_gateway_go_via_their_family_gateway() {
        let r = CniResult {
            ips: vec![
                IpConfig {
                    address: "10.1.0.5/24".parse().unwrap(),
                    gateway: None,
                    interface: None,
                },
                IpConfig {
                    address: "10.2.0.5/24".parse().unwrap(),
                    gateway: Some("10.2.0.1".parse().unwrap()),
                    interface: None,
                },
            ],
            routes: vec![
                Route::new("0.0.0.0/0".parse().unwrap(), None),
                Route::new(
                    "192.168.0.0/16".parse().unwrap(),
                    Some("10.1.0.254".parse().unwrap()),
                ),
                Route::new("fd00::/8".parse().unwrap(), None),
            ],
            ..Default::default()
        };
        let gws: Vec<Option<IpAddr>> = r.routes_via_family_gateways().iter().map(|r| r.gw).collect();
        assert_eq!(
            gws,
            vec![
                Some("10.2.0.1".parse().unwrap()),
                Some("10.1.0.254".parse().unwrap()),
                None
            ]
        );
        assert_eq!(r.routes[0].gw, None, "the result keeps IPAM's routes");
    }

    #[test]
    fn round_trips_through_every_version() {
        for ver in version::SUPPORTED {
            let r = sample();
            let v = r.to_version(ver);
            if !version::at_least(ver, "0.3.0") {
                // two addresses per family are fine here (one v4, one v6)
            }
            let v = v.unwrap_or_else(|e| panic!("{ver}: {e}"));
            assert_eq!(v["cniVersion"], ver, "{ver}");
            let back = CniResult::parse(&v, ver).unwrap_or_else(|e| panic!("{ver}: {e}"));
            assert_eq!(back.ips.len(), 2, "{ver}");
            assert_eq!(back.dns, r.dns, "{ver}");
            if version::at_least(ver, "1.1.0") {
                assert_eq!(back, r, "{ver}");
            }
        }
    }

    #[test]
    fn versions_0_3_and_0_4_carry_ip_version() {
        for ver in ["0.3.0", "0.3.1", "0.4.0"] {
            let v = sample().to_version(ver).unwrap();
            assert_eq!(v["ips"][0]["version"], "4", "{ver}");
            assert_eq!(v["ips"][1]["version"], "6", "{ver}");
            assert_eq!(v["ips"][0]["interface"], 1, "{ver}");
        }
        let v = sample().to_version("1.0.0").unwrap();
        assert!(v["ips"][0].get("version").is_none());
    }

    #[test]
    fn only_1_1_carries_route_and_interface_extras() {
        for ver in version::SUPPORTED {
            let v = sample().to_version(ver).unwrap();
            let has_prio = v
                .get("routes")
                .map(|r| r[0].get("priority").is_some())
                .unwrap_or(false);
            let has_mtu = v
                .get("interfaces")
                .map(|i| i[0].get("mtu").is_some())
                .unwrap_or(false);
            let want = ver == "1.1.0";
            assert_eq!(has_prio, want, "{ver}");
            assert_eq!(has_mtu, want, "{ver}");
        }
    }

    #[test]
    fn legacy_shape_has_ip4_ip6() {
        for ver in ["0.1.0", "0.2.0"] {
            let v = sample().to_version(ver).unwrap();
            assert_eq!(v["ip4"]["ip"], "10.1.0.5/24", "{ver}");
            assert_eq!(v["ip4"]["gateway"], "10.1.0.1", "{ver}");
            assert_eq!(v["ip4"]["routes"][0]["dst"], "0.0.0.0/0", "{ver}");
            assert_eq!(v["ip6"]["ip"], "fd00::5/64", "{ver}");
            assert!(v.get("interfaces").is_none(), "{ver}");
        }
    }

    #[test]
    fn legacy_rejects_two_addresses_of_one_family() {
        let mut r = sample();
        r.ips.push(IpConfig {
            address: "10.2.0.5/24".parse().unwrap(),
            gateway: None,
            interface: None,
        });
        for ver in ["0.1.0", "0.2.0"] {
            assert_eq!(r.to_version(ver).unwrap_err().code, 1, "{ver}");
        }
        assert!(r.to_version("0.3.1").is_ok());
    }

    #[test]
    fn parse_rejects_garbage_with_decode_error() {
        let v = json!({"cniVersion": "1.0.0", "ips": [{"address": "not-an-ip"}]});
        assert_eq!(CniResult::parse(&v, "1.0.0").unwrap_err().code, 6);
        let v = json!({"cniVersion": "9.9.9"});
        assert_eq!(CniResult::parse(&v, "1.0.0").unwrap_err().code, 1);
    }

    #[test]
    fn empty_dns_is_written_as_the_reference_does() {
        for ver in version::SUPPORTED {
            let v = CniResult::default().to_version(ver).unwrap();
            assert_eq!(v["dns"], json!({}), "{ver}");
        }
    }

    #[test]
    fn addresses_of_an_interface_include_unassigned_ones() {
        let mut r = sample();
        r.ips.push(IpConfig {
            address: "10.9.0.9/24".parse().unwrap(),
            gateway: None,
            interface: None,
        });
        r.ips.push(IpConfig {
            address: "10.8.0.8/24".parse().unwrap(),
            gateway: None,
            interface: Some(0),
        });
        let got: Vec<String> = r.addresses_of(1).iter().map(ToString::to_string).collect();
        assert_eq!(got, ["10.1.0.5/24", "fd00::5/64", "10.9.0.9/24"]);
    }

    #[test]
    fn finds_the_sandbox_interface_or_fails_with_101() {
        let r = sample();
        assert_eq!(r.sandbox_interface("eth0", "/run/netns/x").unwrap().0, 1);
        assert_eq!(r.sandbox_interface("eth0", "/run/netns/y").unwrap_err().code, 101);
        assert_eq!(r.sandbox_interface("cni0", "/run/netns/x").unwrap_err().code, 101);
    }

    #[test]
    fn unknown_version_rejected_on_write() {
        assert_eq!(sample().to_version("0.5.0").unwrap_err().code, 1);
    }
}
