//! Helpers for the portmap suites: a node with a "client" namespace on its own link, the bridge + host-local +
//! portmap conflist run through `corral_cni::runtime` inside the node, and TCP/UDP request-reply exchanges
//! with OpenBSD nc.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use corral_cni::runtime::{Attachment, Conflist, Runtime};
use corral_cni::CniError;
use corral_tests::{unique, Netns, Node};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const NET: &str = "pmnet";
/// The node's address on the client link.
pub const NODE4: &str = "192.168.77.1";
pub const NODE6: &str = "fd77::1";
pub const GW4: &str = "10.77.0.1";

/// A node, a client namespace linked to it (192.168.77.0/24, fd77::/64), and the conflist.
pub struct Env {
    pub node: Node,
    pub client: Netns,
    pub list: Conflist,
    pub rt: Runtime,
}

/// A container namespace with its id.
pub struct Ctr {
    pub ns: Netns,
    pub id: String,
}

impl Ctr {
    pub fn new() -> Self {
        Ctr {
            ns: Netns::new("pmc"),
            id: unique("pm"),
        }
    }
}

pub fn conflist(node: &Node, portmap: Value) -> Conflist {
    let mut pm = json!({"type": "portmap", "capabilities": {"portMappings": true}});
    if let (Some(p), Value::Object(extra)) = (pm.as_object_mut(), portmap) {
        p.extend(extra);
    }
    let list = json!({
        "cniVersion": "1.0.0",
        "name": NET,
        "plugins": [
            {"type": "bridge", "bridge": "pmbr0", "isGateway": true, "hairpinMode": true,
             "ipam": {"type": "host-local", "dataDir": node.data_dir(),
                      "ranges": [[{"subnet": "10.77.0.0/24"}], [{"subnet": "fd00:77::/64"}]],
                      "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}},
            pm,
        ]
    });
    Conflist::parse(list.to_string().as_bytes()).unwrap()
}

impl Env {
    pub fn new() -> Self {
        Self::with_portmap(json!({}))
    }

    pub fn with_portmap(portmap: Value) -> Self {
        let node = Node::new();
        let client = Netns::new("pmk");
        node.ns.ip(&[
            "link",
            "add",
            "cl0",
            "type",
            "veth",
            "peer",
            "name",
            "cl1",
            "netns",
            &client.name,
        ]);
        node.ns.ip(&["addr", "add", "192.168.77.1/24", "dev", "cl0"]);
        node.ns.ip(&["addr", "add", "fd77::1/64", "dev", "cl0", "nodad"]);
        node.ns.ip(&["link", "set", "cl0", "up"]);
        client.ip(&["addr", "add", "192.168.77.2/24", "dev", "cl1"]);
        client.ip(&["addr", "add", "fd77::2/64", "dev", "cl1", "nodad"]);
        client.ip(&["link", "set", "cl1", "up"]);
        let mut env = BTreeMap::new();
        env.insert("PATH".to_string(), std::env::var("PATH").unwrap_or_default());
        env.insert("CORRAL_STATE_DIR".to_string(), node.state.display().to_string());
        let rt = Runtime {
            cni_path: vec![node.bin.clone()],
            env,
        };
        let list = conflist(&node, portmap);
        Env {
            node,
            client,
            list,
            rt,
        }
    }

    pub fn attachment(&self, ctr: &Ctr, mappings: Value) -> Attachment {
        let mut caps = Map::new();
        caps.insert("portMappings".into(), mappings);
        Attachment {
            container_id: ctr.id.clone(),
            netns: ctr.ns.path(),
            ifname: "eth0".into(),
            capability_args: caps,
            ..Default::default()
        }
    }

    /// ADD of the whole chain; the result.
    pub fn try_add(&self, ctr: &Ctr, mappings: Value) -> Result<Value, CniError> {
        let att = self.attachment(ctr, mappings);
        enter_node(&self.node, || self.list.add(&self.rt, &att))
    }

    pub fn add(&self, ctr: &Ctr, mappings: Value) -> Value {
        self.try_add(ctr, mappings)
            .unwrap_or_else(|e| panic!("ADD {}: {e}", ctr.id))
    }

    pub fn del(&self, ctr: &Ctr, mappings: Value, prev: Option<&Value>) {
        let att = self.attachment(ctr, mappings);
        enter_node(&self.node, || self.list.del(&self.rt, &att, prev)).unwrap();
    }

    /// The portmap plugin alone, `cmd`, for `ctr` with `conf` (name, cniVersion and type are added).
    pub fn portmap(&self, cmd: &str, ctr: &Ctr, conf: Value) -> corral_tests::Outcome {
        let mut c = json!({"cniVersion": "1.0.0", "name": NET, "type": "portmap"});
        if let (Some(c), Value::Object(extra)) = (c.as_object_mut(), conf) {
            c.extend(extra);
        }
        let path = ctr.ns.path();
        self.node.plugin(
            "portmap",
            cmd,
            &[
                ("CNI_CONTAINERID", &ctr.id),
                ("CNI_NETNS", &path),
                ("CNI_IFNAME", "eth0"),
            ],
            &c.to_string(),
        )
    }

    /// Elements of one of corral's maps or sets in the node, as nft prints them (one line each).
    pub fn elements(&self, set: &str) -> Vec<String> {
        let out = self.node.ns.exec(&["nft", "list", "set", "inet", "corral", set]);
        let out = if out.status.success() {
            out
        } else {
            self.node.ns.exec(&["nft", "list", "map", "inet", "corral", set])
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let Some(start) = text.find("elements = {") else {
            return Vec::new();
        };
        let body = &text[start + 12..];
        let body = &body[..body.find('}').unwrap_or(body.len())];
        body.split(',')
            .map(|e| {
                // Drop counters and comments: `tcp . 8080 counter packets 0 bytes 0 comment "x" : 10.0.0.2 . 80`.
                let e = e.trim();
                let (key, data) = e.split_once(" : ").map_or((e, None), |(k, d)| (k, Some(d)));
                let key = key
                    .split(" counter ")
                    .next()
                    .unwrap()
                    .split(" comment ")
                    .next()
                    .unwrap();
                match data {
                    Some(d) => format!("{} : {}", key.trim(), d.trim()),
                    None => key.trim().to_string(),
                }
            })
            .filter(|e| !e.is_empty())
            .collect()
    }

    pub fn records(&self) -> Vec<String> {
        let dir = self.node.state.join("nat").join(NET);
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.retain(|n| n.ends_with(".portmap.json"));
        v.sort();
        v
    }

    /// `conntrack -L` lines for UDP flows to `port` in the node.
    pub fn udp_flows(&self, port: u16) -> String {
        let out = self.node.ns.exec(&[
            "conntrack",
            "-L",
            "-p",
            "udp",
            "--orig-port-dst",
            &port.to_string(),
        ]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Runs `f` on a thread that entered the node's network namespace, so the plugins it starts run there.
pub fn enter_node<R: Send>(node: &Node, f: impl FnOnce() -> R + Send) -> R {
    let path = PathBuf::from(node.ns.path());
    std::thread::scope(|s| {
        s.spawn(move || {
            let ns = std::fs::File::open(&path).unwrap();
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    })
}

/// The container's IPv4 (or IPv6) address from a chain result.
pub fn ctr_ip(result: &Value, v6: bool) -> String {
    result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            i["address"]
                .as_str()
                .unwrap()
                .split('/')
                .next()
                .unwrap()
                .to_string()
        })
        .find(|a| a.contains(':') == v6)
        .unwrap()
}

/// One request/reply over `proto` ("tcp"/"udp"): a one-shot nc server on `listen` in `server` (replying PONG),
/// a client in `from` sending PING to `dst:port`. Retries for up to 6 s (IPv6 neighbours, DAD). Returns the
/// client's output and the server's.
pub fn exchange(
    server: &Netns,
    from: &Netns,
    proto: &str,
    dst: &str,
    port: u16,
    listen: u16,
) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let (client, srv) = exchange_once(server, from, proto, dst, port, listen);
        if (client.contains("PONG") && srv.contains("PING")) || Instant::now() > deadline {
            return (client, srv);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Asserts one exchange works and returns what the server saw.
pub fn assert_exchange(server: &Netns, from: &Netns, proto: &str, dst: &str, port: u16, listen: u16) {
    let (client, srv) = exchange(server, from, proto, dst, port, listen);
    assert!(
        client.contains("PONG") && srv.contains("PING"),
        "{proto} {dst}:{port} from {} to {}:{listen}: client saw {client:?}, server saw {srv:?}",
        from.name,
        server.name
    );
}

fn exchange_once(
    server: &Netns,
    from: &Netns,
    proto: &str,
    dst: &str,
    port: u16,
    listen: u16,
) -> (String, String) {
    let fam = if dst.contains(':') { "-6" } else { "-4" };
    let udp = proto == "udp";
    let srv_cmd = if udp {
        format!("printf 'PONG\\n' | timeout 4 nc {fam} -u -l -n -W 1 {listen}")
    } else {
        format!("printf 'PONG\\n' | timeout 4 nc {fam} -l -n -N {listen}")
    };
    let mut srv = Command::new("nsenter")
        .arg(format!("--net={}", server.path()))
        .args(["sh", "-c", &srv_cmd])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let needle = format!(":{listen} ");
    let ss = if udp { "-lunH" } else { "-ltnH" };
    let until = Instant::now() + Duration::from_secs(3);
    while !server.run(&["ss", ss]).contains(&needle) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    let cli_cmd = if udp {
        format!("printf 'PING\\n' | timeout 3 nc -u -n -w 1 {dst} {port}")
    } else {
        format!("printf 'PING\\n' | timeout 3 nc -n -N -w 2 {dst} {port}")
    };
    let client = from.exec(&["sh", "-c", &cli_cmd]);
    let until = Instant::now() + Duration::from_secs(3);
    while srv.try_wait().unwrap().is_none() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = srv.kill();
    let _ = srv.wait();
    let mut got = String::new();
    let _ = srv.stdout.take().unwrap().read_to_string(&mut got);
    (String::from_utf8_lossy(&client.stdout).into_owned(), got)
}
