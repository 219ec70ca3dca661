//! The ownership index: which records hold an element in a given *slot*, so ADD's host-port check and DEL's
//! "is this element still claimed by someone else" read a handful of files instead of every record.
//!
//! Layout, inside the record directory and under the same `flock`:
//!
//! ```text
//! <state_dir>/nat/.index/version   "corral-nat-index 2" and the boot id it was built in
//! <state_dir>/nat/.index/<slot>    one line per record with an element there: <source>:<network>:<container>:<ifname>
//! ```
//!
//! A slot groups the elements that can conflict or overlap ([`slot`]): `port4-tcp-8080` holds every IPv4
//! `tcp 8080` mapping whatever its host address (a wildcard and a specific address conflict), `masq_skip4-<ip>`
//! every `masq_skip4` interval of one container address, and so on. A slot file usually has one line (shared
//! elements: one per claimant) and is replaced atomically (temp file + rename); the last line out removes it.
//! Plain files, not a directory per slot: creating and removing tens of thousands of directories is several
//! times slower on ext4 than files, and a rebuild writes one file per slot.
//!
//! The records stay the truth; the index only says whose records to read. The store adds a record's lines
//! *before* writing the record and removes them *after* removing it, so after a crashed process the index can
//! only hold too much (a line whose record lacks that slot), which readers check against the record and
//! drop. The index is not fsynced: `version` names the boot that built it, and an index from another boot (a
//! power loss may have lost lines), of another format, or missing is rebuilt from the records.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::ErrorKind;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::element::{record_elements, Element};
use crate::error::NatError;
use crate::model::{AttachmentRecord, Owner, Source};

/// The index directory's name inside `<state_dir>/nat` (a dot name: never a network).
pub const INDEX_DIR: &str = ".index";

/// The first line of `version`; bump when the slot or line format changes.
const FORMAT: &str = "corral-nat-index 2";

/// The slot of an element: elements that could overlap, or want the same host port, share one.
pub fn slot(element: &Element) -> String {
    let fam = |ip: &IpAddr| if ip.is_ipv4() { '4' } else { '6' };
    match element {
        Element::MasqSource(ip) => format!("masq_src{}-{ip}", fam(ip)),
        Element::MasqSkip { ip, .. } => format!("masq_skip{}-{ip}", fam(ip)),
        Element::SpoofPort(port) => format!("spoof_ports-{port}"),
        Element::SpoofAllowed { port, .. } => format!("spoof_allowed-{port}"),
        Element::HostPort {
            protocol, port, dest, ..
        } => format!("port{}-{protocol}-{port}", fam(dest)),
        Element::DnatMasq { dest, .. } => format!("dnat_masq{}-{dest}", fam(dest)),
    }
}

/// Every slot `record` has an element in.
pub fn record_slots(record: &AttachmentRecord) -> BTreeSet<String> {
    record_elements(record).iter().map(slot).collect()
}

/// The index directory `<state_dir>/nat/.index`. Callers hold the store lock (the store enforces it).
#[derive(Debug, Clone)]
pub struct Index {
    dir: PathBuf,
}

impl Index {
    /// The index of the record directory `root` (`<state_dir>/nat`).
    pub fn new(root: &Path) -> Self {
        Self {
            dir: root.join(INDEX_DIR),
        }
    }

    /// `<state_dir>/nat/.index`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the index exists, has our format and was built in boot `boot`.
    pub fn is_current(&self, boot: Option<&str>) -> bool {
        fs::read_to_string(self.dir.join("version")).is_ok_and(|text| text == version_text(boot))
    }

    /// The records with a line in `slot`, sorted and deduplicated (unparsable lines are skipped with a warning).
    pub fn claimants(&self, slot: &str) -> Result<Vec<(Owner, Source)>, NatError> {
        let mut out = Vec::new();
        for line in self.lines(slot)? {
            match parse_line(&line) {
                Some(claimant) => out.push(claimant),
                None => tracing::warn!(slot, line, "ignoring unparsable NAT index line"),
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Adds `(owner, source)` to each of `slots`.
    pub fn insert<'a>(
        &self,
        slots: impl IntoIterator<Item = &'a String>,
        owner: &Owner,
        source: Source,
    ) -> Result<(), NatError> {
        let line = line_text(owner, source);
        for slot in slots {
            let mut lines = self.lines(slot)?;
            if !lines.contains(&line) {
                lines.push(line.clone());
                self.store(slot, &lines)?;
            }
        }
        Ok(())
    }

    /// Removes `(owner, source)` from each of `slots`; a slot left empty is deleted. Missing lines are fine.
    pub fn remove<'a>(
        &self,
        slots: impl IntoIterator<Item = &'a String>,
        owner: &Owner,
        source: Source,
    ) -> Result<(), NatError> {
        let line = line_text(owner, source);
        for slot in slots {
            let mut lines = self.lines(slot)?;
            let before = lines.len();
            lines.retain(|l| *l != line);
            if lines.len() != before {
                self.store(slot, &lines)?;
            }
        }
        Ok(())
    }

    /// Rebuilds the whole index from `records` in boot `boot`: built aside in `.index.new`, then swapped in,
    /// so a crash midway leaves no index (rebuilt next time) rather than a partial one.
    pub fn rebuild(&self, records: &[AttachmentRecord], boot: Option<&str>) -> Result<(), NatError> {
        let fresh = self.dir.with_extension("new");
        let old = self.dir.with_extension("old");
        remove_tree(&fresh)?;
        remove_tree(&old)?;
        let mut slots: BTreeMap<String, String> = BTreeMap::new();
        for record in records {
            let line = line_text(&record.owner, record.source);
            for slot in record_slots(record) {
                let text = slots.entry(slot).or_default();
                text.push_str(&line);
                text.push('\n');
            }
        }
        fs::create_dir_all(&fresh).map_err(|e| NatError::io("create index", &fresh, e))?;
        for (slot, text) in &slots {
            let path = fresh.join(slot);
            fs::write(&path, text).map_err(|e| NatError::io("write index", &path, e))?;
        }
        let version = fresh.join("version");
        fs::write(&version, version_text(boot))
            .map_err(|e| NatError::io("write index version", &version, e))?;
        match fs::rename(&self.dir, &old) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                return Err(NatError::io("move old index aside", &self.dir, e))
            }
            _ => {}
        }
        fs::rename(&fresh, &self.dir).map_err(|e| NatError::io("move index into place", &self.dir, e))?;
        remove_tree(&old)
    }

    /// The lines of `slot`'s file (none when it does not exist).
    fn lines(&self, slot: &str) -> Result<Vec<String>, NatError> {
        let path = self.dir.join(slot);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(text.lines().map(str::to_owned).collect()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(NatError::io("read index", &path, e)),
        }
    }

    /// Replaces `slot`'s file with `lines` (temp file + rename), or removes it when `lines` is empty.
    fn store(&self, slot: &str, lines: &[String]) -> Result<(), NatError> {
        let path = self.dir.join(slot);
        if lines.is_empty() {
            return match fs::remove_file(&path) {
                Err(e) if e.kind() != ErrorKind::NotFound => Err(NatError::io("remove index slot", &path, e)),
                _ => Ok(()),
            };
        }
        fs::create_dir_all(&self.dir).map_err(|e| NatError::io("create index", &self.dir, e))?;
        let tmp = self.dir.join(format!(".{slot}.tmp"));
        let mut text = lines.join("\n");
        text.push('\n');
        fs::write(&tmp, text).map_err(|e| NatError::io("write index", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| NatError::io("rename index slot into place", &path, e))
    }
}

fn version_text(boot: Option<&str>) -> String {
    format!("{FORMAT}\nboot {}\n", boot.unwrap_or("unknown"))
}

/// `<source>:<network>:<container>:<ifname>`: none of the parts can hold a `:` or a newline (see
/// `Owner::validate`).
fn line_text(owner: &Owner, source: Source) -> String {
    format!(
        "{source}:{}:{}:{}",
        owner.network, owner.container_id, owner.ifname
    )
}

fn parse_line(text: &str) -> Option<(Owner, Source)> {
    let mut parts = text.split(':');
    let source_text = parts.next()?;
    let source = Source::ALL.into_iter().find(|s| s.as_str() == source_text)?;
    let (network, container, ifname) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let owner = Owner::new(network, container, ifname);
    owner.validate().ok()?;
    Some((owner, source))
}

fn remove_tree(path: &Path) -> Result<(), NatError> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(NatError::io("remove index", path, e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
