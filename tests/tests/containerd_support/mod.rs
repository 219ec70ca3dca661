//! containerd driven as the kubelet drives it, inside a throwaway node namespace: a busybox OCI archive built
//! here and imported with `ctr`, a private containerd (root, state, sockets, runc root under the node's state
//! directory) started with `nsenter --net` so the CNI plugins it runs act inside the node, CNI binaries that
//! record every call containerd makes before running corral's plugin, and a guard that stops pods, kills
//! containerd, its shims and containers, unmounts and removes everything on every exit path.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod cri;

use corral_tests::{sh, wait_until, Node};
use cri::{Cri, Decoded, Msg};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The image (pause image and workload image at once).
pub const IMAGE: &str = "corral.test/busybox:e2e";
/// The pod subnet of the conflist.
pub const SUBNET: &str = "10.88.0.0/16";
pub const GATEWAY: &str = "10.88.0.1";
/// The plugins containerd calls directly (host-local is delegated to by bridge).
const WRAPPED: [&str; 4] = ["bridge", "portmap", "loopback", "host-device"];

fn hex_sha256(path: &Path) -> String {
    sh("sha256sum", &[path.to_str().unwrap()])
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Writes `content` as a blob of the OCI layout at `oci`; (digest, size).
fn blob(oci: &Path, content: &[u8]) -> (String, usize) {
    let tmp = oci.join("blob.tmp");
    std::fs::write(&tmp, content).unwrap();
    let d = hex_sha256(&tmp);
    std::fs::rename(&tmp, oci.join("blobs/sha256").join(&d)).unwrap();
    (format!("sha256:{d}"), content.len())
}

/// Builds a one-layer busybox OCI archive (`/bin/busybox` plus applet links; `sleep` forever by default, so it
/// also serves as the pause image) at `<dir>/image.tar`.
pub fn build_image(dir: &Path) -> PathBuf {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox is missing: apt-get install busybox-static");
    let rootfs = dir.join("rootfs");
    for d in ["bin", "tmp", "proc", "sys", "dev", "etc", "www"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "sleep", "nc", "httpd", "cat", "echo", "ip", "ls", "printf"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    std::fs::write(rootfs.join("www/index.html"), "corral-e2e-payload\n").unwrap();
    let oci = dir.join("oci");
    std::fs::create_dir_all(oci.join("blobs/sha256")).unwrap();
    let layer = dir.join("layer.tar");
    sh(
        "tar",
        &[
            "--numeric-owner",
            "--owner=0",
            "--group=0",
            "--sort=name",
            "--mtime=@0",
            "-C",
            rootfs.to_str().unwrap(),
            "-cf",
            layer.to_str().unwrap(),
            ".",
        ],
    );
    let layer_bytes = std::fs::read(&layer).unwrap();
    let (layer_digest, layer_size) = blob(&oci, &layer_bytes);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sleep", "2147483647"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    });
    let (config_digest, config_size) = blob(&oci, config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}],
    });
    let (m_digest, m_size) = blob(&oci, manifest.to_string().as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m_digest, "size": m_size,
                       "annotations": {"io.containerd.image.name": IMAGE, "org.opencontainers.image.ref.name": "e2e"}}],
    });
    std::fs::write(oci.join("index.json"), index.to_string()).unwrap();
    std::fs::write(oci.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let archive = dir.join("image.tar");
    sh(
        "tar",
        &["-C", oci.to_str().unwrap(), "-cf", archive.to_str().unwrap(), "."],
    );
    archive
}

/// A CNI directory for containerd: a recording wrapper per plugin containerd runs, which saves the call
/// (environment, stdin) and then runs corral's binary with the same arguments, environment and stdin,
/// saving its stdout, stderr and exit code; `host-local` is a link to corral's own, so bridge delegates to it
/// exactly as from corral's build directory.
fn wrapper_dir(dir: &Path, real: &Path, calls: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("cni-bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(calls).unwrap();
    for p in WRAPPED {
        let script = format!(
            "#!/bin/sh\n\
             # records one CNI call from the runtime, then runs corral's {p}\n\
             d={calls}/$(date +%s%N).$$\n\
             mkdir -p \"$d\"\n\
             echo {p} > \"$d/plugin\"\n\
             env > \"$d/env\"\n\
             cat > \"$d/stdin\"\n\
             {real} \"$@\" < \"$d/stdin\" > \"$d/stdout\" 2> \"$d/stderr\"\n\
             rc=$?\n\
             echo $rc > \"$d/rc\"\n\
             cat \"$d/stdout\"\n\
             cat \"$d/stderr\" >&2\n\
             exit $rc\n",
            calls = calls.display(),
            real = real.join(p).display(),
        );
        let path = bin.join(p);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::os::unix::fs::symlink(real.join("host-local"), bin.join("host-local")).unwrap();
    bin
}

/// One recorded CNI call.
#[derive(Debug, Clone)]
pub struct Call {
    /// Directory name: `<nanoseconds>.<pid>`, so calls sort by start time.
    pub key: String,
    pub plugin: String,
    /// CNI_* variables.
    pub env: Vec<(String, String)>,
    pub stdin: Value,
    pub stdout: String,
    pub stderr: String,
    /// Exit code (None while running).
    pub rc: Option<i32>,
}

impl Call {
    pub fn var(&self, k: &str) -> Option<&str> {
        self.env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }
    pub fn command(&self) -> &str {
        self.var("CNI_COMMAND").unwrap_or("")
    }
    /// `plugin VERB id netns=... cniVersion` for messages.
    pub fn summary(&self) -> String {
        format!(
            "{} {} cniVersion={} CNI_CONTAINERID={} CNI_NETNS={:?} CNI_IFNAME={} rc={:?} prevResult={}",
            self.plugin,
            self.command(),
            self.stdin["cniVersion"],
            self.var("CNI_CONTAINERID").unwrap_or(""),
            self.var("CNI_NETNS").unwrap_or(""),
            self.var("CNI_IFNAME").unwrap_or(""),
            self.rc,
            self.stdin.get("prevResult").is_some(),
        )
    }
}

/// Every call recorded in `calls`, in start order.
pub fn read_calls(calls: &Path) -> Vec<Call> {
    let mut keys: Vec<String> = std::fs::read_dir(calls)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    keys.sort_by_key(|k| {
        let (ns, pid) = k.split_once('.').unwrap_or((k, "0"));
        (ns.parse::<u128>().unwrap_or(0), pid.parse::<u32>().unwrap_or(0))
    });
    keys.into_iter()
        .map(|key| {
            let d = calls.join(&key);
            let read = |f: &str| std::fs::read_to_string(d.join(f)).unwrap_or_default();
            let env = read("env")
                .lines()
                .filter(|l| l.starts_with("CNI_"))
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Call {
                plugin: read("plugin").trim().to_string(),
                env,
                stdin: serde_json::from_str(&read("stdin")).unwrap_or(Value::Null),
                stdout: read("stdout"),
                stderr: read("stderr"),
                rc: read("rc").trim().parse().ok(),
                key,
            }
        })
        .collect()
}

/// A private containerd running in a node namespace.
pub struct Containerd {
    /// Everything of containerd's lives here.
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
    /// Where the recording wrappers put calls.
    pub calls: PathBuf,
    /// The CNI config directory.
    pub conf_dir: PathBuf,
    runc_root: PathBuf,
    child: Option<Child>,
    cri: Option<Cri>,
    /// Sandboxes created and not yet removed, stopped and removed on drop.
    sandboxes: Vec<String>,
    /// Pod network namespaces seen, removed on drop if containerd left them.
    pod_netns: Vec<String>,
    /// libcni's result cache files to remove on drop (prefixes under /var/lib/cni/results).
    pub cache_prefixes: Vec<String>,
    /// The pods' cgroup parent (`/corral-<node>`), removed from every hierarchy on drop.
    pub cgroup_parent: String,
}

fn ctrd_binary() -> &'static str {
    assert!(
        Command::new("containerd")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false),
        "containerd is missing: apt-get install containerd (Debian's containerd 1.6)"
    );
    assert!(
        Command::new("runc")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false),
        "runc is missing: apt-get install runc"
    );
    "containerd"
}

impl Containerd {
    /// Writes the config and the conflist, starts containerd in `node`'s namespace with `env`, waits for
    /// its socket, imports the image.
    pub fn start(node: &Node, conflist: &Value, env: &[(&str, &str)]) -> Self {
        let binary = ctrd_binary();
        let dir = node.state.join("containerd");
        std::fs::create_dir_all(&dir).unwrap();
        let calls = dir.join("cni-calls");
        let bin = wrapper_dir(&dir, &node.bin, &calls);
        let conf_dir = dir.join("net.d");
        std::fs::create_dir_all(&conf_dir).unwrap();
        std::fs::write(
            conf_dir.join("10-corral.conflist"),
            serde_json::to_string_pretty(conflist).unwrap(),
        )
        .unwrap();
        let socket = dir.join("containerd.sock");
        let runc_root = dir.join("runc");
        let d = dir.display();
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{IMAGE}"
  # the test runs as root with a negative oom_score_adj not allowed for containers here
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "{runc}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{bin}"
    conf_dir = "{conf}"
"#,
            sock = socket.display(),
            runc = runc_root.display(),
            bin = bin.display(),
            conf = conf_dir.display(),
        );
        let config_path = dir.join("config.toml");
        std::fs::write(&config_path, config).unwrap();
        let log = dir.join("containerd.log");
        let logf = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", node.ns.path()))
            .arg(binary)
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let mut c = Containerd {
            dir,
            socket,
            log,
            calls,
            conf_dir,
            runc_root,
            child: Some(child),
            cri: None,
            sandboxes: Vec::new(),
            pod_netns: Vec::new(),
            cache_prefixes: Vec::new(),
            cgroup_parent: format!("/corral-{}", node.ns.name),
        };
        let up = wait_until(20, || c.socket.exists() && Cri::connect(&c.socket).is_ok());
        assert!(up, "containerd did not come up:\n{}", c.log_tail());
        c.cri = Some(Cri::connect(&c.socket).unwrap());
        let v = c.call("Version", Msg::new().str(1, "v1"));
        eprintln!("containerd: {} {} (CRI {})", v.str(2), v.str(3), v.str(4));
        let archive = build_image(&c.dir);
        c.ctr(&["image", "import", archive.to_str().unwrap()]);
        c
    }

    /// The last lines of containerd's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// `ctr -a <socket> -n k8s.io ...`.
    pub fn ctr(&self, args: &[&str]) -> String {
        let mut a = vec!["-a", self.socket.to_str().unwrap(), "-n", "k8s.io"];
        a.extend_from_slice(args);
        sh("ctr", &a)
    }

    /// A CRI call that must succeed.
    pub fn call(&mut self, method: &str, req: Msg) -> Decoded {
        match self.try_call(method, req) {
            Ok(d) => d,
            Err(e) => panic!("CRI {e}\ncontainerd log:\n{}", self.log_tail()),
        }
    }

    pub fn try_call(&mut self, method: &str, req: Msg) -> Result<Decoded, String> {
        self.cri.as_mut().expect("connected").call(method, req)
    }

    /// RunPodSandbox; the sandbox id.
    pub fn run_pod(&mut self, config: Msg) -> String {
        let r = self.call("RunPodSandbox", Msg::new().msg(1, config));
        let id = r.str(1);
        assert!(!id.is_empty(), "RunPodSandbox returned no id");
        self.sandboxes.push(id.clone());
        id
    }

    /// PodSandboxStatus (verbose): (state, IP, netns path from the info's runtime spec).
    pub fn pod_status(&mut self, id: &str) -> (u64, String, String) {
        let r = self.call("PodSandboxStatus", Msg::new().str(1, id).int(2, 1));
        let status = r.msg(1);
        let ip = status.msg(5).str(1);
        let info = r
            .map(2)
            .into_iter()
            .find(|(k, _)| k == "info")
            .map(|(_, v)| v)
            .unwrap_or_default();
        let info: Value = serde_json::from_str(&info).unwrap_or(Value::Null);
        let netns = info["runtimeSpec"]["linux"]["namespaces"]
            .as_array()
            .and_then(|a| a.iter().find(|n| n["type"] == "network"))
            .and_then(|n| n["path"].as_str())
            .unwrap_or("")
            .to_string();
        if !netns.is_empty() && !self.pod_netns.contains(&netns) {
            self.pod_netns.push(netns.clone());
        }
        (status.int(3), ip, netns)
    }

    /// CreateContainer + StartContainer in a sandbox; the container id.
    pub fn start_container(&mut self, sandbox: &str, sandbox_config: Msg, config: Msg) -> String {
        let r = self.call(
            "CreateContainer",
            Msg::new().str(1, sandbox).msg(2, config).msg(3, sandbox_config),
        );
        let id = r.str(1);
        self.call("StartContainer", Msg::new().str(1, &id));
        id
    }

    /// ExecSync: (exit code, stdout, stderr).
    pub fn exec(&mut self, container: &str, cmd: &[&str], timeout: u64) -> (u64, String, String) {
        let mut m = Msg::new().str(1, container);
        for c in cmd {
            m = m.str(2, c);
        }
        let r = self.call("ExecSync", m.int(3, timeout));
        (
            r.int(3),
            String::from_utf8_lossy(r.all_bytes(1).last().copied().unwrap_or(b"")).into_owned(),
            String::from_utf8_lossy(r.all_bytes(2).last().copied().unwrap_or(b"")).into_owned(),
        )
    }

    pub fn stop_pod(&mut self, id: &str) {
        self.call("StopPodSandbox", Msg::new().str(1, id));
    }

    pub fn remove_pod(&mut self, id: &str) {
        self.call("RemovePodSandbox", Msg::new().str(1, id));
        self.sandboxes.retain(|s| s != id);
    }

    /// Recorded CNI calls so far.
    pub fn calls(&self) -> Vec<Call> {
        read_calls(&self.calls)
    }

    /// Stops containerd (SIGTERM, then SIGKILL after 5 s).
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // nsenter execs containerd, so the child's pid is containerd's.
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Pids whose command line mentions `needle` (containerd's shims name its socket).
fn pids_mentioning(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.filter_map(|e| e.ok()) {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(needle) {
                out.push(pid);
            }
        }
    }
    out
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("containerd log (last lines):\n{}", self.log_tail());
            for c in self.calls() {
                eprintln!("CNI call: {}\n  stdin: {}", c.summary(), c.stdin);
                if c.rc != Some(0) {
                    eprintln!("  stdout: {}\n  stderr: {}", c.stdout, c.stderr);
                }
            }
        }
        // As the kubelet would on pod deletion: stop and remove every sandbox still there.
        if self.cri.is_some() {
            for id in self.sandboxes.clone() {
                let _ = self.try_call("StopPodSandbox", Msg::new().str(1, &id));
                let _ = self.try_call("RemovePodSandbox", Msg::new().str(1, &id));
            }
        }
        self.cri = None;
        self.kill();
        // Containers and shims left behind (only when the removals above failed).
        let root = self.runc_root.join("k8s.io");
        if let Ok(out) = Command::new("runc")
            .arg("--root")
            .arg(&root)
            .args(["list", "-q"])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = Command::new("runc")
                    .arg("--root")
                    .arg(&root)
                    .args(["delete", "--force", id])
                    .output();
            }
        }
        for pid in pids_mentioning(&self.socket.display().to_string()) {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        // Mounts containerd or its shims left under our directory, deepest first.
        let prefix = self.dir.display().to_string();
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = Command::new("umount").args(["-l", &m]).status();
        }
        for ns in &self.pod_netns {
            if Path::new(ns).exists() {
                let _ = Command::new("umount").arg(ns).status();
                let _ = std::fs::remove_file(ns);
            }
        }
        for prefix in &self.cache_prefixes {
            if let Ok(rd) = std::fs::read_dir("/var/lib/cni/results") {
                for e in rd.filter_map(|e| e.ok()) {
                    if e.file_name().to_string_lossy().starts_with(prefix.as_str()) {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        }
        // The pods' (now empty) parent cgroup in every hierarchy (cgroup v1 controllers and the unified one).
        if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
            for e in rd.filter_map(|e| e.ok()) {
                let dir = e.path().join(self.cgroup_parent.trim_start_matches('/'));
                if dir.is_dir() {
                    let _ = std::fs::remove_dir(&dir);
                }
            }
        }
        let _ =
            std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(self.cgroup_parent.trim_start_matches('/')));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
