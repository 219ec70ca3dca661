//! DEL, STATUS and GC. DEL releases the IPAM reservation first, whatever else happens (the reference skips
//! it when CNI_NETNS is empty, leaking the address), then gives the device back to the node; a missing
//! netns, link or record is success, so DEL twice succeeds.

use crate::config;
use crate::device::{give_back, Key, NodeSide};
use crate::effects::{net, store};
use crate::plan::DeviceRecord;
use corral_cni::error::combine;
use corral_cni::{invoke, CniError, Command, Request};
use corral_netops::{netns_inode, open_netns};
use std::collections::HashSet;
use std::fs::File;
use std::path::Path;

/// Runs DEL.
pub fn del(req: &Request) -> Result<(), CniError> {
    let cfg = config::load(req)?;
    let mut errors: Vec<CniError> = Vec::new();
    if let Some(t) = &cfg.ipam_type {
        if let Err(e) = invoke::delegate_void(t, Command::Del, req, &corral_ipam::builtins()) {
            errors.push(e.context("IPAM DEL"));
        }
    }
    let store = store(req);
    let key = Key {
        network: &req.conf.name,
        container_id: &req.container_id,
        ifname: &req.ifname,
    };
    let rec = store
        .read(key.network, key.container_id, key.ifname)
        .unwrap_or_else(|e| {
            errors.push(e.context("read record"));
            None
        });
    let ctr_ns = match &req.netns {
        None => None,
        Some(path) => match open_netns(path) {
            Ok(ns) => Some(ns),
            Err(e) if e.is_not_found() => {
                tracing::debug!(netns = %path.display(), "netns gone; nothing to move out of it");
                None
            }
            Err(e) => {
                errors.push(net("open netns")(e));
                return combine(errors);
            }
        },
    };
    let given_back = NodeSide::open().and_then(|node| give_back(&node, ctr_ns.as_ref(), key, rec));
    match given_back {
        // Only once the device is home: a failed DEL keeps what a retry needs.
        Ok(()) => {
            if let Err(e) = store.remove(key.network, key.container_id, key.ifname) {
                errors.push(e);
            }
        }
        Err(e) => errors.push(e.context("give the device back")),
    }
    combine(errors)
}

/// STATUS: the IPAM plugin's STATUS (there is nothing else host-device needs before an ADD).
pub fn status(req: &Request) -> Result<(), CniError> {
    let cfg = config::load(req)?;
    if let Some(t) = &cfg.ipam_type {
        invoke::delegate_void(t, Command::Status, req, &corral_ipam::builtins())?;
    }
    Ok(())
}

/// GC: the IPAM plugin's GC, then every record of this network whose attachment is not valid any more: its
/// device is given back (from the recorded netns if that still exists and is the same namespace), and the
/// record removed.
pub fn gc(req: &Request) -> Result<(), CniError> {
    let cfg = config::load(req)?;
    let mut errors = Vec::new();
    if let Some(t) = &cfg.ipam_type {
        if let Err(e) = invoke::delegate_void(t, Command::Gc, req, &corral_ipam::builtins()) {
            errors.push(e.context("IPAM GC"));
        }
    }
    let valid: HashSet<(String, String)> = req.conf.gc_valid_pairs().into_iter().collect();
    let store = store(req);
    let (records, read_errors) = store.list(&req.conf.name)?;
    errors.extend(read_errors);
    let stale: Vec<DeviceRecord> = records
        .into_iter()
        .filter(|r| !valid.contains(&(r.container_id.clone(), r.ifname.clone())))
        .collect();
    if stale.is_empty() {
        return combine(errors);
    }
    let node = NodeSide::open()?;
    for rec in stale {
        let ns = recorded_netns(&rec);
        let key = Key {
            network: &rec.network,
            container_id: &rec.container_id,
            ifname: &rec.ifname,
        };
        let done = give_back(&node, ns.as_ref(), key, Some(rec.clone()))
            .and_then(|()| store.remove(key.network, key.container_id, key.ifname));
        if let Err(e) = done {
            errors.push(e.context(format!("GC of {}/{}", rec.container_id, rec.ifname)));
        }
    }
    combine(errors)
}

/// The recorded container netns, if the path still opens and is the namespace ADD saw (same inode).
fn recorded_netns(rec: &DeviceRecord) -> Option<File> {
    let path: &Path = rec.netns.as_deref()?;
    let ns = open_netns(path).ok()?;
    let same = rec
        .netns_inode
        .is_some_and(|ino| netns_inode(&ns).ok() == Some(ino));
    same.then_some(ns)
}
