//! IP addresses on links: add (idempotent), list, delete (tolerates absence).

use std::net::IpAddr;

use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::AddressFamily;

use crate::error::{NetopsError, Result};
use crate::netlink::Netlink;

/// The address an address message describes: IFA_LOCAL (the interface's own address on IPv4, different
/// from IFA_ADDRESS only on point-to-point links) or else IFA_ADDRESS, with the header's prefix length.
pub(crate) fn address_of(msg: &AddressMessage) -> Option<IpNet> {
    let mut local = None;
    let mut address = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    IpNet::new(local.or(address)?, msg.header.prefix_len).ok()
}

/// The message that names `net` on link `index`, for deletion.
fn delete_message(index: u32, net: IpNet) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.index = index;
    msg.header.prefix_len = net.prefix_len();
    msg.header.family = match net.addr() {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    msg.attributes.push(AddressAttribute::Local(net.addr()));
    msg.attributes.push(AddressAttribute::Address(net.addr()));
    msg
}

impl Netlink {
    /// Adds `net` (address and prefix, e.g. 10.88.0.5/16) to link `index`; already present is success.
    pub fn add_address(&self, index: u32, net: IpNet) -> Result<()> {
        self.create_address(index, net).map(|_| ())
    }

    /// Adds `net` to link `index`: `true` if this call added it, `false` if it was already there. Lets a
    /// caller skip listing the link's addresses in the common case (listing dumps every address of the
    /// netns, which on a node with a thousand veths is most of an ADD).
    pub fn create_address(&self, index: u32, net: IpNet) -> Result<bool> {
        tracing::debug!(index, %net, "add address");
        let req = self.handle().address().add(index, net.addr(), net.prefix_len());
        match self.block_on(req.execute()) {
            Ok(()) => Ok(true),
            Err(e) => {
                let err = NetopsError::netlink("add address", format!("{net} on link #{index}"), e);
                if err.is_exists() {
                    Ok(false)
                } else {
                    Err(err)
                }
            }
        }
    }

    /// Every address (both families) on link `index`, in kernel order.
    pub fn addresses(&self, index: u32) -> Result<Vec<IpNet>> {
        let req = self
            .handle()
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        let msgs: Vec<AddressMessage> = self
            .block_on(req.try_collect())
            .map_err(|e| NetopsError::netlink("list addresses", format!("link #{index}"), e))?;
        Ok(msgs.iter().filter_map(address_of).collect())
    }

    /// Removes `net` from link `index`; absent (or the link gone) is success.
    pub fn delete_address(&self, index: u32, net: IpNet) -> Result<()> {
        tracing::debug!(index, %net, "delete address");
        let req = self.handle().address().del(delete_message(index, net));
        match self.block_on(req.execute()) {
            Ok(()) => Ok(()),
            Err(e) => {
                let err = NetopsError::netlink("delete address", format!("{net} on link #{index}"), e);
                if err.is_not_found() {
                    Ok(())
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

    #[test]
    fn local_wins_over_peer_address() {
        let mut msg = AddressMessage::default();
        msg.header.prefix_len = 32;
        msg.attributes
            .push(AddressAttribute::Address("10.0.0.2".parse().unwrap()));
        msg.attributes
            .push(AddressAttribute::Local("10.0.0.1".parse().unwrap()));
        assert_eq!(address_of(&msg), Some("10.0.0.1/32".parse().unwrap()));
    }

    #[test]
    fn ipv6_has_only_address() {
        let mut msg = AddressMessage::default();
        msg.header.prefix_len = 64;
        msg.attributes
            .push(AddressAttribute::Address("fd00::5".parse().unwrap()));
        assert_eq!(address_of(&msg), Some("fd00::5/64".parse().unwrap()));
    }

    #[test]
    fn message_without_address_is_skipped() {
        assert_eq!(address_of(&AddressMessage::default()), None);
    }

    #[test]
    fn delete_message_names_family_prefix_and_address() {
        let msg = delete_message(4, "10.1.2.3/24".parse().unwrap());
        assert_eq!(msg.header.family, AddressFamily::Inet);
        assert_eq!(msg.header.prefix_len, 24);
        assert_eq!(msg.header.index, 4);
        assert!(msg
            .attributes
            .contains(&AddressAttribute::Local("10.1.2.3".parse().unwrap())));
        let v6 = delete_message(4, "fd00::1/64".parse().unwrap());
        assert_eq!(v6.header.family, AddressFamily::Inet6);
    }
}
