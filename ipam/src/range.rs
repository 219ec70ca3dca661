//! Range math, pure: a range (a subnet with a start, an end and a gateway), a range set (ranges of one family
//! tried in order), and the reference host-local's candidate order (round-robin after the last reserved
//! address, wrapping through the set's ranges, skipping the gateway).

use ipnet::IpNet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a range or range set is invalid. The messages name the offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// The subnet has bits set after the prefix.
    #[error("subnet {subnet} has host bits set (the network address is {network})")]
    HostBits {
        /// As given.
        subnet: IpNet,
        /// The network address it should have.
        network: IpAddr,
    },
    /// /31, /32, /127 and /128 leave nothing to allocate.
    #[error("network {0} is too small to allocate from")]
    TooSmall(IpNet),
    /// rangeStart, rangeEnd or gateway is outside the subnet (or of the other family).
    #[error("{key} {ip} is not in network {subnet}")]
    OutsideSubnet {
        /// The config key.
        key: &'static str,
        /// Its value.
        ip: IpAddr,
        /// The subnet.
        subnet: IpNet,
    },
    /// rangeStart is after rangeEnd.
    #[error("rangeStart {start} is after rangeEnd {end}")]
    Reversed {
        /// rangeStart.
        start: IpAddr,
        /// rangeEnd.
        end: IpAddr,
    },
    /// A range set without ranges.
    #[error("empty range set")]
    Empty,
    /// IPv4 and IPv6 ranges in one set.
    #[error("mixed address families in one range set ({0} and {1})")]
    MixedFamilies(IpNet, IpNet),
    /// Two ranges share addresses.
    #[error("ranges {0} and {1} overlap")]
    Overlap(String, String),
}

/// An address as a number, so v4 and v6 share the arithmetic.
pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The address of family `v4` with this number (truncated to 32 bits for v4).
pub fn from_u128(v4: bool, n: u128) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(n as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(n))
    }
}

/// One pool: addresses `start..=end` of `subnet`; `gateway` is never handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// The subnet (network address, no host bits).
    pub subnet: IpNet,
    /// First address handed out (inclusive).
    pub start: IpAddr,
    /// Last address handed out (inclusive).
    pub end: IpAddr,
    /// The gateway put in results and skipped by allocation.
    pub gateway: IpAddr,
}

impl Range {
    /// Validates and fills defaults as the reference does: gateway and start default to network+1, end to
    /// the last address (for IPv4 the one before broadcast).
    pub fn new(
        subnet: IpNet,
        start: Option<IpAddr>,
        end: Option<IpAddr>,
        gateway: Option<IpAddr>,
    ) -> Result<Range, RangeError> {
        let network = subnet.network();
        if subnet.addr() != network {
            return Err(RangeError::HostBits { subnet, network });
        }
        if subnet.prefix_len() + 2 > subnet.max_prefix_len() {
            return Err(RangeError::TooSmall(subnet));
        }
        let v4 = network.is_ipv4();
        let first = from_u128(v4, to_u128(network) + 1);
        let last_n = to_u128(subnet.broadcast()) - u128::from(v4);
        let inside = |key: &'static str, ip: IpAddr| {
            let ip = ip.to_canonical();
            if subnet.contains(&ip) {
                Ok(ip)
            } else {
                Err(RangeError::OutsideSubnet { key, ip, subnet })
            }
        };
        let gateway = gateway
            .map(|g| inside("gateway", g))
            .transpose()?
            .unwrap_or(first);
        let start = start
            .map(|s| inside("rangeStart", s))
            .transpose()?
            .unwrap_or(first);
        let end = match end {
            Some(e) => inside("rangeEnd", e)?,
            None => from_u128(v4, last_n),
        };
        if to_u128(start) > to_u128(end) {
            return Err(RangeError::Reversed { start, end });
        }
        Ok(Range {
            subnet,
            start,
            end,
            gateway,
        })
    }

    /// Whether `ip` is of this family, in the subnet and within `start..=end`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.subnet.contains(&ip) && to_u128(ip) >= to_u128(self.start) && to_u128(ip) <= to_u128(self.end)
    }

    /// Whether the two ranges share an address (same test as the reference).
    pub fn overlaps(&self, other: &Range) -> bool {
        self.is_ipv4() == other.is_ipv4()
            && (self.contains(other.start)
                || self.contains(other.end)
                || other.contains(self.start)
                || other.contains(self.end))
    }

    /// Whether this is an IPv4 range.
    pub fn is_ipv4(&self) -> bool {
        self.subnet.addr().is_ipv4()
    }

    /// How many addresses can be handed out (the gateway excluded), saturating.
    pub fn capacity(&self) -> u128 {
        let n = (to_u128(self.end) - to_u128(self.start)).saturating_add(1);
        n - u128::from(self.contains(self.gateway))
    }

    /// `ip` with this range's prefix length.
    pub fn with_prefix(&self, ip: IpAddr) -> IpNet {
        // The prefix length comes from a valid IpNet of the same family, so this cannot fail.
        IpNet::new(ip, self.subnet.prefix_len()).unwrap_or(self.subnet)
    }

    fn is_whole_subnet(&self) -> bool {
        let v4 = self.is_ipv4();
        to_u128(self.start) == to_u128(self.subnet.network()) + 1
            && to_u128(self.end) == to_u128(self.subnet.broadcast()) - u128::from(v4)
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_whole_subnet() {
            write!(f, "{}", self.subnet)
        } else {
            write!(f, "{}-{} of {}", self.start, self.end, self.subnet)
        }
    }
}

/// Ranges of one family, tried in order; one address is allocated per set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSet {
    ranges: Vec<Range>,
}

impl RangeSet {
    /// A set of at least one range, one family, no overlaps.
    pub fn new(ranges: Vec<Range>) -> Result<RangeSet, RangeError> {
        let first = ranges.first().ok_or(RangeError::Empty)?;
        if let Some(other) = ranges.iter().find(|r| r.is_ipv4() != first.is_ipv4()) {
            return Err(RangeError::MixedFamilies(first.subnet, other.subnet));
        }
        for (i, a) in ranges.iter().enumerate() {
            if let Some(b) = ranges[i + 1..].iter().find(|b| a.overlaps(b)) {
                return Err(RangeError::Overlap(a.to_string(), b.to_string()));
            }
        }
        Ok(RangeSet { ranges })
    }

    /// The ranges, in order.
    pub fn ranges(&self) -> &[Range] {
        &self.ranges
    }

    /// Whether this set holds IPv4 addresses.
    pub fn is_ipv4(&self) -> bool {
        self.ranges.first().is_some_and(Range::is_ipv4)
    }

    /// The range holding `ip`, if any.
    pub fn range_for(&self, ip: IpAddr) -> Option<&Range> {
        self.ranges.iter().find(|r| r.contains(ip))
    }

    /// Whether some range holds `ip`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.range_for(ip).is_some()
    }

    /// Whether any range of the two sets overlap.
    pub fn overlaps(&self, other: &RangeSet) -> bool {
        self.ranges
            .iter()
            .any(|a| other.ranges.iter().any(|b| a.overlaps(b)))
    }

    /// Addresses not in `reserved` that could still be handed out, saturating.
    pub fn free(&self, reserved: &[IpAddr]) -> u128 {
        let capacity = self
            .ranges
            .iter()
            .fold(0u128, |acc, r| acc.saturating_add(r.capacity()));
        let used = reserved
            .iter()
            .filter(|ip| {
                self.range_for(**ip)
                    .is_some_and(|r| r.gateway != ip.to_canonical())
            })
            .count() as u128;
        capacity.saturating_sub(used)
    }

    /// Allocation candidates in the reference order: right after `last` if the set holds it, else from the
    /// first range's start; wrapping once through every range; never the gateway.
    pub fn candidates(&self, last: Option<IpAddr>) -> Candidates<'_> {
        let from_last = last.and_then(|ip| {
            let ip = ip.to_canonical();
            self.ranges
                .iter()
                .position(|r| r.contains(ip))
                .map(|i| (i, to_u128(ip)))
        });
        Candidates {
            set: self,
            idx: from_last.map_or(0, |(i, _)| i),
            cur: from_last.map(|(_, n)| n),
            first: None,
            done: self.ranges.is_empty(),
        }
    }
}

impl fmt::Display for RangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// Iterator over allocation candidates: `(address with prefix, range)`.
#[derive(Debug)]
pub struct Candidates<'a> {
    set: &'a RangeSet,
    idx: usize,
    cur: Option<u128>,
    first: Option<u128>,
    done: bool,
}

impl<'a> Iterator for Candidates<'a> {
    type Item = (IpAddr, &'a Range);

    fn next(&mut self) -> Option<Self::Item> {
        let ranges = &self.set.ranges;
        let v4 = self.set.is_ipv4();
        loop {
            if self.done {
                return None;
            }
            let r = ranges.get(self.idx)?;
            let cur = match self.cur {
                None => {
                    let n = to_u128(r.start);
                    self.first = Some(n);
                    n
                }
                Some(c) => {
                    let n = if c == to_u128(r.end) {
                        self.idx = (self.idx + 1) % ranges.len();
                        to_u128(ranges.get(self.idx)?.start)
                    } else {
                        c + 1
                    };
                    match self.first {
                        None => self.first = Some(n),
                        Some(f) if f == n => {
                            self.done = true;
                            return None;
                        }
                        Some(_) => {}
                    }
                    n
                }
            };
            self.cur = Some(cur);
            let r = ranges.get(self.idx)?;
            let ip = from_u128(v4, cur);
            if ip != r.gateway {
                return Some((ip, r));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn range(subnet: &str, start: Option<&str>, end: Option<&str>, gw: Option<&str>) -> Range {
        Range::new(subnet.parse().unwrap(), start.map(ip), end.map(ip), gw.map(ip)).unwrap()
    }

    fn all(set: &RangeSet, last: Option<&str>) -> Vec<String> {
        set.candidates(last.map(ip)).map(|(a, _)| a.to_string()).collect()
    }

    #[test]
    fn defaults_follow_the_reference() {
        let r = range("10.1.0.0/24", None, None, None);
        assert_eq!(r.gateway, ip("10.1.0.1"));
        assert_eq!(r.start, ip("10.1.0.1"));
        assert_eq!(r.end, ip("10.1.0.254"));
        let r = range("fd00::/120", None, None, None);
        assert_eq!(r.start, ip("fd00::1"));
        assert_eq!(r.end, ip("fd00::ff"), "v6 has no broadcast");
        assert_eq!(r.to_string(), "fd00::/120");
        let r = range("10.1.0.0/24", Some("10.1.0.10"), Some("10.1.0.20"), None);
        assert_eq!(r.to_string(), "10.1.0.10-10.1.0.20 of 10.1.0.0/24");
        assert_eq!(r.capacity(), 11);
    }

    #[test]
    fn rejects_bad_ranges() {
        let new = |s: &str, st: Option<&str>, e: Option<&str>, g: Option<&str>| {
            Range::new(s.parse().unwrap(), st.map(ip), e.map(ip), g.map(ip)).unwrap_err()
        };
        assert!(matches!(
            new("10.1.0.5/24", None, None, None),
            RangeError::HostBits { .. }
        ));
        for small in ["10.0.0.0/31", "10.0.0.0/32", "fd00::/127", "fd00::/128"] {
            assert_eq!(
                new(small, None, None, None),
                RangeError::TooSmall(small.parse().unwrap())
            );
        }
        let e = new("10.1.0.0/24", Some("10.2.0.1"), None, None);
        assert_eq!(e.to_string(), "rangeStart 10.2.0.1 is not in network 10.1.0.0/24");
        assert!(matches!(
            new("10.1.0.0/24", None, Some("fd00::1"), None),
            RangeError::OutsideSubnet { .. }
        ));
        assert!(matches!(
            new("10.1.0.0/24", None, None, Some("10.9.0.1")),
            RangeError::OutsideSubnet { .. }
        ));
        assert!(matches!(
            new("10.1.0.0/24", Some("10.1.0.9"), Some("10.1.0.5"), None),
            RangeError::Reversed { .. }
        ));
    }

    #[test]
    fn sets_reject_empty_mixed_and_overlapping() {
        assert_eq!(RangeSet::new(vec![]).unwrap_err(), RangeError::Empty);
        let a = range("10.1.0.0/24", None, None, None);
        let b = range("fd00::/64", None, None, None);
        assert!(matches!(
            RangeSet::new(vec![a.clone(), b]),
            Err(RangeError::MixedFamilies(..))
        ));
        let c = range("10.1.0.0/16", None, None, None);
        assert!(matches!(
            RangeSet::new(vec![a.clone(), c]),
            Err(RangeError::Overlap(..))
        ));
        // Same subnet, disjoint pools: allowed, as in the reference.
        let lo = range("10.1.0.0/24", Some("10.1.0.1"), Some("10.1.0.9"), None);
        let hi = range("10.1.0.0/24", Some("10.1.0.10"), Some("10.1.0.20"), None);
        assert!(RangeSet::new(vec![lo, hi]).is_ok());
    }

    #[test]
    fn candidates_skip_gateway_and_stop_after_one_lap() {
        let set = RangeSet::new(vec![range("10.1.0.0/29", None, None, None)]).unwrap();
        assert_eq!(
            all(&set, None),
            ["10.1.0.2", "10.1.0.3", "10.1.0.4", "10.1.0.5", "10.1.0.6"]
        );
        // Round-robin: start after the last reserved one, wrap, end on it.
        assert_eq!(
            all(&set, Some("10.1.0.4")),
            ["10.1.0.5", "10.1.0.6", "10.1.0.2", "10.1.0.3", "10.1.0.4"]
        );
        // A last address outside the set is ignored.
        assert_eq!(all(&set, Some("10.9.0.4"))[0], "10.1.0.2");
    }

    #[test]
    fn candidates_walk_ranges_in_order_and_wrap() {
        let a = range("10.1.0.0/29", Some("10.1.0.5"), None, None);
        let b = range("10.2.0.0/30", None, None, None);
        let set = RangeSet::new(vec![a, b]).unwrap();
        assert_eq!(all(&set, None), ["10.1.0.5", "10.1.0.6", "10.2.0.2"]);
        assert_eq!(all(&set, Some("10.1.0.6")), ["10.2.0.2", "10.1.0.5", "10.1.0.6"]);
        assert_eq!(all(&set, Some("10.2.0.2")), ["10.1.0.5", "10.1.0.6", "10.2.0.2"]);
    }

    #[test]
    fn candidates_of_a_gateway_only_range_terminate() {
        let r = range("10.1.0.0/30", Some("10.1.0.1"), Some("10.1.0.1"), None);
        let set = RangeSet::new(vec![r]).unwrap();
        assert!(all(&set, None).is_empty());
        assert!(all(&set, Some("10.1.0.1")).is_empty());
    }

    #[test]
    fn v6_candidates_and_free_count() {
        let set = RangeSet::new(vec![range("fd00::/126", None, None, None)]).unwrap();
        assert_eq!(all(&set, None), ["fd00::2", "fd00::3"]);
        assert_eq!(set.free(&[]), 2);
        assert_eq!(set.free(&[ip("fd00::3"), ip("fd00::9")]), 1);
        let big = RangeSet::new(vec![range("fd00::/64", None, None, None)]).unwrap();
        assert_eq!(big.free(&[]), (1u128 << 64) - 2);
    }
}
