//! nf_tables over netlink, just enough to dump our sets' elements, to check our tables' skeletons (sets,
//! chains with their hooks, rule counts) and to remove elements without running `nft`: request encoding and
//! reply parsing, pure (byte slices in, plain data out).
//!
//! Removals go over netlink because `nft -f` pays for them at exit: when the socket that deleted something
//! is released, nf_tables flushes the deleted objects' deferred destruction (an RCU grace period, ~12 ms on
//! kernel 6.18), after the commit itself is done. [`destroy_elements_batch`] is one transaction of
//! `NFT_MSG_DESTROYSETELEM` messages (kernel ≥ 6.3: like `DELSETELEM` but a missing element is no error), and
//! [`socket::remove_elements`] hands the socket's release to a child process so that wait is off the
//! caller's path. The socket lives in [`socket`], the conversion of
//! raw keys into [`Element`](crate::element::Element)s in [`decode`].
//!
//! Constants are from the kernel's uapi headers `linux/netlink.h`, `linux/netfilter/nfnetlink.h` and
//! `linux/netfilter/nf_tables.h`. Netlink headers and attribute headers are in host byte order; nf_tables
//! payloads (flags, counters, keys) are big-endian. Every read is bounds-checked: malformed bytes give an
//! error or a skipped element, never a panic.

pub mod decode;
pub mod socket;

use std::collections::{BTreeMap, BTreeSet};

use crate::inspect::Counters;

/// `NFNL_SUBSYS_NFTABLES`.
const SUBSYS_NFTABLES: u16 = 10;
/// `NFT_MSG_NEWTABLE`, the reply to `GETTABLE`.
const MSG_NEWTABLE: u16 = 0;
/// `NFT_MSG_GETTABLE`.
const MSG_GETTABLE: u16 = 1;
/// `NFT_MSG_NEWCHAIN` / `NFT_MSG_GETCHAIN`.
const MSG_NEWCHAIN: u16 = 3;
const MSG_GETCHAIN: u16 = 4;
/// `NFT_MSG_NEWRULE` / `NFT_MSG_GETRULE`.
const MSG_NEWRULE: u16 = 6;
const MSG_GETRULE: u16 = 7;
/// `NFT_MSG_NEWSET` / `NFT_MSG_GETSET`.
const MSG_NEWSET: u16 = 9;
const MSG_GETSET: u16 = 10;
/// `NFT_MSG_NEWSETELEM`, the messages of an element dump.
const MSG_NEWSETELEM: u16 = 12;
/// `NFT_MSG_GETSETELEM`.
const MSG_GETSETELEM: u16 = 13;
/// `NFT_MSG_DESTROYSETELEM` (kernel ≥ 6.3; uapi `enum nf_tables_msg_types`: after `GETRULE_RESET` = 25 come
/// `DESTROYTABLE`, `DESTROYCHAIN`, `DESTROYRULE`, `DESTROYSET`, then this).
const MSG_DESTROYSETELEM: u16 = 30;
/// `NFNL_MSG_BATCH_BEGIN` / `NFNL_MSG_BATCH_END` (`NLMSG_MIN_TYPE` and the next one).
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
/// `AF_UNSPEC`, the family of the batch delimiters.
const AF_UNSPEC: u8 = 0;
/// `NLA_F_NESTED`, set on nested attributes as libmnl does.
const NLA_F_NESTED: u16 = 0x8000;

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
/// `NLM_F_DUMP_INTR`: the set changed while it was dumped; the dump must be retried.
const NLM_F_DUMP_INTR: u16 = 0x10;
/// `NLM_F_DUMP` = `NLM_F_ROOT | NLM_F_MATCH`.
const NLM_F_DUMP: u16 = 0x300;
/// `sizeof(struct nfgenmsg)`.
const NFGENMSG_LEN: usize = 4;
const NLA_TYPE_MASK: u16 = 0x3fff;

/// `NFTA_TABLE_NAME`.
const NFTA_TABLE_NAME: u16 = 1;
/// `NFTA_SET_TABLE`, `NFTA_CHAIN_TABLE` and `NFTA_RULE_TABLE` are all 1.
const NFTA_OBJECT_TABLE: u16 = 1;
/// `NFTA_SET_NAME`.
const NFTA_SET_NAME: u16 = 2;
/// `NFTA_CHAIN_NAME`, `_HOOK`, `_POLICY`, `_TYPE`.
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
/// `NFTA_HOOK_HOOKNUM`, `NFTA_HOOK_PRIORITY`.
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
/// `NFTA_RULE_CHAIN`.
const NFTA_RULE_CHAIN: u16 = 2;
/// `NF_ACCEPT`, a base chain's policy verdict.
pub const NF_ACCEPT: u32 = 1;
/// `NFTA_SET_ELEM_LIST_TABLE`, `_SET`, `_ELEMENTS`.
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
/// `NFTA_LIST_ELEM`.
const NFTA_LIST_ELEM: u16 = 1;
/// `enum nft_set_elem_attributes`.
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFTA_SET_ELEM_USERDATA: u16 = 6;
const NFTA_SET_ELEM_EXPR: u16 = 7;
const NFTA_SET_ELEM_KEY_END: u16 = 10;
const NFTA_SET_ELEM_EXPRESSIONS: u16 = 11;
/// `NFTA_DATA_VALUE`.
const NFTA_DATA_VALUE: u16 = 1;
/// `NFTA_EXPR_NAME`, `NFTA_EXPR_DATA`.
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
/// `NFTA_COUNTER_BYTES`, `NFTA_COUNTER_PACKETS`.
const NFTA_COUNTER_BYTES: u16 = 1;
const NFTA_COUNTER_PACKETS: u16 = 2;
/// `NFT_SET_ELEM_INTERVAL_END`, `NFT_SET_ELEM_CATCHALL`.
pub const ELEM_INTERVAL_END: u32 = 0x1;
pub const ELEM_CATCHALL: u32 = 0x2;
/// `NFTNL_UDATA_SET_ELEM_COMMENT` (libnftnl's user-data TLV type for an element comment).
const UDATA_SET_ELEM_COMMENT: u8 = 0;

/// `NFPROTO_INET`.
pub const NFPROTO_INET: u8 = 1;
/// `NFPROTO_BRIDGE`.
pub const NFPROTO_BRIDGE: u8 = 7;

/// A malformed reply; the caller falls back to `nft -j`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed nf_tables netlink reply: {0}")]
pub struct Malformed(pub &'static str);

/// One set element as the kernel dumps it: raw register-aligned bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawElement {
    /// `NFTA_SET_ELEM_KEY` value.
    pub key: Vec<u8>,
    /// `NFTA_SET_ELEM_KEY_END` value (interval sets with concatenations).
    pub key_end: Option<Vec<u8>>,
    /// `NFTA_SET_ELEM_DATA` value (maps).
    pub data: Option<Vec<u8>>,
    /// `NFTA_SET_ELEM_FLAGS` (`ELEM_INTERVAL_END`, `ELEM_CATCHALL`).
    pub flags: u32,
    /// The element's counter expression, if any.
    pub counters: Option<Counters>,
    /// The comment in its user data, if any.
    pub comment: Option<String>,
}

/// A base chain's hook, type and policy as the kernel reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHook {
    /// `NFTA_HOOK_HOOKNUM` (`NF_INET_*` / `NF_BR_*`).
    pub number: u32,
    /// `NFTA_HOOK_PRIORITY`.
    pub priority: i32,
    /// `NFTA_CHAIN_TYPE`: `nat`, `filter`, `route`.
    pub kind: String,
    /// `NFTA_CHAIN_POLICY` (`NF_ACCEPT`, `NF_DROP`).
    pub policy: Option<u32>,
}

/// One object of a set, chain or rule dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    /// `NFT_MSG_NEWSET`: a set or map (named, or anonymous like `__set0`).
    Set {
        /// The table it is in.
        table: String,
        /// Its name.
        name: String,
    },
    /// `NFT_MSG_NEWCHAIN`: a chain; `hook` for base chains.
    Chain {
        /// The table it is in.
        table: String,
        /// Its name.
        name: String,
        /// Hook, type and policy of a base chain.
        hook: Option<ChainHook>,
    },
    /// `NFT_MSG_NEWRULE`: a rule (only where it is counts).
    Rule {
        /// The table it is in.
        table: String,
        /// The chain it is in.
        chain: String,
    },
}

/// One chain of a table as the kernel holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedChain {
    /// Hook, type and policy (base chains).
    pub hook: Option<ChainHook>,
    /// How many rules it holds.
    pub rules: usize,
}

/// What a table holds besides elements: its sets' names and its chains (for the skeleton check,
/// [`crate::plan::skeleton_damage`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedSkeleton {
    /// Names of its sets and maps (anonymous ones included).
    pub sets: BTreeSet<String>,
    /// Its chains by name.
    pub chains: BTreeMap<String, ObservedChain>,
}

impl ObservedSkeleton {
    /// Collects the objects of `table` among dumped `objects` (dumps may cover every table of the family).
    /// A rule whose chain was not dumped still counts, under that chain's name without a hook.
    pub fn collect<'a>(table: &str, objects: impl IntoIterator<Item = &'a Object>) -> Self {
        let mut out = Self::default();
        for object in objects {
            match object {
                Object::Set { table: t, name } if t == table => {
                    out.sets.insert(name.clone());
                }
                Object::Chain { table: t, name, hook } if t == table => {
                    out.chains.entry(name.clone()).or_default().hook = hook.clone();
                }
                Object::Rule { table: t, chain } if t == table => {
                    out.chains.entry(chain.clone()).or_default().rules += 1;
                }
                _ => {}
            }
        }
        out
    }
}

/// The dumps the skeleton check makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dump {
    /// `NFT_MSG_GETSET`.
    Sets,
    /// `NFT_MSG_GETCHAIN`.
    Chains,
    /// `NFT_MSG_GETRULE`.
    Rules,
}

/// One netlink message of a reply, as far as we care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `NFT_MSG_NEWSETELEM`: a batch of elements; `interrupted` when the set changed during the dump.
    Elements {
        /// Sequence number of the request it answers.
        seq: u32,
        /// `NLM_F_DUMP_INTR` was set.
        interrupted: bool,
        /// The elements.
        elements: Vec<RawElement>,
    },
    /// A set, chain or rule of a dump; `interrupted` when the ruleset changed during the dump.
    Object {
        /// Sequence number of the request it answers.
        seq: u32,
        /// `NLM_F_DUMP_INTR` was set.
        interrupted: bool,
        /// The object.
        object: Object,
    },
    /// `NFT_MSG_NEWTABLE`: the table asked for exists.
    Table {
        /// Sequence number of the request it answers.
        seq: u32,
    },
    /// `NLMSG_ERROR`: `errno` 0 is an acknowledgement, else a positive errno (`ENOENT`: no such table/set).
    Error {
        /// Sequence number of the request it answers.
        seq: u32,
        /// The errno (positive), 0 for an ACK.
        errno: i32,
    },
    /// `NLMSG_DONE`: the end of a dump.
    Done {
        /// Sequence number of the request it answers.
        seq: u32,
    },
    /// Anything else (ignored).
    Other,
}

/// `NFT_MSG_GETTABLE` for `table` in `family`, acknowledged.
pub fn get_table_request(seq: u32, family: u8, table: &str) -> Vec<u8> {
    let mut attrs = Vec::new();
    put_str(&mut attrs, NFTA_TABLE_NAME, table);
    message(MSG_GETTABLE, NLM_F_REQUEST | NLM_F_ACK, seq, family, &attrs)
}

/// A dump of the elements of `set` in `table`.
pub fn get_elements_request(seq: u32, family: u8, table: &str, set: &str) -> Vec<u8> {
    let mut attrs = Vec::new();
    put_str(&mut attrs, NFTA_SET_ELEM_LIST_TABLE, table);
    put_str(&mut attrs, NFTA_SET_ELEM_LIST_SET, set);
    message(MSG_GETSETELEM, NLM_F_REQUEST | NLM_F_DUMP, seq, family, &attrs)
}

/// A dump of the sets, chains or rules of `family`, asking for those of `table` (the kernel filters sets and
/// rules by it; chain dumps may still cover every table of the family, so callers filter replies too).
pub fn dump_request(seq: u32, dump: Dump, family: u8, table: &str) -> Vec<u8> {
    let msg = match dump {
        Dump::Sets => MSG_GETSET,
        Dump::Chains => MSG_GETCHAIN,
        Dump::Rules => MSG_GETRULE,
    };
    let mut attrs = Vec::new();
    put_str(&mut attrs, NFTA_OBJECT_TABLE, table);
    message(msg, NLM_F_REQUEST | NLM_F_DUMP, seq, family, &attrs)
}

/// The elements of one set to remove, as [`decode::encode`] lays them out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetRemoval {
    /// `NFPROTO_INET` or `NFPROTO_BRIDGE`.
    pub family: u8,
    /// The table.
    pub table: String,
    /// The set.
    pub set: String,
    /// Its elements (key and, for intervals, key_end; data is not sent).
    pub elements: Vec<RawElement>,
}

/// One nf_tables transaction removing every element of `removals`: `NFNL_MSG_BATCH_BEGIN`, one
/// acknowledged `NFT_MSG_DESTROYSETELEM` per set, `NFNL_MSG_BATCH_END`. Sequence numbers run from
/// `first_seq` (the batch begin) upwards; the set messages get `first_seq + 1 ..`, in `removals` order.
pub fn destroy_elements_batch(first_seq: u32, removals: &[SetRemoval]) -> Vec<u8> {
    let mut out = batch_delimiter(NFNL_MSG_BATCH_BEGIN, first_seq);
    let mut seq = first_seq;
    for removal in removals {
        seq = seq.wrapping_add(1);
        let mut list = Vec::new();
        for element in &removal.elements {
            let mut attrs = Vec::new();
            put_nested(&mut attrs, NFTA_SET_ELEM_KEY, &data_value_attr(&element.key));
            if let Some(end) = &element.key_end {
                put_nested(&mut attrs, NFTA_SET_ELEM_KEY_END, &data_value_attr(end));
            }
            put_nested(&mut list, NFTA_LIST_ELEM, &attrs);
        }
        let mut attrs = Vec::new();
        put_str(&mut attrs, NFTA_SET_ELEM_LIST_TABLE, &removal.table);
        put_str(&mut attrs, NFTA_SET_ELEM_LIST_SET, &removal.set);
        put_nested(&mut attrs, NFTA_SET_ELEM_LIST_ELEMENTS, &list);
        out.extend(message(
            MSG_DESTROYSETELEM,
            NLM_F_REQUEST | NLM_F_ACK,
            seq,
            removal.family,
            &attrs,
        ));
    }
    out.extend(batch_delimiter(NFNL_MSG_BATCH_END, seq.wrapping_add(1)));
    out
}

/// A batch begin or end: `nfgenmsg` with `AF_UNSPEC` and the subsystem in `res_id` (big-endian).
fn batch_delimiter(kind: u16, seq: u32) -> Vec<u8> {
    header(kind, NLM_F_REQUEST, seq, AF_UNSPEC, SUBSYS_NFTABLES, &[])
}

/// Reads the replies to one [`destroy_elements_batch`]; feed it every datagram until [`BatchAcks::finished`].
#[derive(Debug, Clone)]
pub struct BatchAcks {
    first_seq: u32,
    /// The set each message removes from, by position after the batch begin.
    sets: Vec<String>,
    acked: Vec<bool>,
    failures: Vec<(String, i32)>,
}

impl BatchAcks {
    /// Expects one acknowledgement per set message of the batch that started at `first_seq`.
    pub fn new(first_seq: u32, removals: &[SetRemoval]) -> Self {
        Self {
            first_seq,
            sets: removals.iter().map(|r| r.set.clone()).collect(),
            acked: vec![false; removals.len()],
            failures: Vec::new(),
        }
    }

    /// Takes in the replies of one datagram. A non-zero error on the batch begin (the kernel's answer when the
    /// batch as a whole is refused or its commit fails) or on any message is recorded as a failure.
    pub fn feed(&mut self, replies: &[Reply]) {
        for reply in replies {
            let Reply::Error { seq, errno } = *reply else {
                continue;
            };
            if seq == self.first_seq {
                if errno != 0 {
                    self.failures.push(("the batch".to_owned(), errno));
                }
                continue;
            }
            let index = seq.wrapping_sub(self.first_seq).wrapping_sub(1) as usize;
            let (Some(acked), Some(set)) = (self.acked.get_mut(index), self.sets.get(index)) else {
                continue;
            };
            *acked = true;
            if errno != 0 {
                self.failures.push((set.clone(), errno));
            }
        }
    }

    /// Every message answered, or something failed (the rest may never be answered).
    pub fn finished(&self) -> bool {
        !self.failures.is_empty() || self.acked.iter().all(|a| *a)
    }

    /// What failed, as `(set or "the batch", errno)`; empty when every message was acknowledged.
    pub fn failures(&self) -> &[(String, i32)] {
        &self.failures
    }
}

fn message(msg: u16, flags: u16, seq: u32, family: u8, attrs: &[u8]) -> Vec<u8> {
    header((SUBSYS_NFTABLES << 8) | msg, flags, seq, family, 0, attrs)
}

fn header(kind: u16, flags: u16, seq: u32, family: u8, res_id: u16, attrs: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + NFGENMSG_LEN + attrs.len();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    // struct nfgenmsg: family, version NFNETLINK_V0, res_id (big-endian).
    out.extend_from_slice(&[family, 0]);
    out.extend_from_slice(&res_id.to_be_bytes());
    out.extend_from_slice(attrs);
    out
}

/// A nested attribute holding `inner` (already 4-byte aligned attributes).
fn put_nested(out: &mut Vec<u8>, kind: u16, inner: &[u8]) {
    let len = 4 + inner.len();
    out.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_ne_bytes());
    out.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
    out.extend_from_slice(inner);
    out.resize(align4(out.len()), 0);
}

/// `NFTA_DATA_VALUE` holding `bytes`, padded to 4 bytes.
fn data_value_attr(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + bytes.len() + 3);
    out.extend_from_slice(&u16::try_from(4 + bytes.len()).unwrap_or(u16::MAX).to_ne_bytes());
    out.extend_from_slice(&NFTA_DATA_VALUE.to_ne_bytes());
    out.extend_from_slice(bytes);
    out.resize(align4(out.len()), 0);
    out
}

/// A NUL-terminated string attribute, padded to 4 bytes.
fn put_str(out: &mut Vec<u8>, kind: u16, value: &str) {
    let len = 4 + value.len() + 1;
    out.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value.as_bytes());
    out.push(0);
    out.resize(align4(out.len()), 0);
}

fn align4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

/// Splits one datagram into its messages.
pub fn parse_datagram(buf: &[u8]) -> Result<Vec<Reply>, Malformed> {
    let mut out = Vec::new();
    let mut rest = buf;
    while !rest.is_empty() {
        let len = read_u32_ne(rest, 0).ok_or(Malformed("truncated message header"))? as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return Err(Malformed("message length out of bounds"));
        }
        let (kind, flags, seq) = (
            read_u16_ne(rest, 4).unwrap_or(0),
            read_u16_ne(rest, 6).unwrap_or(0),
            read_u32_ne(rest, 8).unwrap_or(0),
        );
        let payload = rest.get(NLMSG_HDRLEN..len).ok_or(Malformed("message payload"))?;
        out.push(parse_message(kind, flags, seq, payload)?);
        rest = rest.get(align4(len)..).unwrap_or(&[]);
    }
    Ok(out)
}

fn parse_message(kind: u16, flags: u16, seq: u32, payload: &[u8]) -> Result<Reply, Malformed> {
    match kind {
        NLMSG_ERROR => {
            let code = read_u32_ne(payload, 0).ok_or(Malformed("truncated error message"))?;
            // The kernel sends -errno.
            let errno = (code as i32).checked_neg().unwrap_or(i32::MAX);
            Ok(Reply::Error { seq, errno })
        }
        NLMSG_DONE => Ok(Reply::Done { seq }),
        k if k == (SUBSYS_NFTABLES << 8) | MSG_NEWTABLE => Ok(Reply::Table { seq }),
        k if k == (SUBSYS_NFTABLES << 8) | MSG_NEWSET
            || k == (SUBSYS_NFTABLES << 8) | MSG_NEWCHAIN
            || k == (SUBSYS_NFTABLES << 8) | MSG_NEWRULE =>
        {
            let attrs = payload
                .get(NFGENMSG_LEN..)
                .ok_or(Malformed("truncated nfgenmsg"))?;
            Ok(Reply::Object {
                seq,
                interrupted: flags & NLM_F_DUMP_INTR != 0,
                object: parse_object(k & 0xff, attrs)?,
            })
        }
        k if k == (SUBSYS_NFTABLES << 8) | MSG_NEWSETELEM => {
            let attrs = payload
                .get(NFGENMSG_LEN..)
                .ok_or(Malformed("truncated nfgenmsg"))?;
            let mut elements = Vec::new();
            for (kind, value) in Attrs::new(attrs) {
                if kind? == NFTA_SET_ELEM_LIST_ELEMENTS {
                    for (kind, elem) in Attrs::new(value) {
                        if kind? == NFTA_LIST_ELEM {
                            elements.push(parse_element(elem)?);
                        }
                    }
                }
            }
            Ok(Reply::Elements {
                seq,
                interrupted: flags & NLM_F_DUMP_INTR != 0,
                elements,
            })
        }
        _ => Ok(Reply::Other),
    }
}

/// A set, chain or rule message's attributes (`msg` is its `NFT_MSG_NEW*` type).
fn parse_object(msg: u16, attrs: &[u8]) -> Result<Object, Malformed> {
    let mut table = None;
    let mut name = None;
    let mut hook_attrs = None;
    let mut policy = None;
    let mut kind = None;
    for (attr, value) in Attrs::new(attrs) {
        match (msg, attr?) {
            (_, NFTA_OBJECT_TABLE) => table = Some(string(value)?),
            (MSG_NEWSET, NFTA_SET_NAME)
            | (MSG_NEWCHAIN, NFTA_CHAIN_NAME)
            | (MSG_NEWRULE, NFTA_RULE_CHAIN) => name = Some(string(value)?),
            (MSG_NEWCHAIN, NFTA_CHAIN_HOOK) => hook_attrs = Some(value),
            (MSG_NEWCHAIN, NFTA_CHAIN_POLICY) => {
                policy = Some(read_u32_be(value, 0).ok_or(Malformed("chain policy"))?)
            }
            (MSG_NEWCHAIN, NFTA_CHAIN_TYPE) => kind = Some(string(value)?),
            _ => {}
        }
    }
    let table = table.ok_or(Malformed("object without a table"))?;
    let name = name.ok_or(Malformed("object without a name"))?;
    Ok(match msg {
        MSG_NEWSET => Object::Set { table, name },
        MSG_NEWRULE => Object::Rule { table, chain: name },
        _ => {
            let hook = match hook_attrs {
                None => None,
                Some(nest) => {
                    let (mut number, mut priority) = (None, None);
                    for (attr, value) in Attrs::new(nest) {
                        match attr? {
                            NFTA_HOOK_HOOKNUM => number = read_u32_be(value, 0),
                            // A signed priority, sent as a big-endian 32-bit word.
                            NFTA_HOOK_PRIORITY => priority = read_u32_be(value, 0).map(|p| p as i32),
                            _ => {}
                        }
                    }
                    Some(ChainHook {
                        number: number.ok_or(Malformed("chain hook without a number"))?,
                        priority: priority.ok_or(Malformed("chain hook without a priority"))?,
                        kind: kind.unwrap_or_default(),
                        policy,
                    })
                }
            };
            Object::Chain { table, name, hook }
        }
    })
}

/// A NUL-terminated string attribute.
fn string(value: &[u8]) -> Result<String, Malformed> {
    let text = value.split(|b| *b == 0).next().unwrap_or_default();
    String::from_utf8(text.to_vec()).map_err(|_| Malformed("string attribute is not UTF-8"))
}

fn parse_element(attrs: &[u8]) -> Result<RawElement, Malformed> {
    let mut elem = RawElement::default();
    for (kind, value) in Attrs::new(attrs) {
        match kind? {
            NFTA_SET_ELEM_KEY => elem.key = data_value(value)?,
            NFTA_SET_ELEM_KEY_END => elem.key_end = Some(data_value(value)?),
            NFTA_SET_ELEM_DATA => elem.data = Some(data_value(value)?),
            NFTA_SET_ELEM_FLAGS => {
                elem.flags = read_u32_be(value, 0).ok_or(Malformed("element flags"))?;
            }
            NFTA_SET_ELEM_USERDATA => elem.comment = comment(value),
            NFTA_SET_ELEM_EXPR => elem.counters = elem.counters.or(counter(value)?),
            NFTA_SET_ELEM_EXPRESSIONS => {
                for (kind, expr) in Attrs::new(value) {
                    if kind? == NFTA_LIST_ELEM {
                        elem.counters = elem.counters.or(counter(expr)?);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(elem)
}

/// The bytes of the `NFTA_DATA_VALUE` inside an `nft_data` nest.
fn data_value(nest: &[u8]) -> Result<Vec<u8>, Malformed> {
    for (kind, value) in Attrs::new(nest) {
        if kind? == NFTA_DATA_VALUE {
            return Ok(value.to_vec());
        }
    }
    Err(Malformed("nft_data without a value"))
}

/// A `counter` expression's packets and bytes; `None` for any other expression.
fn counter(expr: &[u8]) -> Result<Option<Counters>, Malformed> {
    let mut name: &[u8] = &[];
    let mut data: &[u8] = &[];
    for (kind, value) in Attrs::new(expr) {
        match kind? {
            NFTA_EXPR_NAME => name = value,
            NFTA_EXPR_DATA => data = value,
            _ => {}
        }
    }
    if name.split(|b| *b == 0).next() != Some(b"counter".as_slice()) {
        return Ok(None);
    }
    let mut counters = Counters::default();
    for (kind, value) in Attrs::new(data) {
        match kind? {
            NFTA_COUNTER_BYTES => counters.bytes = read_u64_be(value).ok_or(Malformed("counter bytes"))?,
            NFTA_COUNTER_PACKETS => {
                counters.packets = read_u64_be(value).ok_or(Malformed("counter packets"))?
            }
            _ => {}
        }
    }
    Ok(Some(counters))
}

/// The comment in libnftnl's user-data TLVs (`type u8, len u8, value`), NUL-terminated.
fn comment(udata: &[u8]) -> Option<String> {
    let mut rest = udata;
    while let [kind, len, tail @ ..] = rest {
        let value = tail.get(..usize::from(*len))?;
        if *kind == UDATA_SET_ELEM_COMMENT {
            let text = value.split(|b| *b == 0).next().unwrap_or_default();
            return String::from_utf8(text.to_vec()).ok();
        }
        rest = tail.get(usize::from(*len)..)?;
    }
    None
}

/// Iterates `(type, value)` over netlink attributes; a malformed header ends it with one error item.
struct Attrs<'a> {
    rest: &'a [u8],
}

impl<'a> Attrs<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { rest: buf }
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = (Result<u16, Malformed>, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let header = read_u16_ne(self.rest, 0).zip(read_u16_ne(self.rest, 2));
        let Some((len, kind)) = header else {
            self.rest = &[];
            return Some((Err(Malformed("truncated attribute header")), &[]));
        };
        let len = usize::from(len);
        let Some(value) = self.rest.get(4..len).filter(|_| len >= 4) else {
            self.rest = &[];
            return Some((Err(Malformed("attribute length out of bounds")), &[]));
        };
        self.rest = self.rest.get(align4(len)..).unwrap_or(&[]);
        Some((Ok(kind & NLA_TYPE_MASK), value))
    }
}

fn read_u16_ne(buf: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(
        buf.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn read_u32_ne(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(
        buf.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn read_u32_be(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(
        buf.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn read_u64_be(buf: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(buf.get(..8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests;
