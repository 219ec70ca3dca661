//! `corral`: the command line of corral. `corral cni` drives CNI conflists for one attachment as a container
//! runtime does; `corral list-nat` and `corral nat reconcile` show and restore corral's NAT state.

use clap::{Parser, Subcommand};

mod cni_cmd;
mod nat_cmd;

/// corral: container networking toolkit.
#[derive(Debug, Parser)]
#[command(name = "corral", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a CNI conflist for one attachment, as a container runtime would (ADD, DEL, CHECK, STATUS, GC).
    Cni(cni_cmd::CniArgs),
    /// Show every DNAT (published port) and SNAT (masquerade) entry corral manages, with its owner and drift.
    ListNat(nat_cmd::ListArgs),
    /// Manage corral's NAT state.
    Nat(nat_cmd::NatArgs),
}

fn main() {
    let cli = Cli::parse();
    let out = match cli.command {
        Cmd::Cni(a) => cni_cmd::run(a),
        Cmd::ListNat(a) => nat_cmd::list(a),
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
