//! Kernel network operations for corral, the only user of rtnetlink in the workspace.
//!
//! Everything here carries out what callers decided, passed as plain data: network namespaces ([`netns`]),
//! links ([`link`], [`bridge`]), addresses ([`addr`]), routes ([`route`]) and sysctls ([`sysctl`]). The API is
//! synchronous: a [`Netlink`] owns a current-thread tokio runtime and one rtnetlink connection bound to one
//! network namespace, and each method runs one request to completion.
//!
//! ```no_run
//! # fn main() -> Result<(), corral_netops::NetopsError> {
//! use corral_netops::{open_netns, Netlink, VethPlan};
//! let ctr = open_netns("/run/netns/ctr1")?;
//! let host = Netlink::current()?;
//! let br = host.ensure_bridge("cni0", Some(1500), false)?;
//! let veth = host.create_veth_in_netns(&VethPlan {
//!     host_name: corral_netops::random_veth_name()?,
//!     peer_name: "eth0".into(),
//!     peer_netns: &ctr,
//!     mtu: Some(1500),
//!     peer_mac: None,
//!     master: Some(br.index),
//! })?;
//! let inside = Netlink::in_netns(&ctr)?;
//! if let Some(eth0) = inside.link_by_name("eth0")? {
//!     inside.add_address(eth0.index, "10.88.0.5/16".parse().unwrap())?;
//!     inside.set_link_up(eth0.index)?;
//! }
//! # let _ = veth; Ok(()) }
//! ```

pub mod addr;
pub mod bridge;
pub mod error;
pub mod link;
pub mod netlink;
pub mod netns;
pub mod presence;
pub mod route;
pub mod sysctl;

pub use bridge::{PortVlan, MAX_VLAN_ID};
pub use error::{NetopsError, Result};
pub use link::{random_veth_name, validate_ifname, LinkInfo, VethPlan, MAX_IFNAME_LEN};
pub use netlink::Netlink;
pub use netns::{current_netns, netns_inode, open_netns, run_in_netns, same_netns, THREAD_NETNS_PATH};
pub use presence::Missing;
pub use route::{IpFamily, RouteSpec, MAIN_TABLE, SCOPE_LINK};
pub use sysctl::{read_sysctl, sysctl_path, write_sysctl};
