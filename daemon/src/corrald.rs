//! `corrald`: corral's container launcher daemon. Serves the API on a unix socket, keeps its state under the
//! state dir, runs containers with an OCI runtime through a per-container shim, and attaches them to networks
//! with corral's CNI plugins. `corrald shim` is the shim itself (started by corrald, not by hand).

use clap::{Parser, Subcommand};
use corral_daemon::engine::{Config, Engine};
use corral_daemon::{server, shim};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// corrald: runs containers on corral networks.
#[derive(Debug, Parser)]
#[command(name = "corrald", version, about)]
struct Cli {
    /// The control socket.
    #[arg(long, default_value = "/run/corral/corral.sock")]
    socket: PathBuf,
    /// Where containers, images and networks are kept.
    #[arg(long, default_value = "/var/lib/corral")]
    state_dir: PathBuf,
    /// Directories of the CNI plugins (default: the directory of this binary).
    #[arg(long, value_delimiter = ':')]
    cni_path: Vec<PathBuf>,
    /// OCI runtime: runc (default) or crun (falls back to runc where crun cannot run), or a path.
    #[arg(long)]
    runtime: Option<String>,
    /// The static init binary `run --init` runs as PID 1 (default: the first of /usr/bin/tini-static,
    /// /usr/bin/catatonit, /usr/libexec/podman/catatonit that exists). It runs inside containers, so it must be
    /// statically linked.
    #[arg(long)]
    init_path: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Cmd>,
}

/// Static init binaries from Debian's packages, best first: tini (Docker's docker-init), then Podman's catatonit.
const INIT_CANDIDATES: [&str; 3] = [
    "/usr/bin/tini-static",
    "/usr/bin/catatonit",
    "/usr/libexec/podman/catatonit",
];

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Internal: the per-container shim corrald starts.
    #[command(hide = true)]
    Shim(shim::ShimArgs),
}

fn main() {
    let cli = Cli::parse();
    if let Some(Cmd::Shim(a)) = cli.command {
        std::process::exit(shim::run(a));
    }
    if let Err(e) = daemon(cli) {
        eprintln!("corrald: {e}");
        std::process::exit(1);
    }
}

fn daemon(cli: Cli) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find my own binary: {e}"))?;
    let cni_path = if cli.cni_path.is_empty() {
        vec![exe.parent().map(Path::to_path_buf).unwrap_or_default()]
    } else {
        cli.cni_path
    };
    let state_dir =
        std::path::absolute(&cli.state_dir).map_err(|e| format!("{}: {e}", cli.state_dir.display()))?;
    let init_path = match cli.init_path {
        Some(p) if p.is_file() => Some(std::path::absolute(&p).map_err(|e| format!("{}: {e}", p.display()))?),
        Some(p) => return Err(format!("--init-path {}: no such file", p.display())),
        None => INIT_CANDIDATES.iter().map(PathBuf::from).find(|p| p.is_file()),
    };
    let (engine, warning) = Engine::new(Config {
        state_dir,
        cni_path,
        runtime: cli.runtime,
        exe,
        init_path,
    })?;
    if let Some(w) = warning {
        eprintln!("corrald: {w}");
    }
    let engine = Arc::new(engine);
    let listener = server::bind(&cli.socket)?;
    let running = engine.recover();
    eprintln!(
        "corrald: listening on {} (state {}, runtime {}, init {}, {running} running containers recovered)",
        cli.socket.display(),
        engine.state.display(),
        engine.runtime.binary.display(),
        engine
            .init_path
            .as_deref()
            .map_or("none (--init unavailable)".into(), |p| p.display().to_string())
    );
    server::serve(listener, engine);
    Ok(())
}
