//! The errors of host-local IPAM, each with its CNI code (see the crate docs for the table).

use corral_cni::{codes, CniError};
use std::net::IpAddr;
use std::path::PathBuf;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file or directory operation failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done ("create", "read", "link", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Another process held the network's lock for too long.
    #[error("timed out after {waited_ms} ms waiting for lock {}", path.display())]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long we waited.
        waited_ms: u128,
    },
}

impl StoreError {
    /// An I/O error on a path.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// The CNI code: 11 (try again) for a lock timeout, 5 (I/O failure) otherwise.
    pub fn code(&self) -> u32 {
        match self {
            StoreError::Io { .. } => codes::IO_FAILURE,
            StoreError::LockTimeout { .. } => codes::TRY_AGAIN,
        }
    }
}

/// Why an IPAM verb failed.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// The configuration is invalid (code 7).
    #[error("network \"{network}\": {msg}")]
    Config {
        /// Network name.
        network: String,
        /// What is wrong, naming the offending value.
        msg: String,
    },
    /// The attachment already holds an address in this range set (code 7, reference wording).
    #[error("network \"{network}\": {ip} has been allocated to {id}, duplicate allocation is not allowed")]
    Duplicate {
        /// Network name.
        network: String,
        /// The address it already holds.
        ip: IpAddr,
        /// Container id.
        id: String,
    },
    /// No free address is left in a range set (code 100).
    #[error("no IP addresses available in range set {set} of network \"{network}\"")]
    Exhausted {
        /// Network name.
        network: String,
        /// The range set, as text.
        set: String,
    },
    /// A requested address is reserved by another attachment (code 100).
    #[error("requested IP address {ip} is not available in range set {set} of network \"{network}\"")]
    Unavailable {
        /// Network name.
        network: String,
        /// The requested address.
        ip: IpAddr,
        /// The range set, as text.
        set: String,
    },
    /// CHECK: the attachment does not hold what it should (code 101).
    #[error("network \"{network}\": {msg}")]
    Check {
        /// Network name.
        network: String,
        /// What is missing, naming the address.
        msg: String,
    },
    /// The store failed (code 5, or 11 for a lock timeout).
    #[error("network \"{network}\": {source}")]
    Store {
        /// Network name.
        network: String,
        /// The store's error.
        source: StoreError,
    },
}

impl IpamError {
    /// A configuration error (code 7).
    pub fn config(network: &str, msg: impl Into<String>) -> Self {
        IpamError::Config {
            network: network.to_string(),
            msg: msg.into(),
        }
    }

    /// A store error in a network.
    pub fn store(network: &str, source: StoreError) -> Self {
        IpamError::Store {
            network: network.to_string(),
            source,
        }
    }

    /// The CNI error code.
    pub fn code(&self) -> u32 {
        match self {
            IpamError::Config { .. } | IpamError::Duplicate { .. } => codes::INVALID_CONFIG,
            IpamError::Exhausted { .. } | IpamError::Unavailable { .. } => codes::ADDRESS_EXHAUSTED,
            IpamError::Check { .. } => codes::CHECK_MISMATCH,
            IpamError::Store { source, .. } => source.code(),
        }
    }
}

impl From<IpamError> for CniError {
    fn from(e: IpamError) -> Self {
        CniError::new(e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_documented_table() {
        let io = StoreError::io("read", "/x", std::io::Error::other("boom"));
        assert_eq!(io.code(), 5);
        let lock = StoreError::LockTimeout {
            path: "/x/lock".into(),
            waited_ms: 5,
        };
        assert_eq!(lock.code(), 11);
        assert!(lock.to_string().contains("/x/lock"));
        let ex = IpamError::Exhausted {
            network: "net1".into(),
            set: "10.1.0.0/30".into(),
        };
        assert_eq!(ex.code(), 100);
        assert_eq!(
            ex.to_string(),
            "no IP addresses available in range set 10.1.0.0/30 of network \"net1\""
        );
        let e: CniError = IpamError::store("n", lock).into();
        assert_eq!(e.code, 11);
        assert!(e.msg.contains("lock"), "{}", e.msg);
    }
}
