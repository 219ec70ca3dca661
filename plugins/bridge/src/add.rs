//! ADD: bridge, veth (peer created inside the container netns), IPAM, addresses and routes, NAT records.
//! Every step after the veth is undone in reverse order if a later one fails.

use crate::config::{self, Bridge};
use crate::effects::{boot_id, nat, nat_manager, net, open_container_netns, owner};
use crate::plan::{self, build_result, conflicts, AddrPlan, Links};
use corral_cni::{failpoint, invoke, CniError, CniResult, Command, Request};
use corral_nat::{AttachmentRecord, MasqEntry, Source, SpoofEntry};
use corral_netops::{random_veth_name, run_in_netns, write_sysctl, LinkInfo, Netlink, RouteSpec, VethPlan};
use ipnet::IpNet;
use std::fs::File;

/// What has been applied so far, for rollback.
#[derive(Default)]
struct Applied {
    veth: bool,
    ipam: Option<String>,
    nat: bool,
}

/// Runs ADD; on failure, undoes what was applied and returns the first error.
pub fn add(req: &Request) -> Result<CniResult, CniError> {
    let br = config::load(req)?;
    let ctr_ns = open_container_netns(req)?;
    let host = Netlink::current().map_err(net("netlink"))?;
    let ctr = Netlink::in_netns(&ctr_ns).map_err(net("netlink in container"))?;
    if ctr
        .link_by_name(&req.ifname)
        .map_err(net("container link"))?
        .is_some()
    {
        return Err(CniError::invalid_env(format!(
            "CNI_IFNAME \"{}\" already exists in netns {}",
            req.ifname,
            req.netns
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        )));
    }
    let mut applied = Applied::default();
    match attach(req, &br, &host, &ctr, &ctr_ns, &mut applied) {
        Ok(r) => Ok(r),
        Err(e) => {
            rollback(req, &ctr, &applied);
            Err(e)
        }
    }
}

fn attach(
    req: &Request,
    br: &Bridge,
    host: &Netlink,
    ctr: &Netlink,
    ctr_ns: &File,
    applied: &mut Applied,
) -> Result<CniResult, CniError> {
    let bridge = host
        .ensure_bridge(&br.name, br.mtu, br.promisc)
        .map_err(net("bridge"))?;
    if br.vlan.is_some() || !br.trunk.is_empty() {
        // Kernels built without CONFIG_BRIDGE_VLAN_FILTERING refuse this (EOPNOTSUPP); say which keys need it.
        host.set_bridge_vlan_filtering(bridge.index, true).map_err(|e| {
            CniError::new(
                e.code(),
                format!(
                    "network \"{}\": vlan/vlanTrunk need VLAN filtering on bridge \"{}\", which the kernel \
                     refused (is CONFIG_BRIDGE_VLAN_FILTERING enabled?): {e}",
                    br.network, br.name
                ),
            )
        })?;
    }
    let host_veth = create_veth(req, br, host, ctr_ns, bridge.index)?;
    applied.veth = true;
    configure_port(br, host, &host_veth)?;
    failpoint::hit("bridge-before-ipam");

    let ipam = match &br.ipam_type {
        Some(t) => {
            // Marked before the call: a delegate that failed (or was killed) half-way may have reserved an
            // address, and the spec asks for a DEL of a failed delegated ADD.
            applied.ipam = Some(t.clone());
            invoke::delegate_add(t, req, &corral_ipam::builtins())?
        }
        None => CniResult::default(),
    };
    failpoint::hit("bridge-after-ipam");
    let plan = plan::plan_addresses(br, &ipam)?;
    for addr in &plan.bridge_addrs {
        ensure_bridge_addr(host, &bridge, *addr, br.force_address)?;
    }
    enable_forwarding(&plan)?;

    let ctr_link = configure_container(req, br, ctr, ctr_ns, &plan)?;
    failpoint::hit("bridge-before-nat");
    if br.ip_masq || br.macspoofchk {
        let record = nat_record(req, br, &plan, &host_veth, &ctr_link);
        applied.nat = true;
        nat_manager(req).add(&record).map_err(nat)?;
    }
    failpoint::hit("bridge-after-nat");

    // Re-read the bridge: its MAC may have been taken from the first port.
    let bridge = host
        .link_by_index(bridge.index)
        .map_err(net("bridge"))?
        .unwrap_or(bridge);
    let links = Links {
        bridge: (bridge.name.clone(), bridge.mac.unwrap_or_default()),
        host: (host_veth.name.clone(), host_veth.mac.unwrap_or_default()),
        container: (
            req.ifname.clone(),
            ctr_link.mac.unwrap_or_default(),
            req.netns
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        ),
        mtu: Some(ctr_link.mtu),
    };
    Ok(build_result(&links, &plan, &ipam.dns, req.conf.dns.as_ref()))
}

/// Creates the veth pair with the peer directly inside the container netns (no move: ~35 ms saved),
/// retrying a taken random host name.
fn create_veth(
    req: &Request,
    br: &Bridge,
    host: &Netlink,
    ctr_ns: &File,
    master: u32,
) -> Result<LinkInfo, CniError> {
    let mut last = None;
    for _ in 0..3 {
        let name = random_veth_name().map_err(net("veth name"))?;
        let plan = VethPlan {
            host_name: name,
            peer_name: req.ifname.clone(),
            peer_netns: ctr_ns,
            mtu: br.mtu,
            peer_mac: br.mac,
            master: Some(master),
        };
        match host.create_veth_in_netns(&plan) {
            Ok(l) => return Ok(l),
            Err(e) if e.is_exists() => last = Some(e),
            Err(e) => return Err(net("create veth")(e)),
        }
    }
    Err(last
        .map(net("create veth"))
        .unwrap_or_else(|| CniError::internal("create veth")))
}

/// Bridge-port settings of the host veth: hairpin, isolation, VLANs.
fn configure_port(br: &Bridge, host: &Netlink, veth: &LinkInfo) -> Result<(), CniError> {
    if br.hairpin {
        host.set_hairpin(veth.index, true).map_err(net("hairpin"))?;
    }
    if br.port_isolation {
        host.set_port_isolated(veth.index, true)
            .map_err(net("port isolation"))?;
    }
    if let Some(vid) = br.vlan {
        host.add_port_vlan(veth.index, vid, true, true)
            .map_err(net("port vlan"))?;
    }
    for vid in &br.trunk {
        host.add_port_vlan(veth.index, *vid, false, false)
            .map_err(net("trunk vlan"))?;
    }
    if br.vlan.is_none() && !br.trunk.is_empty() && !br.preserve_default_vlan {
        // A trunk without an access VLAN keeps VLAN 1 as its native VLAN, as the reference does.
        host.add_port_vlan(veth.index, 1, true, true)
            .map_err(net("native vlan"))?;
    }
    Ok(())
}

/// Puts a gateway address on the bridge; a conflicting one is an error unless forceAddress replaces it.
/// The address is added first: when it was already there (every ADD after a network's first) nothing else
/// is read, since listing the bridge's addresses dumps every address of the node.
fn ensure_bridge_addr(host: &Netlink, bridge: &LinkInfo, want: IpNet, force: bool) -> Result<(), CniError> {
    if !host
        .create_address(bridge.index, want)
        .map_err(net("bridge address"))?
    {
        return Ok(());
    }
    let existing = host.addresses(bridge.index).map_err(net("bridge addresses"))?;
    let conflicting: Vec<IpNet> = existing.into_iter().filter(|old| conflicts(old, &want)).collect();
    if conflicting.is_empty() {
        return Ok(());
    }
    if !force {
        host.delete_address(bridge.index, want)
            .map_err(net("undo bridge address"))?;
        return Err(CniError::invalid_config(format!(
            "bridge \"{}\" already has an IP address {} different from {want} (set forceAddress to replace it)",
            bridge.name, conflicting[0]
        )));
    }
    for old in conflicting {
        host.delete_address(bridge.index, old)
            .map_err(net("replace bridge address"))?;
    }
    Ok(())
}

fn enable_forwarding(plan: &AddrPlan) -> Result<(), CniError> {
    if plan.forward_v4 {
        write_sysctl("net/ipv4/ip_forward", "1").map_err(net("ip_forward"))?;
    }
    if plan.forward_v6 {
        write_sysctl("net/ipv6/conf/all/forwarding", "1").map_err(net("ipv6 forwarding"))?;
    }
    Ok(())
}

/// Container side: sysctls, up, addresses, routes.
fn configure_container(
    req: &Request,
    br: &Bridge,
    ctr: &Netlink,
    ctr_ns: &File,
    plan: &AddrPlan,
) -> Result<LinkInfo, CniError> {
    let link = ctr
        .link_by_name(&req.ifname)
        .map_err(net("container link"))?
        .ok_or_else(|| CniError::internal(format!("container link {} vanished", req.ifname)))?;
    let has_v6 = plan.container_addrs.iter().any(|a| a.addr().is_ipv6());
    let ifname = req.ifname.clone();
    let dad = if br.enable_dad { "1" } else { "0" };
    run_in_netns(ctr_ns, move || -> corral_netops::Result<()> {
        write_sysctl(&format!("net/ipv4/conf/{ifname}/arp_notify"), "1")?;
        if has_v6 {
            write_sysctl(&format!("net/ipv6/conf/{ifname}/disable_ipv6"), "0")?;
            write_sysctl(&format!("net/ipv6/conf/{ifname}/accept_dad"), dad)?;
            write_sysctl(&format!("net/ipv6/conf/{ifname}/enhanced_dad"), dad)?;
        }
        Ok(())
    })
    .and_then(|r| r)
    .map_err(net("container sysctls"))?;
    if br.disable_container_interface {
        return Ok(link);
    }
    ctr.set_link_up(link.index).map_err(net("container link up"))?;
    for addr in &plan.container_addrs {
        ctr.add_address(link.index, *addr)
            .map_err(net("container address"))?;
    }
    for r in &plan.container_routes {
        let spec = RouteSpec {
            dst: r.dst,
            gateway: r.gw,
            oif: Some(link.index),
            mtu: r.mtu,
            advmss: r.advmss,
            priority: r.priority,
            table: r.table,
            scope: r.scope,
        };
        ctr.add_route(&spec).map_err(net("container route"))?;
    }
    ctr.link_by_index(link.index)
        .map_err(net("container link"))?
        .ok_or_else(|| CniError::internal("container link vanished"))
}

fn nat_record(
    req: &Request,
    br: &Bridge,
    plan: &AddrPlan,
    host_veth: &LinkInfo,
    ctr: &LinkInfo,
) -> AttachmentRecord {
    let mut record = AttachmentRecord::new(owner(req));
    if br.ip_masq {
        record.masq = plan
            .ips
            .iter()
            .map(|ip| MasqEntry {
                ip: ip.address.addr(),
                subnet: ip.address.trunc(),
            })
            .collect();
    }
    if br.macspoofchk {
        record.spoof = ctr.mac.map(|mac| SpoofEntry {
            host_ifname: host_veth.name.clone(),
            mac,
        });
    }
    record.netns = req.netns.clone();
    record.boot_id = boot_id();
    record
}

/// Undoes an ADD in reverse order; errors are logged, the original error is what the runtime sees.
fn rollback(req: &Request, ctr: &Netlink, applied: &Applied) {
    if applied.nat {
        if let Err(e) = nat_manager(req).del(&owner(req), Source::Bridge) {
            tracing::warn!(error = %e, "rollback: NAT records");
        }
    }
    if let Some(t) = &applied.ipam {
        if let Err(e) = invoke::delegate_void(t, Command::Del, req, &corral_ipam::builtins()) {
            tracing::warn!(error = %e, "rollback: IPAM DEL");
        }
    }
    if applied.veth {
        if let Err(e) = ctr.delete_link(&req.ifname) {
            tracing::warn!(error = %e, "rollback: delete veth");
        }
    }
}
