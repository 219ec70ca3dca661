//! The launcher harness: a corrald started on a private socket and state dir inside a throwaway node namespace
//! (nsenter --net only), a busybox image built from the machine's busybox-static, and a guard that stops corrald,
//! kills containers, unmounts overlays and netns files, and deletes the node and temp dirs on every path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::{bin_dir, require_root, sh, unique, Netns};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A corrald on a private socket and state dir inside a throwaway node namespace; dropping it stops the daemon,
/// kills containers, unmounts what is left under its dir and removes it.
pub struct Launcher {
    /// The node namespace corrald runs in.
    pub node: Netns,
    /// Socket, state dir, logs and scratch files.
    pub dir: PathBuf,
    /// Where the built binaries are.
    pub bin: PathBuf,
    daemon: Option<Child>,
}

impl Launcher {
    /// Starts corrald (it starts a daemon, so it is not a `Default`).
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        require_root();
        let bin = bin_dir();
        assert!(
            bin.join("corrald").exists(),
            "corrald is missing: run `cargo build --workspace --bins`"
        );
        let dir = PathBuf::from(format!("/tmp/corral-launcher-{}", unique("t")));
        std::fs::create_dir_all(&dir).unwrap();
        let mut l = Launcher {
            node: Netns::new("lnode"),
            dir,
            bin,
            daemon: None,
        };
        l.start_daemon();
        l
    }
    pub fn sock(&self) -> PathBuf {
        self.dir.join("corral.sock")
    }
    pub fn state(&self) -> PathBuf {
        self.dir.join("state")
    }
    pub fn start_daemon(&mut self) {
        self.start_daemon_with_env(&[]);
    }
    /// Starts corrald with extra environment (`CORRAL_FAIL_AT` for the crash tests).
    pub fn start_daemon_with_env(&mut self, env: &[(&str, &str)]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("corrald.log"))
            .unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.node.path()))
            .arg(self.bin.join("corrald"))
            .arg("--socket")
            .arg(self.sock())
            .arg("--state-dir")
            .arg(self.state())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.daemon = Some(child);
        let end = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(self.sock()).is_err() {
            assert!(
                Instant::now() < end,
                "corrald did not come up: {}",
                self.daemon_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("corrald.log")).unwrap_or_default()
    }
    pub fn kill_daemon(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill(); // SIGKILL: nsenter execs corrald, so this is corrald itself.
            let _ = c.wait();
        }
    }
    /// Whether corrald ended by itself within `secs` (a crash point killed it); reaps it then.
    pub fn daemon_died_within(&mut self, secs: u64) -> bool {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            let exited = self
                .daemon
                .as_mut()
                .map(|c| c.try_wait().ok().flatten().is_some());
            if exited != Some(false) {
                self.daemon = None;
                return exited.is_some();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
    pub fn corral(&self, args: &[&str]) -> Output {
        Command::new(self.bin.join("corral"))
            .arg("-H")
            .arg(self.sock())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.corral(args);
        assert!(
            out.status.success(),
            "corral {args:?} failed ({:?}): {}{}\ncorrald log:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.daemon_log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    pub fn fails(&self, args: &[&str], needle: &str) {
        let out = self.corral(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "corral {args:?} should fail");
        assert!(err.contains(needle), "corral {args:?}: want {needle:?} in {err}");
    }
    /// A busybox rootfs (busybox-static and its applet links) imported as `bb:test`.
    pub fn image(&self) -> &'static str {
        let root = self.dir.join("rootfs");
        for d in ["bin", "etc", "tmp", "proc", "sys", "dev", "www"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
        for applet in sh("/bin/busybox", &["--list"]).lines() {
            if applet != "busybox" {
                let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
            }
        }
        let tar = self.dir.join("bb.tar.gz");
        sh(
            "tar",
            &["-C", root.to_str().unwrap(), "-czf", tar.to_str().unwrap(), "."],
        );
        self.ok(&["image", "import", tar.to_str().unwrap(), "bb:test"]);
        "bb:test"
    }
    pub fn inspect(&self, name: &str) -> Value {
        let v: Value = serde_json::from_str(&self.ok(&["inspect", name])).unwrap();
        v[0].clone()
    }
    pub fn mounts_under_dir(&self) -> Vec<String> {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| m.starts_with(self.dir.to_str().unwrap()))
            .collect()
    }
    /// Polls `inspect` until `ok` holds for the document (or panics after `secs`).
    pub fn inspect_until(&self, name: &str, secs: u64, ok: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let doc = self.inspect(name);
            if ok(&doc) {
                return doc;
            }
            assert!(Instant::now() < end, "{name}: condition not reached: {doc}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    /// The names of the volume dirs in the state dir.
    pub fn volume_dirs(&self) -> Vec<String> {
        std::fs::read_dir(self.state().join("volumes"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        self.kill_daemon();
        let containers = self.state().join("containers");
        for e in std::fs::read_dir(&containers).into_iter().flatten().flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            let root = self.state().join("runtime");
            for args in [
                vec!["kill", id.as_str(), "KILL"],
                vec!["delete", "--force", id.as_str()],
            ] {
                let _ = Command::new("runc").arg("--root").arg(&root).args(&args).output();
            }
            let rec: Value = std::fs::read(e.path().join("container.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            if let Some(pid) = rec["shim_pid"].as_i64() {
                let _ =
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::SIGKILL);
            }
        }
        for m in self.mounts_under_dir().iter().rev() {
            let _ = nix::mount::umount2(Path::new(m), nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
