//! The `firewall` CNI plugin: the container's addresses in allow-sets of a forward chain in corral's own
//! `table inet corral` (never anyone else's tables), kept per attachment so DEL and GC are exact. What that can
//! and cannot do against a host's drop policy: docs/firewall.md.

mod config;
mod ops;
mod rules;
mod store;

use corral_cni::{CniError, CniResult, Plugin, Request};

struct Firewall;

impl Plugin for Firewall {
    fn add(&self, req: &Request) -> Result<CniResult, CniError> {
        ops::add(req)
    }
    fn del(&self, req: &Request) -> Result<(), CniError> {
        ops::del(req)
    }
    fn check(&self, req: &Request) -> Result<(), CniError> {
        ops::check(req)
    }
    fn status(&self, req: &Request) -> Result<(), CniError> {
        ops::status(req)
    }
    fn gc(&self, req: &Request) -> Result<(), CniError> {
        ops::gc(req)
    }
}

const ABOUT: &str = concat!("CNI firewall plugin (corral ", env!("CARGO_PKG_VERSION"), ")");
const HELP: &str = "Run by a container runtime as a chained plugin, with CNI_COMMAND and friends in the environment \
and the network configuration (with prevResult) on stdin. Adds the container's addresses to the fw_allow4/fw_allow6 \
sets of chain fw_forward in nftables table inet corral. Keys: backend (\"\", \"iptables\" or \"nftables\"; \
\"firewalld\" is refused with code 2), ingressPolicy (\"open\"; \"same-bridge\" is refused with code 2), \
iptablesAdminChainName and firewalldZone (accepted, unused). Environment: CORRAL_LOG (log level, default warn), \
CORRAL_STATE_DIR (records, default /var/lib/corral). Documentation: docs/firewall.md.";

corral_cni::plugin_note!();

fn main() {
    corral_cni::skel::main(&Firewall, ABOUT, HELP)
}
