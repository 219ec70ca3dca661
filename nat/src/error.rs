//! The NAT manager's error type and its mapping to CNI error codes.

use std::path::PathBuf;
use std::time::Duration;

/// CNI error code for "try again later" (a lock we could not take in time).
pub const CODE_TRY_AGAIN_LATER: u32 = 11;
/// CNI error code for an I/O failure.
pub const CODE_IO: u32 = 5;
/// CNI error code for "plugin not available" (STATUS: `nft` is unusable).
pub const CODE_NOT_AVAILABLE: u32 = 50;
/// CNI error code for invalid network config or data.
pub const CODE_INVALID: u32 = 7;
/// corral's plugin-specific code: a host port is owned by another live attachment.
pub const CODE_PORT_IN_USE: u32 = 102;
/// CNI error code for anything else.
pub const CODE_OTHER: u32 = 999;

/// Everything that can go wrong in the NAT manager. Every variant names the object and the operation.
#[derive(Debug, thiserror::Error)]
pub enum NatError {
    /// The state lock was held by someone else for longer than the timeout.
    #[error("timed out after {timeout:?} waiting for the NAT state lock {path}")]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long we waited.
        timeout: Duration,
    },
    /// A file-system operation on the state directory failed.
    #[error("{operation} {path}: {source}")]
    Io {
        /// What we were doing ("write record", "create directory", ...).
        operation: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A record on disk is not valid JSON for an attachment record.
    #[error("invalid NAT record {path}: {source}")]
    InvalidRecord {
        /// The record file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A caller passed data we refuse to put into a path or an nft script.
    #[error("invalid {field} {value:?}: {reason}")]
    InvalidData {
        /// Which field ("network", "ifname", "masq subnet", ...).
        field: &'static str,
        /// The offending value.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The `nft` program could not be started (missing binary, no `nsenter`, ...).
    #[error("cannot run {program}: {source}")]
    NftUnavailable {
        /// The program we tried to exec.
        program: String,
        /// The exec error.
        #[source]
        source: std::io::Error,
    },
    /// `nft` ran but the status probe failed: it cannot be used on this host.
    #[error("nft is not usable: {stderr}")]
    NftUnusable {
        /// nft's stderr (or exit status when it printed nothing).
        stderr: String,
    },
    /// `nft` ran and refused the operation.
    #[error("nft {operation} failed ({status}): {stderr}")]
    NftFailed {
        /// "apply", "list table inet corral", ...
        operation: String,
        /// Exit status as text.
        status: String,
        /// nft's stderr.
        stderr: String,
    },
    /// `nft -j` printed something that is not JSON.
    #[error("cannot parse the output of nft {operation}: {source}")]
    NftOutput {
        /// The listing we asked for.
        operation: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// Reading nf_tables over netlink failed (callers fall back to `nft -j`).
    #[error("nf_tables netlink {operation}: {source}")]
    Netlink {
        /// What we were doing ("open socket", "dump set elements", ...).
        operation: String,
        /// The OS error, or the parse error as `InvalidData`.
        #[source]
        source: std::io::Error,
    },
    /// CHECK found recorded state missing from the kernel.
    #[error("{owner}: missing in the kernel: {missing}")]
    Missing {
        /// The attachment being checked (`network/container/ifname`).
        owner: String,
        /// The missing elements, `family table set { key }`, comma separated.
        missing: String,
    },
    /// CHECK was asked about an attachment we have no record of.
    #[error("{owner}: no NAT record")]
    NoRecord {
        /// The attachment (`network/container/ifname`).
        owner: String,
    },
    /// ADD asked for a host port that another attachment, whose netns still exists, owns.
    #[error("host port {port} is in use by {owner}")]
    PortInUse {
        /// The contested host port (`tcp 8080 on all IPv4 addresses`).
        port: String,
        /// The attachment that owns it (`network/container/ifname`).
        owner: String,
    },
    /// Several independent operations failed (GC keeps going and reports them all).
    #[error("{} NAT operations failed: {}", .0.len(), join(.0))]
    Multiple(Vec<NatError>),
}

fn join(errors: &[NatError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl NatError {
    /// The CNI error code for this error: 11 lock timeout, 5 I/O, 50 nft unusable, 7 invalid data, 102 host port
    /// in use, 999 otherwise.
    /// A list of errors takes the code of its first member.
    pub fn code(&self) -> u32 {
        match self {
            Self::LockTimeout { .. } => CODE_TRY_AGAIN_LATER,
            Self::Io { .. } => CODE_IO,
            Self::NftUnavailable { .. } | Self::NftUnusable { .. } => CODE_NOT_AVAILABLE,
            Self::InvalidRecord { .. } | Self::InvalidData { .. } => CODE_INVALID,
            Self::PortInUse { .. } => CODE_PORT_IN_USE,
            Self::NftFailed { .. }
            | Self::NftOutput { .. }
            | Self::Netlink { .. }
            | Self::Missing { .. }
            | Self::NoRecord { .. } => CODE_OTHER,
            Self::Multiple(errors) => errors.first().map_or(CODE_OTHER, NatError::code),
        }
    }

    pub(crate) fn io(operation: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            operation,
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_cni_table() {
        let io = || std::io::Error::other("x");
        assert_eq!(
            NatError::LockTimeout {
                path: "l".into(),
                timeout: Duration::ZERO
            }
            .code(),
            11
        );
        assert_eq!(NatError::io("read", "p", io()).code(), 5);
        assert_eq!(
            NatError::NftUnavailable {
                program: "nft".into(),
                source: io()
            }
            .code(),
            50
        );
        assert_eq!(
            NatError::NftUnusable {
                stderr: String::new()
            }
            .code(),
            50
        );
        let invalid = NatError::InvalidData {
            field: "ifname",
            value: "a b".into(),
            reason: "r",
        };
        assert_eq!(invalid.code(), 7);
        let failed = NatError::NftFailed {
            operation: "apply".into(),
            status: "1".into(),
            stderr: "e".into(),
        };
        assert_eq!(failed.code(), 999);
        assert_eq!(NatError::Multiple(vec![invalid]).code(), 7);
    }

    #[test]
    fn nft_failure_message_carries_stderr() {
        let e = NatError::NftFailed {
            operation: "apply".into(),
            status: "exit status: 1".into(),
            stderr: "Error: Could not process rule: File exists".into(),
        };
        assert!(e.to_string().contains("File exists"), "{e}");
    }
}
