//! [`Netlink`]: a synchronous handle on one network namespace's rtnetlink socket.
//!
//! Callers are single-threaded plugin processes, so the async rtnetlink API is wrapped behind blocking
//! methods. Each `Netlink` owns a current-thread tokio runtime and the connection task spawned on it; every
//! method runs one request to completion with `block_on`. The socket is bound to the netns it was opened in,
//! whatever thread later drives it.

use std::fs::File;
use std::future::Future;

use crate::error::{NetopsError, Result};
use crate::netns::with_thread_in_netns;

/// A netlink connection to one network namespace, usable from synchronous code.
///
/// Methods for links, addresses, routes and bridge ports are in the modules that own those objects.
/// Each method blocks on the handle's own runtime, so do not call them from inside another tokio runtime
/// (tokio refuses nested `block_on`); use a plain thread there.
pub struct Netlink {
    rt: tokio::runtime::Runtime,
    handle: rtnetlink::Handle,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netlink").finish_non_exhaustive()
    }
}

impl Netlink {
    /// Opens a connection to the calling thread's network namespace.
    pub fn current() -> Result<Self> {
        let rt = runtime()?;
        let (conn, handle, _unsolicited) = {
            // new_connection() panics unless a runtime with IO is entered.
            let _entered = rt.enter();
            rtnetlink::new_connection().map_err(|source| NetopsError::Connection { source })?
        };
        rt.spawn(conn);
        Ok(Self { rt, handle })
    }

    /// Opens a connection to the network namespace `netns` (an open nsfs file, see
    /// [`crate::open_netns`]).
    ///
    /// The calling thread enters `netns` only long enough to open the socket, then returns to its own
    /// namespace; nothing else runs on it meanwhile. If it cannot return, the process aborts.
    pub fn in_netns(netns: &File) -> Result<Self> {
        let rt = runtime()?;
        let (conn, handle, _unsolicited) = {
            let _entered = rt.enter();
            with_thread_in_netns(netns, rtnetlink::new_connection)?
                .map_err(|source| NetopsError::Connection { source })?
        };
        rt.spawn(conn);
        Ok(Self { rt, handle })
    }

    /// Runs one async netlink exchange to completion on this handle's runtime.
    pub(crate) fn block_on<F: Future>(&self, fut: F) -> F::Output {
        self.rt.block_on(fut)
    }

    /// The rtnetlink handle, for the per-object modules.
    pub(crate) fn handle(&self) -> &rtnetlink::Handle {
        &self.handle
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|source| NetopsError::Connection { source })
}
