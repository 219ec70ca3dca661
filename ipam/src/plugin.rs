//! The `cni::Plugin` implementation: each verb parses its config (pure), opens the network's store, takes
//! its lock for the whole verb and runs the allocator.

use crate::allocator::{self, AddContext, NetnsNow};
use crate::config::{self, IpamConfig, NetConf};
use crate::dns::parse_resolv_conf;
use crate::error::{IpamError, StoreError};
use crate::store::{DiskStore, LockGuard, DEFAULT_LOCK_TIMEOUT};
use corral_cni::{Attachment, CniError, CniResult, Dns, Plugin, Request};
use std::path::Path;
use std::time::Duration;

/// Where the kernel exposes the boot id recorded in index entries.
const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

/// Reads the boot id from this file instead of [`BOOT_ID_PATH`] (tests simulate a reboot with it; the NAT
/// manager honours the same variable).
pub const BOOT_ID_FILE_ENV: &str = "CORRAL_BOOT_ID_FILE";

/// Overrides the lock timeout, in milliseconds (for tests and slow nodes).
pub const LOCK_TIMEOUT_ENV: &str = "CORRAL_IPAM_LOCK_TIMEOUT_MS";

/// The host-local plugin.
#[derive(Debug, Clone)]
pub struct HostLocal {
    /// How long a verb waits for the network's lock before failing with code 11.
    pub lock_timeout: Duration,
}

impl Default for HostLocal {
    fn default() -> Self {
        HostLocal {
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        }
    }
}

impl HostLocal {
    fn lock(&self, req: &Request, store: &DiskStore, net: &str) -> Result<LockGuard, CniError> {
        let timeout = req
            .env
            .get(LOCK_TIMEOUT_ENV)
            .and_then(|v| v.parse().ok())
            .map_or(self.lock_timeout, Duration::from_millis);
        store.lock(timeout).map_err(|e| IpamError::store(net, e).into())
    }
}

fn owner(req: &Request) -> Attachment {
    Attachment {
        container_id: req.container_id.clone(),
        ifname: req.ifname.clone(),
    }
}

fn load(req: &Request) -> Result<IpamConfig, CniError> {
    req.args.check_known(&["IP"])?;
    let conf: NetConf = req.decode_conf()?;
    Ok(config::parse(&conf, req.args.get("IP"))?)
}

/// The store of a verb that must not create it (DEL, GC, CHECK): `None` if the network has no directory.
fn existing_store(req: &Request) -> Result<Option<DiskStore>, CniError> {
    let conf: NetConf = req.decode_conf()?;
    let data_dir = config::parse_data_dir(&conf)?;
    DiskStore::open_existing(&data_dir, &conf.name).map_err(|e| IpamError::store(&conf.name, e).into())
}

fn read_dns(cfg: &IpamConfig) -> Result<Dns, CniError> {
    let Some(path) = &cfg.resolv_conf else {
        return Ok(Dns::default());
    };
    std::fs::read_to_string(path)
        .map(|text| parse_resolv_conf(&text))
        .map_err(|e| {
            IpamError::config(
                &cfg.network,
                format!("cannot read resolvConf {}: {e}", path.display()),
            )
            .into()
        })
}

fn read_boot_id(path: &Path) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The boot id (from [`BOOT_ID_FILE_ENV`] if set), CNI_NETNS and its inode, and the probe that tells stale
/// attachments from live ones.
fn context(req: &Request) -> AddContext {
    let boot_file = req
        .env
        .get(BOOT_ID_FILE_ENV)
        .filter(|p| !p.is_empty())
        .map_or(BOOT_ID_PATH, String::as_str);
    let netns = req
        .netns
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let netns_ino = match probe_netns(&netns) {
        NetnsNow::Namespace(ino) if !netns.is_empty() => Some(ino),
        _ => None,
    };
    AddContext {
        boot_id: read_boot_id(Path::new(boot_file)),
        netns,
        netns_ino,
        probe: Some(probe_netns),
    }
}

/// What `path` names now: a namespace (nsfs, with its inode), something else, nothing, or unknown.
fn probe_netns(path: &str) -> NetnsNow {
    use nix::errno::Errno;
    let st = match nix::sys::stat::stat(path) {
        Ok(st) => st,
        Err(Errno::ENOENT | Errno::ENOTDIR) => return NetnsNow::Gone,
        Err(_) => return NetnsNow::Unknown,
    };
    match nix::sys::statfs::statfs(path) {
        Ok(fs) if fs.filesystem_type() == nix::sys::statfs::NSFS_MAGIC => NetnsNow::Namespace(st.st_ino),
        Ok(_) => NetnsNow::NotNamespace,
        Err(Errno::ENOENT | Errno::ENOTDIR) => NetnsNow::Gone,
        Err(_) => NetnsNow::Unknown,
    }
}

/// Many store errors as one CNI error, with the first one's code.
fn several(net: &str, errors: Vec<StoreError>) -> Result<(), CniError> {
    let Some(code) = errors.first().map(StoreError::code) else {
        return Ok(());
    };
    let msgs: Vec<String> = errors.iter().map(ToString::to_string).collect();
    Err(CniError::new(
        code,
        format!("network \"{net}\": {}", msgs.join("; ")),
    ))
}

impl Plugin for HostLocal {
    fn add(&self, req: &Request) -> Result<CniResult, CniError> {
        let cfg = load(req)?;
        let dns = read_dns(&cfg)?;
        let net = cfg.network.as_str();
        let mut store = DiskStore::open(&cfg.data_dir, net).map_err(|e| IpamError::store(net, e))?;
        let _lock = self.lock(req, &store, net)?;
        let ctx = context(req);
        let ips = allocator::allocate(&mut store, &cfg, &owner(req), &ctx)?;
        Ok(CniResult {
            ips,
            routes: cfg.routes.clone(),
            dns,
            ..Default::default()
        })
    }

    fn del(&self, req: &Request) -> Result<(), CniError> {
        let Some(mut store) = existing_store(req)? else {
            return Ok(());
        };
        let net = req.conf.name.as_str();
        let _lock = self.lock(req, &store, net)?;
        let (_, errors) = allocator::release(&mut store, &owner(req));
        several(net, errors)
    }

    fn check(&self, req: &Request) -> Result<(), CniError> {
        let cfg = load(req)?;
        let net = cfg.network.as_str();
        let who = owner(req);
        let none = || IpamError::Check {
            network: net.to_string(),
            msg: format!("no address is reserved for {}/{}", who.container_id, who.ifname),
        };
        let store = existing_store(req)?.ok_or_else(none)?;
        let _lock = self.lock(req, &store, net)?;
        let held = allocator::check(&store, net, &who)?;
        let prev = req.prev_result()?.unwrap_or_default();
        for ip in prev.ips.iter().map(|c| c.address.addr()) {
            if cfg.range_sets.iter().any(|s| s.contains(ip)) && !held.contains(&ip) {
                return Err(IpamError::Check {
                    network: net.to_string(),
                    msg: format!(
                        "{ip} of prevResult is not reserved for {}/{}",
                        who.container_id, who.ifname
                    ),
                }
                .into());
            }
        }
        Ok(())
    }

    fn status(&self, req: &Request) -> Result<(), CniError> {
        let cfg = load(req)?;
        let net = cfg.network.as_str();
        let unavailable = |e: StoreError| CniError::not_available(format!("network \"{net}\": {e}"));
        let store = DiskStore::open(&cfg.data_dir, net).map_err(unavailable)?;
        store.probe_writable().map_err(unavailable)?;
        let ctx = context(req);
        match allocator::first_full_set(&store, &cfg.range_sets, &ctx).map_err(unavailable)? {
            Some(set) => Err(CniError::not_available(format!(
                "network \"{net}\": no IP addresses available in range set {set}"
            ))),
            None => Ok(()),
        }
    }

    fn gc(&self, req: &Request) -> Result<(), CniError> {
        let Some(mut store) = existing_store(req)? else {
            return Ok(());
        };
        let net = req.conf.name.as_str();
        let _lock = self.lock(req, &store, net)?;
        let (removed, errors) = allocator::gc(&mut store, &req.conf.gc_valid_attachments());
        tracing::debug!(network = net, removed = removed.len(), "gc");
        several(net, errors)
    }
}

#[cfg(test)]
mod tests;
