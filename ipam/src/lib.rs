//! corral's host-local IPAM: a drop-in for the reference `host-local` plugin (same config keys, same result,
//! same files under `/var/lib/cni/networks`, same lock), with atomic writes, a per-attachment index, GC and
//! STATUS. The binary `host-local` is [`HostLocal`] run by the CNI skeleton; see `docs/host-local.md`.
//!
//! Layout: [`config`] (wire structs and validation, pure), [`range`] (IP math and candidate order, pure),
//! [`allocator`] (the logic, over the [`store::Store`] trait), [`store`] (the disk store in the reference's
//! format and an in-memory store for tests), [`plugin`] (the verbs).
//!
//! Error codes:
//!
//! | code | when |
//! |---|---|
//! | 4 | CNI_ARGS has a key other than `IP` (and the K8S_* keys) without `IgnoreUnknown` |
//! | 5 | the store cannot be read or written |
//! | 6 | the config is not JSON or a key has the wrong type |
//! | 7 | invalid config (message names the network and the value); a second ADD of the same attachment ("duplicate allocation is not allowed"); a requested IP outside every range set, or equal to a gateway |
//! | 11 | the network's lock stayed taken for 30 s (`CORRAL_IPAM_LOCK_TIMEOUT_MS` overrides) |
//! | 50 | STATUS: the store directory cannot be created or written, or a range set has no free address |
//! | 100 | address pool exhausted: no free address in a range set, or the requested address is taken |
//! | 101 | CHECK: an address of the attachment is no longer reserved for it |
//!
//! Test hooks (compiled in, inert unless set): `CORRAL_FAIL_AT=ipam-after-index` or `ipam-after-ipfile`
//! makes the process SIGKILL itself right after writing an index entry or a reservation file.

pub mod allocator;
pub mod config;
pub mod dns;
pub mod error;
pub mod plugin;
pub mod range;
pub mod store;

pub use allocator::AddContext;
pub use config::IpamConfig;
pub use error::{IpamError, StoreError};
pub use plugin::HostLocal;
pub use range::{Range, RangeSet};
pub use store::{DiskStore, Holder, IndexEntry, MemoryStore, Store};

/// The about line printed without CNI_COMMAND and by `--version`.
pub const ABOUT: &str = concat!("CNI host-local plugin (corral) ", env!("CARGO_PKG_VERSION"));

/// `--help`: the config keys.
pub const HELP: &str = "\
IPAM plugin: allocates addresses from ranges and records them under dataDir.

Keys of the \"ipam\" object:
  ranges       [[{subnet, rangeStart?, rangeEnd?, gateway?}]]  one address per range set (outer list);
               ranges of a set are tried in order. gateway and rangeStart default to network+1,
               rangeEnd to the last address (IPv4: broadcast-1)
  subnet, rangeStart, rangeEnd, gateway                         legacy single range, prepended as set 0
  routes       [{dst, gw?, mtu?, advmss?, priority?, table?, scope?}]  copied into the result
  dataDir      store root (default /var/lib/cni/networks); files in <dataDir>/<network name>
  resolvConf   resolv.conf file turned into the result's dns
Also read: runtimeConfig.ipRanges (prepended to ranges), requested addresses from CNI_ARGS IP=a[,b],
args.cni.ips and runtimeConfig.ips (\"10.1.0.5\" or \"10.1.0.5/24\").
Environment: CORRAL_IPAM_LOCK_TIMEOUT_MS (default 30000), CORRAL_LOG (log level, to stderr),
CORRAL_BOOT_ID_FILE (read the boot id from this file instead of /proc/sys/kernel/random/boot_id).
A reserved address whose holder is certainly stale (recorded in another boot, or its netns is gone) is
reclaimed by the ADD that needs it.";

/// host-local as a built-in delegate: plugins that delegate IPAM pass this to `corral_cni::invoke`, which runs
/// it in-process when the `host-local` in CNI_PATH is corral's own build (and execs it otherwise).
pub static HOST_LOCAL: HostLocal = HostLocal {
    lock_timeout: store::DEFAULT_LOCK_TIMEOUT,
};

/// The built-in delegates this crate provides.
pub fn builtins() -> [corral_cni::invoke::Builtin<'static>; 1] {
    [("host-local", &HOST_LOCAL)]
}
