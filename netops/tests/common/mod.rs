//! Throwaway network namespaces for root tests: every test works only inside namespaces it creates here, and
//! the guard deletes them on every path (including panics).

#![allow(dead_code)]

use std::fs::File;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use corral_netops::open_netns;

static COUNTER: AtomicUsize = AtomicUsize::new(0);
/// `ip netns add` sets up the /run/netns mount on first use; keep concurrent creations from racing on it.
static CREATE: Mutex<()> = Mutex::new(());

/// A named netns under /run/netns, deleted on drop.
pub struct TestNetns {
    pub name: String,
    pub file: File,
}

impl TestNetns {
    pub fn new(role: &str) -> Self {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "netops root tests need root to create network namespaces"
        );
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("corral-nt-{}-{n}-{role}", std::process::id());
        {
            let _lock = CREATE.lock().unwrap_or_else(|e| e.into_inner());
            run("ip", &["netns", "add", &name]);
        }
        let file = open_netns(format!("/run/netns/{name}")).unwrap();
        TestNetns { name, file }
    }

    /// Runs `ip -n <ns> ARGS` and returns its stdout; panics with stderr on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// `ip -d -j link show dev NAME`, parsed.
    pub fn link_json(&self, dev: &str) -> serde_json::Value {
        let out = self.ip(&["-d", "-j", "link", "show", "dev", dev]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v[0].clone()
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
