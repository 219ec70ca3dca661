//! The reservation store behind a narrow trait: reservation files (one per address, naming its holder), the
//! round-robin hint per range set, and corral's per-attachment index. [`DiskStore`] keeps them in the
//! reference's on-disk format; [`MemoryStore`] keeps them in maps for tests. The store only persists: every
//! decision (what to allocate, what to release) is made in [`crate::allocator`]. Callers hold the store's lock
//! (see [`DiskStore::lock`]) around every sequence of calls.

mod disk;
mod fs;
mod memory;

pub use disk::{
    DiskStore, LockGuard, DEFAULT_LOCK_TIMEOUT, FAIL_AFTER_INDEX, FAIL_AFTER_IPFILE, INDEX_DIR,
    LAST_RESERVED_PREFIX, LOCK_FILE,
};
pub use fs::TMP_SUFFIX;
pub use memory::MemoryStore;

use crate::error::StoreError;
use corral_cni::Attachment;
use std::net::IpAddr;

/// The separator between container id and ifname in a reservation file, as the reference writes it.
pub const LINE_BREAK: &str = "\r\n";

/// Who holds an address, as read from its reservation file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Holder {
    /// `<containerID>\r\n<ifname>`: the current format.
    Attachment(Attachment),
    /// `<containerID>` alone: written by host-local before v0.7; matches any ifname of that container.
    LegacyId(String),
}

impl Holder {
    /// Reads a reservation file's content (trimmed, as the reference compares it).
    pub fn parse(content: &str) -> Holder {
        let t = content.trim();
        match t.split_once(LINE_BREAK) {
            Some((id, ifname)) => Holder::Attachment(Attachment {
                container_id: id.trim().to_string(),
                ifname: ifname.to_string(),
            }),
            None => Holder::LegacyId(t.to_string()),
        }
    }

    /// The file content for an attachment: `<containerID>\r\n<ifname>`.
    pub fn encode(owner: &Attachment) -> String {
        format!("{}{LINE_BREAK}{}", owner.container_id.trim(), owner.ifname)
    }

    /// Whether this is exactly `owner` (legacy id-only files never are).
    pub fn is(&self, owner: &Attachment) -> bool {
        matches!(self, Holder::Attachment(a) if a == owner)
    }

    /// The container id.
    pub fn container_id(&self) -> &str {
        match self {
            Holder::Attachment(a) => &a.container_id,
            Holder::LegacyId(id) => id,
        }
    }
}

/// corral's record of one attachment: the addresses it was given and enough to clean up after a reboot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexEntry {
    /// Addresses, in allocation order. An address whose file is missing or held by someone else is stale
    /// (a crash between writing the index and the reservation) and is ignored.
    pub ips: Vec<IpAddr>,
    /// `/proc/sys/kernel/random/boot_id` when the entry was written.
    pub boot_id: String,
    /// CNI_NETNS of the ADD.
    pub netns: String,
    /// The inode of the namespace CNI_NETNS named at ADD time, if it was one (nsfs): a later namespace at the
    /// same path has another inode. Without it, the path alone never makes the entry stale.
    pub netns_ino: Option<u64>,
}

/// First line of an index file. Never equal to a reservation's content, so the reference (which reads every
/// file under the network directory) never takes an index for a reservation.
const INDEX_HEADER: &str = "corral-host-local-index 1";

impl IndexEntry {
    /// The file content: a header, then `key value` lines.
    pub fn encode(&self) -> String {
        let mut s = format!("{INDEX_HEADER}\nboot_id {}\n", one_line(&self.boot_id));
        s.push_str(&format!("netns {}\n", one_line(&self.netns)));
        if let Some(ino) = self.netns_ino {
            s.push_str(&format!("netns_ino {ino}\n"));
        }
        for ip in &self.ips {
            s.push_str(&format!("ip {ip}\n"));
        }
        s
    }

    /// Reads an index file; `None` if it is not one.
    pub fn decode(content: &str) -> Option<IndexEntry> {
        let mut lines = content.lines();
        if lines.next()? != INDEX_HEADER {
            return None;
        }
        let mut e = IndexEntry::default();
        for line in lines {
            let (k, v) = line.split_once(' ').unwrap_or((line, ""));
            match k {
                "boot_id" => e.boot_id = v.to_string(),
                "netns" => e.netns = v.to_string(),
                // Unreadable: as if not recorded, so the entry is never judged by its netns.
                "netns_ino" => e.netns_ino = v.parse().ok(),
                "ip" => e.ips.push(v.parse().ok()?),
                _ => {}
            }
        }
        Some(e)
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// Persistence of reservations. Every method assumes the caller holds the store's lock.
pub trait Store {
    /// The holder of `ip`, if reserved.
    fn holder(&self, ip: IpAddr) -> Result<Option<Holder>, StoreError>;
    /// Whether `ip` is reserved (cheaper than [`Store::holder`] where it matters).
    fn is_reserved(&self, ip: IpAddr) -> Result<bool, StoreError> {
        Ok(self.holder(ip)?.is_some())
    }
    /// Reserves `ip` for `owner`, exclusively: `false` if someone holds it already.
    fn create(&mut self, ip: IpAddr, owner: &Attachment) -> Result<bool, StoreError>;
    /// Deletes the reservation of `ip`; absent is fine.
    fn remove(&mut self, ip: IpAddr) -> Result<(), StoreError>;
    /// Makes earlier removals durable.
    fn sync(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Every reservation with its holder (a full walk: for fallbacks, GC and tests).
    fn reservations(&self) -> Result<Vec<(IpAddr, Holder)>, StoreError>;
    /// Every reserved address, without reading holders.
    fn reserved_ips(&self) -> Result<Vec<IpAddr>, StoreError> {
        Ok(self.reservations()?.into_iter().map(|(ip, _)| ip).collect())
    }
    /// The last address handed out in range set `set`.
    fn last_reserved(&self, set: usize) -> Result<Option<IpAddr>, StoreError>;
    /// Records the last address handed out in range set `set`.
    fn set_last_reserved(&mut self, set: usize, ip: IpAddr) -> Result<(), StoreError>;
    /// The index entry of `owner`, if any.
    fn read_index(&self, owner: &Attachment) -> Result<Option<IndexEntry>, StoreError>;
    /// Replaces the index entry of `owner`.
    fn write_index(&mut self, owner: &Attachment, entry: &IndexEntry) -> Result<(), StoreError>;
    /// Deletes the index entry of `owner`; absent is fine.
    fn remove_index(&mut self, owner: &Attachment) -> Result<(), StoreError>;
    /// Every attachment with an index entry.
    fn indexed(&self) -> Result<Vec<Attachment>, StoreError>;
    /// Removes what a crashed writer left behind (temporary files); returns what it could not remove.
    fn sweep(&mut self) -> Vec<StoreError> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn att(id: &str, ifname: &str) -> Attachment {
        Attachment {
            container_id: id.into(),
            ifname: ifname.into(),
        }
    }

    #[test]
    fn holder_reads_current_and_legacy_content() {
        assert_eq!(
            Holder::parse("abc\r\neth0"),
            Holder::Attachment(att("abc", "eth0"))
        );
        assert_eq!(
            Holder::parse("abc\r\neth0\n"),
            Holder::Attachment(att("abc", "eth0"))
        );
        assert_eq!(Holder::parse("abc"), Holder::LegacyId("abc".into()));
        assert_eq!(Holder::encode(&att("abc", "eth0")), "abc\r\neth0");
        assert!(Holder::parse("abc\r\neth0").is(&att("abc", "eth0")));
        assert!(!Holder::parse("abc").is(&att("abc", "eth0")));
    }

    #[test]
    fn index_round_trips_and_never_looks_like_a_reservation() {
        let e = IndexEntry {
            ips: vec!["10.1.0.2".parse().unwrap(), "fd00::2".parse().unwrap()],
            boot_id: "b00t".into(),
            netns: "/run/netns/x y".into(),
            netns_ino: Some(4026532000),
        };
        let text = e.encode();
        assert_eq!(IndexEntry::decode(&text), Some(e));
        assert!(matches!(Holder::parse(&text), Holder::LegacyId(s) if s.contains(INDEX_HEADER)));
        assert_eq!(IndexEntry::decode("abc\r\neth0"), None);
        let empty = IndexEntry::default();
        assert_eq!(IndexEntry::decode(&empty.encode()), Some(empty));
        // Entries written before netns_ino existed, and a garbled one, read as "not recorded".
        let old = "corral-host-local-index 1\nboot_id b\nnetns /x\nip 10.1.0.2\n";
        assert_eq!(IndexEntry::decode(old).unwrap().netns_ino, None);
        let bad = "corral-host-local-index 1\nnetns_ino x\nip 10.1.0.2\n";
        assert_eq!(IndexEntry::decode(bad).unwrap().netns_ino, None);
    }

    #[test]
    fn index_keeps_metadata_on_one_line() {
        let e = IndexEntry {
            netns: "/a\nip 1.2.3.4".into(),
            ..Default::default()
        };
        assert!(IndexEntry::decode(&e.encode()).unwrap().ips.is_empty());
    }
}
