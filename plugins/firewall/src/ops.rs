//! ADD, DEL, CHECK, GC and STATUS. Every verb that changes the sets holds the record lock, reads the kernel's
//! elements and writes one nft transaction: an address is added when an attachment asks for it and deleted when
//! the last record that claims it goes.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;

use corral_cni::{CniError, CniResult, Request};
use corral_nat::{NftBackend, NftCli};

use crate::config;
use crate::rules;
use crate::store::{Record, Store};

const DEFAULT_STATE_DIR: &str = "/var/lib/corral";

fn state_dir(req: &Request) -> PathBuf {
    req.env
        .get("CORRAL_STATE_DIR")
        .map_or_else(|| PathBuf::from(DEFAULT_STATE_DIR), PathBuf::from)
}

fn nft_err(e: corral_nat::NatError) -> CniError {
    CniError::new(e.code(), e.to_string())
}

/// The addresses in corral's sets and whether the chain is there.
fn kernel(nft: &NftCli) -> Result<(BTreeSet<IpAddr>, bool), CniError> {
    Ok(nft
        .list_table("inet", "corral")
        .map_err(nft_err)?
        .map(|l| rules::parse_listing(&l))
        .unwrap_or_default())
}

/// Deletes the elements of `gone` that no record in `keep` claims and that are in the kernel.
fn release(nft: &NftCli, gone: &[Record], keep: &[Record]) -> Result<(), CniError> {
    let claimed: BTreeSet<IpAddr> = keep.iter().flat_map(|r| r.ips.iter().copied()).collect();
    let (present, _) = kernel(nft)?;
    let delete: Vec<IpAddr> = gone
        .iter()
        .flat_map(|r| r.ips.iter().copied())
        .filter(|ip| !claimed.contains(ip) && present.contains(ip))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if delete.is_empty() {
        return Ok(());
    }
    nft.apply(&rules::script(&[], &delete)).map_err(nft_err)
}

/// ADD: allows every address of prevResult; returns prevResult unchanged.
pub fn add(req: &Request) -> Result<CniResult, CniError> {
    config::load(req)?;
    let prev = req
        .prev_result()?
        .ok_or_else(|| CniError::invalid_config("must be called as chained plugin (no prevResult)"))?;
    let ips: Vec<IpAddr> = prev.ips.iter().map(|c| c.address.addr()).collect();
    let store = Store::open(&state_dir(req))?;
    let record = Record {
        network: req.conf.name.clone(),
        container_id: req.container_id.clone(),
        ifname: req.ifname.clone(),
        ips: ips.clone(),
    };
    let old = store.get(&record.network, &record.container_id, &record.ifname)?;
    // Record first: a crash after it leaves a record DEL and GC clean up.
    store.put(&record)?;
    let nft = NftCli::new();
    nft.apply(&rules::script(&ips, &[])).map_err(nft_err)?;
    if let Some(old) = old.filter(|o| o.ips != ips) {
        let others = store.all()?;
        release(&nft, &[old], &others)?;
    }
    Ok(prev)
}

/// DEL: from the record alone (no prevResult or netns needed); no record is success.
pub fn del(req: &Request) -> Result<(), CniError> {
    let store = Store::open(&state_dir(req))?;
    let Some(record) = store.get(&req.conf.name, &req.container_id, &req.ifname)? else {
        return Ok(());
    };
    store.remove(&record)?;
    let others = store.all()?;
    release(&NftCli::new(), &[record], &others)
}

/// CHECK: the record holds prevResult's addresses and each is in the kernel's sets.
pub fn check(req: &Request) -> Result<(), CniError> {
    config::load(req)?;
    let prev = req
        .prev_result()?
        .ok_or_else(|| CniError::invalid_config("must be called as chained plugin (no prevResult)"))?;
    let store = Store::open(&state_dir(req))?;
    let record = store
        .get(&req.conf.name, &req.container_id, &req.ifname)?
        .ok_or_else(|| CniError::check_mismatch("no firewall record for this attachment"))?;
    let want: BTreeSet<IpAddr> = prev.ips.iter().map(|c| c.address.addr()).collect();
    if want != record.ips.iter().copied().collect() {
        return Err(CniError::check_mismatch(
            "the recorded addresses differ from prevResult's",
        ));
    }
    let (present, chain) = kernel(&NftCli::new())?;
    if !chain {
        return Err(CniError::check_mismatch(format!(
            "chain {} {} is missing",
            rules::TABLE,
            rules::CHAIN
        )));
    }
    if let Some(ip) = want.iter().find(|ip| !present.contains(ip)) {
        return Err(CniError::check_mismatch(format!(
            "{ip} is not in {} {}",
            rules::TABLE,
            if ip.is_ipv4() { rules::SET4 } else { rules::SET6 }
        )));
    }
    Ok(())
}

/// GC: removes the records (and their addresses) of this network whose attachment is not valid.
pub fn gc(req: &Request) -> Result<(), CniError> {
    let valid = req.conf.gc_valid_attachments();
    let store = Store::open(&state_dir(req))?;
    let (gone, keep): (Vec<Record>, Vec<Record>) = store.all()?.into_iter().partition(|r| {
        r.network == req.conf.name
            && !valid
                .iter()
                .any(|a| a.container_id == r.container_id && a.ifname == r.ifname)
    });
    for r in &gone {
        store.remove(r)?;
    }
    release(&NftCli::new(), &gone, &keep)
}

/// STATUS: the config is valid and nft is usable (code 50 otherwise).
pub fn status(req: &Request) -> Result<(), CniError> {
    config::load(req)?;
    NftCli::new()
        .probe()
        .map_err(|e| CniError::not_available(format!("nftables: {e}")))
}
