//! Small adapters between the plugin and the effect crates: the NAT manager, conntrack, `route_localnet`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;

use corral_cni::{CniError, Request};
use corral_nat::{NatError, NatManager, NftCli, Owner};
use corral_netops::{write_sysctl, IpFamily, Netlink};

use crate::plan::{route_oif, Flush};

/// Where corral keeps state that outlives a plugin run, unless `CORRAL_STATE_DIR` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/corral";

/// A NAT failure as a CNI error, keeping the nat crate's code (102 for a host port in use).
pub fn nat(e: NatError) -> CniError {
    CniError::new(e.code(), e.to_string())
}

/// corral's state directory: `CORRAL_STATE_DIR` (tests) or the default.
pub fn state_dir(req: &Request) -> PathBuf {
    req.env
        .get("CORRAL_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
}

/// The NAT manager over the `nft` binary, with state under [`state_dir`].
pub fn nat_manager(req: &Request) -> NatManager<NftCli> {
    NatManager::new(state_dir(req), NftCli::new())
}

/// The NAT owner key of this attachment.
pub fn owner(req: &Request) -> Owner {
    Owner::new(&req.conf.name, &req.container_id, &req.ifname)
}

/// Deletes the conntrack flows of each flush in this process's netns. Never fails the verb: a missing
/// `conntrack` binary or a refused deletion is logged. conntrack exits 1 with "0 flow entries have been
/// deleted" when nothing matched, which is success.
pub fn flush_conntrack(flushes: &[Flush]) {
    for flush in flushes {
        let args = flush.args();
        match Command::new("conntrack").args(&args).output() {
            Ok(out) => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                if out.status.success() || stderr.contains("0 flow entries") {
                    tracing::debug!(args = args.join(" "), result = stderr.trim(), "conntrack flush");
                } else {
                    tracing::warn!(args = args.join(" "), status = %out.status, stderr = stderr.trim(),
                        "conntrack flush failed; stale flows may keep going to the old target");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot run conntrack; stale UDP/SCTP flows are not flushed")
            }
        }
    }
}

/// Sets `route_localnet=1` on the node interface that routes to `container` (so 127.0.0.1 → container can
/// leave the node; the `input` chain's guard drops what that would otherwise let in).
pub fn enable_route_localnet(container: IpAddr) -> Result<(), CniError> {
    let net = |what: &'static str| {
        move |e: corral_netops::NetopsError| CniError::new(e.code(), format!("{what}: {e}"))
    };
    let host = Netlink::current().map_err(net("netlink"))?;
    let routes = host.routes(IpFamily::V4).map_err(net("routes"))?;
    let Some(oif) = route_oif(&routes, container) else {
        tracing::warn!(%container, "no route to the container; localhost forwarding will not work");
        return Ok(());
    };
    let link = host
        .link_by_index(oif)
        .map_err(net("link"))?
        .ok_or_else(|| CniError::internal(format!("the interface routing to {container} vanished")))?;
    write_sysctl(&format!("net/ipv4/conf/{}/route_localnet", link.name), "1").map_err(net("route_localnet"))
}
