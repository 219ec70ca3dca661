//! Container link teardown for DEL. Unregistering a veth makes the kernel wait for RCU grace periods (about
//! 13 ms on this machine, most of a DEL), during which the runtime would be kept waiting. DEL therefore takes
//! the link down and renames it to a parking name — which stops its traffic and frees CNI_IFNAME at once —
//! and leaves the unregister to a detached child process started from this same binary, so the runtime gets
//! its answer as soon as the address and the NAT entries are released. If the child cannot be started, the
//! link is deleted in place. `CORRAL_SYNC_DEL=1` always deletes in place.

use corral_netops::{open_netns, random_veth_name, Netlink, NetopsError};
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// Set to `1` to delete the container link before DEL returns.
pub const SYNC_ENV: &str = "CORRAL_SYNC_DEL";
/// Tells a bridge binary started as the deleter which netns to act in.
const DEFER_NETNS_ENV: &str = "CORRAL_DEFERRED_DELETE_NETNS";
/// ... and which (parked) link to delete there.
const DEFER_LINK_ENV: &str = "CORRAL_DEFERRED_DELETE_LINK";

/// Takes CNI_IFNAME in `ns` out of service; absence is success.
pub fn remove_container_link(
    ns: &File,
    netns_path: &Path,
    ifname: &str,
    env: &BTreeMap<String, String>,
) -> Result<(), NetopsError> {
    let ctr = Netlink::in_netns(ns)?;
    let Some(link) = ctr.link_by_name(ifname)? else {
        // A DEL killed after parking left its link under the parking name: finish it now.
        for parked in ctr
            .links()?
            .into_iter()
            .filter(|l| l.name.starts_with(PARKING_PREFIX))
        {
            tracing::debug!(parked = parked.name, "deleting a link an earlier DEL parked");
            ctr.delete_link_by_index(parked.index)?;
        }
        return Ok(());
    };
    if env.get(SYNC_ENV).is_some_and(|v| v == "1") {
        return ctr.delete_link_by_index(link.index).map(|_| ());
    }
    ctr.set_link_down(link.index)?;
    let parked = parking_name()?;
    ctr.rename_link(link.index, &parked)?;
    corral_cni::failpoint::hit("bridge-del-after-park");
    tracing::debug!(
        ifname,
        parked,
        "container link parked; deleting it in the background"
    );
    if let Err(e) = spawn_deleter(netns_path, &parked, env) {
        tracing::warn!(error = %e, "cannot start the background deleter; deleting in place");
        ctr.delete_link_by_index(link.index)?;
    }
    Ok(())
}

/// Prefix of parked links: corral never gives it to anything else.
const PARKING_PREFIX: &str = "cdel";

/// `cdel` and 8 random hex digits: never a name a runtime asks for, at most 12 characters.
fn parking_name() -> Result<String, NetopsError> {
    let random = random_veth_name()?;
    Ok(format!("{PARKING_PREFIX}{}", random.trim_start_matches("veth")))
}

/// Starts this binary again, detached (own process group, no stdio, not waited for), to delete `link`.
fn spawn_deleter(netns: &Path, link: &str, env: &BTreeMap<String, String>) -> std::io::Result<()> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.env_clear()
        .env(DEFER_NETNS_ENV, netns)
        .env(DEFER_LINK_ENV, link)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    if let Some(level) = env.get("CORRAL_LOG") {
        cmd.env("CORRAL_LOG", level);
    }
    cmd.spawn().map(drop)
}

/// When this process was started as the deleter: deletes the parked link and returns the exit status.
pub fn run_deferred_if_requested() -> Option<i32> {
    let netns = std::env::var_os(DEFER_NETNS_ENV)?;
    let link = std::env::var(DEFER_LINK_ENV).ok()?;
    let outcome = open_netns(&netns)
        .and_then(|ns| Netlink::in_netns(&ns))
        .and_then(|ctr| ctr.delete_link(&link));
    match outcome {
        Ok(_) => Some(0),
        Err(e) if e.is_not_found() => Some(0),
        Err(_) => Some(1),
    }
}
