//! Harness for corral's root integration tests: throwaway *node* namespaces that play the host, container
//! namespaces beside them, and the real plugin binaries run inside the node namespace. Every object is named
//! uniquely per test and removed by a guard on drop, so tests run in parallel and leave nothing behind.
//!
//! Plugins are started with `nsenter --net=<node>`: it enters only the network namespace (unlike
//! `ip netns exec`, which also gives the child a private mount namespace and so hides container namespaces
//! created under /run/netns).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod churn;
pub mod conf;
pub mod ctr;
pub mod launcher;
pub mod state;

pub use ctr::{Ctr, Listener};
pub use state::Snapshot;

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A unique short name: `<tag><pid-base36><n>`, at most 15 characters so it can also name a link.
pub fn unique(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let pid = radix36(std::process::id() as usize);
    let mut s = format!("{tag}{pid}x{}", radix36(n));
    s.truncate(15);
    s
}

fn radix36(mut n: usize) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(digits[n % 36]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap()
}

/// Fails the test (never skips it) when not root.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "corral's integration tests create network namespaces and must run as root"
    );
}

/// Where the plugin binaries are: `CORRAL_BIN_DIR`, else the workspace's target/debug.
pub fn bin_dir() -> PathBuf {
    let dir = std::env::var_os("CORRAL_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug"));
    for b in ["bridge", "host-local", "loopback"] {
        assert!(
            dir.join(b).exists(),
            "plugin binary {} is missing: run `cargo build --workspace --bins` first",
            dir.join(b).display()
        );
    }
    dir
}

/// Runs a command, returns stdout; panics with stderr on failure.
pub fn sh(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A named network namespace, deleted on drop.
pub struct Netns {
    /// Name under /run/netns.
    pub name: String,
}

impl Netns {
    /// Creates `/run/netns/<unique(tag)>` with `lo` up.
    pub fn new(tag: &str) -> Self {
        let name = unique(tag);
        sh("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }
    /// The nsfs path.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }
    /// `ip -n <ns> ...`, stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut a = vec!["-n", &self.name];
        a.extend_from_slice(args);
        sh("ip", &a)
    }
    /// `ip -j -n <ns> ...` parsed.
    pub fn ip_json(&self, args: &[&str]) -> Value {
        let mut a = vec!["-j", "-n", &self.name];
        a.extend_from_slice(args);
        let out = sh("ip", &a);
        if out.trim().is_empty() {
            Value::Array(vec![])
        } else {
            serde_json::from_str(&out).unwrap()
        }
    }
    /// Runs a command inside this namespace (network only); returns the raw output.
    pub fn exec(&self, cmd: &[&str]) -> std::process::Output {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path())).args(cmd);
        c.output().unwrap()
    }
    /// Like `exec`, asserting success; returns stdout.
    pub fn run(&self, cmd: &[&str]) -> String {
        let out = self.exec(cmd);
        assert!(
            out.status.success(),
            "{cmd:?} in {} failed: {}{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    /// Whether a link exists here.
    pub fn has_link(&self, name: &str) -> bool {
        let out = Command::new("ip")
            .args(["-n", &self.name, "link", "show", name])
            .output()
            .unwrap();
        out.status.success()
    }
    /// Addresses (CIDR strings) on a link.
    pub fn addrs(&self, link: &str) -> Vec<String> {
        let v = self.ip_json(&["addr", "show", "dev", link]);
        v[0]["addr_info"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|i| format!("{}/{}", i["local"].as_str().unwrap(), i["prefixlen"]))
                    .collect()
            })
            .unwrap_or_default()
    }
    /// `nft -j list ruleset` inside this namespace.
    pub fn nft_ruleset(&self) -> Value {
        serde_json::from_str(&self.run(&["nft", "-j", "list", "ruleset"])).unwrap()
    }
    /// `ping -c1` from this namespace.
    pub fn ping(&self, to: &str) -> bool {
        self.exec(&["ping", "-c1", "-W2", "-q", to]).status.success()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// What a plugin invocation printed.
#[derive(Debug)]
pub struct Outcome {
    /// Exit status code.
    pub status: i32,
    /// Stdout parsed as JSON (Null when empty).
    pub json: Value,
    /// Stderr.
    pub stderr: String,
}

impl Outcome {
    /// Asserts success and returns the JSON.
    pub fn ok(self) -> Value {
        assert_eq!(self.status, 0, "plugin failed: {} {}", self.json, self.stderr);
        self.json
    }
    /// Asserts failure with `code` and a message containing `needle`; returns the message.
    pub fn err(self, code: u64, needle: &str) -> String {
        assert_ne!(self.status, 0, "plugin unexpectedly succeeded: {}", self.json);
        assert_eq!(
            self.json["code"], code,
            "wrong code: {} {}",
            self.json, self.stderr
        );
        let msg = format!(
            "{} {}",
            self.json["msg"].as_str().unwrap_or(""),
            self.json["details"].as_str().unwrap_or("")
        );
        assert!(msg.contains(needle), "message {msg:?} lacks {needle:?}");
        assert!(
            self.json["cniVersion"].is_string(),
            "error without cniVersion: {}",
            self.json
        );
        msg
    }
}

/// A node: a namespace playing the host, and a private state directory (IPAM dataDir, NAT records).
pub struct Node {
    /// The node's namespace.
    pub ns: Netns,
    /// Private state root, removed on drop.
    pub state: PathBuf,
    /// Directory holding the plugins (CNI_PATH).
    pub bin: PathBuf,
}

impl Node {
    /// A fresh node namespace and state directory.
    pub fn new() -> Self {
        require_root();
        let bin = bin_dir();
        let ns = Netns::new("crn");
        let state = std::env::temp_dir().join(format!("corral-test-{}", ns.name));
        std::fs::create_dir_all(&state).unwrap();
        Node { ns, state, bin }
    }

    /// The IPAM dataDir to put in configs.
    pub fn data_dir(&self) -> String {
        self.state.join("ipam").display().to_string()
    }

    /// Runs `plugin` (a binary in `bin`, or an absolute path) inside the node namespace.
    pub fn plugin(&self, plugin: &str, cmd: &str, env: &[(&str, &str)], stdin: &str) -> Outcome {
        self.plugin_in(&self.bin, plugin, cmd, env, stdin)
    }

    /// Like `plugin`, with a given CNI_PATH directory (the reference plugins in benchmarks and comparisons).
    pub fn plugin_in(
        &self,
        dir: &Path,
        plugin: &str,
        cmd: &str,
        env: &[(&str, &str)],
        stdin: &str,
    ) -> Outcome {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.ns.path()))
            .arg(dir.join(plugin))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CNI_COMMAND", cmd)
            .env("CNI_PATH", dir)
            .env("CORRAL_STATE_DIR", &self.state)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let json = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad JSON from {plugin}: {e}: {text}"))
        };
        Outcome {
            status: out.status.code().unwrap_or(-1),
            json,
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        }
    }

    /// ADD/DEL/CHECK for one container namespace with CNI_IFNAME `eth0`.
    pub fn attach(&self, plugin: &str, cmd: &str, id: &str, netns: &str, conf: &str) -> Outcome {
        self.plugin(
            plugin,
            cmd,
            &[
                ("CNI_CONTAINERID", id),
                ("CNI_NETNS", netns),
                ("CNI_IFNAME", "eth0"),
            ],
            conf,
        )
    }

    /// IP files currently reserved in the node's IPAM store for `network`.
    pub fn reserved_ips(&self, network: &str) -> Vec<String> {
        let dir = self.state.join("ipam").join(network);
        let mut v: Vec<String> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

impl Default for Node {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// Links in `ns` whose name starts with `veth` (leak checks).
pub fn veths(ns: &Netns) -> Vec<String> {
    ns.ip_json(&["link", "show"])
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["ifname"].as_str())
        .filter(|n| n.starts_with("veth"))
        .map(str::to_string)
        .collect()
}

/// Polls `cond` every 50 ms until it holds or `secs` pass; whether it held (the kernel tears a deleted
/// namespace down asynchronously, so its veths vanish a little later).
pub fn wait_until(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
