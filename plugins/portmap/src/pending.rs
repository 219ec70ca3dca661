//! Conntrack flushes that must survive a crash. DEL removes an attachment's mappings, then flushes the UDP and
//! SCTP flows to its host ports; a plugin killed between the two would leave those flows pointing at the old
//! container until they time out (and the record that named the ports is already gone). So the mappings to
//! flush are written here first, as `<state>/portmap/flush/<network>/<container>.<ifname>.json`, and the file
//! is removed only after the flush: the next DEL of the attachment, or the next GC of the network, finds it
//! and finishes the job. TCP-only attachments need no flush and write nothing. No fsync: a power loss empties
//! the conntrack table anyway.

use std::path::{Path, PathBuf};

use corral_nat::{Owner, PortMapping};

use crate::effects::flush_conntrack;
use crate::plan::flushes;

fn dir(state_dir: &Path, network: &str) -> PathBuf {
    state_dir.join("portmap").join("flush").join(network)
}

fn path(state_dir: &Path, owner: &Owner) -> PathBuf {
    dir(state_dir, &owner.network).join(format!("{}.{}.json", owner.container_id, owner.ifname))
}

/// Records that `mappings`' flows must be flushed; a write failure is logged (the flush still runs in this
/// process, only its crash safety is lost).
pub fn record(state_dir: &Path, owner: &Owner, mappings: &[PortMapping]) {
    if flushes(mappings).is_empty() {
        return;
    }
    let target = path(state_dir, owner);
    let write = || -> std::io::Result<()> {
        let parent = target.parent().unwrap_or(state_dir);
        std::fs::create_dir_all(parent)?;
        let tmp = parent.join(format!(".{}.tmp", owner.container_id));
        std::fs::write(&tmp, serde_json::to_vec(mappings).map_err(std::io::Error::other)?)?;
        std::fs::rename(&tmp, &target)
    };
    if let Err(e) = write() {
        tracing::warn!(path = %target.display(), error = %e, "cannot record pending conntrack flush");
    }
}

/// Flushes and forgets what is pending for `owner`.
pub fn run(state_dir: &Path, owner: &Owner) {
    run_file(&path(state_dir, owner));
}

/// Flushes and forgets everything pending for `network` (GC).
pub fn run_network(state_dir: &Path, network: &str) {
    let Ok(entries) = std::fs::read_dir(dir(state_dir, network)) else {
        return;
    };
    for entry in entries.flatten() {
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "json") {
            run_file(&p);
        }
    }
}

fn run_file(p: &Path) {
    let Ok(bytes) = std::fs::read(p) else { return };
    match serde_json::from_slice::<Vec<PortMapping>>(&bytes) {
        Ok(mappings) => flush_conntrack(&flushes(&mappings)),
        Err(e) => {
            tracing::warn!(path = %p.display(), error = %e, "unreadable pending conntrack flush; dropping it")
        }
    }
    if let Err(e) = std::fs::remove_file(p) {
        tracing::warn!(path = %p.display(), error = %e, "cannot remove pending conntrack flush");
    }
}
