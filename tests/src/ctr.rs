//! Containers (a netns and a container ID) and the kernel reads the suites make inside namespaces: links,
//! addresses, routes, sysctls, pings that wait out IPv6 DAD, and a one-shot TCP listener that reports the
//! peer address it saw.

use crate::{unique, Netns, Node, Outcome};
use serde_json::Value;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A container: its own network namespace and a container ID, attached as `eth0`.
pub struct Ctr {
    /// The container's namespace.
    pub ns: Netns,
    /// CNI_CONTAINERID.
    pub id: String,
}

impl Ctr {
    /// A fresh container namespace (lo up) with a unique ID.
    pub fn new() -> Self {
        Ctr {
            ns: Netns::new("crc"),
            id: unique("id"),
        }
    }
    /// CNI_NETNS.
    pub fn path(&self) -> String {
        self.ns.path()
    }
    /// Global (non link-local) addresses on `eth0`.
    pub fn addrs(&self) -> Vec<String> {
        self.ns.global_addrs("eth0")
    }
    /// MAC of `eth0`.
    pub fn mac(&self) -> String {
        self.ns.link("eth0")["address"].as_str().unwrap().to_string()
    }
}

impl Default for Ctr {
    fn default() -> Self {
        Self::new()
    }
}

impl Node {
    /// Runs `plugin` `cmd` for `ctr` as `eth0`, with `extra` env (which may override the CNI_* ones).
    pub fn call(&self, plugin: &str, cmd: &str, ctr: &Ctr, conf: &Value, extra: &[(&str, &str)]) -> Outcome {
        let path = ctr.path();
        let mut env = vec![
            ("CNI_CONTAINERID", ctr.id.as_str()),
            ("CNI_NETNS", path.as_str()),
            ("CNI_IFNAME", "eth0"),
        ];
        env.extend_from_slice(extra);
        self.plugin(plugin, cmd, &env, &conf.to_string())
    }
    /// The bridge plugin, `cmd`, for `ctr`.
    pub fn bridge(&self, cmd: &str, ctr: &Ctr, conf: &Value) -> Outcome {
        self.call("bridge", cmd, ctr, conf, &[])
    }
    /// Bridge ADD that must succeed; returns the result.
    pub fn add(&self, ctr: &Ctr, conf: &Value) -> Value {
        self.bridge("ADD", ctr, conf).ok()
    }
    /// Full link details (`ip -d -j link show dev <name>`) in the node.
    pub fn link(&self, name: &str) -> Value {
        self.ns.link(name)
    }
}

impl Netns {
    /// A namespace with `lo` left down (loopback tests).
    pub fn bare(tag: &str) -> Self {
        let name = unique(tag);
        crate::sh("ip", &["netns", "add", &name]);
        Netns { name }
    }
    /// `ip -d -j link show dev <name>`, the one object.
    pub fn link(&self, name: &str) -> Value {
        let v = self.ip_json(&["-d", "link", "show", "dev", name]);
        v[0].clone()
    }
    /// Whether `name` is administratively up.
    pub fn is_up(&self, name: &str) -> bool {
        self.link(name)["flags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "UP")
    }
    /// Addresses on `link` with global scope.
    pub fn global_addrs(&self, link: &str) -> Vec<String> {
        let v = self.ip_json(&["addr", "show", "dev", link, "scope", "global"]);
        let mut out: Vec<String> = v[0]["addr_info"]
            .as_array()
            .map(|a| {
                // `ip -j` prints `{}` for each address the scope filter dropped.
                a.iter()
                    .filter_map(|i| Some(format!("{}/{}", i["local"].as_str()?, i["prefixlen"])))
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }
    /// Routes of both families as `dst via gw dev` strings (`default via 10.1.0.1 dev eth0`).
    pub fn routes(&self) -> Vec<String> {
        let mut out = Vec::new();
        for fam in ["-4", "-6"] {
            for r in self.ip_json(&[fam, "route", "show"]).as_array().unwrap() {
                let mut s = r["dst"].as_str().unwrap().to_string();
                if let Some(gw) = r["gateway"].as_str() {
                    s += &format!(" via {gw}");
                }
                if let Some(dev) = r["dev"].as_str() {
                    s += &format!(" dev {dev}");
                }
                out.push(s);
            }
        }
        out
    }
    /// A sysctl read inside this namespace (`net/ipv6/conf/eth0/accept_dad`).
    pub fn sysctl(&self, key: &str) -> String {
        self.run(&["cat", &format!("/proc/sys/{key}")]).trim().to_string()
    }
    /// Pings `to` until one reply arrives or `secs` pass (IPv6 addresses are tentative during DAD).
    pub fn ping_within(&self, to: &str, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if self.exec(&["ping", "-c1", "-W1", "-q", to]).status.success() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    /// One ping that must fail (within a second).
    pub fn ping_fails(&self, to: &str) -> bool {
        !self.exec(&["ping", "-c1", "-W1", "-q", to]).status.success()
    }
    /// Starts a one-shot TCP listener (`nc -l -v -n`) on `port` and waits until it listens.
    pub fn listen_tcp(&self, port: u16) -> Listener {
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.path()))
            .args(["nc", "-l", "-v", "-n", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let l = Listener { child };
        let deadline = Instant::now() + Duration::from_secs(5);
        let needle = format!(":{port} ");
        while !self.run(&["ss", "-ltnH"]).contains(&needle) {
            assert!(
                Instant::now() < deadline,
                "nc did not listen on {port} in {}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        l
    }
    /// Connects to `addr:port`, sends `msg` and closes; whether the connection was made.
    pub fn tcp_send(&self, addr: &str, port: u16, msg: &str) -> bool {
        let mut c = Command::new("nsenter")
            .arg(format!("--net={}", self.path()))
            .args(["nc", "-n", "-N", "-w", "2", addr, &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        c.stdin.take().unwrap().write_all(msg.as_bytes()).unwrap();
        c.wait().unwrap().success()
    }
}

/// A running `nc -l`; killed on drop if still running.
pub struct Listener {
    child: Child,
}

impl Listener {
    /// Waits (up to 5 s) for the single connection to end; returns (peer address, data received).
    pub fn finish(mut self) -> (String, String) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "nc listener never saw the connection end"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut out = String::new();
        let mut err = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        // OpenBSD nc -v: "Connection received on 192.168.200.1 41234"
        let peer = err
            .lines()
            .find_map(|l| l.strip_prefix("Connection received on "))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no peer in nc output: {err}"))
            .to_string();
        (peer, out)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
