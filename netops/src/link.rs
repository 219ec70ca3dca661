//! Links: read them ([`LinkInfo`]), create bridges and veth pairs, change their state, delete them.
//!
//! The veth pair is created with its peer already inside the container netns (`IFLA_NET_NS_FD` in the peer
//! message): moving a device between namespaces afterwards costs ~35 ms of RCU waiting.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{
    InfoBridgePort, InfoData, InfoPortData, InfoVeth, LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo,
    LinkMessage, State,
};
use rtnetlink::{LinkBridge, LinkUnspec, LinkVeth};

use crate::error::{NetopsError, Result};
use crate::netlink::Netlink;

/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
pub const MAX_IFNAME_LEN: usize = 15;

/// What the kernel reports about one link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface index in its netns.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Link kind ("bridge", "veth", ...); `None` for physical devices and loopback.
    pub kind: Option<String>,
    /// Hardware address, when it is a 6-byte Ethernet address.
    pub mac: Option<[u8; 6]>,
    /// MTU in bytes.
    pub mtu: u32,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// Operationally up (operstate UP); false for "unknown", e.g. loopback.
    pub oper_up: bool,
    /// Index of the master device (bridge), if enslaved.
    pub master: Option<u32>,
    /// Promiscuous mode requested (IFF_PROMISC).
    pub promisc: bool,
    /// Interface alias (ifalias), if set.
    pub alias: Option<String>,
    /// Bridge-port hairpin mode; `None` when the link is not a bridge port.
    pub hairpin: Option<bool>,
    /// Bridge-port isolation; `None` when the link is not a bridge port.
    pub isolated: Option<bool>,
    /// All-multicast mode (IFF_ALLMULTI).
    pub allmulti: bool,
    /// Transmit queue length (IFLA_TXQLEN).
    pub txqlen: u32,
}

/// A veth pair to create: host end in the handle's netns, peer created directly in `peer_netns`.
#[derive(Debug)]
pub struct VethPlan<'a> {
    /// Name of the host end.
    pub host_name: String,
    /// Name of the peer (the container's interface, e.g. "eth0").
    pub peer_name: String,
    /// The container netns, opened with [`crate::open_netns`].
    pub peer_netns: &'a File,
    /// MTU of both ends; kernel default when `None`.
    pub mtu: Option<u32>,
    /// MAC of the peer; random when `None`.
    pub peer_mac: Option<[u8; 6]>,
    /// Bridge (or other master) the host end joins.
    pub master: Option<u32>,
}

impl LinkInfo {
    /// Decodes a kernel link message. Unknown attributes are ignored.
    pub(crate) fn from_message(msg: &LinkMessage) -> Self {
        let flags = msg.header.flags;
        let mut info = LinkInfo {
            index: msg.header.index,
            up: flags.contains(LinkFlags::Up),
            promisc: flags.contains(LinkFlags::Promisc),
            allmulti: flags.contains(LinkFlags::Allmulti),
            ..Default::default()
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(name) => info.name.clone_from(name),
                LinkAttribute::Address(addr) => info.mac = <[u8; 6]>::try_from(addr.as_slice()).ok(),
                LinkAttribute::Mtu(mtu) => info.mtu = *mtu,
                LinkAttribute::TxQueueLen(len) => info.txqlen = *len,
                LinkAttribute::Controller(master) if *master != 0 => info.master = Some(*master),
                LinkAttribute::OperState(state) => info.oper_up = *state == State::Up,
                LinkAttribute::IfAlias(alias) if !alias.is_empty() => info.alias = Some(alias.clone()),
                LinkAttribute::LinkInfo(infos) => info.add_link_info(infos),
                _ => {}
            }
        }
        info
    }

    fn add_link_info(&mut self, infos: &[NlLinkInfo]) {
        for item in infos {
            match item {
                NlLinkInfo::Kind(kind) => self.kind = Some(kind.to_string()),
                NlLinkInfo::PortData(InfoPortData::BridgePort(port)) => {
                    for attr in port {
                        match attr {
                            InfoBridgePort::HairpinMode(on) => self.hairpin = Some(*on),
                            InfoBridgePort::Isolated(on) => self.isolated = Some(*on),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// True when the kernel reports this link as a bridge.
    pub fn is_bridge(&self) -> bool {
        self.kind.as_deref() == Some("bridge")
    }
}

/// Checks an interface name the way the kernel's `dev_valid_name` does.
pub fn validate_ifname(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_IFNAME_LEN
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c == '\0');
    if ok {
        Ok(())
    } else {
        Err(NetopsError::Invalid {
            what: "interface name",
            value: name.to_string(),
        })
    }
}

/// A random host-side veth name: "veth" and 8 hex digits from /dev/urandom, as the reference plugins do.
pub fn random_veth_name() -> Result<String> {
    const URANDOM: &str = "/dev/urandom";
    let mut bytes = [0u8; 4];
    File::open(URANDOM)
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| NetopsError::io("read", URANDOM, e))?;
    Ok(format!("veth{:08x}", u32::from_be_bytes(bytes)))
}

fn link_label(index: u32) -> String {
    format!("link #{index}")
}

impl Netlink {
    /// The link called `name`, or `None` when there is none.
    pub fn link_by_name(&self, name: &str) -> Result<Option<LinkInfo>> {
        validate_ifname(name)?;
        let req = self.handle().link().get().match_name(name).execute();
        self.get_one(req, "get link", || format!("link {name}"))
    }

    /// The link with index `index`, or `None` when there is none.
    pub fn link_by_index(&self, index: u32) -> Result<Option<LinkInfo>> {
        let req = self.handle().link().get().match_index(index).execute();
        self.get_one(req, "get link", || link_label(index))
    }

    /// The link whose hardware address is `mac` (the lowest index when several share it), or `None`.
    pub fn link_by_mac(&self, mac: [u8; 6]) -> Result<Option<LinkInfo>> {
        let mut links = self.links()?;
        links.sort_by_key(|l| l.index);
        Ok(links.into_iter().find(|l| l.mac == Some(mac)))
    }

    /// Every link in the netns.
    pub fn links(&self) -> Result<Vec<LinkInfo>> {
        let req = self.handle().link().get().execute();
        let msgs: Vec<LinkMessage> = self
            .block_on(req.try_collect())
            .map_err(|e| NetopsError::netlink("list", "links", e))?;
        Ok(msgs.iter().map(LinkInfo::from_message).collect())
    }

    fn get_one(
        &self,
        req: impl futures::Stream<Item = std::result::Result<LinkMessage, rtnetlink::Error>>,
        op: &'static str,
        object: impl FnOnce() -> String,
    ) -> Result<Option<LinkInfo>> {
        let mut req = Box::pin(req);
        match self.block_on(req.try_next()) {
            Ok(msg) => Ok(msg.as_ref().map(LinkInfo::from_message)),
            Err(e) => {
                let err = NetopsError::netlink(op, object(), e);
                if err.is_not_found() {
                    Ok(None)
                } else {
                    Err(err)
                }
            }
        }
    }

    fn require_link(&self, name: &str) -> Result<LinkInfo> {
        self.link_by_name(name)?.ok_or_else(|| NetopsError::LinkNotFound {
            name: name.to_string(),
        })
    }

    /// Makes sure a bridge called `name` exists and is up, and returns it.
    ///
    /// Creates it (with `mtu`, if given) when missing; a racing creator's EEXIST is fine. An existing link of
    /// that name that is not a bridge is [`NetopsError::NotABridge`] (code 7). A bridge created here gets its
    /// MAC pinned to its current value, so it no longer follows the lowest port MAC as ports come and go.
    /// `promisc` turns promiscuous mode on (never off: another network may share the bridge).
    pub fn ensure_bridge(&self, name: &str, mtu: Option<u32>, promisc: bool) -> Result<LinkInfo> {
        let mut created = false;
        let link = match self.link_by_name(name)? {
            Some(link) => link,
            None => {
                let mut msg = LinkBridge::new(name);
                if let Some(mtu) = mtu {
                    msg = msg.mtu(mtu);
                }
                tracing::debug!(bridge = name, ?mtu, "create bridge");
                match self.block_on(self.handle().link().add(msg.build()).execute()) {
                    Ok(()) => created = true,
                    Err(e) => {
                        let err = NetopsError::netlink("create bridge", name, e);
                        if !err.is_exists() {
                            return Err(err);
                        }
                    }
                }
                self.require_link(name)?
            }
        };
        if !link.is_bridge() {
            let kind = link.kind.unwrap_or_else(|| "device".to_string());
            return Err(NetopsError::NotABridge {
                name: name.to_string(),
                kind,
            });
        }
        let mut changed = false;
        if let (true, Some(mac)) = (created, link.mac) {
            self.set_mac(link.index, mac)?;
            changed = true;
        }
        if !link.up {
            self.set_link_up(link.index)?;
            changed = true;
        }
        if promisc && !link.promisc {
            self.set_promisc(link.index, true)?;
            changed = true;
        }
        if changed {
            return self.require_link(name);
        }
        Ok(link)
    }

    /// Creates a veth pair in one RTM_NEWLINK: the host end here, attached to `master` and up; the peer
    /// directly inside `peer_netns`, down (bring it up from inside the netns: asking for it up in the same
    /// message fails with ENOTCONN). Returns the host end.
    ///
    /// When either name is taken, returns [`NetopsError::Exists`] naming the host end if it exists here,
    /// else the peer, so callers can retry with another random host name.
    pub fn create_veth_in_netns(&self, plan: &VethPlan<'_>) -> Result<LinkInfo> {
        validate_ifname(&plan.host_name)?;
        validate_ifname(&plan.peer_name)?;
        let mut peer = LinkUnspec::new_with_name(&plan.peer_name).setns_by_fd(plan.peer_netns.as_raw_fd());
        let mut host = LinkVeth::new(&plan.host_name, &plan.peer_name);
        if let Some(mtu) = plan.mtu {
            peer = peer.mtu(mtu);
            host = host.mtu(mtu);
        }
        if let Some(mac) = plan.peer_mac {
            peer = peer.address(mac.to_vec());
        }
        if let Some(master) = plan.master {
            host = host.controller(master);
        }
        let msg = host
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
            .up()
            .build();
        tracing::debug!(host = %plan.host_name, peer = %plan.peer_name, master = ?plan.master, "create veth");
        if let Err(e) = self.block_on(self.handle().link().add(msg).execute()) {
            let err = NetopsError::netlink("create veth", plan.host_name.as_str(), e);
            if !err.is_exists() {
                return Err(err);
            }
            let name = match self.link_by_name(&plan.host_name)? {
                Some(_) => plan.host_name.clone(),
                None => plan.peer_name.clone(),
            };
            return Err(NetopsError::Exists { name });
        }
        self.require_link(&plan.host_name)
    }

    fn set_link(&self, op: &'static str, index: u32, msg: LinkMessage) -> Result<()> {
        tracing::debug!(index, op, "set link");
        self.block_on(self.handle().link().set(msg).execute())
            .map_err(|e| NetopsError::netlink(op, link_label(index), e))
    }

    /// Brings a link administratively up.
    pub fn set_link_up(&self, index: u32) -> Result<()> {
        self.set_link("set up", index, LinkUnspec::new_with_index(index).up().build())
    }

    /// Brings a link administratively down.
    pub fn set_link_down(&self, index: u32) -> Result<()> {
        self.set_link(
            "set down",
            index,
            LinkUnspec::new_with_index(index).down().build(),
        )
    }

    /// Sets a link's MTU.
    pub fn set_mtu(&self, index: u32, mtu: u32) -> Result<()> {
        self.set_link(
            "set mtu",
            index,
            LinkUnspec::new_with_index(index).mtu(mtu).build(),
        )
    }

    /// Sets a link's MAC address.
    pub fn set_mac(&self, index: u32, mac: [u8; 6]) -> Result<()> {
        self.set_link(
            "set mac",
            index,
            LinkUnspec::new_with_index(index).address(mac.to_vec()).build(),
        )
    }

    /// Turns promiscuous mode on or off.
    pub fn set_promisc(&self, index: u32, on: bool) -> Result<()> {
        self.set_link(
            "set promisc",
            index,
            LinkUnspec::new_with_index(index).promiscuous(on).build(),
        )
    }

    /// Turns all-multicast mode on or off.
    pub fn set_allmulti(&self, index: u32, on: bool) -> Result<()> {
        self.set_link(
            "set allmulticast",
            index,
            LinkUnspec::new_with_index(index).allmulticast(on).build(),
        )
    }

    /// Sets a link's transmit queue length.
    pub fn set_txqlen(&self, index: u32, len: u32) -> Result<()> {
        let mut msg = LinkUnspec::new_with_index(index).build();
        msg.attributes.push(LinkAttribute::TxQueueLen(len));
        self.set_link("set txqueuelen", index, msg)
    }

    /// Attaches a link to a master (bridge), or detaches it with `None`.
    pub fn set_master(&self, index: u32, master: Option<u32>) -> Result<()> {
        let msg = LinkUnspec::new_with_index(index);
        let msg = match master {
            Some(master) => msg.controller(master),
            None => msg.nocontroller(),
        };
        self.set_link("set master", index, msg.build())
    }

    /// Renames a link (the kernel may refuse while it is up: bring it down first).
    pub fn rename_link(&self, index: u32, new_name: &str) -> Result<()> {
        validate_ifname(new_name)?;
        self.set_link(
            "rename",
            index,
            LinkUnspec::new_with_index(index).name(new_name).build(),
        )
    }

    /// Sets a link's alias (ifalias); an empty string clears it.
    pub fn set_alias(&self, index: u32, alias: &str) -> Result<()> {
        self.set_link(
            "set alias",
            index,
            LinkUnspec::new_with_index(index).alias(alias).build(),
        )
    }

    /// Moves a link into another network namespace (costs ~35 ms; the index may change there, so look it
    /// up by name afterwards).
    pub fn move_link_to_netns(&self, index: u32, netns: &File) -> Result<()> {
        let msg = LinkUnspec::new_with_index(index)
            .setns_by_fd(netns.as_raw_fd())
            .build();
        self.set_link("move to netns", index, msg)
    }

    /// Deletes the link called `name`. Returns false when there was none.
    pub fn delete_link(&self, name: &str) -> Result<bool> {
        validate_ifname(name)?;
        tracing::debug!(link = name, "delete link");
        let msg = LinkUnspec::new_with_name(name).build();
        self.finish_delete(
            self.block_on(self.handle().link().del_with_message(msg).execute()),
            || format!("link {name}"),
        )
    }

    /// Deletes the link with index `index`. Returns false when there was none.
    pub fn delete_link_by_index(&self, index: u32) -> Result<bool> {
        tracing::debug!(index, "delete link");
        self.finish_delete(self.block_on(self.handle().link().del(index).execute()), || {
            link_label(index)
        })
    }

    fn finish_delete(
        &self,
        res: std::result::Result<(), rtnetlink::Error>,
        object: impl FnOnce() -> String,
    ) -> Result<bool> {
        match res {
            Ok(()) => Ok(true),
            Err(e) => {
                let err = NetopsError::netlink("delete link", object(), e);
                if err.is_not_found() {
                    Ok(false)
                } else {
                    Err(err)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_route::link::{InfoKind, InfoPortKind};

    fn message(attrs: Vec<LinkAttribute>, flags: LinkFlags) -> LinkMessage {
        let mut msg = LinkMessage::default();
        msg.header.index = 7;
        msg.header.flags = flags;
        msg.attributes = attrs;
        msg
    }

    #[test]
    fn decodes_a_bridge_port_veth() {
        let msg = message(
            vec![
                LinkAttribute::IfName("veth1234".into()),
                LinkAttribute::Address(vec![2, 0, 0, 0, 0, 1]),
                LinkAttribute::Mtu(1450),
                LinkAttribute::Controller(3),
                LinkAttribute::OperState(State::Up),
                LinkAttribute::IfAlias("ctr1/eth0".into()),
                LinkAttribute::LinkInfo(vec![
                    NlLinkInfo::Kind(InfoKind::Veth),
                    NlLinkInfo::PortKind(InfoPortKind::Bridge),
                    NlLinkInfo::PortData(InfoPortData::BridgePort(vec![
                        InfoBridgePort::HairpinMode(true),
                        InfoBridgePort::Isolated(false),
                    ])),
                ]),
            ],
            LinkFlags::Up | LinkFlags::Promisc,
        );
        let info = LinkInfo::from_message(&msg);
        assert_eq!(
            info,
            LinkInfo {
                index: 7,
                name: "veth1234".into(),
                kind: Some("veth".into()),
                mac: Some([2, 0, 0, 0, 0, 1]),
                mtu: 1450,
                up: true,
                oper_up: true,
                master: Some(3),
                promisc: true,
                alias: Some("ctr1/eth0".into()),
                hairpin: Some(true),
                isolated: Some(false),
                allmulti: false,
                txqlen: 0,
            }
        );
        assert!(!info.is_bridge());
    }

    #[test]
    fn decodes_a_plain_down_device() {
        let msg = message(
            vec![
                LinkAttribute::IfName("lo".into()),
                LinkAttribute::Address(vec![0; 6]),
                LinkAttribute::OperState(State::Unknown),
                LinkAttribute::Controller(0),
                LinkAttribute::IfAlias(String::new()),
            ],
            LinkFlags::empty(),
        );
        let info = LinkInfo::from_message(&msg);
        assert_eq!(info.kind, None);
        assert_eq!(info.master, None);
        assert_eq!(info.alias, None);
        assert_eq!(info.hairpin, None);
        assert!(!info.up && !info.oper_up && !info.promisc);
    }

    #[test]
    fn non_ethernet_address_is_not_a_mac() {
        let msg = message(vec![LinkAttribute::Address(vec![0; 16])], LinkFlags::empty());
        assert_eq!(LinkInfo::from_message(&msg).mac, None);
    }

    #[test]
    fn bridge_kind_is_recognised() {
        let msg = message(
            vec![LinkAttribute::LinkInfo(vec![NlLinkInfo::Kind(InfoKind::Bridge)])],
            LinkFlags::empty(),
        );
        assert!(LinkInfo::from_message(&msg).is_bridge());
    }

    #[test]
    fn interface_names_follow_kernel_rules() {
        for ok in ["eth0", "cni0", "veth0123abcd", "a", "x234567890abcde", "br-1.100"] {
            assert!(validate_ifname(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "x234567890abcdef", "a/b", "a b", "a:1", "a\tb"] {
            let err = validate_ifname(bad).unwrap_err();
            assert_eq!(err.code(), 7, "{bad:?}");
        }
    }

    #[test]
    fn random_veth_names_have_reference_shape() {
        let a = random_veth_name().unwrap();
        let b = random_veth_name().unwrap();
        assert_eq!(a.len(), 12);
        assert!(a.starts_with("veth"));
        assert!(a[4..].chars().all(|c| c.is_ascii_hexdigit()), "{a}");
        assert_ne!(a, b);
        assert!(validate_ifname(&a).is_ok());
    }
}
