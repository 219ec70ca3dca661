//! `corral`: the command line of corral. The launcher verbs (`run`, `ps`, `stop`, `exec`, …, `network`, `image`,
//! `volume`) talk to corrald over its socket; `corral cni` drives CNI conflists for one attachment as a container runtime
//! does; `corral list-nat` and `corral nat reconcile` show and restore corral's NAT state.

use clap::{Parser, Subcommand};
use corral_daemon::client::{self, ImageVerb, LoadArgs, NetworkVerb, RunArgs, SaveArgs, VolumeVerb};
use corral_daemon::{cni_cmd, nat_cmd};
use std::path::Path;

/// corral: container networking toolkit and container launcher.
#[derive(Debug, Parser)]
#[command(name = "corral", version, about)]
struct Cli {
    /// corrald's socket (`unix:///path` or a path; default /run/corral/corral.sock).
    #[arg(short = 'H', long = "host", env = "CORRAL_HOST", global = true)]
    host: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a command in a new container (exits with the container's exit code).
    Run(Box<RunArgs>),
    /// List containers.
    Ps {
        /// Also stopped and created containers.
        #[arg(short = 'a', long)]
        all: bool,
    },
    /// Stop containers: TERM, then KILL after the timeout.
    Stop {
        /// Seconds to wait before KILL.
        #[arg(short = 't', long = "time", default_value_t = 10)]
        time: u64,
        /// Names or ids.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Send a signal to containers.
    Kill {
        /// Signal name or number.
        #[arg(short = 's', long = "signal", default_value = "KILL")]
        signal: String,
        /// Names or ids.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove containers (their root, network namespace and network attachment).
    Rm {
        /// Kill running containers first.
        #[arg(short = 'f', long)]
        force: bool,
        /// Names or ids.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Print a container's output (stdout and stderr).
    Logs {
        /// Keep printing what the container writes until it exits.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only the last N lines of what is already there.
        #[arg(long, value_name = "N")]
        tail: Option<usize>,
        /// Name or id.
        container: String,
    },
    /// Show containers' full details as JSON.
    Inspect {
        /// Names or ids.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Wait for containers to exit; print their exit codes.
    Wait {
        /// Names or ids.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Run a command in a running container (`runc exec`); exits with its exit code.
    Exec(client::ExecArgs),
    /// Manage volumes.
    Volume {
        #[command(subcommand)]
        verb: VolumeVerb,
    },
    /// Manage networks.
    Network {
        #[command(subcommand)]
        verb: NetworkVerb,
    },
    /// Manage images.
    Image {
        #[command(subcommand)]
        verb: ImageVerb,
    },
    /// Load images from an OCI image layout archive or a `docker save` tarball (stdin without -i).
    Load(LoadArgs),
    /// Save images to an archive that is both an OCI image layout and a `docker save` tarball (stdout without -o).
    Save(SaveArgs),
    /// Run a CNI conflist for one attachment, as a container runtime would (ADD, DEL, CHECK, STATUS, GC).
    Cni(cni_cmd::CniArgs),
    /// Show every DNAT (published port) and SNAT (masquerade) entry corral manages, with its owner and drift
    /// (through corrald, with container names, when it is reachable; else read directly).
    ListNat(nat_cmd::ListArgs),
    /// Manage corral's NAT state.
    Nat(nat_cmd::NatArgs),
}

fn main() {
    let cli = Cli::parse();
    let explicit_host = cli.host.is_some();
    let socket = client::socket_path(cli.host.as_deref());
    let sock = socket.as_path();
    let enc = corral_daemon::http::percent_encode;
    let out = match cli.command {
        Cmd::Run(a) => match client::run(sock, *a) {
            Ok(code) => std::process::exit(code),
            Err(e) => {
                eprintln!("corral: {e}");
                std::process::exit(125);
            }
        },
        Cmd::Exec(a) => match client::exec(sock, &a) {
            Ok(code) => std::process::exit(code),
            Err(e) => {
                eprintln!("corral: {e}");
                std::process::exit(125);
            }
        },
        Cmd::Volume { verb } => client::volume(sock, verb),
        Cmd::Ps { all } => client::ps(sock, all),
        Cmd::Stop { time, containers } => client::each(sock, &containers, "POST", |k| {
            format!("/containers/{k}/stop?t={time}")
        }),
        Cmd::Kill { signal, containers } => client::each(sock, &containers, "POST", |k| {
            format!("/containers/{k}/kill?signal={}", enc(&signal))
        }),
        Cmd::Rm { force, containers } => client::each(sock, &containers, "DELETE", |k| {
            format!("/containers/{k}?force={}", u8::from(force))
        }),
        Cmd::Logs {
            follow,
            tail,
            container,
        } => client::logs(sock, &container, follow, tail).map(|()| String::new()),
        Cmd::Inspect { containers } => client::inspect(sock, &containers),
        Cmd::Wait { containers } => client::wait(sock, &containers),
        Cmd::Network { verb } => client::network(sock, verb),
        Cmd::Image { verb } => client::image(sock, verb),
        Cmd::Load(a) => client::load(sock, a),
        Cmd::Save(a) => client::save(sock, a).map(|()| String::new()),
        Cmd::Cni(a) => cni_cmd::run(a),
        Cmd::ListNat(a) => list_nat(sock, explicit_host, a),
        Cmd::Nat(a) => nat_cmd::nat(a),
    };
    match out {
        Ok(text) if text.is_empty() => {}
        Ok(text) => println!("{text}"),
        Err(e) => {
            eprintln!("corral: {e}");
            std::process::exit(1);
        }
    }
}

/// Through corrald (names beside ids) when `-H`/`CORRAL_HOST` is given, or when the default socket answers
/// and no state dir was chosen; else read the state directly.
fn list_nat(sock: &Path, explicit_host: bool, a: nat_cmd::ListArgs) -> Result<String, String> {
    let daemon = explicit_host
        || (std::env::var_os("CORRAL_STATE_DIR").is_none()
            && std::os::unix::net::UnixStream::connect(sock).is_ok());
    if !daemon {
        return nat_cmd::list(a);
    }
    let (json, network, container) = nat_cmd::list_options(&a);
    let enc = corral_daemon::http::percent_encode;
    let mut q = format!("/nat?json={}", u8::from(json));
    if let Some(n) = network {
        q.push_str(&format!("&network={}", enc(n)));
    }
    if let Some(c) = container {
        q.push_str(&format!("&container={}", enc(c)));
    }
    let (status, body) = corral_daemon::http::call(sock, "GET", &q, corral_daemon::http::Body::None)
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&body).into_owned();
    if status >= 400 {
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        return Err(v["message"].as_str().unwrap_or(&text).to_string());
    }
    Ok(text)
}
