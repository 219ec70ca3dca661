//! The `tuning` CNI plugin: sysctls (`net.*` only) and link settings (mac, mtu, promisc, allmulti, txQLen) of
//! the container's interface, chained after an interface plugin; originals saved on ADD and restored on DEL.
//! See docs/tuning.md.

mod config;
mod ops;
mod saved;

use corral_cni::{CniError, CniResult, Plugin, Request};

struct Tuning;

impl Plugin for Tuning {
    fn add(&self, req: &Request) -> Result<CniResult, CniError> {
        ops::add(req)
    }
    fn del(&self, req: &Request) -> Result<(), CniError> {
        ops::del(req)
    }
    fn check(&self, req: &Request) -> Result<(), CniError> {
        ops::check(req)
    }
}

const ABOUT: &str = concat!("CNI tuning plugin (corral ", env!("CARGO_PKG_VERSION"), ")");
const HELP: &str = "Run by a container runtime as a chained plugin, with CNI_COMMAND and friends in the environment \
and the network configuration (with prevResult) on stdin. Keys: sysctl {\"net.…\": value} (net.* only; \
/etc/cni/tuning/allowlist.conf honoured when present), mac (also runtimeConfig.mac, args.cni.mac, CNI_ARGS MAC), \
promisc, mtu, allmulti, txQLen, dataDir (default /run/cni/tuning: originals saved on ADD, restored on DEL). \
Environment: CORRAL_LOG (log level, default warn). Documentation: docs/tuning.md.";

corral_cni::plugin_note!();

fn main() {
    corral_cni::skel::main(&Tuning, ABOUT, HELP)
}
