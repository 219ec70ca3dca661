//! Logging for plugins: `tracing` to stderr (stdout carries the result), level from `CORRAL_LOG`.

/// Installs the stderr subscriber once; the default level is `warn`.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CORRAL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
