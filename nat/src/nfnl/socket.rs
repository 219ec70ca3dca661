//! The effect half of the netlink reader: a `NETLINK_NETFILTER` socket (opened inside a given network
//! namespace on a short-lived thread, so the caller's thread never changes namespace), one `GETTABLE` to
//! tell a missing table from an empty one, then one element dump per set of ours; or, for the skeleton check,
//! one dump each of the table's sets, chains and rules; or one batch of element removals
//! ([`remove_elements`]), whose socket is released by a forked child so the kernel's deferred-destruction
//! flush on release does not delay the caller.

use std::fs::File;
use std::path::Path;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
use nix::sched::{setns, CloneFlags};

use super::decode::{decode, encode};
use super::{destroy_elements_batch, BatchAcks, SetRemoval};
use super::{dump_request, get_elements_request, get_table_request, parse_datagram, RawElement, Reply};
use super::{Dump, Object, ObservedSkeleton};
use super::{NFPROTO_BRIDGE, NFPROTO_INET};
use crate::element::{Element, Set, Table, TABLE_NAME};
use crate::error::NatError;
use crate::inspect::CountedElements;

/// Receive buffer: the kernel sends dumps in chunks of at most 32 KiB.
const RECV_BUF: usize = 64 * 1024;
/// Dumps retried when the set changed while being dumped (`NLM_F_DUMP_INTR`).
const DUMP_ATTEMPTS: usize = 3;
const ENOENT: i32 = 2;

/// Every element of corral's sets in `table`, with counters; `None` when the table does not exist. Runs in
/// `netns` when given (a `/run/netns/<name>` path), else in the caller's namespace.
pub fn list_elements(netns: Option<&Path>, table: Table) -> Result<Option<CountedElements>, NatError> {
    let socket = open(netns)?;
    let family = family_of(table);
    let mut conn = Conn { socket, seq: 0 };
    if !conn.table_exists(family)? {
        return Ok(None);
    }
    let mut out = Vec::new();
    for set in Set::ALL.into_iter().filter(|s| s.table() == table) {
        for raw in conn.dump_set(family, set)? {
            out.extend(decode(set, &raw).map(|e| (e, raw.counters)));
        }
    }
    Ok(Some(out))
}

/// The sets, chains (with hooks) and rule counts of corral's `table`; `None` when the table does not exist.
/// Read-only: four requests on one socket, ~0.1–0.3 ms (up to a few ms when an earlier transaction's deleted
/// objects still wait for their grace period: the kernel then makes the socket's release wait), against
/// the ~11 ms a skeleton adds to a transaction.
pub fn skeleton(netns: Option<&Path>, table: Table) -> Result<Option<ObservedSkeleton>, NatError> {
    let family = family_of(table);
    let mut conn = Conn {
        socket: open(netns)?,
        seq: 0,
    };
    if !conn.table_exists(family)? {
        return Ok(None);
    }
    let mut objects = Vec::new();
    for dump in [Dump::Sets, Dump::Chains, Dump::Rules] {
        let Some(found) = conn.dump_objects(dump, family)? else {
            // The table went away between the requests.
            return Ok(None);
        };
        objects.extend(found);
    }
    Ok(Some(ObservedSkeleton::collect(TABLE_NAME, &objects)))
}

/// Removes `elements` from corral's sets in one nf_tables transaction (`NFT_MSG_DESTROYSETELEM`: elements
/// that are not there are fine), in `netns` when given. Returns once the kernel has acknowledged every message
/// (the commit is done by then); a refused batch or message is an error naming the set, and nothing was
/// removed. The socket is then released by a child process (`release_in_child`), off the caller's path.
pub fn remove_elements(netns: Option<&Path>, elements: &[Element]) -> Result<(), NatError> {
    let removals = set_removals(elements);
    if removals.is_empty() {
        return Ok(());
    }
    let conn = Conn {
        socket: open(netns)?,
        seq: 0,
    };
    let first_seq = 1;
    conn.send(&destroy_elements_batch(first_seq, &removals))?;
    let mut acks = BatchAcks::new(first_seq, &removals);
    let mut buf = Vec::with_capacity(RECV_BUF);
    // The kernel processes a batch while it is sent, so every answer is queued when `send` returns; a
    // non-blocking read that finds nothing more means an answer is missing, never "wait longer".
    while !acks.finished() {
        let replies = conn
            .recv_flags(&mut buf, libc::MSG_DONTWAIT)
            .map_err(|e| match e {
                NatError::Netlink { source, .. } if source.kind() == std::io::ErrorKind::WouldBlock => {
                    NatError::Netlink {
                        operation: "remove elements".to_owned(),
                        source: std::io::Error::other("the kernel did not acknowledge every message"),
                    }
                }
                other => other,
            })?;
        acks.feed(&replies);
    }
    if let Some((set, errno)) = acks.failures().first() {
        return Err(errno_error(&format!("remove elements from {set}"), *errno));
    }
    release_in_child(conn.socket);
    Ok(())
}

/// `elements` grouped per set, in [`Set::ALL`] order, each encoded once.
fn set_removals(elements: &[Element]) -> Vec<SetRemoval> {
    let mut out = Vec::new();
    for set in Set::ALL {
        let mut encoded: Vec<RawElement> = Vec::new();
        for raw in elements.iter().filter(|e| e.set() == set).map(encode) {
            if !encoded.contains(&raw) {
                encoded.push(raw);
            }
        }
        if !encoded.is_empty() {
            out.push(SetRemoval {
                family: family_of(set.table()),
                table: TABLE_NAME.to_owned(),
                set: set.name().to_owned(),
                elements: encoded,
            });
        }
    }
    out
}

/// Closes `socket` without waiting for its release. Releasing a netfilter socket that deleted objects makes
/// the kernel flush their deferred destruction first (an RCU grace period, ~12 ms); only the last close of
/// the socket does that. So a forked child holds a copy of it, closes every other descriptor it inherited (so
/// it keeps no pipe, lock or socket of the caller's open) and exits: its exit is the last close and waits,
/// while the parent's close is not the last and returns at once. A thread reaps the child; a short-lived
/// caller may exit first, and then init reaps it. If the fork fails the socket is closed here (slower, still
/// correct).
#[allow(unsafe_code)]
fn release_in_child(socket: Socket) {
    use std::os::fd::AsRawFd as _;
    let keep = socket.as_raw_fd();
    // SAFETY: after fork the child only makes async-signal-safe calls (two raw close_range syscalls and
    // _exit) before it ends, so no lock, allocator or other state another thread of the parent held at the
    // fork can be touched in it. The parent continues as usual.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            // SAFETY: raw syscalls on descriptor numbers; close_range ignores numbers that are not open. Its
            // failure only means the child keeps more descriptors open until its exit, a few ms.
            unsafe {
                if keep > 0 {
                    libc::syscall(libc::SYS_close_range, 0u32, (keep - 1) as u32, 0u32);
                }
                libc::syscall(libc::SYS_close_range, (keep + 1) as u32, u32::MAX, 0u32);
                libc::_exit(0)
            }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            drop(socket);
            let reaper = std::thread::Builder::new()
                .name("corral-nl-release".to_owned())
                .spawn(move || {
                    let _ = nix::sys::wait::waitpid(child, None);
                });
            if let Err(error) = reaper {
                tracing::debug!(%error, "cannot start a thread to reap the socket-release child");
            }
        }
        Err(error) => {
            tracing::debug!(%error, "fork failed; closing the netlink socket here");
            drop(socket);
        }
    }
}

/// The raw reply datagrams of one set, chain or rule dump of `table`, concatenated (for capturing test
/// fixtures; parse them with [`super::parse_datagram`]).
pub fn capture_objects(netns: Option<&Path>, dump: Dump, table: Table) -> Result<Vec<u8>, NatError> {
    capture(netns, &dump_request(1, dump, family_of(table), TABLE_NAME))
}

fn family_of(table: Table) -> u8 {
    match table {
        Table::Inet => NFPROTO_INET,
        Table::Bridge => NFPROTO_BRIDGE,
    }
}

/// The raw reply datagrams of one element dump of `set`, concatenated (for capturing test fixtures; parse
/// them with [`super::parse_datagram`]).
pub fn capture_dump(netns: Option<&Path>, set: Set) -> Result<Vec<u8>, NatError> {
    capture(
        netns,
        &get_elements_request(1, family_of(set.table()), TABLE_NAME, set.name()),
    )
}

/// Sends one dump `request` and returns every reply datagram up to the kernel's DONE (or error), as received.
fn capture(netns: Option<&Path>, request: &[u8]) -> Result<Vec<u8>, NatError> {
    let conn = Conn {
        socket: open(netns)?,
        seq: 0,
    };
    conn.send(request)?;
    let mut out = Vec::new();
    let mut buf = Vec::with_capacity(RECV_BUF);
    loop {
        let replies = conn.recv(&mut buf)?;
        out.extend_from_slice(&buf);
        if replies
            .iter()
            .any(|r| matches!(r, Reply::Done { .. } | Reply::Error { .. }))
        {
            return Ok(out);
        }
    }
}

fn failed(operation: &str) -> impl Fn(std::io::Error) -> NatError + '_ {
    move |source| NatError::Netlink {
        operation: operation.to_owned(),
        source,
    }
}

fn malformed(e: super::Malformed) -> NatError {
    NatError::Netlink {
        operation: "parse reply".to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    }
}

/// A netfilter netlink socket in `netns` (or here).
fn open(netns: Option<&Path>) -> Result<Socket, NatError> {
    let Some(netns) = netns else {
        return connect(Socket::new(NETLINK_NETFILTER).map_err(failed("open socket"))?);
    };
    let file = File::open(netns).map_err(|e| NatError::io("open netns", netns, e))?;
    // setns on a thread of its own: the socket stays in that namespace, the thread ends with it.
    let socket = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                setns(&file, CloneFlags::CLONE_NEWNET)
                    .map_err(|e| NatError::io("enter netns", netns, e.into()))?;
                Socket::new(NETLINK_NETFILTER).map_err(failed("open socket"))
            })
            .join()
            .unwrap_or_else(|_| {
                Err(NatError::Netlink {
                    operation: "open socket".to_owned(),
                    source: std::io::Error::other("the netns thread panicked"),
                })
            })
    })?;
    connect(socket)
}

fn connect(mut socket: Socket) -> Result<Socket, NatError> {
    socket.bind_auto().map_err(failed("bind"))?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .map_err(failed("connect"))?;
    Ok(socket)
}

struct Conn {
    socket: Socket,
    seq: u32,
}

impl Conn {
    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn send(&self, request: &[u8]) -> Result<(), NatError> {
        self.socket.send(request, 0).map_err(failed("send"))?;
        Ok(())
    }

    /// The messages of the next datagram.
    fn recv(&self, buf: &mut Vec<u8>) -> Result<Vec<Reply>, NatError> {
        self.recv_flags(buf, 0)
    }

    /// The messages of the next datagram, with extra `recv` flags (`MSG_DONTWAIT`).
    fn recv_flags(&self, buf: &mut Vec<u8>, flags: libc::c_int) -> Result<Vec<Reply>, NatError> {
        buf.clear();
        let len = self
            .socket
            .recv(buf, libc::MSG_TRUNC | flags)
            .map_err(failed("receive"))?;
        if len > buf.len() {
            return Err(malformed(super::Malformed(
                "datagram larger than the receive buffer",
            )));
        }
        parse_datagram(buf).map_err(malformed)
    }

    fn table_exists(&mut self, family: u8) -> Result<bool, NatError> {
        let seq = self.next_seq();
        self.send(&get_table_request(seq, family, TABLE_NAME))?;
        let mut buf = Vec::with_capacity(RECV_BUF);
        let mut found = false;
        loop {
            for reply in self.recv(&mut buf)? {
                match reply {
                    Reply::Table { seq: s } if s == seq => found = true,
                    Reply::Error { seq: s, errno: 0 } if s == seq => return Ok(found),
                    Reply::Error {
                        seq: s,
                        errno: ENOENT,
                    } if s == seq => return Ok(false),
                    Reply::Error { seq: s, errno } if s == seq => {
                        return Err(errno_error("get table", errno))
                    }
                    _ => {}
                }
            }
        }
    }

    /// Every object of one dump of corral's table in `family`; `None` when the kernel answers ENOENT (no
    /// such table).
    fn dump_objects(&mut self, dump: Dump, family: u8) -> Result<Option<Vec<Object>>, NatError> {
        self.dump(
            &format!("dump {dump:?}"),
            |seq| dump_request(seq, dump, family, TABLE_NAME),
            |reply| match reply {
                Reply::Object {
                    seq,
                    interrupted,
                    object,
                } => Some((seq, interrupted, vec![object])),
                _ => None,
            },
        )
    }

    /// Every element of `set`; empty when the set does not exist.
    fn dump_set(&mut self, family: u8, set: Set) -> Result<Vec<RawElement>, NatError> {
        self.dump(
            &format!("dump {}", set.name()),
            |seq| get_elements_request(seq, family, TABLE_NAME, set.name()),
            |reply| match reply {
                Reply::Elements {
                    seq,
                    interrupted,
                    elements,
                } => Some((seq, interrupted, elements)),
                _ => None,
            },
        )
        .map(Option::unwrap_or_default)
    }

    /// One dump: sends `request(seq)` and gathers what `items` finds in the replies to it (sequence number,
    /// whether the kernel flagged the dump interrupted, the items) until the kernel's DONE; again, up to
    /// `DUMP_ATTEMPTS` times, while the ruleset changed during the dump. `None` when the kernel answers ENOENT.
    fn dump<T>(
        &mut self,
        operation: &str,
        request: impl Fn(u32) -> Vec<u8>,
        items: impl Fn(Reply) -> Option<(u32, bool, Vec<T>)>,
    ) -> Result<Option<Vec<T>>, NatError> {
        let mut buf = Vec::with_capacity(RECV_BUF);
        for _ in 0..DUMP_ATTEMPTS {
            let seq = self.next_seq();
            self.send(&request(seq))?;
            let mut out = Vec::new();
            let mut interrupted = false;
            'dump: loop {
                for reply in self.recv(&mut buf)? {
                    match reply {
                        Reply::Done { seq: s } if s == seq => break 'dump,
                        Reply::Error {
                            seq: s,
                            errno: ENOENT,
                        } if s == seq => return Ok(None),
                        Reply::Error { seq: s, errno } if s == seq && errno != 0 => {
                            return Err(errno_error(operation, errno))
                        }
                        other => {
                            if let Some((s, i, found)) = items(other) {
                                if s == seq {
                                    interrupted |= i;
                                    out.extend(found);
                                }
                            }
                        }
                    }
                }
            }
            if !interrupted {
                return Ok(Some(out));
            }
        }
        Err(NatError::Netlink {
            operation: operation.to_owned(),
            source: std::io::Error::other("the ruleset kept changing while it was dumped"),
        })
    }
}

fn errno_error(operation: &str, errno: i32) -> NatError {
    NatError::Netlink {
        operation: operation.to_owned(),
        source: std::io::Error::from_raw_os_error(errno),
    }
}
