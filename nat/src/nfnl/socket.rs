//! The effect half of the netlink reader: a `NETLINK_NETFILTER` socket (opened inside a given network
//! namespace on a short-lived thread, so the caller's thread never changes namespace), one `GETTABLE` to
//! tell a missing table from an empty one, then one element dump per set of ours; or, for the skeleton check,
//! one dump each of the table's sets, chains and rules.

use std::fs::File;
use std::path::Path;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
use nix::sched::{setns, CloneFlags};

use super::decode::decode;
use super::{dump_request, get_elements_request, get_table_request, parse_datagram, RawElement, Reply};
use super::{Dump, Object, ObservedSkeleton};
use super::{NFPROTO_BRIDGE, NFPROTO_INET};
use crate::element::{Set, Table, TABLE_NAME};
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

/// The raw reply datagrams of one set, chain or rule dump of `table`, concatenated (for capturing test
/// fixtures; parse them with [`super::parse_datagram`]).
pub fn capture_objects(netns: Option<&Path>, dump: Dump, table: Table) -> Result<Vec<u8>, NatError> {
    let conn = Conn {
        socket: open(netns)?,
        seq: 0,
    };
    conn.send(&dump_request(1, dump, family_of(table), TABLE_NAME))?;
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

fn family_of(table: Table) -> u8 {
    match table {
        Table::Inet => NFPROTO_INET,
        Table::Bridge => NFPROTO_BRIDGE,
    }
}

/// The raw reply datagrams of one element dump of `set`, concatenated (for capturing test fixtures; parse
/// them with [`super::parse_datagram`]).
pub fn capture_dump(netns: Option<&Path>, set: Set) -> Result<Vec<u8>, NatError> {
    let family = family_of(set.table());
    let conn = Conn {
        socket: open(netns)?,
        seq: 0,
    };
    conn.send(&get_elements_request(1, family, TABLE_NAME, set.name()))?;
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
        buf.clear();
        let len = self
            .socket
            .recv(buf, libc::MSG_TRUNC)
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
    /// such table). Retried when the ruleset changed during the dump.
    fn dump_objects(&mut self, dump: Dump, family: u8) -> Result<Option<Vec<Object>>, NatError> {
        let mut buf = Vec::with_capacity(RECV_BUF);
        for _ in 0..DUMP_ATTEMPTS {
            let seq = self.next_seq();
            self.send(&dump_request(seq, dump, family, TABLE_NAME))?;
            let mut out = Vec::new();
            let mut interrupted = false;
            'dump: loop {
                for reply in self.recv(&mut buf)? {
                    match reply {
                        Reply::Object {
                            seq: s,
                            interrupted: i,
                            object,
                        } if s == seq => {
                            interrupted |= i;
                            out.push(object);
                        }
                        Reply::Done { seq: s } if s == seq => break 'dump,
                        Reply::Error {
                            seq: s,
                            errno: ENOENT,
                        } if s == seq => return Ok(None),
                        Reply::Error { seq: s, errno } if s == seq && errno != 0 => {
                            return Err(errno_error(&format!("dump {dump:?}"), errno))
                        }
                        _ => {}
                    }
                }
            }
            if !interrupted {
                return Ok(Some(out));
            }
        }
        Err(NatError::Netlink {
            operation: format!("dump {dump:?}"),
            source: std::io::Error::other("the ruleset kept changing while it was dumped"),
        })
    }

    /// Every element of `set`; empty when the set does not exist.
    fn dump_set(&mut self, family: u8, set: Set) -> Result<Vec<RawElement>, NatError> {
        let mut buf = Vec::with_capacity(RECV_BUF);
        for _ in 0..DUMP_ATTEMPTS {
            let seq = self.next_seq();
            self.send(&get_elements_request(seq, family, TABLE_NAME, set.name()))?;
            let mut out = Vec::new();
            let mut interrupted = false;
            'dump: loop {
                for reply in self.recv(&mut buf)? {
                    match reply {
                        Reply::Elements {
                            seq: s,
                            interrupted: i,
                            elements,
                        } if s == seq => {
                            interrupted |= i;
                            out.extend(elements);
                        }
                        Reply::Done { seq: s } if s == seq => break 'dump,
                        Reply::Error {
                            seq: s,
                            errno: ENOENT,
                        } if s == seq => return Ok(Vec::new()),
                        Reply::Error { seq: s, errno } if s == seq && errno != 0 => {
                            return Err(errno_error("dump set elements", errno))
                        }
                        _ => {}
                    }
                }
            }
            if !interrupted {
                return Ok(out);
            }
        }
        Err(NatError::Netlink {
            operation: format!("dump {}", set.name()),
            source: std::io::Error::other("the set kept changing while it was dumped"),
        })
    }
}

fn errno_error(operation: &str, errno: i32) -> NatError {
    NatError::Netlink {
        operation: operation.to_owned(),
        source: std::io::Error::from_raw_os_error(errno),
    }
}
