//! One timed plugin call, shared by every bench mode: spawn the plugin with the CNI environment (nothing else
//! of the bench's environment leaks in but `CORRAL_LOG`), write the config to its stdin, wait; the clock covers
//! spawn to exit, output is parsed after it stops.

use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Who is being called, for the environment and error messages.
pub struct Call<'a> {
    /// Directory of the plugins (CNI_PATH); the plugin is `bin_dir/plugin`.
    pub bin_dir: &'a Path,
    /// CORRAL_STATE_DIR.
    pub state_dir: &'a Path,
    /// Plugin binary name.
    pub plugin: &'a str,
    /// CNI_COMMAND.
    pub cmd: &'a str,
    /// CNI_CONTAINERID.
    pub id: &'a str,
    /// CNI_NETNS.
    pub netns: &'a str,
    /// Prefix of error messages (the side).
    pub label: &'a str,
}

/// Runs the call; returns the wall time and the parsed stdout (Null when empty), or an error with the
/// plugin's output.
pub fn timed_call(c: &Call<'_>, stdin: &[u8]) -> (Duration, Result<Value, String>) {
    let mut command = Command::new(c.bin_dir.join(c.plugin));
    command
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("CNI_COMMAND", c.cmd)
        .env("CNI_CONTAINERID", c.id)
        .env("CNI_NETNS", c.netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", c.bin_dir)
        .env("CORRAL_STATE_DIR", c.state_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(l) = std::env::var_os("CORRAL_LOG") {
        command.env("CORRAL_LOG", l);
    }
    let t0 = Instant::now();
    let out = command.spawn().and_then(|mut child| {
        if let Some(mut s) = child.stdin.take() {
            s.write_all(stdin)?;
        }
        child.wait_with_output()
    });
    let took = t0.elapsed();
    let what = format!("{} {} {} {}", c.label, c.plugin, c.cmd, c.id);
    let res = match out {
        Err(e) => Err(format!("{what}: spawn: {e}")),
        Ok(o) => {
            let stdout = String::from_utf8_lossy(&o.stdout);
            if !o.status.success() {
                let stderr = String::from_utf8_lossy(&o.stderr);
                Err(format!(
                    "{what}: {}: {} {}",
                    o.status,
                    stdout.trim(),
                    stderr.trim()
                ))
            } else if stdout.trim().is_empty() {
                Ok(Value::Null)
            } else {
                serde_json::from_str(&stdout).map_err(|e| format!("{what}: bad JSON {e}: {stdout}"))
            }
        }
    };
    (took, res)
}
