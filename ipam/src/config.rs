//! Configuration: the wire structs (`*Conf`, the reference's JSON keys) and their validation into
//! [`IpamConfig`], pure. Every rejection is code 7 and names the network and the offending value.

use crate::error::IpamError;
use crate::range::{Range, RangeSet};
use corral_cni::{version, Route};
use ipnet::IpNet;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::PathBuf;

/// Where reservations live when `ipam.dataDir` is not set.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

/// The parts of the network configuration host-local reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NetConf {
    /// Network name (the store directory's name).
    #[serde(default)]
    pub name: String,
    /// The request's version.
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    /// The IPAM section.
    #[serde(default)]
    pub ipam: Option<IpamConf>,
    /// Capability arguments (`ipRanges`, `ips`).
    #[serde(rename = "runtimeConfig", default)]
    pub runtime_config: Option<RuntimeConf>,
    /// `args.cni.ips`.
    #[serde(default)]
    pub args: Option<ArgsConf>,
}

/// The `ipam` object.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct IpamConf {
    /// Legacy single range: subnet.
    #[serde(default)]
    pub subnet: Option<String>,
    /// Legacy single range: first address.
    #[serde(rename = "rangeStart", default)]
    pub range_start: Option<String>,
    /// Legacy single range: last address.
    #[serde(rename = "rangeEnd", default)]
    pub range_end: Option<String>,
    /// Legacy single range: gateway.
    #[serde(default)]
    pub gateway: Option<String>,
    /// Range sets: one address is allocated from each.
    #[serde(default)]
    pub ranges: Option<Vec<Vec<RangeConf>>>,
    /// Routes copied into the result.
    #[serde(default)]
    pub routes: Option<Vec<RouteConf>>,
    /// Store root.
    #[serde(rename = "dataDir", default)]
    pub data_dir: Option<String>,
    /// A resolv.conf to turn into the result's `dns`.
    #[serde(rename = "resolvConf", default)]
    pub resolv_conf: Option<String>,
}

/// One range of a range set.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RangeConf {
    /// Subnet in CIDR form, no host bits.
    #[serde(default)]
    pub subnet: String,
    /// First address handed out.
    #[serde(rename = "rangeStart", default)]
    pub range_start: Option<String>,
    /// Last address handed out.
    #[serde(rename = "rangeEnd", default)]
    pub range_end: Option<String>,
    /// Gateway.
    #[serde(default)]
    pub gateway: Option<String>,
}

/// One route; the fields after `gw` are CNI 1.1.0 and passed through.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RouteConf {
    /// Destination CIDR.
    #[serde(default)]
    pub dst: String,
    /// Next hop.
    #[serde(default)]
    pub gw: Option<String>,
    /// Route MTU.
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Advertised MSS.
    #[serde(default)]
    pub advmss: Option<u32>,
    /// Metric.
    #[serde(default)]
    pub priority: Option<u32>,
    /// Table.
    #[serde(default)]
    pub table: Option<u32>,
    /// Scope.
    #[serde(default)]
    pub scope: Option<u8>,
}

/// `runtimeConfig` keys host-local reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RuntimeConf {
    /// Range sets prepended to the configured ones.
    #[serde(rename = "ipRanges", default)]
    pub ip_ranges: Option<Vec<Vec<RangeConf>>>,
    /// Requested addresses.
    #[serde(default)]
    pub ips: Option<Vec<String>>,
}

/// `args`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ArgsConf {
    /// `args.cni`.
    #[serde(default)]
    pub cni: Option<ArgsCniConf>,
}

/// `args.cni`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ArgsCniConf {
    /// Requested addresses.
    #[serde(default)]
    pub ips: Option<Vec<String>>,
}

/// A validated host-local configuration.
#[derive(Debug, Clone)]
pub struct IpamConfig {
    /// Network name.
    pub network: String,
    /// Range sets: runtimeConfig.ipRanges, then the legacy range, then `ranges`.
    pub range_sets: Vec<RangeSet>,
    /// The requested address of each range set (from CNI_ARGS `IP`, args.cni.ips, runtimeConfig.ips), aligned
    /// with `range_sets`.
    pub requested: Vec<Option<IpAddr>>,
    /// Routes for the result.
    pub routes: Vec<Route>,
    /// Store root (the network's directory is `<data_dir>/<network>`).
    pub data_dir: PathBuf,
    /// resolv.conf to read for the result's DNS.
    pub resolv_conf: Option<PathBuf>,
}

/// The store location only: what DEL and GC need, valid even when the ranges are not.
pub fn parse_data_dir(conf: &NetConf) -> Result<PathBuf, IpamError> {
    let ipam = conf
        .ipam
        .as_ref()
        .ok_or_else(|| IpamError::config(&conf.name, "IPAM config missing 'ipam' key"))?;
    Ok(data_dir_of(ipam))
}

fn data_dir_of(ipam: &IpamConf) -> PathBuf {
    PathBuf::from(non_empty(&ipam.data_dir).unwrap_or(DEFAULT_DATA_DIR))
}

/// Validates the whole configuration. `cni_args_ip` is CNI_ARGS `IP` (comma-separated addresses allowed).
pub fn parse(conf: &NetConf, cni_args_ip: Option<&str>) -> Result<IpamConfig, IpamError> {
    let net = conf.name.as_str();
    let err = |msg: String| IpamError::config(net, msg);
    let ipam = conf
        .ipam
        .as_ref()
        .ok_or_else(|| err("IPAM config missing 'ipam' key".into()))?;

    let mut wire_sets: Vec<Vec<RangeConf>> = Vec::new();
    let runtime = conf.runtime_config.clone().unwrap_or_default();
    wire_sets.extend(runtime.ip_ranges.unwrap_or_default());
    if let Some(subnet) = non_empty(&ipam.subnet) {
        wire_sets.push(vec![RangeConf {
            subnet: subnet.to_string(),
            range_start: ipam.range_start.clone(),
            range_end: ipam.range_end.clone(),
            gateway: ipam.gateway.clone(),
        }]);
    }
    wire_sets.extend(ipam.ranges.clone().unwrap_or_default());
    if wire_sets.is_empty() {
        return Err(err("no IP ranges specified".into()));
    }
    let range_sets = wire_sets
        .iter()
        .enumerate()
        .map(|(i, set)| parse_range_set(set).map_err(|m| err(format!("invalid range set {i}: {m}"))))
        .collect::<Result<Vec<_>, _>>()?;
    check_sets(&range_sets, &conf.cni_version).map_err(err)?;

    let args_ips = conf
        .args
        .as_ref()
        .and_then(|a| a.cni.as_ref())
        .and_then(|c| c.ips.clone());
    let requested = parse_requested(
        cni_args_ip,
        &args_ips.unwrap_or_default(),
        &runtime.ips.unwrap_or_default(),
    )
    .map_err(err)?;
    let requested = assign_requested(&range_sets, &requested).map_err(err)?;
    let routes = ipam
        .routes
        .iter()
        .flatten()
        .map(parse_route)
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    Ok(IpamConfig {
        network: net.to_string(),
        range_sets,
        requested,
        routes,
        data_dir: data_dir_of(ipam),
        resolv_conf: non_empty(&ipam.resolv_conf).map(PathBuf::from),
    })
}

/// Overlaps between sets, and more than one set per family before 0.3.0.
fn check_sets(sets: &[RangeSet], cni_version: &str) -> Result<(), String> {
    for (i, a) in sets.iter().enumerate() {
        if let Some(j) = sets[i + 1..].iter().position(|b| a.overlaps(b)) {
            return Err(format!("range set {i} overlaps with {}", i + j + 1));
        }
    }
    let v4 = sets.iter().filter(|s| s.is_ipv4()).count();
    let v6 = sets.len() - v4;
    if (v4 > 1 || v6 > 1) && !version::at_least(cni_version, "0.3.0") {
        return Err(format!(
            "CNI version {cni_version} does not support more than 1 address per family"
        ));
    }
    Ok(())
}

fn parse_range_set(set: &[RangeConf]) -> Result<RangeSet, String> {
    let ranges = set.iter().map(parse_range).collect::<Result<Vec<_>, _>>()?;
    RangeSet::new(ranges).map_err(|e| e.to_string())
}

fn parse_range(r: &RangeConf) -> Result<Range, String> {
    let subnet: IpNet = r
        .subnet
        .trim()
        .parse()
        .map_err(|_| format!("invalid subnet \"{}\" (want CIDR, e.g. 10.1.0.0/24)", r.subnet))?;
    let start = parse_opt_ip("rangeStart", &r.range_start)?;
    let end = parse_opt_ip("rangeEnd", &r.range_end)?;
    let gateway = parse_opt_ip("gateway", &r.gateway)?;
    Range::new(subnet, start, end, gateway).map_err(|e| e.to_string())
}

fn parse_opt_ip(key: &str, v: &Option<String>) -> Result<Option<IpAddr>, String> {
    non_empty(v)
        .map(|s| {
            s.parse::<IpAddr>()
                .map(|ip| ip.to_canonical())
                .map_err(|_| format!("invalid {key} \"{s}\""))
        })
        .transpose()
}

/// Requested addresses in source order, each "10.0.0.5" or "10.0.0.5/24", deduplicated.
fn parse_requested(
    cni_args: Option<&str>,
    args: &[String],
    runtime: &[String],
) -> Result<Vec<IpAddr>, String> {
    let from_env = cni_args
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(|s| ("CNI_ARGS IP", s));
    let from_args = args.iter().map(|s| ("args.cni.ips", s.as_str()));
    let from_rt = runtime.iter().map(|s| ("runtimeConfig.ips", s.as_str()));
    let mut out: Vec<IpAddr> = Vec::new();
    for (source, raw) in from_env.chain(from_args).chain(from_rt) {
        let s = raw.trim();
        if s.is_empty() {
            continue;
        }
        let addr = s.split_once('/').map_or(s, |(a, _)| a);
        let ip = addr
            .parse::<IpAddr>()
            .map_err(|_| format!("invalid requested IP \"{raw}\" in {source}"))?
            .to_canonical();
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    Ok(out)
}

/// Puts each requested address in the one range set that holds it; refuses addresses no set holds, two in
/// one set, and gateways.
fn assign_requested(sets: &[RangeSet], requested: &[IpAddr]) -> Result<Vec<Option<IpAddr>>, String> {
    let mut out = vec![None; sets.len()];
    for &ip in requested {
        let (i, range) = sets
            .iter()
            .enumerate()
            .find_map(|(i, s)| s.range_for(ip).map(|r| (i, r)))
            .ok_or_else(|| format!("requested IP {ip} is not in any range set"))?;
        if range.gateway == ip {
            return Err(format!("requested IP {ip} is the gateway of {range}"));
        }
        if let Some(Some(other)) = out.get(i) {
            return Err(format!(
                "requested IPs {other} and {ip} are both in range set {i}"
            ));
        }
        if let Some(slot) = out.get_mut(i) {
            *slot = Some(ip);
        }
    }
    Ok(out)
}

fn parse_route(r: &RouteConf) -> Result<Route, String> {
    let dst: IpNet = r
        .dst
        .trim()
        .parse()
        .map_err(|_| format!("invalid route dst \"{}\"", r.dst))?;
    let gw = non_empty(&r.gw)
        .map(|g| {
            g.parse::<IpAddr>()
                .map_err(|_| format!("invalid route gw \"{g}\" (route to {dst})"))
        })
        .transpose()?;
    Ok(Route {
        mtu: r.mtu,
        advmss: r.advmss,
        priority: r.priority,
        table: r.table,
        scope: r.scope,
        ..Route::new(dst, gw)
    })
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests;
