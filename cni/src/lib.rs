//! corral's implementation of the CNI 1.1.0 plugin protocol: configuration, results in every spec version,
//! errors with the spec's codes, the plugin skeleton, and delegate invocation. Pure except for `invoke`
//! (which execs delegates) and `skel::main` (which reads the real process edges).

pub mod args;
pub mod config;
pub mod error;
pub mod failpoint;
pub mod gojson;
pub mod identity;
pub mod invoke;
pub mod log;
pub mod result;
pub mod runtime;
pub mod skel;
pub mod version;

pub use args::CniArgs;
pub use config::{Attachment, IpamRef, NetConf};
pub use error::{codes, CniError};
pub use result::{CniResult, Dns, Interface, IpConfig, Route};
pub use skel::{Command, Plugin, Request};
