//! The NAT manager: the verbs (ADD, DEL, CHECK, GC, STATUS, reconcile, the port listing) over the record
//! store, the planner and an nft backend. Each verb holds the store lock throughout and sends at most one
//! transaction per attachment (two when the fast path below fails). A record's identity is `(owner, source)`.
//!
//! ADD, DEL and GC send a transaction's element lines alone when a netlink read shows the skeleton of every
//! table it touches intact ([`NftBackend::skeleton_intact`]), and the full script (skeleton + elements)
//! otherwise, or when the check itself fails: an `nft -f` adding elements then takes ~5 ms instead of ~16 ms,
//! since declaring base chains and flushing chains makes the kernel wait for an RCU grace period (deleting
//! elements waits for one anyway, so DEL gains less). A damaged skeleton (missing table,
//! set or chain, a flushed chain, a stray rule) is detected, so every transaction still heals it. If the
//! element lines fail anyway (the table vanished between check and apply), the full script is sent once.
//! Reconcile always sends the full script.
//!
//! A transaction that only removes (DEL, GC) with intact skeletons goes over netlink instead
//! ([`NftBackend::remove_elements`]: one `DESTROYSETELEM` batch, its socket released by a child process):
//! `nft -f` spends ~12 of its ~13 ms at exit, waiting for the kernel to flush the deleted elements' deferred
//! destruction when its socket is released (`corral cni del` of a bridge with `ipMasq`: 22–24 ms before,
//! 9–12 ms after, about what a DEL without NAT costs). If netlink fails, the element lines go to nft as before.
//! Transactions that add keep using nft (elements carry comments and counters).
//!
//! ADD and DEL read only the records the ownership index names for their own elements' slots (host-port
//! owners, other claimants of shared elements), so their cost does not grow with the number of attachments.
//! GC, reconcile and the listing walk every record.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use crate::backend::NftBackend;
use crate::element::{record_elements, Claims, Element, Table, TABLE_NAME};
use crate::error::NatError;
use crate::index::slot;
use crate::inspect::{object_names, parse_elements};
use crate::listing::{join_masq, join_ports, PortListing};
use crate::model::{AttachmentRecord, Owner, PortMapping, Source};
use crate::plan::{base_chains, plan_add, plan_reconcile, plan_remove, plan_replace, Addition, Transaction};
use crate::store::{current_boot_id, Listing, RecordStore, StoreLock};

/// What `reconcile` did.
#[derive(Debug, Default)]
pub struct ReconcileReport {
    /// Records whose elements were re-added.
    pub records: usize,
    /// Elements left out because they overlap another record's (nft would refuse both together).
    pub conflicts: Vec<Addition>,
    /// Record files that could not be read (their elements were not re-added).
    pub unreadable: Vec<NatError>,
}

/// corral's NAT manager over a state directory and an nft backend.
#[derive(Debug)]
pub struct NatManager<B> {
    store: RecordStore,
    backend: B,
}

type Key<'a> = (&'a Owner, Source);

fn key(record: &AttachmentRecord) -> Key<'_> {
    (&record.owner, record.source)
}

impl<B: NftBackend> NatManager<B> {
    /// A manager keeping records under `<state_dir>/nat` (plugins use `/var/lib/corral`).
    pub fn new(state_dir: impl AsRef<Path>, backend: B) -> Self {
        Self {
            store: RecordStore::new(state_dir),
            backend,
        }
    }

    /// Changes how long each verb waits for the state lock (default 10 s; then code 11).
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Self {
        self.store = self.store.with_lock_timeout(timeout);
        self
    }

    /// The record store.
    pub fn store(&self) -> &RecordStore {
        &self.store
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Records `record` and applies its elements in one transaction. A repeated ADD for the same `(owner,
    /// source)` replaces the old state (removing what only the old record had).
    ///
    /// Host ports have one owner: a port another record holds is [`NatError::PortInUse`] (code 102) while that
    /// attachment's netns exists; a stale owner (netns gone, or another boot) loses its whole record in the
    /// same transaction, with a warning. When the transaction fails, the previous record (or none) is restored
    /// and nft's error returned. `boot_id` and `netns_ino` are filled in when empty.
    pub fn add(&self, record: &AttachmentRecord) -> Result<(), NatError> {
        record.validate()?;
        let mut record = record.clone();
        if record.boot_id.is_none() {
            record.boot_id = current_boot_id();
        }
        if record.netns_ino.is_none() {
            record.netns_ino = record.netns.as_deref().and_then(inode);
        }
        let lock = self.store.lock()?;
        let old = self.store.read(&lock, &record.owner, record.source)?;
        let stale = if record.mappings().is_empty() {
            Vec::new()
        } else {
            self.port_owners_to_replace(&lock, &record)?
        };
        let changed = old
            .as_ref()
            .is_some_and(|o| record_elements(o) != record_elements(&record));
        let transaction = if changed || !stale.is_empty() {
            let mut leaving = vec![key(&record)];
            leaving.extend(stale.iter().map(key));
            let olds: Vec<&AttachmentRecord> = old.iter().chain(&stale).collect();
            let leaving_elements: Vec<Element> = olds.iter().flat_map(|r| record_elements(r)).collect();
            let claims = self.claims_on(&lock, &leaving_elements, &leaving)?;
            plan_replace(&olds, &record, &claims)
        } else {
            plan_add(&record)
        };
        self.store.write(&lock, &record)?;
        if let Err(e) = self.apply(&transaction, &record.owner, "add") {
            let undo = match &old {
                Some(old) => self.store.write(&lock, old),
                None => self.store.remove(&lock, &record.owner, record.source),
            };
            if let Err(undo) = undo {
                tracing::warn!(owner = %record.owner, error = %undo, "cannot restore NAT record after failed ADD");
            }
            return Err(e);
        }
        for gone in &stale {
            if let Err(e) = self.store.remove(&lock, &gone.owner, gone.source) {
                tracing::warn!(owner = %gone.owner, error = %e, "cannot remove the replaced stale record");
            }
        }
        Ok(())
    }

    /// Other records holding a host port `record` wants: an error naming the first live one, else the stale ones.
    /// Only the records the index lists in the slots of `record`'s host ports are read.
    fn port_owners_to_replace(
        &self,
        lock: &StoreLock,
        record: &AttachmentRecord,
    ) -> Result<Vec<AttachmentRecord>, NatError> {
        let slots = record_elements(record)
            .iter()
            .filter(|e| matches!(e, Element::HostPort { .. }))
            .map(slot)
            .collect();
        let boot = current_boot_id();
        let mut stale = Vec::new();
        for other in self.store.claimants(lock, &slots)? {
            if key(&other) == key(record) {
                continue;
            }
            let Some(contested) = first_conflict(record.mappings(), other.mappings()) else {
                continue;
            };
            match staleness(&other, boot.as_deref()) {
                None => {
                    return Err(NatError::PortInUse {
                        port: contested.host_side(),
                        owner: other.owner.to_string(),
                    })
                }
                Some(why) => {
                    tracing::warn!(owner = %other.owner, port = contested.host_side(), reason = why,
                        new_owner = %record.owner, "replacing the stale owner of a host port");
                    stale.push(other);
                }
            }
        }
        Ok(stale)
    }

    /// Removes the `(owner, source)` record's elements (except those another live record claims) in one
    /// transaction, then the record, which is returned (`None`: nothing was recorded, so DEL twice succeeds).
    /// When nft fails the record is kept for a retry.
    pub fn del(&self, owner: &Owner, source: Source) -> Result<Option<AttachmentRecord>, NatError> {
        owner.validate()?;
        let lock = self.store.lock()?;
        let Some(record) = self.store.read(&lock, owner, source)? else {
            return Ok(None);
        };
        self.remove_record(&lock, &record, &[(owner, source)])?;
        Ok(Some(record))
    }

    /// The `(owner, source)` record, if any.
    pub fn record(&self, owner: &Owner, source: Source) -> Result<Option<AttachmentRecord>, NatError> {
        let lock = self.store.lock()?;
        self.store.read(&lock, owner, source)
    }

    /// Verifies that every element recorded for `(owner, source)`, and each base chain they depend on, is in
    /// the kernel. The error lists everything missing.
    pub fn check(&self, owner: &Owner, source: Source) -> Result<(), NatError> {
        owner.validate()?;
        let record = self.record(owner, source)?.ok_or_else(|| NatError::NoRecord {
            owner: owner.to_string(),
        })?;
        let expected = record_elements(&record);
        let tables: BTreeSet<Table> = expected.iter().map(|e| e.set().table()).collect();
        let mut missing: Vec<String> = Vec::new();
        for table in tables {
            let listing = self.backend.list_table(table.family(), TABLE_NAME)?;
            let Some(listing) = listing else {
                missing.push(format!("table {} {TABLE_NAME}", table.family()));
                continue;
            };
            let chains = object_names(&listing, "chain");
            for chain in base_chains(table) {
                if !chains.iter().any(|c| c == chain) {
                    missing.push(format!("chain {} {TABLE_NAME} {chain}", table.family()));
                }
            }
            let present = parse_elements(&listing);
            let absent = expected
                .iter()
                .filter(|e| e.set().table() == table && !present.contains(e));
            missing.extend(absent.map(|e| format!("element {e}")));
        }
        if missing.is_empty() {
            return Ok(());
        }
        Err(NatError::Missing {
            owner: owner.to_string(),
            missing: missing.join(", "),
        })
    }

    /// Removes the `source` records and elements of `network` whose `(container_id, ifname)` is not in
    /// `valid`. Keeps going past failures and reports them all; unreadable records are reported, never deleted.
    pub fn gc(&self, network: &str, source: Source, valid: &[(String, String)]) -> Result<(), NatError> {
        let lock = self.store.lock()?;
        let mut errors = Vec::new();
        let listing = self.store.list(&lock, Some(network))?;
        errors.extend(listing.errors);
        let is_valid = |o: &Owner| {
            valid
                .iter()
                .any(|(id, ifname)| *id == o.container_id && *ifname == o.ifname)
        };
        let stale: Vec<&AttachmentRecord> = listing
            .records
            .iter()
            .filter(|r| r.source == source && !is_valid(&r.owner))
            .collect();
        let leaving: Vec<Key<'_>> = stale.iter().map(|r| key(r)).collect();
        for record in &stale {
            tracing::debug!(owner = %record.owner, %source, "gc: removing stale NAT state");
            if let Err(e) = self.remove_record(&lock, record, &leaving) {
                errors.push(e);
            }
        }
        into_result(errors)
    }

    /// STATUS: nft can be run and lists tables (code 50 otherwise).
    pub fn status(&self) -> Result<(), NatError> {
        self.backend.probe()
    }

    /// Rebuilds both tables' skeletons and re-adds every recorded element in one transaction (after
    /// `nft flush ruleset`, a firewall reload or a reboot).
    /// Also rebuilds the ownership index from the records.
    pub fn reconcile(&self) -> Result<ReconcileReport, NatError> {
        let lock = self.store.lock()?;
        let listing = self.store.list(&lock, None)?;
        self.store.rebuild_index(&lock, &listing.records)?;
        let (script, conflicts) = plan_reconcile(&listing.records);
        for conflict in &conflicts {
            tracing::warn!(element = %conflict.element, owner = conflict.comment, "reconcile: overlapping element skipped");
        }
        if !script.is_empty() {
            tracing::debug!(records = listing.records.len(), "nft reconcile");
            self.backend.apply(&script)?;
        }
        Ok(ReconcileReport {
            records: listing.records.len(),
            conflicts,
            unreadable: listing.errors,
        })
    }

    /// Every record on disk, with errors for unreadable ones.
    pub fn records(&self) -> Result<Listing, NatError> {
        let lock = self.store.lock()?;
        self.store.list(&lock, None)
    }

    /// The elements currently in corral's tables in the kernel.
    pub fn kernel_elements(&self) -> Result<Vec<Element>, NatError> {
        let mut out = Vec::new();
        for table in [Table::Inet, Table::Bridge] {
            if let Some(elements) = self.backend.list_elements(table)? {
                out.extend(elements.into_iter().map(|(e, _)| e));
            }
        }
        Ok(out)
    }

    /// For `list-nat`: every port mapping in the kernel (the backend's element dump of `table inet corral`)
    /// joined with the records, so each entry names its owner, plus drift both ways and per-element counters.
    pub fn list_ports(&self) -> Result<PortListing, NatError> {
        let records = self.records()?;
        let kernel = self.backend.list_elements(Table::Inet)?;
        let table_present = kernel.is_some();
        let counted = kernel.unwrap_or_default();
        let boot = current_boot_id();
        let stale: std::collections::HashMap<&Owner, &'static str> = records
            .records
            .iter()
            .filter_map(|r| staleness(r, boot.as_deref()).map(|why| (&r.owner, why)))
            .collect();
        let stale_of = |o: &Option<Owner>| o.as_ref().and_then(|o| stale.get(o).copied());
        let mut masq = join_masq(&records.records, &counted);
        masq.iter_mut().for_each(|m| m.stale = stale_of(&m.owner));
        let mut entries = join_ports(&records.records, counted);
        entries.iter_mut().for_each(|e| e.stale = stale_of(&e.owner));
        Ok(PortListing {
            entries,
            masq,
            unreadable: records.errors,
            table_present,
        })
    }

    /// One transaction removing `record`'s unclaimed elements, then its file. `leaving` are the records whose
    /// claims do not count (the record itself, and in GC every record being collected).
    fn remove_record(
        &self,
        lock: &StoreLock,
        record: &AttachmentRecord,
        leaving: &[Key<'_>],
    ) -> Result<(), NatError> {
        let claims = self.claims_on(lock, &record_elements(record), leaving)?;
        self.apply(&plan_remove(record, &claims), &record.owner, "del")?;
        self.store.remove(lock, &record.owner, record.source)
    }

    /// What the records other than `leaving` claim among `elements` and whatever overlaps them: the records
    /// the index lists in those elements' slots (an unreadable record claims nothing).
    fn claims_on(
        &self,
        lock: &StoreLock,
        elements: &[Element],
        leaving: &[Key<'_>],
    ) -> Result<Claims, NatError> {
        let slots = elements.iter().map(slot).collect();
        let others = self.store.claimants(lock, &slots)?;
        Ok(Claims::from_records(
            others.iter().filter(|r| !leaving.contains(&key(r))),
        ))
    }

    /// Sends `transaction`'s element lines alone when the skeleton of every table it touches is intact, else
    /// (or when they fail) its full script.
    fn apply(&self, transaction: &Transaction, owner: &Owner, verb: &str) -> Result<(), NatError> {
        if transaction.is_empty() {
            return Ok(());
        }
        if self.skeletons_intact(&transaction.tables) {
            if transaction.only_removes() {
                match self.backend.remove_elements(&transaction.removals) {
                    Ok(()) => {
                        tracing::debug!(%owner, verb, path = "netlink", "element removal");
                        return Ok(());
                    }
                    Err(error) => {
                        tracing::debug!(%owner, verb, %error, "netlink element removal failed; sending nft the element lines")
                    }
                }
            }
            tracing::debug!(%owner, verb, path = "elements-only", "nft transaction");
            match self.backend.apply(transaction.elements_only()) {
                Ok(()) => return Ok(()),
                Err(error) => {
                    tracing::debug!(%owner, verb, %error, "elements-only transaction failed; retrying with the skeleton")
                }
            }
        } else {
            tracing::debug!(%owner, verb, path = "full", "nft transaction");
        }
        self.backend.apply(&transaction.full())
    }

    /// Whether every table in `tables` holds its whole skeleton; a failed check counts as damage (the full
    /// script is always correct).
    fn skeletons_intact(&self, tables: &BTreeSet<Table>) -> bool {
        tables
            .iter()
            .all(|table| match self.backend.skeleton_intact(*table) {
                Ok(intact) => intact,
                Err(error) => {
                    tracing::debug!(table = table.family(), %error, "skeleton check failed; sending the full script");
                    false
                }
            })
    }
}

/// The first of `ours` that wants a host port one of `theirs` holds.
fn first_conflict<'a>(ours: &'a [PortMapping], theirs: &[PortMapping]) -> Option<&'a PortMapping> {
    ours.iter().find(|m| theirs.iter().any(|t| t.conflicts_with(m)))
}

/// Why `record`'s attachment is certainly gone (recorded in another boot, netns path missing or naming another
/// namespace), or `None` when it may be alive (including when nothing was recorded to tell).
pub fn staleness(record: &AttachmentRecord, current_boot: Option<&str>) -> Option<&'static str> {
    if let (Some(theirs), Some(now)) = (record.boot_id.as_deref(), current_boot) {
        if theirs != now {
            return Some("recorded in an earlier boot");
        }
    }
    let path = record.netns.as_deref()?;
    match inode(path) {
        None => Some("its netns no longer exists"),
        Some(ino) if record.netns_ino.is_some_and(|r| r != ino) => {
            Some("its netns path now names another namespace")
        }
        Some(_) => None,
    }
}

fn inode(path: &Path) -> Option<u64> {
    nix::sys::stat::stat(path).ok().map(|s| s.st_ino)
}

fn into_result(mut errors: Vec<NatError>) -> Result<(), NatError> {
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(NatError::Multiple(errors)),
    }
}

#[cfg(test)]
mod tests;
