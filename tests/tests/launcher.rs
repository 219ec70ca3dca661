//! corrald and the `corral` launcher verbs end to end: a daemon started by each test on a private socket and
//! state dir inside a throwaway node namespace (nsenter --net only), a busybox image built from the machine's
//! busybox-static, containers run by runc on a corral network through corral's plugins. Guards stop corrald,
//! kill containers, unmount overlays and netns files, and delete the node and temp dirs on every path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use corral_tests::{bin_dir, require_root, sh, unique, Netns};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Launcher {
    node: Netns,
    dir: PathBuf,
    bin: PathBuf,
    daemon: Option<Child>,
}

impl Launcher {
    fn new() -> Self {
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
    fn sock(&self) -> PathBuf {
        self.dir.join("corral.sock")
    }
    fn state(&self) -> PathBuf {
        self.dir.join("state")
    }
    fn start_daemon(&mut self) {
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
    fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("corrald.log")).unwrap_or_default()
    }
    fn kill_daemon(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill(); // SIGKILL: nsenter execs corrald, so this is corrald itself.
            let _ = c.wait();
        }
    }
    fn corral(&self, args: &[&str]) -> Output {
        Command::new(self.bin.join("corral"))
            .arg("-H")
            .arg(self.sock())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
    fn ok(&self, args: &[&str]) -> String {
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
    fn fails(&self, args: &[&str], needle: &str) {
        let out = self.corral(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "corral {args:?} should fail");
        assert!(err.contains(needle), "corral {args:?}: want {needle:?} in {err}");
    }
    /// A busybox rootfs (busybox-static and its applet links) imported as `bb:test`.
    fn image(&self) -> &'static str {
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
    fn inspect(&self, name: &str) -> Value {
        let v: Value = serde_json::from_str(&self.ok(&["inspect", name])).unwrap();
        v[0].clone()
    }
    fn mounts_under_dir(&self) -> Vec<String> {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| m.starts_with(self.dir.to_str().unwrap()))
            .collect()
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

#[test]
fn imports_an_image_and_run_returns_the_exit_code() {
    let l = Launcher::new();
    let img = l.image();
    let ls = l.ok(&["image", "ls"]);
    assert!(ls.contains("bb:test"), "{ls}");
    assert_eq!(l.corral(&["run", "--rm", img, "true"]).status.code(), Some(0));
    let out = l.corral(&["run", "--rm", img, "sh", "-c", "echo out-line; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("out-line"),
        "{out:?}"
    );
    // --rm left nothing behind.
    assert_eq!(l.ok(&["ps", "-a"]).lines().count(), 1);
    assert!(l.mounts_under_dir().is_empty(), "{:?}", l.mounts_under_dir());
}

#[test]
fn web_server_with_published_port_is_reachable_and_rm_cleans_up() {
    let l = Launcher::new();
    let img = l.image();
    let www = l.dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "hello from corral\n").unwrap();
    let bind = format!("{}:/www:ro", www.display());
    let id = l.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "8080:80",
        "-v",
        &bind,
        img,
        "sh",
        "-c",
        "echo web-started; exec httpd -f -p 80 -h /www",
    ]);
    let id = id.trim();
    assert_eq!(id.len(), 64, "{id}");

    // Reachable from the node through the published port.
    let end = Instant::now() + Duration::from_secs(10);
    let page = loop {
        let out = l
            .node
            .exec(&["curl", "-s", "--max-time", "2", "http://127.0.0.1:8080/"]);
        if out.status.success() || Instant::now() > end {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(page, "hello from corral\n");

    // inspect: IP and ports; a second container reaches the first by IP.
    let doc = l.inspect("web");
    let ip = doc["NetworkSettings"]["IPAddress"].as_str().unwrap().to_string();
    assert!(ip.starts_with("10.88."), "{doc}");
    assert_eq!(doc["NetworkSettings"]["Ports"][0], "8080->80/tcp");
    assert_eq!(doc["State"]["Status"], "running");
    let fetch = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc {ip} 80");
    let out = l.ok(&["run", "--rm", img, "sh", "-c", &fetch]);
    assert!(out.contains("hello from corral"), "{out}");

    let ps = l.ok(&["ps"]);
    assert!(
        ps.contains("web") && ps.contains("Up") && ps.contains("8080->80/tcp"),
        "{ps}"
    );
    assert!(l.ok(&["logs", "web"]).contains("web-started"));
    let nat = l.ok(&["list-nat"]);
    assert!(
        nat.contains("NAME") && nat.lines().any(|r| r.contains("8080") && r.contains(" web ")),
        "{nat}"
    );

    // stop records the exit code (httpd as PID 1 ignores TERM: KILL after the timeout).
    l.ok(&["stop", "-t", "1", "web"]);
    let doc = l.inspect("web");
    assert_eq!(doc["State"]["Status"], "exited");
    assert_eq!(doc["State"]["ExitCode"], 137, "{doc}");

    // rm: overlay dirs, netns, veth, IPAM reservation and NAT mapping are gone.
    l.ok(&["rm", "web"]);
    assert!(!l.state().join("containers").join(id).exists());
    assert!(!l.state().join("netns").join(id).exists());
    assert!(l.mounts_under_dir().is_empty(), "{:?}", l.mounts_under_dir());
    let veths = l.node.ip_json(&["link", "show", "type", "veth"]);
    assert_eq!(veths.as_array().map(Vec::len), Some(0), "{veths}");
    assert!(
        !l.state().join("ipam/corral").join(&ip).exists(),
        "IPAM reservation of {ip} left"
    );
    let nat: Value = serde_json::from_str(&l.ok(&["list-nat", "--json"])).unwrap();
    assert_eq!(nat["dnat"].as_array().map(Vec::len), Some(0), "{nat}");
    assert_eq!(nat["snat"].as_array().map(Vec::len), Some(0), "{nat}");
}

#[test]
fn containers_survive_a_corrald_kill_and_restart() {
    let mut l = Launcher::new();
    let img = l.image();
    l.ok(&["run", "-d", "--name", "sleeper", img, "sleep", "1000"]);
    l.kill_daemon();
    std::thread::sleep(Duration::from_millis(300));
    l.start_daemon();
    let ps = l.ok(&["ps"]);
    assert!(ps.contains("sleeper") && ps.contains("Up"), "{ps}");
    l.ok(&["stop", "-t", "1", "sleeper"]);
    let doc = l.inspect("sleeper");
    assert_eq!(doc["State"]["Status"], "exited", "{doc}");
    assert_eq!(doc["State"]["ExitCode"], 137, "{doc}");
    l.ok(&["rm", "sleeper"]);
    assert!(l.mounts_under_dir().is_empty(), "{:?}", l.mounts_under_dir());
}

#[test]
fn bad_input_is_refused_and_creates_nothing() {
    let l = Launcher::new();
    let img = l.image();
    l.fails(&["run", "--rm", "nosuch:image", "true"], "no such image");
    l.ok(&["run", "-d", "--name", "taken", img, "sleep", "1000"]);
    l.fails(&["run", "--name", "taken", img, "true"], "already in use");
    l.fails(&["run", "-p", "80", img, "true"], "-p 80");
    l.fails(
        &["run", "-v", "/nonexistent/corral:/x", img, "true"],
        "bind source path does not exist",
    );
    l.fails(&["run", "--net", "nosuchnet", img, "true"], "no such network");
    let ps = l.ok(&["ps", "-a"]);
    assert_eq!(ps.lines().count(), 2, "{ps}");
    let netns: Vec<_> = std::fs::read_dir(l.state().join("netns")).unwrap().collect();
    assert_eq!(netns.len(), 1);
    l.ok(&["rm", "-f", "taken"]);
    assert!(l.mounts_under_dir().is_empty());
    // A network in use cannot be removed; an unused one can.
    l.ok(&["network", "create", "other"]);
    let ls = l.ok(&["network", "ls"]);
    assert!(ls.contains("other") && ls.contains("10.89.0.0/16"), "{ls}");
    l.ok(&[
        "run", "-d", "--name", "user", "--net", "other", img, "sleep", "1000",
    ]);
    l.fails(&["network", "rm", "other"], "in use");
    l.ok(&["rm", "-f", "user"]);
    l.ok(&["network", "rm", "other"]);
}
