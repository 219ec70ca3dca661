//! Shared helpers for the root tests: a throwaway network namespace that runs nft only inside itself.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use corral_nat::{NatManager, NftCli};
use serde_json::Value;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A named netns that is deleted on every exit path.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests need root (they create network namespaces)"
        );
        let name = format!(
            "corral-nat-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let status = Command::new("ip").args(["netns", "add", &name]).status().unwrap();
        assert!(status.success(), "ip netns add {name}");
        Self { name }
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Runs `nft <args>` inside the namespace; panics with stderr on failure.
    pub fn nft(&self, args: &[&str]) -> String {
        let out = self.nft_raw(args);
        assert!(
            out.status.success(),
            "nft {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn nft_raw(&self, args: &[&str]) -> std::process::Output {
        Command::new("nsenter")
            .arg(format!("--net={}", self.path().display()))
            .arg("nft")
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs `ip -n <ns> <args>`; panics with stderr on failure.
    pub fn ip(&self, args: &[&str]) {
        let out = Command::new("ip")
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip -n {} {args:?}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs a command inside the namespace (network namespace only); returns whether it succeeded.
    pub fn exec_ok(&self, cmd: &[&str]) -> bool {
        let status = Command::new("nsenter")
            .arg(format!("--net={}", self.path().display()))
            .args(cmd)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        status.success()
    }

    pub fn set_json(&self, family: &str, set: &str) -> String {
        let v: Value =
            serde_json::from_str(&self.nft(&["-j", "list", "set", family, "corral", set])).unwrap();
        v["nftables"][1]["set"]["elem"].to_string()
    }

    pub fn manager(&self) -> (tempfile::TempDir, NatManager<NftCli>) {
        let dir = tempfile::tempdir().unwrap();
        let m = NatManager::new(dir.path(), NftCli::in_netns(self.path()));
        (dir, m)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}
