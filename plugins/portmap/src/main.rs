//! The `portmap` CNI plugin: forwards host ports to the container as elements of nftables maps in corral's
//! own table, with the reference plugin's config keys. Chained after an interface plugin (bridge). See
//! docs/portmap.md.

mod add;
mod check;
mod config;
mod del;
mod effects;
mod pending;
mod plan;

use corral_cni::{CniError, CniResult, Plugin, Request};

struct PortmapPlugin;

impl Plugin for PortmapPlugin {
    fn add(&self, req: &Request) -> Result<CniResult, CniError> {
        add::add(req)
    }
    fn del(&self, req: &Request) -> Result<(), CniError> {
        del::del(req)
    }
    fn check(&self, req: &Request) -> Result<(), CniError> {
        check::check(req)
    }
    fn status(&self, req: &Request) -> Result<(), CniError> {
        del::status(req)
    }
    fn gc(&self, req: &Request) -> Result<(), CniError> {
        del::gc(req)
    }
}

const ABOUT: &str = concat!("CNI portmap plugin (corral ", env!("CARGO_PKG_VERSION"), ")");
const HELP: &str = "Run by a container runtime as a chained plugin, with CNI_COMMAND and friends in the environment \
and the network configuration (with prevResult) on stdin. Keys: runtimeConfig.portMappings [{hostPort, \
containerPort, protocol, hostIP}], snat, masqAll, markMasqBit and externalSetMarkChain (accepted, no effect), \
conditionsV4/conditionsV6 (must be empty), backend (nftables). Environment: CORRAL_LOG (log level, default warn), \
CORRAL_STATE_DIR (NAT records, default /var/lib/corral). Documentation: docs/portmap.md.";

corral_cni::plugin_note!();

fn main() {
    corral_cni::skel::main(&PortmapPlugin, ABOUT, HELP)
}
