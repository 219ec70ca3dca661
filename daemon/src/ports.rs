//! Host ports a container asks to publish, checked up front so a taken port is refused with a clear message
//! before anything is created or attached: against the ports other containers publish, and against the sockets
//! already bound in corrald's network namespace (where the DNAT rules go), since a published port would
//! silently take that process's traffic away.

use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One published host port: protocol, host IP (None: every address) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    /// The address it is published on; None for all of them.
    pub ip: Option<IpAddr>,
    /// The port.
    pub port: u16,
}

impl HostPort {
    /// From a `portMappings` entry (as `parse_publish` builds it); None when it has no valid host port.
    pub fn of_mapping(m: &Value) -> Option<HostPort> {
        let port = u16::try_from(m["hostPort"].as_u64()?).ok()?;
        Some(HostPort {
            protocol: m["protocol"].as_str().unwrap_or("tcp").to_ascii_lowercase(),
            ip: m["hostIP"].as_str().and_then(|i| i.parse().ok()),
            port,
        })
    }

    /// Whether two published ports take some traffic in common: same protocol and port, and addresses that
    /// overlap (no address, or a wildcard of the other's family, covers every specific one).
    pub fn overlaps(&self, other: &HostPort) -> bool {
        self.protocol == other.protocol && self.port == other.port && addresses_overlap(self.ip, other.ip)
    }

    /// `8080/tcp` or `127.0.0.1:8080/tcp`.
    pub fn describe(&self) -> String {
        match self.ip {
            Some(ip) => format!("{}/{}", socket_text(ip, self.port), self.protocol),
            None => format!("{}/{}", self.port, self.protocol),
        }
    }
}

fn socket_text(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// v4-mapped IPv6 addresses (`::ffff:a.b.c.d`) as the IPv4 address they stand for.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn addresses_overlap(a: Option<IpAddr>, b: Option<IpAddr>) -> bool {
    let (Some(a), Some(b)) = (a.map(canonical), b.map(canonical)) else {
        return true;
    };
    let wildcard_covers = |w: IpAddr, x: IpAddr| w.is_unspecified() && w.is_ipv4() == x.is_ipv4();
    a == b || wildcard_covers(a, b) || wildcard_covers(b, a)
}

/// The first of `wanted` that another container already publishes: a message naming the port and its owner.
/// `others` are (container name, its portMappings) of the containers that hold their ports (running or attached).
pub fn taken_by_container<'a>(
    wanted: &[Value],
    others: impl IntoIterator<Item = (&'a str, &'a [Value])>,
) -> Option<String> {
    let wanted: Vec<HostPort> = wanted.iter().filter_map(HostPort::of_mapping).collect();
    for (name, ports) in others {
        for theirs in ports.iter().filter_map(HostPort::of_mapping) {
            if let Some(w) = wanted.iter().find(|w| w.overlaps(&theirs)) {
                return Some(format!(
                    "port {} is already published by container {name}",
                    w.describe()
                ));
            }
        }
    }
    None
}

/// A socket bound in this process's network namespace, from /proc/self/net/{tcp,udp}{,6}.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundSocket {
    /// `tcp` or `udp`.
    pub protocol: &'static str,
    /// Local address and port.
    pub ip: IpAddr,
    /// Local port.
    pub port: u16,
    /// The socket's inode, to find its process.
    pub inode: u64,
}

/// TCP state LISTEN in /proc/net/tcp.
const TCP_LISTEN: &str = "0A";

/// Parses `/proc/net/{tcp,udp}{,6}` text: TCP sockets in LISTEN, and every bound UDP socket (UDP has no listen
/// state: any socket with a local port receives that port's datagrams).
pub fn parse_proc_net(protocol: &'static str, text: &str) -> Vec<BoundSocket> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (local, state, inode) = (f.get(1)?, f.get(3)?, f.get(9)?);
            if protocol == "tcp" && *state != TCP_LISTEN {
                return None;
            }
            let (addr, port) = local.split_once(':')?;
            let port = u16::from_str_radix(port, 16).ok().filter(|p| *p != 0)?;
            Some(BoundSocket {
                protocol,
                ip: parse_proc_addr(addr)?,
                port,
                inode: inode.parse().ok()?,
            })
        })
        .collect()
}

/// An address as /proc/net prints it: 32-bit words in hex, each in the machine's byte order.
fn parse_proc_addr(hex: &str) -> Option<IpAddr> {
    let words = (0..hex.len() / 8)
        .map(|i| u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect::<Option<Vec<u32>>>()?;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    match bytes.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))),
        16 => {
            let b: [u8; 16] = bytes.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

/// The sockets bound in corrald's own network namespace (where the published ports' DNAT rules go).
fn node_sockets() -> Vec<BoundSocket> {
    let mut out = Vec::new();
    for (protocol, files) in [("tcp", ["tcp", "tcp6"]), ("udp", ["udp", "udp6"])] {
        for f in files {
            let text = std::fs::read_to_string(format!("/proc/self/net/{f}")).unwrap_or_default();
            out.extend(parse_proc_net(protocol, &text));
        }
    }
    out
}

/// `pid 123 (nc)` of the process holding socket `inode`, if it can be found.
fn socket_owner(inode: u64) -> Option<String> {
    let needle = format!("socket:[{inode}]");
    for proc_entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let pid = proc_entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        if fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == needle.as_str()))
        {
            let comm = std::fs::read_to_string(proc_entry.path().join("comm")).unwrap_or_default();
            return Some(format!("pid {pid} ({})", comm.trim()));
        }
    }
    None
}

/// The first of `wanted` (TCP and UDP; SCTP is not checked) that a process in corrald's network namespace
/// already listens on: a message naming the port and, when found, the process.
pub fn taken_on_node(wanted: &[Value]) -> Option<String> {
    let wanted: Vec<HostPort> = wanted.iter().filter_map(HostPort::of_mapping).collect();
    if wanted.is_empty() {
        return None;
    }
    for s in node_sockets() {
        let bound = HostPort {
            protocol: s.protocol.to_string(),
            ip: Some(s.ip),
            port: s.port,
        };
        if let Some(w) = wanted.iter().find(|w| w.overlaps(&bound)) {
            let who = socket_owner(s.inode).unwrap_or_else(|| "a process".into());
            return Some(format!(
                "port {} is already in use on the node: {who} listens on {}",
                w.describe(),
                socket_text(s.ip, s.port)
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hp(spec: &str) -> HostPort {
        HostPort::of_mapping(&crate::cni_cmd::parse_publish(spec).unwrap()).unwrap()
    }

    #[test]
    fn overlap_follows_protocol_port_and_address() {
        assert!(hp("8080:80").overlaps(&hp("8080:81")));
        assert!(!hp("8080:80").overlaps(&hp("8081:80")));
        assert!(!hp("8080:80").overlaps(&hp("8080:80/udp")));
        assert!(hp("8080:80").overlaps(&hp("127.0.0.1:8080:80")));
        assert!(hp("0.0.0.0:8080:80").overlaps(&hp("10.0.0.1:8080:80")));
        assert!(!hp("127.0.0.1:8080:80").overlaps(&hp("10.0.0.1:8080:80")));
        assert!(hp("[::]:8080:80").overlaps(&hp("[::1]:8080:80")));
        assert!(!hp("[::]:8080:80").overlaps(&hp("127.0.0.1:8080:80")));
        assert!(hp("[::ffff:127.0.0.1]:8080:80").overlaps(&hp("127.0.0.1:8080:80")));
    }

    #[test]
    fn names_the_container_that_publishes_the_port() {
        let web = vec![json!({"hostPort": 8080, "containerPort": 80, "protocol": "tcp"})];
        let want = vec![json!({"hostPort": 8080, "containerPort": 8000, "protocol": "tcp"})];
        assert_eq!(
            taken_by_container(&want, [("web", web.as_slice())]).unwrap(),
            "port 8080/tcp is already published by container web"
        );
        let udp = vec![json!({"hostPort": 8080, "containerPort": 80, "protocol": "udp"})];
        assert!(taken_by_container(&udp, [("web", web.as_slice())]).is_none());
    }

    #[test]
    fn parses_proc_net_listeners() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
            0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0\n\
            1: 0100007F:1F91 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 4243 1 0\n";
        let s = parse_proc_net("tcp", tcp);
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(s[0].port, 8080);
        assert_eq!(s[0].inode, 4242);
        if cfg!(target_endian = "little") {
            assert_eq!(s[0].ip, "127.0.0.1".parse::<IpAddr>().unwrap());
        }
        let udp6 = "  sl  local_address                         remote_address                        st\n\
            0: 00000000000000000000000000000000:0035 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 77 2 0\n";
        let s = parse_proc_net("udp", udp6);
        assert_eq!(s[0].port, 53);
        assert_eq!(s[0].ip, "::".parse::<IpAddr>().unwrap());
    }
}
