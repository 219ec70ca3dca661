//! Runs plugin binaries (ours from cargo, the reference from /usr/lib/cni) with a CNI environment.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Debian's reference plugin.
pub const REFERENCE: &str = "/usr/lib/cni/host-local";

/// Our binary, built by cargo for integration tests.
pub fn ours() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_host-local"))
}

/// The reference binary; fails the test (with the reason) if it is not installed.
pub fn reference() -> PathBuf {
    let p = PathBuf::from(REFERENCE);
    assert!(
        p.exists(),
        "{REFERENCE} is missing: install Debian's containernetworking-plugins to run the interop tests"
    );
    p
}

/// What a run returned.
#[derive(Debug)]
pub struct Outcome {
    /// Exit code (None if killed).
    pub code: Option<i32>,
    /// Signal that killed it.
    pub signal: Option<i32>,
    /// stdout as JSON (Null if empty).
    pub out: Value,
    /// stderr.
    pub err: String,
}

impl Outcome {
    /// Asserts success and returns the result.
    pub fn ok(self) -> Value {
        assert_eq!(self.code, Some(0), "failed: {} {}", self.out, self.err);
        self.out
    }
    /// Asserts a CNI error and returns (code, msg).
    pub fn error(self) -> (u64, String) {
        assert_eq!(self.code, Some(1), "expected an error: {} {}", self.out, self.err);
        (
            self.out["code"].as_u64().unwrap_or(0),
            self.out["msg"].as_str().unwrap_or("").to_string(),
        )
    }
}

/// Runs `bin` with CNI_COMMAND=`cmd` for attachment (`id`, eth0).
pub fn run(bin: &Path, cmd: &str, id: &str, conf: &Value, extra: &[(&str, &str)]) -> Outcome {
    let mut c = Command::new(bin);
    c.env_clear()
        .env("CNI_COMMAND", cmd)
        .env("CNI_PATH", "/usr/lib/cni")
        .env("CNI_NETNS_OVERRIDE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if !id.is_empty() {
        c.env("CNI_CONTAINERID", id)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_NETNS", "/proc/self/ns/net");
    }
    for (k, v) in extra {
        c.env(k, v);
    }
    let mut child = c
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    let stdin = serde_json::to_vec(conf).unwrap();
    child.stdin.take().unwrap().write_all(&stdin).unwrap();
    let o = child.wait_with_output().unwrap();
    Outcome {
        code: o.status.code(),
        signal: o.status.signal(),
        out: serde_json::from_slice(&o.stdout).unwrap_or(Value::Null),
        err: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// A network config for `name` in `data_dir` (cniVersion 1.0.0, the newest the Debian reference speaks).
pub fn conf(data_dir: &Path, ipam: Value) -> Value {
    let mut ipam = ipam;
    ipam["type"] = json!("host-local");
    ipam["dataDir"] = json!(data_dir);
    json!({"cniVersion": "1.0.0", "name": "net1", "type": "bridge", "ipam": ipam})
}

/// The first address of a result.
pub fn addr(result: &Value) -> String {
    result["ips"][0]["address"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Sorted names in a directory.
pub fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    n.sort();
    n
}

/// Names that are reservations (parse as an address).
pub fn reserved(dir: &Path) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
        .collect()
}
