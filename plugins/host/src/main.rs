//! The `host-device` CNI plugin: moves an existing link of the node into the container under CNI_IFNAME and
//! gives it back on DEL, with the reference plugin's config keys and results. See docs/host-device.md.

mod add;
mod check;
mod config;
mod del;
mod device;
mod effects;
mod plan;
mod state;
mod sysfs;

use corral_cni::{CniError, CniResult, Plugin, Request};

struct HostDevicePlugin;

impl Plugin for HostDevicePlugin {
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

const ABOUT: &str = concat!("CNI host-device plugin (corral ", env!("CARGO_PKG_VERSION"), ")");
const HELP: &str = "Run by a container runtime with CNI_COMMAND and friends in the environment and the network \
configuration on stdin. Moves an existing link of the node into the container as CNI_IFNAME and back on DEL. \
Keys (exactly one chooses the device): device (name), hwaddr (MAC), kernelpath (/sys/devices/...), pciBusID, \
runtimeConfig.deviceID (PCI or auxiliary-bus id); optional ipam, dns. Environment: CORRAL_LOG (log level, default \
warn), CORRAL_STATE_DIR (attachment records under host-device/, default /var/lib/corral), CORRAL_SYSFS (sysfs \
root, default /sys). Failure hooks (CORRAL_FAIL_AT): host-device-after-rename, host-device-after-move, \
host-device-after-ipam. Documentation: docs/host-device.md.";

corral_cni::plugin_note!();

fn main() {
    corral_cni::skel::main(&HostDevicePlugin, ABOUT, HELP)
}
