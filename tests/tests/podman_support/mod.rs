//! A private rootful Podman 4.x (CNI backend) inside a throwaway node namespace, for the end-to-end suite.
//!
//! Every podman command runs as `nsenter --net=<node> timeout 60 podman ...` with a cleared environment that
//! points podman at private files only:
//! - `CONTAINERS_CONF`: CNI backend, corral's binaries as the only plugin directory, a private
//!   `network_config_dir`, runc (crun 1.8 refuses this machine's hybrid cgroup layout), cgroupfs, lowered
//!   default rlimits (runc may not raise nproc/nofile here), file events and file locks under a private
//!   `tmp_dir` (no `/run/libpod`, no `/dev/shm/libpod_lock`), and `CORRAL_STATE_DIR` in `conmon_env_vars` so
//!   the DEL that conmon's exit command (`podman container cleanup`) runs sees the same corral state as the ADD;
//! - `CONTAINERS_STORAGE_CONF`: vfs graphroot/runroot under the private directory;
//! - `CONTAINERS_REGISTRIES_CONF`: an empty file.
//!
//! Containers run from a local busybox rootfs (`--rootfs`), so nothing is pulled and no image is imported
//! (`podman import` writes `/var/lib/containers/cache/blob-info-cache-v1.boltdb` whatever storage.conf says).
//! The guard removes the containers, their namespaces, libcni's cached results for the network and the
//! private directories on every path, then the node namespace goes with the `Node`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use corral_tests::{unique, Node};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The PATH podman, conmon and the plugins get.
pub const SYS_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Where libcni (inside podman) caches ADD results; not configurable in podman 4.3.
pub const CNI_CACHE: &str = "/var/lib/cni/results";
/// corral's default state directory, which the plugins must never fall back to here.
pub const CORRAL_DEFAULT_STATE: &str = "/var/lib/corral";
/// host-local's default dataDir.
pub const HOST_LOCAL_DEFAULT: &str = "/var/lib/cni/networks";
/// The subnet of the test network (private to the node namespace).
pub const SUBNET: &str = "10.89.0.0/24";
pub const GW: &str = "10.89.0.1";

/// Fails the test (never skips it) when podman is missing.
pub fn require_podman() -> String {
    let out = Command::new("podman").arg("--version").output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => panic!(
            "podman is not installed: the Podman end-to-end test needs Debian's podman 4.x \
             (`apt-get install podman busybox-static runc`, see docs/podman.md)"
        ),
    }
}

/// A private podman in a node namespace, with one corral network written by hand.
pub struct Podman {
    /// The node: namespace, private corral state (CORRAL_STATE_DIR, IPAM dataDir), plugin directory.
    pub node: Node,
    /// Private podman directory (configs, storage, run, tmp, rootfs copies).
    pub root: PathBuf,
    /// CNI network name (unique).
    pub net: String,
    /// Bridge name (unique).
    pub bridge: String,
    /// Container netns paths seen (removed by the guard if podman left them).
    sandboxes: std::cell::RefCell<Vec<String>>,
}

impl Podman {
    /// Node, private config, and the conflist `<net>.conflist` (bridge + host-local + portmap, as written for
    /// the reference plugins).
    pub fn new() -> Self {
        let p = Self::bare(&[]);
        p.write_conflist();
        p
    }

    /// Without a conflist: the network is to be made with `podman network create`, which writes one with
    /// `firewall` and `tuning` after portmap; those two are not corral's, so `extra_dirs` (e.g. `/usr/lib/cni`)
    /// follow corral's directory in `cni_plugin_dirs` (libcni takes the first directory holding a type).
    pub fn generated(extra_dirs: &[&str]) -> Self {
        Self::bare(extra_dirs)
    }

    fn bare(extra_dirs: &[&str]) -> Self {
        let node = Node::new();
        let root = node
            .state
            .with_file_name(format!("corral-podman-{}", node.ns.name));
        for d in ["cni/net.d", "storage", "run", "tmp", "home"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let net = unique("crpm");
        let bridge = unique("crpb");
        let p = Podman {
            node,
            root,
            net,
            bridge,
            sandboxes: Default::default(),
        };
        p.write_configs(extra_dirs);
        p
    }

    fn write_configs(&self, extra_dirs: &[&str]) {
        let r = self.root.display();
        let state = self.node.state.display();
        let bin = self.node.bin.canonicalize().unwrap();
        let mut dirs = vec![format!("{:?}", bin.display().to_string())];
        dirs.extend(extra_dirs.iter().map(|d| format!("{d:?}")));
        // The hand-written network is the default; a generated one is named on each `run`.
        let default_net = if extra_dirs.is_empty() {
            format!("default_network = {:?}\n", self.net)
        } else {
            String::new()
        };
        let conf = format!(
            r#"[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{r}/events.log"
tmp_dir = "{r}/tmp"
lock_type = "file"
conmon_env_vars = ["PATH={SYS_PATH}", "CORRAL_STATE_DIR={state}"]

[network]
network_backend = "cni"
cni_plugin_dirs = [{dirs}]
network_config_dir = "{r}/cni/net.d"
{default_net}"#,
            dirs = dirs.join(", "),
        );
        std::fs::write(self.root.join("containers.conf"), conf).unwrap();
        let storage =
            format!("[storage]\ndriver = \"vfs\"\ngraphroot = \"{r}/storage\"\nrunroot = \"{r}/run\"\n");
        std::fs::write(self.root.join("storage.conf"), storage).unwrap();
        std::fs::write(self.root.join("registries.conf"), "").unwrap();
    }

    fn write_conflist(&self) {
        let list = json!({
            "cniVersion": "1.0.0",
            "name": self.net,
            "plugins": [
                {"type": "bridge", "bridge": self.bridge, "isGateway": true, "ipMasq": true, "hairpinMode": true,
                 "ipam": {"type": "host-local", "dataDir": self.node.data_dir(),
                          "ranges": [[{"subnet": SUBNET}]], "routes": [{"dst": "0.0.0.0/0"}]}},
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        });
        std::fs::write(
            self.root.join("cni/net.d").join(format!("{}.conflist", self.net)),
            serde_json::to_string_pretty(&list).unwrap(),
        )
        .unwrap();
    }

    /// A fresh busybox rootfs for one container (Debian's static /bin/busybox and its applet links), serving
    /// `payload` from /www/index.html.
    pub fn rootfs(&self, name: &str, payload: &str) -> PathBuf {
        let dir = self.root.join(format!("rootfs-{name}"));
        for d in ["bin", "etc", "tmp", "proc", "sys", "dev", "www"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let busybox = Path::new("/bin/busybox");
        assert!(
            busybox.exists(),
            "/bin/busybox is missing: install busybox-static (a static busybox runs inside the container)"
        );
        std::fs::copy(busybox, dir.join("bin/busybox")).unwrap();
        let list = crate_sh(&["/bin/busybox", "--list"]);
        for applet in list
            .lines()
            .map(str::trim)
            .filter(|a| !a.is_empty() && *a != "busybox")
        {
            let _ = std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet));
        }
        std::fs::write(dir.join("www/index.html"), format!("{payload}\n")).unwrap();
        dir
    }

    /// The podman command line (inside the node namespace, private environment), not run yet.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let r = &self.root;
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.node.ns.path()))
            .args(["timeout", "60", "podman"])
            .args(args)
            .env_clear()
            .env("PATH", SYS_PATH)
            .env("HOME", r.join("home"))
            .env("TMPDIR", r.join("tmp"))
            .env("CONTAINERS_CONF", r.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", r.join("storage.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", r.join("registries.conf"))
            .env("CORRAL_STATE_DIR", &self.node.state)
            .stdin(Stdio::null());
        c
    }

    /// Runs podman; the raw output.
    pub fn exec(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs podman, asserting success; stdout.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.exec(args);
        assert!(
            out.status.success(),
            "podman {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `podman run -d --name <name> --network <net> --rootfs <fresh rootfs> <extra...> <cmd...>`; the
    /// container's inspect object.
    pub fn start(&self, name: &str, payload: &str, extra: &[&str], cmd: &[&str]) -> Value {
        let rootfs = self.rootfs(name, payload);
        let rootfs = rootfs.to_str().unwrap();
        let mut args = vec!["run", "-d", "--name", name, "--network", &self.net];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--rootfs", rootfs]);
        args.extend_from_slice(cmd);
        self.run(&args);
        self.inspect(name)
    }

    /// `podman inspect <name>`, the one object; remembers its network namespace for the guard.
    pub fn inspect(&self, name: &str) -> Value {
        let v: Value = serde_json::from_str(&self.run(&["inspect", name])).unwrap();
        let c = v[0].clone();
        if let Some(sb) = c["NetworkSettings"]["SandboxKey"].as_str() {
            if !sb.is_empty() && !self.sandboxes.borrow().iter().any(|s| s == sb) {
                self.sandboxes.borrow_mut().push(sb.to_string());
            }
        }
        c
    }

    /// The container's address on the corral network.
    pub fn ip(&self, c: &Value) -> String {
        c["NetworkSettings"]["Networks"][&self.net]["IPAddress"]
            .as_str()
            .unwrap_or_else(|| panic!("no address on {} in {}", self.net, c["NetworkSettings"]))
            .to_string()
    }

    /// IP files reserved for the network in host-local's default dataDir (podman-generated conflists).
    pub fn default_reserved_ips(&self) -> Vec<String> {
        let dir = Path::new(HOST_LOCAL_DEFAULT).join(&self.net);
        let mut v: Vec<String> = std::fs::read_dir(dir)
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

    /// Container network namespaces podman created (so far seen by `inspect`).
    pub fn sandboxes(&self) -> Vec<String> {
        self.sandboxes.borrow().clone()
    }

    /// `corral list-nat --json --network <net>` in the node, with the node's private state.
    pub fn list_nat(&self) -> Value {
        let bin = self.node.bin.join("corral");
        assert!(
            bin.exists(),
            "{} is missing: run `cargo build --workspace --bins`",
            bin.display()
        );
        let state = format!("CORRAL_STATE_DIR={}", self.node.state.display());
        let out = self.node.ns.run(&[
            "env",
            &state,
            bin.to_str().unwrap(),
            "list-nat",
            "--json",
            "--network",
            &self.net,
        ]);
        serde_json::from_str(&out).unwrap()
    }

    /// Comments of every element of corral's nft tables in the node owned by this network, per set/map name.
    pub fn nft_elements(&self) -> Vec<(String, String)> {
        let rs = self.node.ns.nft_ruleset();
        let prefix = format!("{}/", self.net);
        let mut out = Vec::new();
        for item in rs["nftables"].as_array().unwrap() {
            let Some(obj) = item.get("set").or_else(|| item.get("map")) else {
                continue;
            };
            let set = obj["name"].as_str().unwrap_or("").to_string();
            for e in obj["elem"].as_array().into_iter().flatten() {
                let text = e.to_string();
                if text.contains(&format!("\"comment\":\"{prefix}")) {
                    out.push((set.clone(), text));
                }
            }
        }
        out
    }

    /// libcni's cached results for this network (`<net>-<id>-<ifname>` under /var/lib/cni/results).
    pub fn cni_cache(&self) -> Vec<String> {
        let prefix = format!("{}-", self.net);
        std::fs::read_dir(CNI_CACHE)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&prefix))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Default for Podman {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Containers first (their DEL runs the plugins in the node), then whatever podman left behind.
        let _ = self.cmd(&["rm", "-a", "-f", "-t", "0"]).output();
        for sb in self.sandboxes.borrow().iter() {
            if Path::new(sb).exists() {
                if let Some(name) = Path::new(sb).file_name().and_then(|n| n.to_str()) {
                    let _ = Command::new("ip").args(["netns", "del", name]).status();
                }
            }
        }
        for f in self.cni_cache() {
            let _ = std::fs::remove_file(Path::new(CNI_CACHE).join(f));
        }
        // The network name is unique, so anything under the default state for it is this test's leak.
        let _ = std::fs::remove_dir_all(Path::new(CORRAL_DEFAULT_STATE).join("nat").join(&self.net));
        // host-local's default dataDir, used by conflists that `podman network create` writes.
        let _ = std::fs::remove_dir_all(Path::new(HOST_LOCAL_DEFAULT).join(&self.net));
        unmount_under(&self.root);
        if std::fs::remove_dir_all(&self.root).is_err() {
            unmount_under(&self.root);
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// Lazily unmounts every mount point under `dir` (deepest first): shm or bind mounts of a container podman
/// could not clean up.
fn unmount_under(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.display().to_string();
    let mut points: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    points.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in points {
        let _ = Command::new("umount").args(["-l", m]).status();
    }
}

fn crate_sh(cmd: &[&str]) -> String {
    corral_tests::sh(cmd[0], &cmd[1..])
}

/// An HTTP/1.0 GET with OpenBSD nc from the node namespace to `addr:port`, retried until the reply contains
/// `want` or `secs` pass; the last reply.
pub fn http_from_node(node: &Node, addr: &str, port: u16, want: &str, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let mut child = Command::new("nsenter")
            .arg(format!("--net={}", node.ns.path()))
            .args(["nc", "-n", "-w", "2", addr, &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let _ = child.stdin.take().unwrap().write_all(b"GET / HTTP/1.0\r\n\r\n");
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains(want) || Instant::now() >= deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The same GET with busybox nc from inside container `name` (`podman exec`), retried like `http_from_node`.
pub fn http_from_ctr(pm: &Podman, name: &str, addr: &str, port: u16, want: &str, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let script = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {addr} {port}");
    loop {
        let out = pm.exec(&["exec", name, "sh", "-c", &script]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if text.contains(want) || Instant::now() >= deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What the machine's own network and podman state look like: links and nft tables of the root namespace,
/// and which podman/corral state paths exist.
#[derive(Debug, PartialEq, Eq)]
pub struct RootState {
    pub links: Vec<String>,
    pub nft_tables: Vec<String>,
    pub paths: Vec<(String, bool)>,
}

impl RootState {
    pub fn take(net: &str) -> Self {
        let links: Value = serde_json::from_str(&crate_sh(&["ip", "-j", "link", "show"])).unwrap();
        let mut links: Vec<String> = links
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l["ifname"].as_str().map(str::to_string))
            .collect();
        links.sort();
        let tables: Value = serde_json::from_str(&crate_sh(&["nft", "-j", "list", "tables"])).unwrap();
        let mut nft_tables: Vec<String> = tables["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| {
                let t = t.get("table")?;
                Some(format!("{} {}", t["family"].as_str()?, t["name"].as_str()?))
            })
            .collect();
        nft_tables.sort();
        let paths = [
            "/var/lib/containers".to_string(),
            "/run/containers".to_string(),
            "/run/libpod".to_string(),
            format!("{CORRAL_DEFAULT_STATE}/nat/{net}"),
            format!("{HOST_LOCAL_DEFAULT}/{net}"),
        ]
        .into_iter()
        .map(|p| {
            let e = Path::new(&p).exists();
            (p, e)
        })
        .collect();
        RootState {
            links,
            nft_tables,
            paths,
        }
    }
}
