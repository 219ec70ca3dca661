//! The kernel steps that move a device and give it back, shared by ADD (and its rollback), DEL and GC.
//!
//! Into the container: down, rename to a unique transit name in the node, alias = original name, move,
//! rename to CNI_IFNAME, up. Back: down, rename to the transit name in the container, move to the node,
//! rename to the original name (unless another link took it), clear the alias, up again if it was up.
//! Renaming through a unique name is why neither side can clash: no temporary namespace is needed.

use crate::config::Selector;
use crate::effects::{net, random4};
use crate::plan::{self, find_in_node, mac_text, original_name, pick_container_link, DeviceRecord};
use crate::sysfs::Sysfs;
use corral_cni::CniError;
use corral_netops::{current_netns, LinkInfo, Netlink};
use std::fs::File;

/// The plugin's own (node) namespace: a netlink handle and the open namespace to move devices back into.
pub struct NodeSide {
    /// Netlink in the node.
    pub nl: Netlink,
    /// The node netns.
    pub ns: File,
}

impl NodeSide {
    /// Opens the calling thread's namespace.
    pub fn open() -> Result<Self, CniError> {
        Ok(NodeSide {
            nl: Netlink::current().map_err(net("netlink"))?,
            ns: current_netns().map_err(net("node netns"))?,
        })
    }
}

/// The attachment a record belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Key<'a> {
    /// Network name.
    pub network: &'a str,
    /// CNI_CONTAINERID.
    pub container_id: &'a str,
    /// CNI_IFNAME.
    pub ifname: &'a str,
}

/// Finds the configured device in the node: by name, by MAC, or through sysfs then by name. Not found is
/// code 7 naming the key and value.
pub fn find_device(node: &Netlink, sel: &Selector, sysfs: &Sysfs) -> Result<LinkInfo, CniError> {
    let found = match sel {
        Selector::Name(n) => node.link_by_name(n).map_err(net("find device"))?,
        Selector::Mac(m) => node.link_by_mac(*m).map_err(net("find device"))?,
        Selector::KernelPath(_) | Selector::Pci { .. } => {
            let Some(name) = sysfs.netdev_name(sel)? else {
                return Err(CniError::internal(format!(
                    "{}: no interface name",
                    sel.describe()
                )));
            };
            return node
                .link_by_name(&name)
                .map_err(net("find device"))?
                .ok_or_else(|| {
                    CniError::invalid_config(format!(
                        "{}: sysfs names interface \"{name}\", which is not in the plugin's network namespace \
                         (sysfs shows the namespace that mounted it)",
                        sel.describe()
                    ))
                });
        }
    };
    found.ok_or_else(|| {
        CniError::invalid_config(format!(
            "{}: no such device in the node's network namespace",
            sel.describe()
        ))
    })
}

/// Gives the attachment's device back to the node (DEL, GC, ADD rollback): out of the container if it is
/// still there, then its name, alias and state in the node. Whatever is missing is skipped, so calling it
/// twice is harmless.
pub fn give_back(
    node: &NodeSide,
    ctr_ns: Option<&File>,
    key: Key<'_>,
    rec: Option<DeviceRecord>,
) -> Result<(), CniError> {
    let mut rec = rec;
    if let Some(ns) = ctr_ns {
        let ctr = Netlink::in_netns(ns).map_err(net("netlink in container"))?;
        let by_ifname = ctr.link_by_name(key.ifname).map_err(net("container link"))?;
        let by_temp = match &rec {
            Some(r) => ctr.link_by_name(&r.temp).map_err(net("container link"))?,
            None => None,
        };
        let had_ifname = by_ifname.is_some();
        match pick_container_link(by_ifname, by_temp, rec.as_ref()) {
            Some(link) => {
                if rec.is_none() {
                    rec = Some(synthesize(key, &link)?);
                }
                if let Some(r) = &rec {
                    return_to_node(&ctr, &link, &r.temp, &node.ns)?;
                }
            }
            None if had_ifname => tracing::warn!(
                ifname = key.ifname,
                "container interface has no record and no alias: not a host-device attachment, left in place"
            ),
            None => tracing::debug!(ifname = key.ifname, "device not in the container"),
        }
    }
    let Some(rec) = rec else { return Ok(()) };
    let links = node.nl.links().map_err(net("node links"))?;
    match find_in_node(&links, &rec) {
        Some(dev) => restore_in_node(&node.nl, dev, &rec),
        None => Ok(()),
    }
}

/// A record for a device found without one (moved in by the reference plugin, or state lost): the alias
/// names the original, and it stays down afterwards as the reference leaves it.
fn synthesize(key: Key<'_>, link: &LinkInfo) -> Result<DeviceRecord, CniError> {
    let original =
        original_name(None, link).ok_or_else(|| CniError::internal(format!("{} has no alias", link.name)))?;
    Ok(DeviceRecord {
        network: key.network.to_string(),
        container_id: key.container_id.to_string(),
        ifname: key.ifname.to_string(),
        original,
        temp: plan::temp_name(random4()?),
        mac: mac_text(link),
        was_up: false,
        netns: None,
        netns_inode: None,
        boot_id: None,
    })
}

/// Container side of giving back: down, transit name, move to the node. If the move fails the link gets its
/// name back, so DEL can be retried.
fn return_to_node(ctr: &Netlink, link: &LinkInfo, temp: &str, node_ns: &File) -> Result<(), CniError> {
    tracing::debug!(link = %link.name, temp, "moving device back to the node");
    ctr.set_link_down(link.index)
        .map_err(net("set container link down"))?;
    if link.name != temp {
        ctr.rename_link(link.index, temp)
            .map_err(net("rename container link"))?;
    }
    if let Err(e) = ctr.move_link_to_netns(link.index, node_ns) {
        if link.name != temp {
            let _ = ctr.rename_link(link.index, &link.name);
        }
        return Err(net("move device to the node")(e));
    }
    Ok(())
}

/// Node side of giving back: original name (unless taken: then the transit name stays and the log says so),
/// alias cleared, up if it was up before ADD.
fn restore_in_node(node: &Netlink, dev: &LinkInfo, rec: &DeviceRecord) -> Result<(), CniError> {
    let taken = node
        .link_by_name(&rec.original)
        .map_err(net("node link"))?
        .is_some_and(|l| l.index != dev.index);
    let p = plan::plan_node_restore(dev, &rec.original, taken, rec.was_up);
    if let Some(name) = &p.rename_to {
        if dev.up {
            node.set_link_down(dev.index).map_err(net("set device down"))?;
        }
        node.rename_link(dev.index, name)
            .map_err(net("restore device name"))?;
    }
    if p.name_taken {
        tracing::warn!(
            device = %dev.name,
            original = %rec.original,
            "original name is taken in the node: the device keeps its transit name"
        );
    }
    if p.clear_alias {
        node.set_alias(dev.index, "").map_err(net("clear device alias"))?;
    }
    if p.set_up || (dev.up && p.rename_to.is_some()) {
        node.set_link_up(dev.index).map_err(net("set device up"))?;
    }
    Ok(())
}
