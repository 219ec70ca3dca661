//! corral's NAT manager: the bridge plugin's `ipMasq` (masquerade container traffic leaving its subnet) and
//! `macspoofchk` (drop frames whose source MAC is not the container's), kept as set elements in corral's own
//! tables, `table inet corral` and `table bridge corral`, and never in anyone else's.
//!
//! The flow of every verb: [`model`] (validated plain data) → [`element`] (the set elements a record asks for)
//! → [`plan`] (pure: one nft text transaction, sent with or without the tables' skeleton) → [`backend`] (one
//! `nft -f -`, one atomic transaction). Ownership comes from the per-attachment JSON records of [`store`],
//! never from rule text, and ADD/DEL find the records that matter to them through the ownership [`index`];
//! [`inspect`] reads nft's JSON back for CHECK, and [`nfnl`] reads set elements (for listings) and table
//! skeletons (before each transaction) over netlink. [`manager::NatManager`] ties them together.
//!
//! Port forwarding (the portmap plugin) lives in the same `table inet corral`: DNAT maps keyed by
//! `proto . [hostIP .] hostPort`, a set of DNATed connections to masquerade, and one owner per host port.
//! Records are per `(owner, source)`, so the bridge's and portmap's state for one attachment stay apart.
//! [`listing`] joins the kernel's maps with the records for `list-nat`. See docs/nat.md.

pub mod backend;
pub mod element;
pub mod error;
pub mod index;
pub mod inspect;
pub mod listing;
pub mod manager;
pub mod model;
pub mod nfnl;
pub mod plan;
pub mod store;

pub use backend::{ElementReader, NftBackend, NftCli};
pub use element::{Claims, Element, Set, Table};
pub use error::NatError;
pub use inspect::{CountedElements, Counters};
pub use listing::{EntryState, MasqView, PortEntry, PortListing};
pub use manager::{staleness, NatManager, ReconcileReport};
pub use model::{
    AttachmentRecord, MasqEntry, Owner, PortForwarding, PortMapping, Protocol, Source, SpoofEntry,
};
pub use plan::{plan_add, plan_reconcile, plan_remove, plan_replace};
pub use store::RecordStore;
