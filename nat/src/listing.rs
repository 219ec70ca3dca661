//! The port listing behind `list-nat`: the kernel's port-forwarding map elements joined with the records, so
//! each entry names its owner, and drift is visible both ways. Pure: the manager feeds it one table listing.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::element::{record_elements, Element};
use crate::error::NatError;
use crate::inspect::Counters;
use crate::model::{AttachmentRecord, Owner, Protocol};

/// Whether an entry is where it should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EntryState {
    /// In the kernel and recorded.
    Active,
    /// In the kernel, but no record claims it (left behind, or added by hand).
    NotRecorded,
    /// Recorded, but not in the kernel (flushed: `corral nat reconcile` puts it back).
    Missing,
}

/// One forwarded host port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortEntry {
    /// Transport protocol.
    pub protocol: Protocol,
    /// The host address, `None` for every local address of the container address's family.
    pub host_ip: Option<IpAddr>,
    /// Host port.
    pub host_port: u16,
    /// Container address.
    pub container_ip: IpAddr,
    /// Container port.
    pub container_port: u16,
    /// The attachment whose record holds it (`None` for [`EntryState::NotRecorded`]).
    pub owner: Option<Owner>,
    /// In sync or drifted.
    pub state: EntryState,
    /// The element's counters (new connections and their first packets' bytes), when in the kernel.
    pub counters: Option<Counters>,
    /// Why the owner's attachment is certainly gone (see [`crate::manager::staleness`]), if it is.
    pub stale: Option<&'static str>,
}

/// One masqueraded container address (the bridge's `ipMasq`), joined with its owner like [`PortEntry`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasqView {
    /// The container address whose outgoing traffic is masqueraded.
    pub ip: IpAddr,
    /// Its own subnet (traffic there keeps its source), when recorded.
    pub subnet: Option<ipnet::IpNet>,
    /// The attachment that owns it, when recorded.
    pub owner: Option<Owner>,
    /// Drift between kernel and records.
    pub state: EntryState,
    /// Why the owner's attachment is certainly gone, if it is.
    pub stale: Option<&'static str>,
}

/// Everything `list-nat` shows about port forwarding.
#[derive(Debug, Default)]
pub struct PortListing {
    /// Sorted by protocol, host port, host address, container address.
    pub entries: Vec<PortEntry>,
    /// Masqueraded container addresses (SNAT), with owners and drift.
    pub masq: Vec<MasqView>,
    /// Record files that could not be read (their mappings may show as `NotRecorded`).
    pub unreadable: Vec<NatError>,
    /// Whether `table inet corral` exists at all.
    pub table_present: bool,
}

/// Joins the kernel's elements (with counters) and the records' port mappings.
pub fn join_ports(records: &[AttachmentRecord], kernel: Vec<(Element, Option<Counters>)>) -> Vec<PortEntry> {
    let mut recorded: HashMap<Element, &Owner> = HashMap::new();
    for record in records {
        for element in record_elements(record) {
            if matches!(element, Element::HostPort { .. }) {
                recorded.entry(element).or_insert(&record.owner);
            }
        }
    }
    let mut entries = Vec::new();
    for (element, counters) in kernel {
        let owner = recorded.remove(&element).cloned();
        let state = if owner.is_some() {
            EntryState::Active
        } else {
            EntryState::NotRecorded
        };
        entries.extend(entry(&element, owner, state, counters));
    }
    for (element, owner) in recorded {
        entries.extend(entry(&element, Some(owner.clone()), EntryState::Missing, None));
    }
    entries.sort_by(|a, b| {
        (a.protocol, a.host_port, a.host_ip, a.container_ip, a.state).cmp(&(
            b.protocol,
            b.host_port,
            b.host_ip,
            b.container_ip,
            b.state,
        ))
    });
    entries
}

fn entry(
    element: &Element,
    owner: Option<Owner>,
    state: EntryState,
    counters: Option<Counters>,
) -> Option<PortEntry> {
    match *element {
        Element::HostPort {
            protocol,
            host_ip,
            port,
            dest,
            dest_port,
        } => Some(PortEntry {
            protocol,
            host_ip,
            host_port: port,
            container_ip: dest,
            container_port: dest_port,
            owner,
            state,
            counters,
            stale: None,
        }),
        _ => None,
    }
}

/// Joins recorded masquerade sources with the kernel's `masq_src4/6` elements, like [`join_ports`].
pub fn join_masq(records: &[AttachmentRecord], kernel: &[(Element, Option<Counters>)]) -> Vec<MasqView> {
    let mut recorded: HashMap<IpAddr, (&Owner, ipnet::IpNet)> = HashMap::new();
    for record in records {
        for m in &record.masq {
            recorded.entry(m.ip).or_insert((&record.owner, m.subnet.trunc()));
        }
    }
    let mut out = Vec::new();
    for (element, _) in kernel {
        if let Element::MasqSource(ip) = element {
            let found = recorded.remove(ip);
            out.push(MasqView {
                ip: *ip,
                subnet: found.map(|(_, s)| s),
                owner: found.map(|(o, _)| o.clone()),
                state: if found.is_some() {
                    EntryState::Active
                } else {
                    EntryState::NotRecorded
                },
                stale: None,
            });
        }
    }
    for (ip, (owner, subnet)) in recorded {
        out.push(MasqView {
            ip,
            subnet: Some(subnet),
            owner: Some(owner.clone()),
            state: EntryState::Missing,
            stale: None,
        });
    }
    out.sort_by_key(|m| (m.ip, m.state));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{PortForwarding, PortMapping, Source};

    fn mapping(port: u16, ip: &str) -> PortMapping {
        PortMapping {
            protocol: Protocol::Tcp,
            host_ip: None,
            host_port: port,
            container_ip: ip.parse().unwrap(),
            container_port: 80,
        }
    }

    fn element(m: &PortMapping) -> Element {
        Element::HostPort {
            protocol: m.protocol,
            host_ip: m.specific_host_ip(),
            port: m.host_port,
            dest: m.container_ip,
            dest_port: m.container_port,
        }
    }

    #[test]
    fn joins_owners_and_reports_drift_both_ways() {
        let mut r = AttachmentRecord::with_source(Owner::new("n", "c1", "eth0"), Source::Portmap);
        let (active, missing, foreign) = (
            mapping(8080, "10.88.0.2"),
            mapping(8081, "10.88.0.2"),
            mapping(9000, "10.88.0.9"),
        );
        r.ports = Some(PortForwarding {
            mappings: vec![active, missing],
            subnets: vec![],
            snat: true,
            masq_all: false,
        });
        let counters = Some(Counters {
            packets: 2,
            bytes: 120,
        });
        let kernel = vec![(element(&foreign), None), (element(&active), counters)];
        let got = join_ports(&[r], kernel);
        let summary: Vec<(u16, EntryState, bool)> = got
            .iter()
            .map(|e| (e.host_port, e.state, e.owner.is_some()))
            .collect();
        assert_eq!(
            summary,
            [
                (8080, EntryState::Active, true),
                (8081, EntryState::Missing, true),
                (9000, EntryState::NotRecorded, false)
            ]
        );
        assert_eq!(got[0].counters, counters);
        assert_eq!(got[0].owner.as_ref().unwrap().to_string(), "n/c1/eth0");
    }

    #[test]
    fn joins_masquerade_sources_with_owners_and_drift() {
        let mut r = AttachmentRecord::with_source(Owner::new("n", "c1", "eth0"), Source::Bridge);
        r.masq = vec![
            crate::model::MasqEntry {
                ip: "10.88.0.2".parse().unwrap(),
                subnet: "10.88.0.0/16".parse().unwrap(),
            },
            crate::model::MasqEntry {
                ip: "10.88.0.3".parse().unwrap(),
                subnet: "10.88.0.0/16".parse().unwrap(),
            },
        ];
        let kernel = vec![
            (Element::MasqSource("10.88.0.2".parse().unwrap()), None),
            (Element::MasqSource("10.99.0.9".parse().unwrap()), None),
        ];
        let got: Vec<(String, EntryState, bool)> = join_masq(&[r], &kernel)
            .iter()
            .map(|m| (m.ip.to_string(), m.state, m.owner.is_some()))
            .collect();
        assert_eq!(
            got,
            [
                ("10.88.0.2".to_string(), EntryState::Active, true),
                ("10.88.0.3".to_string(), EntryState::Missing, true),
                ("10.99.0.9".to_string(), EntryState::NotRecorded, false),
            ]
        );
    }
}
