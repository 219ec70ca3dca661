//! ADD: find the device, record the attachment, move the device into the container under CNI_IFNAME, IPAM,
//! addresses and routes. Every step is undone in reverse order if a later one fails.

use crate::config::{self, HostDevice, Selector};
use crate::device::{find_device, give_back, Key, NodeSide};
use crate::effects::{boot_id, net, open_container_netns, random4, sandbox, store, sysfs};
use crate::plan::{self, build_result, mac_text, DeviceRecord, Moved};
use crate::state::Store;
use corral_cni::{failpoint, invoke, CniError, CniResult, Command, Request};
use corral_netops::{netns_inode, run_in_netns, write_sysctl, LinkInfo, Netlink};
use std::fs::File;

/// What has been applied so far, for rollback.
#[derive(Default)]
struct Applied {
    /// The record is on disk.
    record: bool,
    /// The device was set down in the node.
    downed: bool,
    /// The device was renamed to its transit name (it may have moved since).
    renamed: bool,
    /// The IPAM plugin reserved addresses.
    ipam: Option<String>,
}

/// The open handles ADD works with.
struct Ctx<'a> {
    req: &'a Request,
    node: NodeSide,
    ctr_ns: File,
    ctr: Netlink,
    store: Store,
}

/// Runs ADD; on failure, undoes what was applied and returns the first error.
pub fn add(req: &Request) -> Result<CniResult, CniError> {
    let cfg = config::load(req)?;
    let sel = cfg.require_selector()?;
    let ctr_ns = open_container_netns(req)?;
    let node = NodeSide::open()?;
    let ctr = Netlink::in_netns(&ctr_ns).map_err(net("netlink in container"))?;
    if ctr
        .link_by_name(&req.ifname)
        .map_err(net("container link"))?
        .is_some()
    {
        return Err(CniError::invalid_env(format!(
            "CNI_IFNAME \"{}\" already exists in netns {}",
            req.ifname,
            sandbox(req)
        )));
    }
    let dev = find_device(&node.nl, sel, &sysfs(req))?;
    let ctx = Ctx {
        req,
        node,
        ctr_ns,
        ctr,
        store: store(req),
    };
    let rec = record(&ctx, &dev)?;
    let mut applied = Applied::default();
    match attach(&ctx, &cfg, sel, &dev, &rec, &mut applied) {
        Ok(r) => Ok(r),
        Err(e) => {
            rollback(&ctx, &dev, &rec, &applied);
            Err(e)
        }
    }
}

fn record(ctx: &Ctx<'_>, dev: &LinkInfo) -> Result<DeviceRecord, CniError> {
    Ok(DeviceRecord {
        network: ctx.req.conf.name.clone(),
        container_id: ctx.req.container_id.clone(),
        ifname: ctx.req.ifname.clone(),
        original: dev.name.clone(),
        temp: plan::temp_name(random4()?),
        mac: mac_text(dev),
        was_up: dev.up,
        netns: ctx.req.netns.clone(),
        netns_inode: netns_inode(&ctx.ctr_ns).ok(),
        boot_id: boot_id(),
    })
}

fn attach(
    ctx: &Ctx<'_>,
    cfg: &HostDevice,
    sel: &Selector,
    dev: &LinkInfo,
    rec: &DeviceRecord,
    applied: &mut Applied,
) -> Result<CniResult, CniError> {
    let (node, ctr, req) = (&ctx.node.nl, &ctx.ctr, ctx.req);
    // Written before the first change, so DEL and GC can give the device back after a crash at any step.
    ctx.store.write(rec)?;
    applied.record = true;
    if dev.up {
        // The kernel renames only devices that are down.
        node.set_link_down(dev.index).map_err(net("set device down"))?;
        applied.downed = true;
    }
    node.rename_link(dev.index, &rec.temp)
        .map_err(net("rename device to its transit name"))?;
    applied.renamed = true;
    node.set_alias(dev.index, &rec.original)
        .map_err(net("set device alias"))?;
    failpoint::hit("host-device-after-rename");
    node.move_link_to_netns(dev.index, &ctx.ctr_ns)
        .map_err(net("move device into the container"))?;
    failpoint::hit("host-device-after-move");

    // The index may change with the namespace: look the device up by its transit name.
    let link = ctr
        .link_by_name(&rec.temp)
        .map_err(net("container link"))?
        .ok_or_else(|| CniError::internal(format!("device {} vanished after the move", rec.temp)))?;
    ctr.rename_link(link.index, &req.ifname)
        .map_err(net("rename device to CNI_IFNAME"))?;
    ctr.set_link_up(link.index).map_err(net("set device up"))?;

    let ipam = match &cfg.ipam_type {
        Some(t) => {
            let r = invoke::delegate_add(t, req, &corral_ipam::builtins())?;
            applied.ipam = Some(t.clone());
            r
        }
        None => CniResult::default(),
    };
    failpoint::hit("host-device-after-ipam");
    configure_addresses(ctx, link.index, &ipam)?;

    let link = ctr
        .link_by_index(link.index)
        .map_err(net("container link"))?
        .ok_or_else(|| CniError::internal(format!("{} vanished", req.ifname)))?;
    let moved = Moved {
        ifname: req.ifname.clone(),
        mac: link.mac,
        mtu: link.mtu,
        sandbox: sandbox(req),
        pci_id: sel.pci_id().map(str::to_string),
    };
    Ok(build_result(&moved, &ipam, req.conf.dns.as_ref()))
}

/// IPAM's addresses and routes on the device in the container (a route without a gateway goes via its
/// family's gateway).
fn configure_addresses(ctx: &Ctx<'_>, index: u32, ipam: &CniResult) -> Result<(), CniError> {
    if ipam.ips.iter().any(|ip| ip.address.addr().is_ipv6()) {
        let key = format!("net/ipv6/conf/{}/disable_ipv6", ctx.req.ifname);
        run_in_netns(&ctx.ctr_ns, move || write_sysctl(&key, "0"))
            .and_then(|r| r)
            .map_err(net("enable IPv6 on the device"))?;
    }
    for ip in &ipam.ips {
        ctx.ctr
            .add_address(index, ip.address)
            .map_err(net("container address"))?;
    }
    for route in plan::container_routes(ipam, index) {
        ctx.ctr.add_route(&route).map_err(net("container route"))?;
    }
    Ok(())
}

/// Undoes an ADD in reverse order; errors are logged, the original error is what the runtime sees.
fn rollback(ctx: &Ctx<'_>, dev: &LinkInfo, rec: &DeviceRecord, applied: &Applied) {
    let req = ctx.req;
    if let Some(t) = &applied.ipam {
        if let Err(e) = invoke::delegate_void(t, Command::Del, req, &corral_ipam::builtins()) {
            tracing::warn!(error = %e, "rollback: IPAM DEL");
        }
    }
    if applied.renamed {
        let key = Key {
            network: &req.conf.name,
            container_id: &req.container_id,
            ifname: &req.ifname,
        };
        if let Err(e) = give_back(&ctx.node, Some(&ctx.ctr_ns), key, Some(rec.clone())) {
            tracing::warn!(error = %e, device = %rec.original, "rollback: give the device back");
            // Keep the record: DEL can finish the job.
            return;
        }
    } else if applied.downed {
        if let Err(e) = ctx.node.nl.set_link_up(dev.index) {
            tracing::warn!(error = %e, device = %rec.original, "rollback: set device up");
        }
    }
    if applied.record {
        if let Err(e) = ctx.store.remove(&rec.network, &rec.container_id, &rec.ifname) {
            tracing::warn!(error = %e, "rollback: remove record");
        }
    }
}
