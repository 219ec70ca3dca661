//! An in-memory [`Store`] for tests of the allocation logic: no disk, no root, and failures on demand.

use super::{Holder, IndexEntry, Store};
use crate::error::StoreError;
use corral_cni::Attachment;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

/// Reservations, hints and index entries in maps.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    /// Reservations by address.
    pub files: BTreeMap<IpAddr, Holder>,
    /// Round-robin hints by range set.
    pub last: BTreeMap<usize, IpAddr>,
    /// Index entries.
    pub index: HashMap<Attachment, IndexEntry>,
    /// Addresses whose `create` fails with an I/O error (to test rollback).
    pub fail_create: Vec<IpAddr>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a reservation without an index entry, as the reference plugin would have written it.
    pub fn insert_foreign(&mut self, ip: IpAddr, holder: Holder) {
        self.files.insert(ip, holder);
    }
}

fn injected(ip: IpAddr) -> StoreError {
    StoreError::io(
        "create",
        ip.to_string(),
        std::io::Error::other("injected failure"),
    )
}

impl Store for MemoryStore {
    fn holder(&self, ip: IpAddr) -> Result<Option<Holder>, StoreError> {
        Ok(self.files.get(&ip).cloned())
    }

    fn create(&mut self, ip: IpAddr, owner: &Attachment) -> Result<bool, StoreError> {
        if self.fail_create.contains(&ip) {
            return Err(injected(ip));
        }
        if self.files.contains_key(&ip) {
            return Ok(false);
        }
        self.files.insert(ip, Holder::Attachment(owner.clone()));
        Ok(true)
    }

    fn remove(&mut self, ip: IpAddr) -> Result<(), StoreError> {
        self.files.remove(&ip);
        Ok(())
    }

    fn reservations(&self) -> Result<Vec<(IpAddr, Holder)>, StoreError> {
        Ok(self.files.iter().map(|(ip, h)| (*ip, h.clone())).collect())
    }

    fn last_reserved(&self, set: usize) -> Result<Option<IpAddr>, StoreError> {
        Ok(self.last.get(&set).copied())
    }

    fn set_last_reserved(&mut self, set: usize, ip: IpAddr) -> Result<(), StoreError> {
        self.last.insert(set, ip);
        Ok(())
    }

    fn read_index(&self, owner: &Attachment) -> Result<Option<IndexEntry>, StoreError> {
        Ok(self.index.get(owner).cloned())
    }

    fn write_index(&mut self, owner: &Attachment, entry: &IndexEntry) -> Result<(), StoreError> {
        self.index.insert(owner.clone(), entry.clone());
        Ok(())
    }

    fn remove_index(&mut self, owner: &Attachment) -> Result<(), StoreError> {
        self.index.remove(owner);
        Ok(())
    }

    fn indexed(&self) -> Result<Vec<Attachment>, StoreError> {
        Ok(self.index.keys().cloned().collect())
    }
}
