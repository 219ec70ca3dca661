//! The one error type of this crate: every variant names the object and the operation that failed, and maps
//! to a CNI error code with [`NetopsError::code`].

use std::io;
use std::path::PathBuf;

/// CNI error code for "try again later" (spec 1.1, well-known code 11).
const CODE_TRY_AGAIN: u32 = 11;
/// CNI error code for "invalid network config" (spec 1.1, well-known code 7).
const CODE_INVALID_CONFIG: u32 = 7;
/// Generic failure code used by the reference plugins.
const CODE_GENERIC: u32 = 999;

/// A failed kernel network operation.
#[derive(Debug, thiserror::Error)]
pub enum NetopsError {
    /// The kernel answered a netlink request with an error (`errno` is in the source).
    #[error("{op} {object}: {source}")]
    Kernel {
        /// What was attempted, e.g. "create bridge".
        op: &'static str,
        /// The object acted on, e.g. "link cni0".
        object: String,
        /// The errno the kernel returned.
        #[source]
        source: io::Error,
    },
    /// A netlink request failed without a kernel errno (closed connection, undecodable reply).
    #[error("{op} {object}: {source}")]
    Netlink {
        /// What was attempted.
        op: &'static str,
        /// The object acted on.
        object: String,
        /// The rtnetlink failure.
        #[source]
        source: rtnetlink::Error,
    },
    /// A link with this name already exists (creation of a veth pair or a link that must be new).
    #[error("link {name} already exists")]
    Exists {
        /// The name that is taken.
        name: String,
    },
    /// A link with the bridge's name exists but is not a bridge.
    #[error("link {name} already exists and is a {kind}, not a bridge")]
    NotABridge {
        /// The link name.
        name: String,
        /// Its kind as the kernel reports it ("device" when it has none).
        kind: String,
    },
    /// A link that the operation needs does not exist.
    #[error("link {name} not found")]
    LinkNotFound {
        /// The name or "#index" of the missing link.
        name: String,
    },
    /// The caller passed a value the kernel cannot take (checked before asking the kernel).
    #[error("invalid {what}: {value}")]
    Invalid {
        /// What the value is, e.g. "VLAN id".
        what: &'static str,
        /// The value, as given.
        value: String,
    },
    /// The network namespace path does not exist.
    #[error("network namespace {} not found", path.display())]
    NetnsNotFound {
        /// The path that was opened.
        path: PathBuf,
    },
    /// The path exists but is not a network namespace (a leftover file after the namespace went away).
    #[error("{} is not a network namespace", path.display())]
    NotANetns {
        /// The path that was opened.
        path: PathBuf,
    },
    /// Entering a network namespace failed.
    #[error("enter network namespace: {source}")]
    Setns {
        /// The errno from setns(2).
        #[source]
        source: nix::Error,
    },
    /// A file operation (netns file, sysctl, /dev/urandom) failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was attempted, e.g. "write sysctl".
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Starting the tokio runtime or opening the netlink socket failed.
    #[error("start netlink connection: {source}")]
    Connection {
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The thread that ran work inside another network namespace panicked.
    #[error("the thread running in network namespace panicked")]
    ThreadPanicked,
}

/// Shorthand for results of this crate.
pub type Result<T, E = NetopsError> = std::result::Result<T, E>;

impl NetopsError {
    /// The CNI error code for this failure: 11 for transient kernel errors (EAGAIN, EBUSY, ...), 7 when the
    /// caller's data cannot work (an existing link is not a bridge, an out-of-range value), 999 otherwise.
    /// A missing network namespace is 999 too: callers decide what a missing netns means for their verb.
    pub fn code(&self) -> u32 {
        match self {
            Self::NotABridge { .. } | Self::Invalid { .. } => CODE_INVALID_CONFIG,
            _ if self.is_transient() => CODE_TRY_AGAIN,
            _ => CODE_GENERIC,
        }
    }

    /// The kernel errno behind this error, if there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Kernel { source, .. } | Self::Io { source, .. } | Self::Connection { source } => {
                source.raw_os_error()
            }
            Self::Setns { source } => Some(*source as i32),
            Self::Exists { .. } => Some(libc::EEXIST),
            _ => None,
        }
    }

    /// True when the object acted on does not exist (ENODEV, ENOENT, ESRCH, EADDRNOTAVAIL, a missing link
    /// or netns): DEL treats these as success.
    pub fn is_not_found(&self) -> bool {
        match self {
            Self::LinkNotFound { .. } | Self::NetnsNotFound { .. } | Self::NotANetns { .. } => true,
            Self::Kernel { source, .. } | Self::Io { source, .. } => matches!(
                source.raw_os_error(),
                Some(libc::ENODEV | libc::ENOENT | libc::ESRCH | libc::EADDRNOTAVAIL)
            ),
            _ => false,
        }
    }

    /// True when the object already exists (EEXIST or [`NetopsError::Exists`]).
    pub fn is_exists(&self) -> bool {
        matches!(self, Self::Exists { .. }) || self.errno() == Some(libc::EEXIST)
    }

    /// True for errors worth retrying later (EAGAIN, EBUSY, EINTR, ENOBUFS, ETIMEDOUT).
    pub fn is_transient(&self) -> bool {
        matches!(
            self.errno(),
            Some(libc::EAGAIN | libc::EBUSY | libc::EINTR | libc::ENOBUFS | libc::ETIMEDOUT)
        )
    }

    /// Wraps an rtnetlink error, keeping the kernel errno when there is one.
    pub(crate) fn netlink(op: &'static str, object: impl Into<String>, err: rtnetlink::Error) -> Self {
        let object = object.into();
        match err {
            rtnetlink::Error::NetlinkError(msg) if msg.raw_code() != 0 => Self::Kernel {
                op,
                object,
                source: msg.to_io(),
            },
            other => Self::Netlink {
                op,
                object,
                source: other,
            },
        }
    }

    /// Wraps an I/O error on a file.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_core::ErrorMessage;
    use std::num::NonZeroI32;

    fn kernel(errno: i32) -> NetopsError {
        let mut msg = ErrorMessage::default();
        msg.code = NonZeroI32::new(-errno);
        NetopsError::netlink("test", "link x", rtnetlink::Error::NetlinkError(msg))
    }

    #[test]
    fn kernel_errno_is_kept_and_positive() {
        let err = kernel(libc::ENODEV);
        assert_eq!(err.errno(), Some(libc::ENODEV));
        assert!(err.is_not_found());
        assert!(!err.is_exists());
        assert_eq!(err.code(), 999);
        assert!(err.to_string().starts_with("test link x: "), "{err}");
    }

    #[test]
    fn transient_errors_map_to_code_11() {
        for errno in [libc::EAGAIN, libc::EBUSY, libc::ENOBUFS] {
            assert_eq!(kernel(errno).code(), 11, "errno {errno}");
        }
    }

    #[test]
    fn bad_caller_data_maps_to_code_7() {
        let err = NetopsError::NotABridge {
            name: "cni0".into(),
            kind: "veth".into(),
        };
        assert_eq!(err.code(), 7);
        assert_eq!(
            err.to_string(),
            "link cni0 already exists and is a veth, not a bridge"
        );
        assert_eq!(
            NetopsError::Invalid {
                what: "VLAN id",
                value: "5000".into()
            }
            .code(),
            7
        );
    }

    #[test]
    fn exists_is_detected_from_variant_and_errno() {
        assert!(NetopsError::Exists { name: "veth0".into() }.is_exists());
        assert!(kernel(libc::EEXIST).is_exists());
    }

    #[test]
    fn missing_netns_is_not_found_with_generic_code() {
        let err = NetopsError::NetnsNotFound {
            path: "/run/netns/x".into(),
        };
        assert!(err.is_not_found());
        assert_eq!(err.code(), 999);
    }

    #[test]
    fn ack_without_errno_is_not_a_kernel_error() {
        let err = NetopsError::netlink("get", "link y", rtnetlink::Error::RequestFailed);
        assert_eq!(err.errno(), None);
        assert!(matches!(err, NetopsError::Netlink { .. }));
    }
}
