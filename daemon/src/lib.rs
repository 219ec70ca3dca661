//! corral's command line and the `corrald` launcher. The launcher runs whole containers on corral networks:
//! an image store (OCI layout), overlayfs roots, OCI runtime bundles run by runc through a per-container shim,
//! and networks attached through corral's own CNI plugins exactly as an orchestrator does.

pub mod archive;
pub mod bundle;
pub mod client;
pub mod cni_cmd;
pub mod container;
pub mod engine;
pub mod failpoint;
pub mod file;
pub mod http;
pub mod image;
pub mod layer;
pub mod nat_cmd;
pub mod netns;
pub mod network;
pub mod ports;
pub mod rootfs;
pub mod runtime;
pub mod server;
pub mod shim;
pub mod supervisor;
pub mod table;
pub mod user;
pub mod volume;
