//! Bridge ports and bridge VLANs: hairpin mode, port isolation, VLAN filtering and per-port VLANs.
//!
//! Port flags travel as `IFLA_INFO_SLAVE_DATA` of kind "bridge" in an RTM_NEWLINK without NLM_F_CREATE,
//! which is what `ip link set DEV type bridge_slave hairpin on` sends; the kernel reports them back in the
//! same place on every link dump. VLAN entries are `IFLA_BRIDGE_VLAN_INFO` inside `IFLA_AF_SPEC` of an
//! AF_BRIDGE RTM_SETLINK, as `bridge vlan add` sends. Kernels built without `CONFIG_BRIDGE_VLAN_FILTERING`
//! refuse the VLAN requests (EOPNOTSUPP); that comes back as an ordinary [`NetopsError::Kernel`].

use rtnetlink::packet_route::link::{
    AfSpecBridge, BridgeFlag, BridgeVlanInfoFlags, InfoBridge, InfoData, InfoKind, LinkMessage,
};
use rtnetlink::{LinkBridgePort, LinkBridgeVlan, LinkMessageBuilder, LinkUnspec};

use crate::error::{NetopsError, Result};
use crate::netlink::Netlink;

/// Highest usable 802.1Q VLAN id (4095 is reserved).
pub const MAX_VLAN_ID: u16 = 4094;

/// How a VLAN is configured on a bridge port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortVlan {
    /// VLAN id, 1..=4094.
    pub vid: u16,
    /// Untagged ingress frames are classified into this VLAN.
    pub pvid: bool,
    /// Frames of this VLAN leave the port untagged.
    pub untagged: bool,
}

/// Builds the AF_BRIDGE RTM_SETLINK message that adds `vlan` to port `index` (or to the bridge device
/// itself when `bridge_self`).
pub(crate) fn port_vlan_message(index: u32, vlan: PortVlan, bridge_self: bool) -> Result<LinkMessage> {
    if vlan.vid == 0 || vlan.vid > MAX_VLAN_ID {
        return Err(NetopsError::Invalid {
            what: "VLAN id",
            value: vlan.vid.to_string(),
        });
    }
    let mut flags = BridgeVlanInfoFlags::empty();
    if vlan.pvid {
        flags |= BridgeVlanInfoFlags::Pvid;
    }
    if vlan.untagged {
        flags |= BridgeVlanInfoFlags::Untagged;
    }
    let mut msg = LinkBridgeVlan::new(index);
    if bridge_self {
        // BRIDGE_FLAGS_SELF: the entry is for the bridge device, not for a port.
        msg = msg.append_af_spec(AfSpecBridge::Flags(BridgeFlag::LowerDev));
    }
    Ok(msg.vlan(vlan.vid, flags).build())
}

impl Netlink {
    fn set_bridge_port(&self, op: &'static str, msg: LinkMessage, index: u32) -> Result<()> {
        tracing::debug!(index, op, "set bridge port");
        self.block_on(self.handle().link().set_port(msg).execute())
            .map_err(|e| NetopsError::netlink(op, format!("link #{index}"), e))
    }

    /// Turns hairpin mode (reflective relay) on or off for a bridge port.
    pub fn set_hairpin(&self, index: u32, on: bool) -> Result<()> {
        self.set_bridge_port(
            "set hairpin",
            LinkBridgePort::new(index).hairpin(on).build(),
            index,
        )
    }

    /// Turns port isolation on or off: isolated ports cannot talk to each other, only to non-isolated ones.
    pub fn set_port_isolated(&self, index: u32, on: bool) -> Result<()> {
        self.set_bridge_port(
            "set isolated",
            LinkBridgePort::new(index).isolated(on).build(),
            index,
        )
    }

    /// Turns VLAN filtering on or off for a bridge.
    pub fn set_bridge_vlan_filtering(&self, bridge_index: u32, on: bool) -> Result<()> {
        let msg = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Bridge)
            .index(bridge_index)
            .set_info_data(InfoData::Bridge(vec![InfoBridge::VlanFiltering(on)]))
            .build();
        tracing::debug!(bridge_index, on, "set bridge vlan_filtering");
        // RTM_NEWLINK without NLM_F_CREATE changes an existing link's kind-specific data; RTM_SETLINK would
        // ignore IFLA_LINKINFO.
        self.block_on(self.handle().link().change(msg).execute())
            .map_err(|e| NetopsError::netlink("set vlan_filtering", format!("bridge #{bridge_index}"), e))
    }

    /// Adds a VLAN to a bridge port.
    pub fn add_port_vlan(&self, index: u32, vid: u16, pvid: bool, untagged: bool) -> Result<()> {
        self.add_vlan(index, PortVlan { vid, pvid, untagged }, false)
    }

    /// Adds a VLAN to the bridge device itself (so the bridge's own addresses are reachable in it).
    pub fn add_bridge_vlan(&self, bridge_index: u32, vid: u16, pvid: bool, untagged: bool) -> Result<()> {
        self.add_vlan(bridge_index, PortVlan { vid, pvid, untagged }, true)
    }

    fn add_vlan(&self, index: u32, vlan: PortVlan, bridge_self: bool) -> Result<()> {
        let msg = port_vlan_message(index, vlan, bridge_self)?;
        tracing::debug!(
            index,
            vid = vlan.vid,
            pvid = vlan.pvid,
            untagged = vlan.untagged,
            "add bridge vlan"
        );
        self.block_on(self.handle().link().set(msg).execute())
            .map_err(|e| NetopsError::netlink("add vlan", format!("link #{index} vid {}", vlan.vid), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_route::link::{BridgeVlanInfo, LinkAttribute};
    use rtnetlink::packet_route::AddressFamily;

    #[test]
    fn vlan_message_is_af_bridge_with_vlan_info() {
        let vlan = PortVlan {
            vid: 100,
            pvid: true,
            untagged: true,
        };
        let msg = port_vlan_message(9, vlan, false).unwrap();
        assert_eq!(msg.header.interface_family, AddressFamily::Bridge);
        assert_eq!(msg.header.index, 9);
        assert_eq!(
            msg.attributes,
            vec![LinkAttribute::AfSpecBridge(vec![AfSpecBridge::VlanInfo(
                BridgeVlanInfo {
                    vid: 100,
                    flags: BridgeVlanInfoFlags::Pvid | BridgeVlanInfoFlags::Untagged,
                }
            )])]
        );
    }

    #[test]
    fn bridge_self_vlan_carries_self_flag() {
        let vlan = PortVlan {
            vid: 4094,
            pvid: false,
            untagged: false,
        };
        let msg = port_vlan_message(2, vlan, true).unwrap();
        assert_eq!(
            msg.attributes,
            vec![LinkAttribute::AfSpecBridge(vec![
                AfSpecBridge::Flags(BridgeFlag::LowerDev),
                AfSpecBridge::VlanInfo(BridgeVlanInfo {
                    vid: 4094,
                    flags: BridgeVlanInfoFlags::empty()
                }),
            ])]
        );
    }

    #[test]
    fn out_of_range_vlan_ids_are_invalid() {
        for vid in [0, 4095, 5000] {
            let err = port_vlan_message(
                1,
                PortVlan {
                    vid,
                    pvid: false,
                    untagged: false,
                },
                false,
            )
            .unwrap_err();
            assert_eq!(err.code(), 7, "vid {vid}");
        }
    }
}
