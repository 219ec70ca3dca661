//! `corral`: the command line of corral. `corral cni` drives CNI conflists for one attachment as a container
//! runtime does.

use clap::{Parser, Subcommand};

mod cni_cmd;

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
}

fn main() {
    let cli = Cli::parse();
    let out = match cli.command {
        Cmd::Cni(a) => cni_cmd::run(a),
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
