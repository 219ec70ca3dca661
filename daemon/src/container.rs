//! A container's record: what was asked (image, command, network, ports, mounts, limits), what was set up
//! (IP, CNI result, mounts), and where it lives on disk. The record is the only state corrald keeps about a
//! container; the shim's files (`shim.pid`, `started`, `exit`) tell whether it runs, so a restarted corrald
//! recovers everything from disk.

use crate::file;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A mount `-v`: a bind `/host:/path[:ro]`, a named volume `name:/path[:ro]` or an anonymous volume `/path`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bind {
    /// Host path (absolute, must exist); for a volume, its data directory (set when the container is created).
    pub source: String,
    /// Path in the container (absolute).
    pub destination: String,
    /// Read-only.
    #[serde(default)]
    pub readonly: bool,
    /// The volume's name, for a named or anonymous volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    /// An anonymous volume (`-v /path`): removed with the container.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anonymous: bool,
}

impl Bind {
    /// Parses `/host:/path[:ro|rw]`, `volume:/path[:ro|rw]` or `/path`.
    pub fn parse(spec: &str) -> Result<Bind, String> {
        let bad =
            || format!("-v {spec}: want /host/path:/container/path[:ro], name:/container/path[:ro] or /path");
        let parts: Vec<&str> = spec.split(':').collect();
        let (src, dst, mode) = match parts.as_slice() {
            [dst] => ("", *dst, None),
            [src, dst] => (*src, *dst, None),
            [src, dst, mode] => (*src, *dst, Some(*mode)),
            _ => return Err(bad()),
        };
        let readonly = match mode {
            None | Some("rw") => false,
            Some("ro") => true,
            Some(_) => return Err(bad()),
        };
        if !dst.starts_with('/') || dst == "/" {
            return Err(bad());
        }
        if dst.split('/').any(|c| c == "..") {
            return Err(format!("-v {spec}: the container path must not contain `..`"));
        }
        let (volume, anonymous) = if parts.len() == 1 {
            (None, true)
        } else if src.starts_with('/') {
            (None, false)
        } else if valid_name(src) {
            (Some(src.to_string()), false)
        } else {
            return Err(format!("-v {spec}: invalid volume name \"{src}\""));
        };
        Ok(Bind {
            source: src.into(),
            destination: dst.into(),
            readonly,
            volume,
            anonymous,
        })
    }

    /// Whether the source is a volume (named or anonymous) rather than a host path.
    pub fn is_volume(&self) -> bool {
        self.anonymous || self.volume.is_some()
    }
}

/// A tmpfs mount `--tmpfs /path[:options]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tmpfs {
    /// Path in the container.
    pub destination: String,
    /// Mount options (`size=64m,mode=1777`, ...).
    pub options: Vec<String>,
}

impl Tmpfs {
    /// Parses `/path[:opt,opt]`; the default options are `nosuid,nodev,mode=1777`.
    pub fn parse(spec: &str) -> Result<Tmpfs, String> {
        let (dst, opts) = spec.split_once(':').unwrap_or((spec, ""));
        if !dst.starts_with('/') || dst == "/" || dst.split('/').any(|c| c == "..") {
            return Err(format!("--tmpfs {spec}: want /container/path[:options]"));
        }
        let mut options: Vec<String> = vec!["nosuid".into(), "nodev".into()];
        options.extend(opts.split(',').filter(|o| !o.is_empty()).map(str::to_string));
        if !options.iter().any(|o| o.starts_with("mode=")) {
            options.push("mode=1777".into());
        }
        Ok(Tmpfs {
            destination: dst.into(),
            options,
        })
    }
}

/// `--volumes-from container[:ro|rw]`: whose mounts to share, and a mode that overrides theirs.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumesFrom {
    /// Container name, id or id prefix.
    pub container: String,
    /// `Some(true)` for `:ro`, `Some(false)` for `:rw`, `None` keeps each mount's own mode.
    pub readonly: Option<bool>,
}

impl VolumesFrom {
    /// Parses `container[:ro|rw]`.
    pub fn parse(spec: &str) -> Result<VolumesFrom, String> {
        let (container, mode) = spec.split_once(':').unwrap_or((spec, ""));
        let readonly = match mode {
            "" if !spec.ends_with(':') => None,
            "ro" => Some(true),
            "rw" => Some(false),
            _ => return Err(format!("--volumes-from {spec}: want container[:ro|rw]")),
        };
        if container.is_empty() {
            return Err(format!("--volumes-from {spec}: want container[:ro|rw]"));
        }
        Ok(VolumesFrom {
            container: container.into(),
            readonly,
        })
    }
}

/// `--restart no|always|on-failure[:N]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RestartPolicy {
    /// `no`, `always` or `on-failure`.
    pub name: String,
    /// For on-failure: the most restarts (0 = unlimited).
    pub max: u32,
}

impl RestartPolicy {
    /// Parses the flag's value.
    pub fn parse(spec: &str) -> Result<RestartPolicy, String> {
        let (name, max) = spec.split_once(':').unwrap_or((spec, ""));
        let bad = || format!("--restart {spec}: want no, always or on-failure[:N]");
        let max = match (name, max) {
            ("" | "no" | "always", "") => 0,
            ("on-failure", "") => 0,
            ("on-failure", n) => n.parse().map_err(|_| bad())?,
            _ => return Err(bad()),
        };
        Ok(RestartPolicy {
            name: if name.is_empty() { "no".into() } else { name.into() },
            max,
        })
    }

    /// Whether a container that exited with `code` after `count` restarts is restarted.
    pub fn applies(&self, code: i32, count: u32) -> bool {
        match self.name.as_str() {
            "always" => true,
            "on-failure" => code != 0 && (self.max == 0 || count < self.max),
            _ => false,
        }
    }
}

/// What a client asks for in `POST /containers/create`.
/// `POST /containers/{id}/exec`: a command run in a running container, optionally with more environment, another
/// working directory or another user.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExecRequest {
    /// Command and arguments.
    pub cmd: Vec<String>,
    /// `KEY=VALUE` entries added to (or replacing) the container's environment.
    pub env: Vec<String>,
    /// Absolute working directory (default: the container's).
    pub working_dir: String,
    /// `user[:group]` (default: the container's user).
    pub user: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateRequest {
    /// Container name (generated when empty).
    pub name: String,
    /// Image reference or id.
    pub image: String,
    /// Command (overrides the image's `Cmd`).
    pub cmd: Vec<String>,
    /// Entrypoint (overrides the image's).
    pub entrypoint: Option<Vec<String>>,
    /// `K=V` environment.
    pub env: Vec<String>,
    /// Working directory.
    pub working_dir: String,
    /// `<network>`, `host` or `none`; empty = the default network `corral`.
    pub network: String,
    /// `[hostIP:]hostPort:containerPort[/proto]` specs.
    pub publish: Vec<String>,
    /// `/host:/path[:ro]`, `volume:/path[:ro]` and `/path` specs.
    pub binds: Vec<String>,
    /// `/path[:options]` tmpfs specs.
    pub tmpfs: Vec<String>,
    /// `no`, `always`, `on-failure[:N]`.
    pub restart: String,
    /// Memory limit in bytes.
    pub memory: Option<i64>,
    /// Most processes.
    pub pids_limit: Option<i64>,
    /// Remove the container when it exits.
    pub auto_remove: bool,
    /// `user[:group]` to run as (names or ids; empty = the image's `User`, else root).
    pub user: String,
    /// CPU limit in billionths of a CPU (Docker's `NanoCpus`).
    pub nano_cpus: Option<i64>,
    /// Run an init as PID 1 that forwards signals and reaps zombies.
    pub init: bool,
    /// `container[:ro|rw]`: share that container's volumes and bind mounts.
    pub volumes_from: Vec<String>,
}

/// The record corrald keeps per container (`containers/<id>/container.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Container {
    /// 64 hex digits.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// The image reference as given.
    pub image: String,
    /// The image's manifest digest.
    pub image_id: String,
    /// Unpacked layer directories, lowest first.
    pub layers: Vec<PathBuf>,
    /// Full argv (entrypoint + cmd).
    pub args: Vec<String>,
    /// Environment.
    pub env: Vec<String>,
    /// Working directory.
    pub working_dir: String,
    /// Network name, `host` or `none`.
    pub network: String,
    /// portMappings entries.
    pub ports: Vec<Value>,
    /// Bind mounts and volumes.
    pub binds: Vec<Bind>,
    /// tmpfs mounts.
    #[serde(default)]
    pub tmpfs: Vec<Tmpfs>,
    /// Restart policy.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// How many times the restart policy restarted the container.
    #[serde(default)]
    pub restart_count: u32,
    /// Stopped by `stop`: the restart policy no longer applies until the next `start`.
    #[serde(default)]
    pub stopped: bool,
    /// Memory limit in bytes.
    pub memory: Option<i64>,
    /// Pids limit.
    pub pids_limit: Option<i64>,
    /// Remove on exit.
    pub auto_remove: bool,
    /// `user[:group]` the process runs as, resolved against the container's /etc/passwd at each start (empty =
    /// root).
    #[serde(default)]
    pub user: String,
    /// CPU limit in billionths of a CPU.
    #[serde(default)]
    pub nano_cpus: Option<i64>,
    /// Whether corrald's init runs as PID 1.
    #[serde(default)]
    pub init: bool,
    /// The `--volumes-from` specs the mounts in `binds` came from (for inspect).
    #[serde(default)]
    pub volumes_from: Vec<String>,
    /// Creation time (Unix seconds).
    pub created: u64,
    /// Last start (Unix seconds).
    pub started_at: Option<u64>,
    /// The shim's pid while it runs.
    pub shim_pid: Option<i32>,
    /// CNI result of the network attachment while attached.
    pub cni_result: Option<Value>,
    /// The container's address (first IP of the CNI result).
    pub ip: Option<String>,
    /// Whether the network namespace exists and is attached (CNI DEL pending).
    pub attached: bool,
    /// Whether the overlay root is mounted.
    pub mounted: bool,
}

/// Where a container's files are.
#[derive(Debug, Clone)]
pub struct Paths {
    /// `containers/<id>`.
    pub dir: PathBuf,
}

impl Paths {
    /// Paths of container `id` under the state dir.
    pub fn new(state: &Path, id: &str) -> Self {
        Paths {
            dir: state.join("containers").join(id),
        }
    }
    /// The record.
    pub fn record(&self) -> PathBuf {
        self.dir.join("container.json")
    }
    /// The OCI bundle (config.json lives here; the root is `rootfs`).
    pub fn bundle(&self) -> PathBuf {
        self.dir.join("bundle")
    }
    /// The overlay mount point.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
    /// Overlay upper dir.
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    /// Overlay work dir.
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
    /// stdout and stderr of the container.
    pub fn log(&self) -> PathBuf {
        self.dir.join("container.log")
    }
    /// Written by the shim once the process runs: its pid.
    pub fn started(&self) -> PathBuf {
        self.dir.join("started")
    }
    /// Written by the shim when the process is gone: its exit code.
    pub fn exit(&self) -> PathBuf {
        self.dir.join("exit")
    }
    /// Written by the shim when the runtime could not start the container: why.
    pub fn error(&self) -> PathBuf {
        self.dir.join("error")
    }
    /// The shim's own diagnostics.
    pub fn shim_log(&self) -> PathBuf {
        self.dir.join("shim.log")
    }
    /// Generated /etc/hosts, /etc/resolv.conf, /etc/hostname.
    pub fn etc(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Created, never started.
    Created,
    /// The shim and the process run.
    Running,
    /// The process exited with this code.
    Exited(i32),
}

impl Status {
    /// Docker's `State.Status` word.
    pub fn word(&self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited(_) => "exited",
        }
    }
}

/// Reads the exit file the shim wrote, if any.
pub fn read_exit(p: &Paths) -> Option<i32> {
    std::fs::read_to_string(p.exit())
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// Whether `pid` is a live shim of container `id` (guards against pid reuse).
pub fn shim_alive(pid: i32, id: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            let c = String::from_utf8_lossy(&c);
            c.contains("shim") && c.contains(id)
        })
        .unwrap_or(false)
}

/// The pid of a live shim of container `id`, found among all processes (a shim corrald started but died before
/// recording).
pub fn find_shim(id: &str) -> Option<i32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .find(|pid| shim_alive(*pid, id))
}

impl Container {
    /// The status, from the shim's files and whether the shim lives. A shim that died without writing an exit
    /// file counts as exit code 255.
    pub fn status(&self, p: &Paths) -> Status {
        if let Some(code) = read_exit(p) {
            return Status::Exited(code);
        }
        match self.shim_pid {
            Some(pid) if shim_alive(pid, &self.id) => Status::Running,
            Some(_) => Status::Exited(read_exit(p).unwrap_or(255)),
            None => Status::Created,
        }
    }

    /// Loads a record.
    pub fn load(p: &Paths) -> std::io::Result<Container> {
        file::read_json(&p.record())
    }

    /// Saves the record atomically (not durably: the states it records while a container runs, attached or
    /// mounted, are kernel state that a reboot discards anyway, and `recover` reconciles them).
    pub fn save(&self, p: &Paths) -> std::io::Result<()> {
        file::replace_json(&p.record(), self)
    }

    /// Writes the record atomically and durably: for its creation, which a reboot must find.
    pub fn save_durable(&self, p: &Paths) -> std::io::Result<()> {
        file::write_json(&p.record(), self)
    }
}

/// Whether `name` is a valid container or network name (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 64).
pub fn valid_name(name: &str) -> bool {
    let mut c = name.chars();
    c.next().is_some_and(|f| f.is_ascii_alphanumeric())
        && c.all(|x| x.is_ascii_alphanumeric() || "_.-".contains(x))
        && name.len() <= 64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binds() {
        assert_eq!(
            Bind::parse("/srv/www:/www:ro").unwrap(),
            Bind {
                source: "/srv/www".into(),
                destination: "/www".into(),
                readonly: true,
                volume: None,
                anonymous: false,
            }
        );
        assert!(!Bind::parse("/a:/b").unwrap().readonly);
        let named = Bind::parse("data:/data:ro").unwrap();
        assert_eq!(named.volume.as_deref(), Some("data"));
        assert!(named.readonly && !named.anonymous);
        let anon = Bind::parse("/scratch").unwrap();
        assert!(anon.anonymous && anon.volume.is_none() && anon.destination == "/scratch");
        for bad in [
            "/a:b",
            "a",
            "/",
            "/a:/b:xx",
            "/a:/b:ro:x",
            "/a:/../etc",
            "-x:/a",
            "a/b:/c",
        ] {
            assert!(Bind::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_tmpfs_and_restart() {
        let t = Tmpfs::parse("/run:size=1m").unwrap();
        assert_eq!(t.options, ["nosuid", "nodev", "size=1m", "mode=1777"]);
        assert!(Tmpfs::parse("run").is_err());
        let p = RestartPolicy::parse("on-failure:2").unwrap();
        assert!(p.applies(1, 1) && !p.applies(1, 2) && !p.applies(0, 0));
        assert!(RestartPolicy::parse("always").unwrap().applies(0, 100));
        assert!(!RestartPolicy::parse("no").unwrap().applies(1, 0));
        for bad in ["sometimes", "always:3", "on-failure:x"] {
            assert!(RestartPolicy::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_volumes_from() {
        let v = VolumesFrom::parse("data:ro").unwrap();
        assert_eq!((v.container.as_str(), v.readonly), ("data", Some(true)));
        assert_eq!(VolumesFrom::parse("data:rw").unwrap().readonly, Some(false));
        assert_eq!(VolumesFrom::parse("data").unwrap().readonly, None);
        for bad in ["", ":ro", "data:", "data:xx", "data:ro:rw"] {
            assert!(VolumesFrom::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert!(valid_name("web-1.a_b"));
        for bad in ["", "-x", "a/b", "a b", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
