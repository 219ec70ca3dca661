//! Failure hooks for crash-safety tests: when `CORRAL_FAIL_AT` names a point a plugin reaches, the process
//! kills itself with SIGKILL there, as a node crash or an OOM kill would. Unset in production, it costs one
//! environment lookup per point.

/// The environment variable naming the point to die at.
pub const ENV: &str = "CORRAL_FAIL_AT";

/// Dies with SIGKILL if `CORRAL_FAIL_AT` equals `point`.
pub fn hit(point: &str) {
    if std::env::var(ENV).is_ok_and(|v| v == point) {
        tracing::warn!(point, "failure hook: killing myself");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}
