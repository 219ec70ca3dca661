//! The OCI runtime, driven through its standard command line (`create`, `start`, `kill`, `delete`) with its
//! state under corrald's state dir (`--root`). runc by default; crun only where it works: crun 1.8 refuses a
//! hybrid cgroup layout (cgroup v1 controllers with a cgroup2 mount at /sys/fs/cgroup/unified), so that layout
//! falls back to runc with a warning.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// An OCI runtime binary and its state root.
#[derive(Debug, Clone)]
pub struct OciRuntime {
    /// The binary (`runc`, `crun`, or a path).
    pub binary: PathBuf,
    /// Its `--root`.
    pub root: PathBuf,
}

/// Whether the machine has the hybrid cgroup layout.
pub fn hybrid_cgroups() -> bool {
    Path::new("/sys/fs/cgroup/unified").is_dir() && !Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

fn on_path(bin: &str) -> Option<PathBuf> {
    if bin.contains('/') {
        let p = PathBuf::from(bin);
        return p.is_file().then_some(p);
    }
    std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(bin))
                .find(|c| c.is_file())
        })
        .unwrap_or_else(|| {
            ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
                .iter()
                .map(|d| Path::new(d).join(bin))
                .find(|c| c.is_file())
        })
}

impl OciRuntime {
    /// Picks the runtime: `requested` if it can work here, else runc. Returns it and a warning when it fell back.
    pub fn choose(requested: Option<&str>, root: &Path) -> Result<(Self, Option<String>), String> {
        let wanted = requested.unwrap_or("runc");
        let is_crun = Path::new(wanted).file_name().is_some_and(|n| n == "crun");
        let mut warning = None;
        let binary = if is_crun && hybrid_cgroups() {
            warning = Some(format!(
                "{wanted} cannot run on this machine's hybrid cgroup layout (cgroup v1 with a cgroup2 mount at \
                 /sys/fs/cgroup/unified); using runc"
            ));
            on_path("runc")
        } else {
            on_path(wanted)
        };
        let binary = binary.ok_or_else(|| format!("OCI runtime {wanted} not found (install runc)"))?;
        Ok((
            OciRuntime {
                binary,
                root: root.to_path_buf(),
            },
            warning,
        ))
    }

    /// `<binary> --root <root>`.
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.binary);
        c.arg("--root").arg(&self.root).stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Result<(), String> {
        let out = self
            .command()
            .args(args)
            .output()
            .map_err(|e| format!("{}: {e}", self.binary.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{} {}: {}",
                self.binary.display(),
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Sends `signal` (`TERM`, `KILL`, `9`, ...) to the container's process.
    pub fn kill(&self, id: &str, signal: &str) -> Result<(), String> {
        self.run(&["kill", id, signal])
    }

    /// Removes the runtime's state of a container (killing what is left).
    pub fn delete(&self, id: &str) -> Result<(), String> {
        self.run(&["delete", "--force", id])
    }
}
