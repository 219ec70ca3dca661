//! corrald's crash points for the crash-recovery tests: when `CORRAL_FAIL_AT` names one, corrald kills itself
//! there with SIGKILL (`corral_cni::failpoint`, the plugins' mechanism), between two steps whose record is not
//! yet written, so that a restart has to find and undo what the dead corrald left. Only tests set the variable.

pub use corral_cni::failpoint::hit;

/// `create`: the container's dir exists, its record is not written yet.
pub const CREATE_RECORD: &str = "corrald-create-record";
/// `start`: the overlay root is mounted, the record does not say so yet.
pub const START_OVERLAY: &str = "corrald-start-overlay";
/// `start`: the network namespace is pinned, the record does not say so yet.
pub const START_NETNS: &str = "corrald-start-netns";
/// `start`: the shim is running (the runtime creates the container), its pid is not recorded yet.
pub const START_SHIM: &str = "corrald-start-shim";
/// `start`: CNI ADD is done (address reserved, NAT entries in), its result is not recorded yet.
pub const START_CNI: &str = "corrald-start-cni";
/// `start`: the shim was told to start the container, `start` has not returned.
pub const START_SENT: &str = "corrald-start-sent";
