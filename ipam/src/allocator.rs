//! Allocation logic over a [`Store`], with no I/O of its own: ADD (one address per range set, round-robin as
//! the reference, rollback on failure), release by attachment (index first, directory walk for reservations
//! the reference made), CHECK, GC and the free-address count for STATUS. Callers hold the store's lock.

use crate::config::IpamConfig;
use crate::error::{IpamError, StoreError};
use crate::range::RangeSet;
use crate::store::{Holder, IndexEntry, Store};
use corral_cni::{Attachment, IpConfig};
use std::collections::HashSet;
use std::net::IpAddr;

/// What a recorded netns path names now, as [`AddContext::probe`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetnsNow {
    /// Nothing is at the path.
    Gone,
    /// A network namespace, with its (nsfs) inode.
    Namespace(u64),
    /// Something that is not a namespace (e.g. the empty mount point a deleted namespace left behind).
    NotNamespace,
    /// It could not be told (permission, I/O error): never a reason to reclaim.
    Unknown,
}

/// Looks a netns path up (the plugin passes a `stat`/`statfs`; tests pass a table).
pub type NetnsProbe = fn(&str) -> NetnsNow;

/// What an ADD records besides the addresses, and what it needs to tell a stale attachment (one certainly gone
/// after a reboot or a lost DEL) from a live one.
#[derive(Debug, Clone, Default)]
pub struct AddContext {
    /// The current boot id (`/proc/sys/kernel/random/boot_id`); empty if unknown.
    pub boot_id: String,
    /// CNI_NETNS.
    pub netns: String,
    /// The nsfs inode CNI_NETNS names now, if it is a namespace.
    pub netns_ino: Option<u64>,
    /// How recorded netns paths are looked up; `None`: only the boot id can make an attachment stale.
    pub probe: Option<NetnsProbe>,
}

/// Why the attachment `entry` records is certainly gone: it was recorded in another boot, or the namespace it
/// was given (recorded with its inode) no longer exists or its path now names something else. `None` when it
/// may be alive, including whenever nothing recorded can tell (no boot id, no netns inode).
pub fn staleness(entry: &IndexEntry, ctx: &AddContext) -> Option<&'static str> {
    if !entry.boot_id.is_empty() && !ctx.boot_id.is_empty() && entry.boot_id != ctx.boot_id {
        return Some("recorded in another boot");
    }
    let recorded = entry.netns_ino?;
    if entry.netns.is_empty() {
        return None;
    }
    match ctx.probe?(&entry.netns) {
        NetnsNow::Gone => Some("its netns no longer exists"),
        NetnsNow::NotNamespace => Some("its netns path no longer names a namespace"),
        NetnsNow::Namespace(ino) if ino != recorded => Some("its netns path now names another namespace"),
        NetnsNow::Namespace(_) | NetnsNow::Unknown => None,
    }
}

/// The stale owner of `ip`, if `ip` can be reclaimed: held by an attachment other than `except`, whose index
/// entry lists `ip` and is certainly stale. A reservation without an index entry (made by the reference) or
/// held by a legacy id-only file is never reclaimable.
fn reclaimable(
    store: &dyn Store,
    ip: IpAddr,
    ctx: &AddContext,
    except: Option<&Attachment>,
) -> Result<Option<(Attachment, IndexEntry, &'static str)>, StoreError> {
    let Some(Holder::Attachment(old)) = store.holder(ip)? else {
        return Ok(None);
    };
    if except == Some(&old) {
        return Ok(None);
    }
    let Some(entry) = store.read_index(&old)? else {
        return Ok(None);
    };
    if !entry.ips.contains(&ip) {
        return Ok(None);
    }
    Ok(staleness(&entry, ctx).map(|why| (old, entry, why)))
}

/// Allocates one address per range set for `owner`. On any failure, what this call reserved is released.
pub fn allocate(
    store: &mut dyn Store,
    cfg: &IpamConfig,
    owner: &Attachment,
    ctx: &AddContext,
) -> Result<Vec<IpConfig>, IpamError> {
    let net = cfg.network.as_str();
    release_if_stale(store, net, owner, ctx).map_err(|e| IpamError::store(net, e))?;
    let entry = IndexEntry {
        ips: held_by(store, owner).map_err(|e| IpamError::store(net, e))?,
        boot_id: ctx.boot_id.clone(),
        netns: ctx.netns.clone(),
        netns_ino: ctx.netns_ino,
    };
    if let Some(&ip) = entry
        .ips
        .iter()
        .find(|ip| cfg.range_sets.iter().any(|s| s.contains(**ip)))
    {
        return Err(IpamError::Duplicate {
            network: net.to_string(),
            ip,
            id: owner.container_id.clone(),
        });
    }
    let mut add = Add {
        store,
        net,
        owner,
        ctx,
        entry,
        taken: Vec::new(),
    };
    let mut out = Vec::with_capacity(cfg.range_sets.len());
    for (i, set) in cfg.range_sets.iter().enumerate() {
        match add.in_set(i, set, cfg.requested.get(i).copied().flatten()) {
            Ok(ipc) => out.push(ipc),
            Err(e) => {
                add.rollback();
                return Err(e);
            }
        }
    }
    // One fsync per directory makes this ADD's reservations durable before the result is returned.
    add.store.sync().map_err(|e| IpamError::store(net, e))?;
    Ok(out)
}

/// A second ADD of an attachment whose earlier ADD is certainly stale (another boot, its netns gone): that
/// attachment is gone without a DEL, so what it held is released first and the ADD is not a duplicate.
fn release_if_stale(
    store: &mut dyn Store,
    net: &str,
    owner: &Attachment,
    ctx: &AddContext,
) -> Result<(), StoreError> {
    let Some(entry) = store.read_index(owner)? else {
        return Ok(());
    };
    let Some(why) = staleness(&entry, ctx) else {
        return Ok(());
    };
    tracing::warn!(
        network = net,
        id = %owner.container_id,
        ifname = %owner.ifname,
        old_netns = %entry.netns,
        old_boot_id = %entry.boot_id,
        why,
        "ADD of an attachment whose earlier ADD is stale: releasing what it held"
    );
    let (_, errors) = release(store, owner);
    errors.into_iter().next().map_or(Ok(()), Err)
}

/// The addresses the index says `owner` holds and whose reservation files agree (O(1) in the directory size).
fn held_by(store: &dyn Store, owner: &Attachment) -> Result<Vec<IpAddr>, StoreError> {
    let Some(entry) = store.read_index(owner)? else {
        return Ok(Vec::new());
    };
    let mut held = Vec::new();
    for ip in entry.ips {
        if store.holder(ip)?.is_some_and(|h| h.is(owner)) {
            held.push(ip);
        }
    }
    Ok(held)
}

/// One ADD in progress: the attachment's index entry as written so far and what this ADD took.
struct Add<'a> {
    store: &'a mut dyn Store,
    net: &'a str,
    owner: &'a Attachment,
    ctx: &'a AddContext,
    entry: IndexEntry,
    taken: Vec<IpAddr>,
}

impl Add<'_> {
    /// Takes the requested address of range set `i`, or the next free one in round-robin order.
    fn in_set(&mut self, i: usize, set: &RangeSet, requested: Option<IpAddr>) -> Result<IpConfig, IpamError> {
        let net = self.net;
        let se = |e| IpamError::store(net, e);
        let chosen = match requested {
            Some(ip) => {
                if !self.reserve(ip).map_err(se)? {
                    return Err(IpamError::Unavailable {
                        network: net.to_string(),
                        ip,
                        set: set.to_string(),
                    });
                }
                set.range_for(ip).map(|r| (ip, r))
            }
            None => {
                // As the reference: an unreadable hint only costs the round-robin position.
                let last = self.store.last_reserved(i).unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "ignoring unreadable last reserved address");
                    None
                });
                let mut found = None;
                for (ip, r) in set.candidates(last) {
                    if self.reserve(ip).map_err(se)? {
                        found = Some((ip, r));
                        break;
                    }
                }
                found
            }
        };
        let Some((ip, range)) = chosen else {
            return Err(IpamError::Exhausted {
                network: net.to_string(),
                set: set.to_string(),
            });
        };
        self.store.set_last_reserved(i, ip).map_err(se)?;
        Ok(IpConfig {
            address: range.with_prefix(ip),
            gateway: Some(range.gateway),
            interface: None,
        })
    }

    /// Reserves `ip` if free, or if its holder is certainly stale (see [`AddContext`]): the index entry first,
    /// then the reservation file, so a crash in between leaves an index entry without a file (ignored
    /// everywhere) rather than a file nobody indexed.
    fn reserve(&mut self, ip: IpAddr) -> Result<bool, StoreError> {
        if self.store.is_reserved(ip)? && !self.reclaim(ip)? {
            return Ok(false);
        }
        self.entry.ips.push(ip);
        if let Err(e) = self.store.write_index(self.owner, &self.entry) {
            self.entry.ips.pop();
            return Err(e);
        }
        let created = self.store.create(ip, self.owner);
        if let Ok(true) = created {
            self.taken.push(ip);
            return Ok(true);
        }
        self.entry.ips.pop();
        let unindexed = self.store.write_index(self.owner, &self.entry);
        let created = created?;
        unindexed.map(|()| created)
    }

    /// Frees `ip` if its holder is certainly stale, releasing everything that holder had (its other addresses
    /// too, and its index entry); whether `ip` is free now. A failed release is logged, and `ip` counts as taken.
    fn reclaim(&mut self, ip: IpAddr) -> Result<bool, StoreError> {
        let Some((old, entry, why)) = reclaimable(self.store, ip, self.ctx, Some(self.owner))? else {
            return Ok(false);
        };
        tracing::warn!(
            network = self.net,
            %ip,
            old_id = %old.container_id,
            old_ifname = %old.ifname,
            old_netns = %entry.netns,
            old_boot_id = %entry.boot_id,
            why,
            new_id = %self.owner.container_id,
            "reclaiming the addresses of a stale attachment"
        );
        let (_, errors) = release(self.store, &old);
        for e in &errors {
            tracing::warn!(%ip, error = %e, "cannot reclaim");
        }
        Ok(!self.store.is_reserved(ip)?)
    }

    /// Undoes the reservations of a failed ADD; errors are logged, the caller reports the original error.
    fn rollback(&mut self) {
        for &ip in &self.taken {
            if let Err(e) = remove_if_owned(self.store, self.owner, ip) {
                tracing::warn!(%ip, error = %e, "rollback: cannot release");
            }
        }
        let taken = std::mem::take(&mut self.taken);
        self.entry.ips.retain(|ip| !taken.contains(ip));
        let res = if self.entry.ips.is_empty() {
            self.store
                .sync()
                .and_then(|()| self.store.remove_index(self.owner))
        } else {
            self.store.write_index(self.owner, &self.entry)
        };
        if let Err(e) = res {
            tracing::warn!(error = %e, "rollback: cannot update index");
        }
    }
}

fn remove_if_owned(store: &mut dyn Store, owner: &Attachment, ip: IpAddr) -> Result<bool, StoreError> {
    if store.holder(ip)?.is_some_and(|h| h.is(owner)) {
        store.remove(ip)?;
        return Ok(true);
    }
    Ok(false)
}

/// Releases everything `owner` holds. With an index entry, only its addresses are read; without one (the
/// reference made the reservation) the directory is walked as the reference does: exact `<id>\r\n<ifname>`
/// matches, else legacy `<id>` files. Keeps going on errors and returns the released addresses and the errors.
pub fn release(store: &mut dyn Store, owner: &Attachment) -> (Vec<IpAddr>, Vec<StoreError>) {
    let mut released = Vec::new();
    let mut errors = Vec::new();
    let candidates = match store.read_index(owner) {
        Ok(Some(entry)) => Some(entry.ips),
        Ok(None) => None,
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let indexed = candidates.is_some();
    let ips = match candidates {
        Some(ips) => ips,
        None => match walk_for(store, owner) {
            Ok(ips) => ips,
            Err(e) => return (released, vec![e]),
        },
    };
    for ip in ips {
        let res = if indexed {
            remove_if_owned(store, owner, ip)
        } else {
            store.remove(ip).map(|()| true)
        };
        match res {
            Ok(true) => released.push(ip),
            Ok(false) => {}
            Err(e) => errors.push(e),
        }
    }
    if let Err(e) = store.sync() {
        errors.push(e);
    }
    if errors.is_empty() {
        if let Err(e) = store.remove_index(owner) {
            errors.push(e);
        }
    }
    (released, errors)
}

/// The reference's release walk: files holding exactly `owner`, else legacy files holding its id.
fn walk_for(store: &dyn Store, owner: &Attachment) -> Result<Vec<IpAddr>, StoreError> {
    let all = store.reservations()?;
    let exact: Vec<IpAddr> = all
        .iter()
        .filter(|(_, h)| h.is(owner))
        .map(|(ip, _)| *ip)
        .collect();
    if !exact.is_empty() {
        return Ok(exact);
    }
    Ok(all
        .iter()
        .filter(|(_, h)| matches!(h, Holder::LegacyId(id) if *id == owner.container_id.trim()))
        .map(|(ip, _)| *ip)
        .collect())
}

/// CHECK: the addresses `owner` holds. With an index entry every listed address must still be reserved for
/// `owner`; without one (a reservation by the reference) some reservation must name it.
pub fn check(store: &dyn Store, net: &str, owner: &Attachment) -> Result<Vec<IpAddr>, IpamError> {
    let se = |e| IpamError::store(net, e);
    let who = format!("{}/{}", owner.container_id, owner.ifname);
    let missing = |msg: String| IpamError::Check {
        network: net.to_string(),
        msg,
    };
    let ips = match store.read_index(owner).map_err(se)? {
        Some(entry) => {
            for &ip in &entry.ips {
                match store.holder(ip).map_err(se)? {
                    Some(h) if h.is(owner) => {}
                    Some(h) => {
                        return Err(missing(format!(
                            "{ip} of {who} is reserved for {} instead",
                            h.container_id()
                        )))
                    }
                    None => return Err(missing(format!("{ip} of {who} is no longer reserved"))),
                }
            }
            entry.ips
        }
        None => walk_for(store, owner).map_err(se)?,
    };
    if ips.is_empty() {
        return Err(missing(format!("no address is reserved for {who}")));
    }
    Ok(ips)
}

/// GC: removes reservations and index entries of attachments not in `valid`; legacy id-only reservations are
/// kept if any valid attachment has that id. Also removes crash leftovers and stale index addresses of valid
/// attachments. Keeps going and returns every error.
pub fn gc(store: &mut dyn Store, valid: &[Attachment]) -> (Vec<IpAddr>, Vec<StoreError>) {
    let keep: HashSet<&Attachment> = valid.iter().collect();
    let ids: HashSet<&str> = valid.iter().map(|a| a.container_id.as_str()).collect();
    let mut errors = store.sweep();
    let mut removed = Vec::new();
    match store.reservations() {
        Err(e) => errors.push(e),
        Ok(all) => {
            for (ip, holder) in all {
                let live = match &holder {
                    Holder::Attachment(a) => keep.contains(a),
                    Holder::LegacyId(id) => ids.contains(id.as_str()),
                };
                if !live {
                    match store.remove(ip) {
                        Ok(()) => removed.push(ip),
                        Err(e) => errors.push(e),
                    }
                }
            }
        }
    }
    if let Err(e) = store.sync() {
        errors.push(e);
    }
    match store.indexed() {
        Err(e) => errors.push(e),
        Ok(owners) => {
            for owner in owners {
                let res = if keep.contains(&owner) {
                    prune_index(store, &owner)
                } else {
                    store.remove_index(&owner)
                };
                if let Err(e) = res {
                    errors.push(e);
                }
            }
        }
    }
    (removed, errors)
}

/// Drops addresses from `owner`'s index entry that its reservation files no longer confirm.
fn prune_index(store: &mut dyn Store, owner: &Attachment) -> Result<(), StoreError> {
    let Some(mut entry) = store.read_index(owner)? else {
        return Ok(());
    };
    let held = held_by(store, owner)?;
    if held.is_empty() {
        store.remove_index(owner)?;
    } else if held.len() != entry.ips.len() {
        entry.ips = held;
        store.write_index(owner, &entry)?;
    }
    Ok(())
}

/// STATUS: the first range set without a free address, if any. A set whose addresses are all reserved still
/// has room when one of them is reclaimable (its holder is certainly stale), since ADD would take that one.
pub fn first_full_set<'a>(
    store: &dyn Store,
    sets: &'a [RangeSet],
    ctx: &AddContext,
) -> Result<Option<&'a RangeSet>, StoreError> {
    let reserved = store.reserved_ips()?;
    for set in sets {
        if set.free(&reserved) > 0 {
            continue;
        }
        let mut room = false;
        for &ip in reserved.iter().filter(|ip| set.contains(**ip)) {
            if reclaimable(store, ip, ctx, None)?.is_some() {
                room = true;
                break;
            }
        }
        if !room {
            return Ok(Some(set));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests;
