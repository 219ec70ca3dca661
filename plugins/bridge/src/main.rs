//! The `bridge` CNI plugin: attaches a container to a Linux bridge through a veth pair, with the reference
//! plugin's config keys and results. See docs/bridge.md.

mod add;
mod check;
mod config;
mod del;
mod effects;
mod plan;
mod teardown;

use corral_cni::{CniError, CniResult, Plugin, Request};

struct BridgePlugin;

impl Plugin for BridgePlugin {
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

const ABOUT: &str = concat!("CNI bridge plugin (corral ", env!("CARGO_PKG_VERSION"), ")");
const HELP: &str = "Run by a container runtime with CNI_COMMAND and friends in the environment and the network \
configuration on stdin. Keys: bridge, isGateway, isDefaultGateway, forceAddress, ipMasq, ipMasqBackend, mtu, \
hairpinMode, promiscMode, vlan, vlanTrunk, preserveDefaultVlan, macspoofchk, enabledad, disableContainerInterface, \
portIsolation, mac (runtimeConfig/args/CNI_ARGS MAC), ipam, dns. Environment: CORRAL_LOG (log level, default warn), \
CORRAL_STATE_DIR (NAT records, default /var/lib/corral), CORRAL_SYNC_DEL=1 (DEL deletes the veth before \
returning instead of in the background). Documentation: docs/bridge.md.";

corral_cni::plugin_note!();

fn main() {
    if let Some(code) = teardown::run_deferred_if_requested() {
        std::process::exit(code);
    }
    corral_cni::skel::main(&BridgePlugin, ABOUT, HELP)
}
