//! The NAT manager: the verbs (ADD, DEL, CHECK, GC, STATUS, reconcile) over the record store, the planner and
//! an nft backend. Each verb holds the store lock throughout and sends at most one transaction per
//! attachment.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use crate::backend::NftBackend;
use crate::element::{record_elements, Claims, Element, Table, TABLE_NAME};
use crate::error::NatError;
use crate::inspect::{object_names, parse_elements};
use crate::model::{AttachmentRecord, Owner};
use crate::plan::{base_chains, plan_add, plan_reconcile, plan_remove, plan_replace, Addition};
use crate::store::{Listing, RecordStore, StoreLock};

const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

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

    /// Records `record` and applies its elements in one transaction. A repeated ADD for the same owner replaces
    /// the old state (removing what only the old record had). When the transaction fails, the previous record
    /// (or none) is restored and nft's error returned. `boot_id` is filled in when empty.
    pub fn add(&self, record: &AttachmentRecord) -> Result<(), NatError> {
        record.validate()?;
        let mut record = record.clone();
        if record.boot_id.is_none() {
            record.boot_id = std::fs::read_to_string(BOOT_ID).ok().map(|s| s.trim().to_owned());
        }
        let lock = self.store.lock()?;
        let old = self.store.read(&lock, &record.owner)?;
        let script = match &old {
            Some(old) if record_elements(old) != record_elements(&record) => {
                let claims = self.claims_except(&lock, &[&record.owner])?;
                plan_replace(old, &record, &claims)
            }
            _ => plan_add(&record),
        };
        self.store.write(&lock, &record)?;
        if let Err(e) = self.apply(&script, &record.owner, "add") {
            let undo = match &old {
                Some(old) => self.store.write(&lock, old),
                None => self.store.remove(&lock, &record.owner),
            };
            if let Err(undo) = undo {
                tracing::warn!(owner = %record.owner, error = %undo, "cannot restore NAT record after failed ADD");
            }
            return Err(e);
        }
        Ok(())
    }

    /// Removes `owner`'s elements (except those another live record claims) in one transaction, then its record.
    /// No record means nothing to do, so DEL twice succeeds. When nft fails the record is kept for a retry.
    pub fn del(&self, owner: &Owner) -> Result<(), NatError> {
        owner.validate()?;
        let lock = self.store.lock()?;
        let Some(record) = self.store.read(&lock, owner)? else {
            return Ok(());
        };
        self.remove_record(&lock, &record, &[owner])
    }

    /// Verifies that every element recorded for `owner`, and each base chain they depend on, is in the kernel.
    /// The error lists everything missing.
    pub fn check(&self, owner: &Owner) -> Result<(), NatError> {
        owner.validate()?;
        let lock = self.store.lock()?;
        let record = self.store.read(&lock, owner)?.ok_or_else(|| NatError::NoRecord {
            owner: owner.to_string(),
        })?;
        drop(lock);
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

    /// Removes the records and elements of `network` whose `(container_id, ifname)` is not in `valid`. Keeps
    /// going past failures and reports them all; unreadable records are reported, never deleted.
    pub fn gc(&self, network: &str, valid: &[(String, String)]) -> Result<(), NatError> {
        let lock = self.store.lock()?;
        let mut errors = Vec::new();
        let listing = self.store.list(&lock, Some(network))?;
        errors.extend(listing.errors);
        let is_valid = |o: &Owner| {
            valid
                .iter()
                .any(|(id, ifname)| *id == o.container_id && *ifname == o.ifname)
        };
        let stale: Vec<&AttachmentRecord> = listing.records.iter().filter(|r| !is_valid(&r.owner)).collect();
        let stale_owners: Vec<&Owner> = stale.iter().map(|r| &r.owner).collect();
        for record in &stale {
            tracing::debug!(owner = %record.owner, "gc: removing stale NAT state");
            if let Err(e) = self.remove_record(&lock, record, &stale_owners) {
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
    pub fn reconcile(&self) -> Result<ReconcileReport, NatError> {
        let lock = self.store.lock()?;
        let listing = self.store.list(&lock, None)?;
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

    /// Every record on disk (for `list-nat`), with errors for unreadable ones.
    pub fn records(&self) -> Result<Listing, NatError> {
        let lock = self.store.lock()?;
        self.store.list(&lock, None)
    }

    /// The elements currently in corral's tables in the kernel.
    pub fn kernel_elements(&self) -> Result<Vec<Element>, NatError> {
        let mut out = Vec::new();
        for table in [Table::Inet, Table::Bridge] {
            if let Some(listing) = self.backend.list_table(table.family(), TABLE_NAME)? {
                out.extend(parse_elements(&listing));
            }
        }
        Ok(out)
    }

    /// One transaction removing `record`'s unclaimed elements, then its file. `leaving` are the owners whose
    /// claims do not count (the record itself, and in GC every record being collected).
    fn remove_record(
        &self,
        lock: &StoreLock,
        record: &AttachmentRecord,
        leaving: &[&Owner],
    ) -> Result<(), NatError> {
        let claims = self.claims_except(lock, leaving)?;
        self.apply(&plan_remove(record, &claims), &record.owner, "del")?;
        self.store.remove(lock, &record.owner)
    }

    /// Claims of every readable record except `leaving`. An unreadable record claims nothing.
    fn claims_except(&self, lock: &StoreLock, leaving: &[&Owner]) -> Result<Claims, NatError> {
        let listing = self.store.list(lock, None)?;
        for error in &listing.errors {
            tracing::warn!(%error, "ignoring unreadable NAT record");
        }
        Ok(Claims::from_records(
            listing.records.iter().filter(|r| !leaving.contains(&&r.owner)),
        ))
    }

    fn apply(&self, script: &str, owner: &Owner, verb: &str) -> Result<(), NatError> {
        if script.is_empty() {
            return Ok(());
        }
        tracing::debug!(%owner, verb, "nft transaction");
        self.backend.apply(script)
    }
}

fn into_result(mut errors: Vec<NatError>) -> Result<(), NatError> {
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(NatError::Multiple(errors)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::backend::testing::FakeBackend;
    use crate::model::{MasqEntry, SpoofEntry};

    fn record(container: &str, ip: &str) -> AttachmentRecord {
        let mut r = AttachmentRecord::new(Owner::new("net1", container, "eth0"));
        r.masq = vec![MasqEntry {
            ip: ip.parse().unwrap(),
            subnet: "10.88.0.0/16".parse().unwrap(),
        }];
        r
    }

    fn manager() -> (tempfile::TempDir, FakeBackend, NatManager<FakeBackend>) {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeBackend::new();
        let m = NatManager::new(dir.path(), fake.clone());
        (dir, fake, m)
    }

    #[test]
    fn add_writes_record_and_applies_one_transaction() {
        let (_dir, fake, m) = manager();
        let r = record("aaaa", "10.88.0.2");
        m.add(&r).unwrap();
        assert_eq!(fake.scripts(), [plan_add(&r)]);
        let lock = m.store().lock().unwrap();
        let stored = m.store().read(&lock, &r.owner).unwrap().unwrap();
        assert_eq!(stored.masq, r.masq);
    }

    #[test]
    fn failed_add_leaves_no_record_and_keeps_nft_stderr() {
        let (_dir, fake, m) = manager();
        fake.fail_apply(Some("Error: Could not process rule: File exists"));
        let r = record("aaaa", "10.88.0.2");
        let err = m.add(&r).unwrap_err();
        assert!(err.to_string().contains("File exists"), "{err}");
        assert!(m.records().unwrap().records.is_empty());
    }

    #[test]
    fn failed_re_add_restores_the_previous_record() {
        let (_dir, fake, m) = manager();
        let old = record("aaaa", "10.88.0.2");
        m.add(&old).unwrap();
        fake.fail_apply(Some("boom"));
        m.add(&record("aaaa", "10.88.0.7")).unwrap_err();
        assert_eq!(m.records().unwrap().records[0].masq, old.masq);
    }

    #[test]
    fn re_add_with_new_address_replaces_in_one_transaction() {
        let (_dir, fake, m) = manager();
        let old = record("aaaa", "10.88.0.2");
        let new = record("aaaa", "10.88.0.7");
        m.add(&old).unwrap();
        m.add(&new).unwrap();
        assert_eq!(fake.scripts()[1], plan_replace(&old, &new, &Claims::default()));
    }

    #[test]
    fn del_removes_record_and_twice_is_ok() {
        let (_dir, fake, m) = manager();
        let r = record("aaaa", "10.88.0.2");
        m.add(&r).unwrap();
        m.del(&r.owner).unwrap();
        m.del(&r.owner).unwrap();
        assert_eq!(fake.scripts().len(), 2, "second DEL sends nothing");
        assert_eq!(fake.scripts()[1], plan_remove(&r, &Claims::default()));
        assert!(m.records().unwrap().records.is_empty());
    }

    #[test]
    fn del_keeps_elements_another_owner_claims() {
        let (_dir, fake, m) = manager();
        let a = record("aaaa", "10.88.0.2");
        let b = record("bbbb", "10.88.0.2");
        m.add(&a).unwrap();
        m.add(&b).unwrap();
        m.del(&a.owner).unwrap();
        assert_eq!(
            fake.scripts().len(),
            2,
            "nothing of A's is unclaimed, so no transaction"
        );
        m.del(&b.owner).unwrap();
        assert!(fake.scripts()[2].contains("delete element inet corral masq_src4 { 10.88.0.2 }"));
    }

    #[test]
    fn failed_del_keeps_the_record_for_a_retry() {
        let (_dir, fake, m) = manager();
        let r = record("aaaa", "10.88.0.2");
        m.add(&r).unwrap();
        fake.fail_apply(Some("boom"));
        m.del(&r.owner).unwrap_err();
        assert_eq!(m.records().unwrap().records.len(), 1);
        fake.fail_apply(None);
        m.del(&r.owner).unwrap();
        assert!(m.records().unwrap().records.is_empty());
    }

    #[test]
    fn check_names_missing_elements_and_chains() {
        let (_dir, fake, m) = manager();
        let mut r = record("aaaa", "10.88.0.2");
        r.spoof = Some(SpoofEntry {
            host_ifname: "veth0a".into(),
            mac: [2, 0, 0, 0, 0, 2],
        });
        m.add(&r).unwrap();
        let err = m.check(&r.owner).unwrap_err().to_string();
        assert!(
            err.contains("table inet corral") && err.contains("table bridge corral"),
            "{err}"
        );
        fake.set_table(
            "inet",
            "corral",
            json!({"nftables": [
            {"chain": {"family": "inet", "name": "postrouting"}},
            {"set": {"family": "inet", "name": "masq_src4", "elem": ["10.88.0.2"]}},
            {"set": {"family": "inet", "name": "masq_skip4", "elem": [
                {"concat": ["10.88.0.2", {"prefix": {"addr": "10.88.0.0", "len": 16}}]}]}}]}),
        );
        fake.set_table(
            "bridge",
            "corral",
            json!({"nftables": [
            {"set": {"family": "bridge", "name": "spoof_ports", "elem": ["veth0a"]}}]}),
        );
        let err = m.check(&r.owner).unwrap_err().to_string();
        assert!(!err.contains("masq"), "{err}");
        assert!(err.contains("chain bridge corral prerouting"), "{err}");
        assert!(
            err.contains("spoof_allowed { \"veth0a\" . 02:00:00:00:00:02 }"),
            "{err}"
        );
        assert!(!err.contains("spoof_ports"), "{err}");
    }

    #[test]
    fn check_without_record_fails() {
        let (_dir, _fake, m) = manager();
        let err = m.check(&Owner::new("net1", "nope", "eth0")).unwrap_err();
        assert!(matches!(err, NatError::NoRecord { .. }), "{err}");
    }

    #[test]
    fn gc_removes_only_invalid_attachments_of_that_network() {
        let (_dir, fake, m) = manager();
        m.add(&record("keep", "10.88.0.2")).unwrap();
        m.add(&record("drop", "10.88.0.3")).unwrap();
        let mut other_net = record("other", "10.88.0.4");
        other_net.owner.network = "net2".into();
        m.add(&other_net).unwrap();
        m.gc("net1", &[("keep".into(), "eth0".into())]).unwrap();
        let owners: Vec<String> = m
            .records()
            .unwrap()
            .records
            .iter()
            .map(|r| r.owner.to_string())
            .collect();
        assert_eq!(owners, ["net1/keep/eth0", "net2/other/eth0"]);
        assert!(fake.scripts()[3].contains("delete element inet corral masq_src4 { 10.88.0.3 }"));
    }

    #[test]
    fn gc_keeps_going_and_reports_every_failure() {
        let (_dir, fake, m) = manager();
        m.add(&record("a", "10.88.0.2")).unwrap();
        m.add(&record("b", "10.88.0.3")).unwrap();
        fake.fail_apply(Some("boom"));
        let err = m.gc("net1", &[]).unwrap_err();
        assert!(matches!(&err, NatError::Multiple(v) if v.len() == 2), "{err}");
    }

    #[test]
    fn status_maps_unusable_nft_to_50() {
        let (_dir, fake, m) = manager();
        m.status().unwrap();
        fake.set_unusable(true);
        assert_eq!(m.status().unwrap_err().code(), 50);
    }

    #[test]
    fn reconcile_re_adds_all_records_in_one_transaction() {
        let (_dir, fake, m) = manager();
        let a = record("a", "10.88.0.2");
        let b = record("b", "10.88.0.3");
        m.add(&a).unwrap();
        m.add(&b).unwrap();
        let report = m.reconcile().unwrap();
        assert_eq!(report.records, 2);
        assert_eq!(fake.scripts()[2], plan_reconcile([&a, &b]).0);
    }

    #[test]
    fn invalid_record_is_refused_before_anything_happens() {
        let (dir, fake, m) = manager();
        let mut r = record("a", "10.88.0.2");
        r.owner.network = "../escape".into();
        assert_eq!(m.add(&r).unwrap_err().code(), 7);
        assert!(fake.scripts().is_empty());
        assert!(!dir.path().join("nat").exists());
    }
}
