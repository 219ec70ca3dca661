//! The `corral` client's launcher verbs (`run`, `ps`, `stop`, `kill`, `rm`, `logs`, `inspect`, `wait`,
//! `exec`, `network …`, `image …`, `volume …`): each is one or a few HTTP calls to corrald over its unix socket.

use crate::http::{call, percent_encode, Body};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The default control socket.
pub const DEFAULT_SOCKET: &str = "/run/corral/corral.sock";

/// Where corrald listens: `unix:///path` or a path.
pub fn socket_path(host: Option<&str>) -> PathBuf {
    let h = host.unwrap_or(DEFAULT_SOCKET);
    PathBuf::from(h.strip_prefix("unix://").unwrap_or(h))
}

/// A call that expects success; returns the body as JSON (Null when empty).
pub fn api(socket: &Path, method: &str, path: &str, body: Body<'_>) -> Result<Value, String> {
    let (status, bytes) = call(socket, method, path, body).map_err(|e| e.to_string())?;
    let v: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    if status >= 400 {
        return Err(v["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("corrald answered {status}")));
    }
    Ok(v)
}

fn raw(socket: &Path, path: &str) -> Result<Vec<u8>, String> {
    let (status, bytes) = call(socket, "GET", path, Body::None).map_err(|e| e.to_string())?;
    if status >= 400 {
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        return Err(v["message"].as_str().unwrap_or("error").to_string());
    }
    Ok(bytes)
}

/// `corral run` arguments.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run in the background and print the container id.
    #[arg(short = 'd', long)]
    detach: bool,
    /// Container name.
    #[arg(long)]
    name: Option<String>,
    /// Remove the container when it exits.
    #[arg(long)]
    rm: bool,
    /// Environment variable `KEY=VALUE`.
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir")]
    workdir: Option<String>,
    /// Override the image's entrypoint.
    #[arg(long)]
    entrypoint: Option<String>,
    /// Publish a port: `[hostIP:]hostPort:containerPort[/tcp|udp|sctp]`.
    #[arg(short = 'p', long = "publish")]
    publish: Vec<String>,
    /// Network: a corral network name, `host` or `none` (default: the network `corral`, created on first use).
    #[arg(long = "net", alias = "network")]
    net: Option<String>,
    /// Bind mount `/host/path:/container/path[:ro]`, named volume `name:/container/path[:ro]` (created on first
    /// use), or anonymous volume `/container/path` (removed with the container).
    #[arg(short = 'v', long = "volume")]
    volume: Vec<String>,
    /// tmpfs mount: `/container/path[:options]`.
    #[arg(long)]
    tmpfs: Vec<String>,
    /// Restart policy: `no`, `always`, `on-failure[:N]` (`stop` ends restarting).
    #[arg(long, default_value = "no")]
    restart: String,
    /// Memory limit (`64m`, `1g`, bytes).
    #[arg(long)]
    memory: Option<String>,
    /// Most processes in the container.
    #[arg(long)]
    pids_limit: Option<i64>,
    /// CPU limit: how many CPUs' worth of time the container may use (`1.5`; at most the machine's CPUs).
    #[arg(long)]
    cpus: Option<String>,
    /// Run as `user[:group]`, names or numeric ids; names are looked up in the container's /etc/passwd and
    /// /etc/group (default: the image's user, else root).
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Run an init (tini) as PID 1 that forwards signals to the command and reaps zombies.
    #[arg(long)]
    init: bool,
    /// Mount the volumes and bind mounts of another container, `container[:ro|rw]` (repeatable).
    #[arg(long = "volumes-from")]
    volumes_from: Vec<String>,
    /// Image reference or id.
    image: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// `corral exec` arguments.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Environment variable `KEY=VALUE` (or `KEY`: its value here), added to the container's.
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Working directory inside the container (absolute).
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// Run as `user[:group]`, names or numeric ids from the container's /etc/passwd and /etc/group.
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    /// Name or id.
    pub container: String,
    /// Command and arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// `corral network` verbs.
#[derive(Debug, Subcommand)]
pub enum NetworkVerb {
    /// Create a network (a conflist of corral's bridge, host-local and portmap).
    Create {
        /// Network name.
        name: String,
        /// IPv4 subnet (default: the first free /16 from 10.88.0.0/16 upward).
        #[arg(long)]
        subnet: Option<String>,
    },
    /// List networks.
    Ls,
    /// Show networks' details as JSON: conflist, subnet, gateway, bridge, and the containers with their
    /// addresses.
    Inspect {
        /// Network names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove a network no container uses.
    Rm {
        /// Network names.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// `corral load` arguments.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read the archive (OCI image layout or `docker save` tarball, optionally gzip-compressed) from FILE
    /// instead of stdin.
    #[arg(short = 'i', long = "input")]
    input: Option<PathBuf>,
}

/// `corral save` arguments.
#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Write the archive to FILE instead of stdout.
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
    /// Image references or ids.
    #[arg(required = true)]
    images: Vec<String>,
}

/// `corral image` verbs.
#[derive(Debug, Subcommand)]
pub enum ImageVerb {
    /// Import a rootfs tarball (`.tar` or `.tar.gz`) as an image, like `docker import`.
    Import {
        /// The tarball.
        tarball: PathBuf,
        /// `name[:tag]`.
        reference: String,
    },
    /// Load images from an OCI image layout archive or a `docker save` tarball (stdin without -i).
    Load(LoadArgs),
    /// Save images to an archive that is both an OCI image layout and a `docker save` tarball (stdout without -o).
    Save(SaveArgs),
    /// List images.
    Ls,
    /// Remove images no container uses.
    Rm {
        /// References or ids.
        #[arg(required = true)]
        references: Vec<String>,
    },
}

/// `corral volume` verbs.
#[derive(Debug, Subcommand)]
pub enum VolumeVerb {
    /// Create a named volume.
    Create {
        /// Volume name.
        name: String,
    },
    /// List volumes.
    Ls,
    /// Show volumes' details as JSON.
    Inspect {
        /// Volume names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove volumes no container uses.
    Rm {
        /// Volume names.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// Parses `64m`, `1g`, `512k`, `1048576`.
pub fn parse_size(s: &str) -> Result<i64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mul) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    num.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .and_then(|n| n.checked_mul(mul))
        .ok_or_else(|| format!("--memory {s}: want a size such as 64m or 1g"))
}

/// Parses `--cpus 1.5` into billionths of a CPU (exactly: at most nine decimals).
pub fn parse_cpus(s: &str) -> Result<i64, String> {
    let bad = || format!("--cpus {s}: want a number of CPUs such as 0.5 or 2");
    let (whole, frac) = s.trim().split_once('.').unwrap_or((s.trim(), ""));
    if (whole.is_empty() && frac.is_empty())
        || frac.len() > 9
        || !whole.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())
    {
        return Err(bad());
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let frac: i64 = format!("{frac:0<9}").parse().map_err(|_| bad())?;
    whole
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(frac))
        .ok_or_else(bad)
}

/// `corral run`: create and start; attached, follow the log until the container exits and return its code.
pub fn run(socket: &Path, a: RunArgs) -> Result<i32, String> {
    let memory = a.memory.as_deref().map(parse_size).transpose()?;
    let nano_cpus = a.cpus.as_deref().map(parse_cpus).transpose()?;
    if a.rm && a.restart != "no" {
        return Err("--restart and --rm cannot be combined".into());
    }
    for p in &a.publish {
        crate::cni_cmd::parse_publish(p)?;
    }
    let req = json!({
        "Name": a.name.clone().unwrap_or_default(),
        "Image": a.image,
        "Cmd": a.command,
        "Entrypoint": a.entrypoint.as_ref().map(|e| vec![e.clone()]),
        "Env": a.env,
        "WorkingDir": a.workdir.clone().unwrap_or_default(),
        "Network": a.net.clone().unwrap_or_default(),
        "Publish": a.publish,
        "Binds": a.volume,
        "Tmpfs": a.tmpfs,
        "Restart": a.restart,
        "Memory": memory,
        "PidsLimit": a.pids_limit,
        "NanoCpus": nano_cpus,
        "User": a.user.clone().unwrap_or_default(),
        "Init": a.init,
        "VolumesFrom": a.volumes_from,
        "AutoRemove": a.rm && a.detach,
    });
    let created = api(socket, "POST", "/containers/create", Body::Json(&req))?;
    let id = created["Id"]
        .as_str()
        .ok_or("corrald returned no container id")?
        .to_string();
    if let Err(e) = api(socket, "POST", &format!("/containers/{id}/start"), Body::None) {
        let _ = api(socket, "DELETE", &format!("/containers/{id}?force=1"), Body::None);
        return Err(e);
    }
    if a.detach {
        println!("{id}");
        return Ok(0);
    }
    let code = follow(socket, &id, None, &mut std::io::stdout())?;
    if a.rm {
        api(socket, "DELETE", &format!("/containers/{id}?force=1"), Body::None)?;
    }
    code.ok_or_else(|| "corrald returned no exit code".into())
}

/// Copies a container's log to `out` as it grows until the container exits (`run` attached, `logs -f`),
/// starting with its last `tail` lines (all without); returns its exit code, or None for a container that was
/// never started (its log is copied once). The log is read every 50 ms; a `wait` call in a thread wakes the
/// loop as soon as the container exits, for the last chunk.
pub fn follow(
    socket: &Path,
    key: &str,
    tail: Option<usize>,
    out: &mut impl Write,
) -> Result<Option<i32>, String> {
    let key = percent_encode(key);
    let (exited_tx, exited_rx) = std::sync::mpsc::channel();
    let waiter = {
        let (socket, key) = (socket.to_path_buf(), key.clone());
        std::thread::spawn(move || {
            let status = api(&socket, "POST", &format!("/containers/{key}/wait"), Body::None);
            let _ = exited_tx.send(());
            status
        })
    };
    let first = raw(socket, &format!("/containers/{key}/logs"))?;
    let mut offset = first.len();
    write_chunk(out, tail_lines(&first, tail))?;
    loop {
        let exited = exited_rx
            .recv_timeout(std::time::Duration::from_millis(50))
            .is_ok()
            || waiter.is_finished();
        match raw(socket, &format!("/containers/{key}/logs?offset={offset}")) {
            Ok(chunk) => {
                offset += chunk.len();
                write_chunk(out, &chunk)?;
            }
            // A `--rm` container is gone once it exited.
            Err(_) if exited => {}
            Err(e) => return Err(e),
        }
        if exited {
            break;
        }
    }
    let status = waiter.join().map_err(|_| "wait thread panicked".to_string())?;
    match status {
        Ok(v) => Ok(v["StatusCode"].as_i64().and_then(|c| i32::try_from(c).ok())),
        // Never started: there is nothing to follow.
        Err(e) if e.contains("never started") => Ok(None),
        Err(e) => Err(e),
    }
}

fn write_chunk(out: &mut impl Write, chunk: &[u8]) -> Result<(), String> {
    out.write_all(chunk)
        .and_then(|()| out.flush())
        .map_err(|e| format!("write the log: {e}"))
}

/// The last `n` lines of `log` (a last line without a newline counts); all of it for None.
pub fn tail_lines(log: &[u8], n: Option<usize>) -> &[u8] {
    let Some(n) = n else { return log };
    if n == 0 {
        return &[];
    }
    let body = log.strip_suffix(b"\n").unwrap_or(log);
    let start = body
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, b)| **b == b'\n')
        .nth(n.saturating_sub(1))
        .map_or(0, |(i, _)| i + 1);
    &log[start..]
}

/// The rows as a table, without the last newline (the caller prints it).
fn table(rows: &[Vec<String>]) -> String {
    crate::table::render(rows).trim_end_matches('\n').to_string()
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        v => v.to_string(),
    }
}

/// `corral ps [-a]`.
pub fn ps(socket: &Path, all: bool) -> Result<String, String> {
    let v = api(
        socket,
        "GET",
        &format!("/containers/json?all={}", u8::from(all)),
        Body::None,
    )?;
    let mut rows = vec![[
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "STATUS",
        "PORTS",
        "NETWORK",
        "IP",
        "NAMES",
    ]
    .map(String::from)
    .to_vec()];
    for c in v.as_array().into_iter().flatten() {
        let ports: Vec<String> = c["Ports"].as_array().into_iter().flatten().map(s).collect();
        let mut cmd = s(&c["Command"]);
        if cmd.chars().count() > 30 {
            cmd = format!("{}…", cmd.chars().take(29).collect::<String>());
        }
        rows.push(vec![
            s(&c["Id"]).chars().take(12).collect(),
            s(&c["Image"]),
            format!("\"{cmd}\""),
            s(&c["Status"]),
            ports.join(", "),
            s(&c["Network"]),
            s(&c["IPAddress"]),
            s(&c["Name"]),
        ]);
    }
    Ok(table(&rows))
}

/// `corral network …`.
pub fn network(socket: &Path, verb: NetworkVerb) -> Result<String, String> {
    match verb {
        NetworkVerb::Create { name, subnet } => {
            let v = api(
                socket,
                "POST",
                "/networks/create",
                Body::Json(&json!({ "Name": name, "Subnet": subnet })),
            )?;
            Ok(format!(
                "{name} {}",
                s(&v["Config"]["plugins"][0]["ipam"]["ranges"][0][0]["subnet"])
            ))
        }
        NetworkVerb::Ls => {
            let v = api(socket, "GET", "/networks", Body::None)?;
            let mut rows = vec![["NAME", "SUBNET", "BRIDGE", "CONTAINERS"]
                .map(String::from)
                .to_vec()];
            for n in v.as_array().into_iter().flatten() {
                let users: Vec<String> = n["Containers"].as_array().into_iter().flatten().map(s).collect();
                rows.push(vec![
                    s(&n["Name"]),
                    s(&n["Subnet"]),
                    s(&n["Bridge"]),
                    users.join(","),
                ]);
            }
            Ok(table(&rows))
        }
        NetworkVerb::Inspect { names } => inspect_each(socket, &names, |n| format!("/networks/{n}")),
        NetworkVerb::Rm { names } => each(socket, &names, "DELETE", |n| format!("/networks/{n}")),
    }
}

/// `corral image …`.
pub fn image(socket: &Path, verb: ImageVerb) -> Result<String, String> {
    match verb {
        ImageVerb::Import { tarball, reference } => {
            let v = api(
                socket,
                "POST",
                &format!("/images/import?ref={}", percent_encode(&reference)),
                Body::File(&tarball),
            )?;
            Ok(s(&v["Id"]))
        }
        ImageVerb::Load(a) => load(socket, a),
        ImageVerb::Save(a) => save(socket, a).map(|()| String::new()),
        ImageVerb::Ls => {
            let v = api(socket, "GET", "/images/json", Body::None)?;
            let mut rows = vec![["REFERENCE", "IMAGE ID", "SIZE"].map(String::from).to_vec()];
            for i in v.as_array().into_iter().flatten() {
                let id = s(&i["Id"]);
                rows.push(vec![
                    s(&i["Reference"]),
                    id.trim_start_matches("sha256:").chars().take(12).collect(),
                    format!("{:.1}MB", i["Size"].as_f64().unwrap_or(0.0) / 1e6),
                ]);
            }
            Ok(table(&rows))
        }
        ImageVerb::Rm { references } => {
            let mut out = Vec::new();
            for r in &references {
                let v = api(
                    socket,
                    "DELETE",
                    &format!("/images/{}", percent_encode(r)),
                    Body::None,
                )?;
                out.push(format!("Untagged: {}", s(&v["Untagged"])));
            }
            Ok(out.join("\n"))
        }
    }
}

/// `corral load`: uploads the archive (stdin is first copied to a temporary file: the API wants a
/// `Content-Length`); one `Loaded image: name:tag` line per name, `Loaded image ID: …` for an image without any.
pub fn load(socket: &Path, a: LoadArgs) -> Result<String, String> {
    use std::io::IsTerminal;
    let staged = match &a.input {
        Some(_) => None,
        None => {
            if std::io::stdin().is_terminal() {
                return Err(
                    "requested load from stdin, but stdin is a terminal: use -i FILE or redirect input"
                        .into(),
                );
            }
            let tmp = std::env::temp_dir().join(format!(
                "corral-load-{}.tar",
                crate::file::random_hex(8).map_err(|e| e.to_string())?
            ));
            let copied = std::fs::File::create(&tmp)
                .and_then(|mut f| std::io::copy(&mut std::io::stdin().lock(), &mut f));
            if let Err(e) = copied {
                let _ = std::fs::remove_file(&tmp);
                return Err(format!("read stdin: {e}"));
            }
            Some(tmp)
        }
    };
    let path = a.input.as_deref().or(staged.as_deref()).ok_or("no input")?;
    let res = api(socket, "POST", "/images/load", Body::File(path));
    if let Some(tmp) = &staged {
        let _ = std::fs::remove_file(tmp);
    }
    let mut out = Vec::new();
    for image in res?.as_array().into_iter().flatten() {
        let names: Vec<String> = image["Names"].as_array().into_iter().flatten().map(s).collect();
        if names.is_empty() {
            out.push(format!("Loaded image ID: {}", s(&image["Id"])));
        }
        out.extend(names.iter().map(|n| format!("Loaded image: {n}")));
    }
    Ok(out.join("\n"))
}

/// `corral save`: streams the archive to the file or to stdout (never to a terminal).
pub fn save(socket: &Path, a: SaveArgs) -> Result<(), String> {
    use std::io::IsTerminal;
    let names: Vec<String> = a.images.iter().map(|i| percent_encode(i)).collect();
    let path = format!("/images/get?names={}", names.join(","));
    let fail = |status: u16, body: &[u8]| -> String {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        v["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("corrald answered {status}"))
    };
    match &a.output {
        None => {
            if std::io::stdout().is_terminal() {
                return Err(
                    "refusing to write the image archive to a terminal: use -o FILE or redirect output"
                        .into(),
                );
            }
            let (status, body) = crate::http::call_into(
                socket,
                "GET",
                &path,
                &mut std::io::BufWriter::new(std::io::stdout().lock()),
            )
            .map_err(|e| e.to_string())?;
            if status >= 400 {
                return Err(fail(status, &body));
            }
        }
        Some(file) => {
            // Written beside the target and renamed over it, so a failed save leaves no partial archive.
            let tmp = file.with_extension("corral-partial");
            let res = std::fs::File::create(&tmp)
                .map_err(|e| format!("{}: {e}", tmp.display()))
                .and_then(|mut f| {
                    let (status, body) =
                        crate::http::call_into(socket, "GET", &path, &mut f).map_err(|e| e.to_string())?;
                    if status >= 400 {
                        return Err(fail(status, &body));
                    }
                    f.sync_all().map_err(|e| format!("{}: {e}", tmp.display()))?;
                    std::fs::rename(&tmp, file).map_err(|e| format!("{}: {e}", file.display()))
                });
            if res.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            res?;
        }
    }
    Ok(())
}

/// `corral volume …`.
pub fn volume(socket: &Path, verb: VolumeVerb) -> Result<String, String> {
    match verb {
        VolumeVerb::Create { name } => {
            let v = api(
                socket,
                "POST",
                "/volumes/create",
                Body::Json(&json!({ "Name": name })),
            )?;
            Ok(s(&v["Name"]))
        }
        VolumeVerb::Ls => {
            let v = api(socket, "GET", "/volumes", Body::None)?;
            let mut rows = vec![["NAME", "ANONYMOUS", "USED BY", "MOUNTPOINT"]
                .map(String::from)
                .to_vec()];
            for vol in v.as_array().into_iter().flatten() {
                let users: Vec<String> = vol["UsedBy"].as_array().into_iter().flatten().map(s).collect();
                rows.push(vec![
                    s(&vol["Name"]),
                    s(&vol["Anonymous"]),
                    users.join(","),
                    s(&vol["Mountpoint"]),
                ]);
            }
            Ok(table(&rows))
        }
        VolumeVerb::Inspect { names } => inspect_each(socket, &names, |n| format!("/volumes/{n}")),
        VolumeVerb::Rm { names } => each(socket, &names, "DELETE", |n| format!("/volumes/{n}")),
    }
}

/// `corral exec`: runs a command in a running container; prints its output, returns its exit code.
pub fn exec(socket: &Path, a: &ExecArgs) -> Result<i32, String> {
    // `-e KEY` takes KEY's value from this client's environment, as Docker does.
    let env: Vec<String> = a
        .env
        .iter()
        .map(|e| match (e.contains('='), std::env::var(e)) {
            (false, Ok(v)) => format!("{e}={v}"),
            _ => e.clone(),
        })
        .collect();
    let v = api(
        socket,
        "POST",
        &format!("/containers/{}/exec", percent_encode(&a.container)),
        Body::Json(&json!({
            "Cmd": a.command, "Env": env, "WorkingDir": a.workdir.clone().unwrap_or_default(),
            "User": a.user.clone().unwrap_or_default(),
        })),
    )?;
    let _ = std::io::stdout().write_all(v["Stdout"].as_str().unwrap_or_default().as_bytes());
    let _ = std::io::stderr().write_all(v["Stderr"].as_str().unwrap_or_default().as_bytes());
    let _ = std::io::stdout().flush();
    v["ExitCode"]
        .as_i64()
        .map(|c| c as i32)
        .ok_or_else(|| "corrald returned no exit code".into())
}

/// A per-container verb on one or more containers.
pub fn each(
    socket: &Path,
    keys: &[String],
    method: &str,
    suffix: impl Fn(&str) -> String,
) -> Result<String, String> {
    let mut out = Vec::new();
    for k in keys {
        api(socket, method, &suffix(&percent_encode(k)), Body::None)?;
        out.push(k.clone());
    }
    Ok(out.join("\n"))
}

/// `corral logs [-f] [--tail N]`: the log (its last N lines), then with `follow` what the container writes
/// until it exits.
pub fn logs(socket: &Path, key: &str, follow_log: bool, tail: Option<usize>) -> Result<(), String> {
    let mut out = std::io::stdout();
    if follow_log {
        return follow(socket, key, tail, &mut out).map(|_| ());
    }
    let log = raw(socket, &format!("/containers/{}/logs", percent_encode(key)))?;
    write_chunk(&mut out, tail_lines(&log, tail))
}

/// `corral inspect`.
pub fn inspect(socket: &Path, keys: &[String]) -> Result<String, String> {
    inspect_each(socket, keys, |k| format!("/containers/{k}/json"))
}

/// The `inspect` verbs: `GET path(name)` (the name percent-encoded) for each name, as one JSON array.
fn inspect_each(socket: &Path, names: &[String], path: impl Fn(&str) -> String) -> Result<String, String> {
    let docs = names
        .iter()
        .map(|n| api(socket, "GET", &path(&percent_encode(n)), Body::None))
        .collect::<Result<Vec<_>, _>>()?;
    serde_json::to_string_pretty(&docs).map_err(|e| e.to_string())
}

/// `corral wait`: the exit code of each container, one per line.
pub fn wait(socket: &Path, keys: &[String]) -> Result<String, String> {
    let mut out = Vec::new();
    for k in keys {
        let v = api(
            socket,
            "POST",
            &format!("/containers/{}/wait", percent_encode(k)),
            Body::None,
        )?;
        out.push(s(&v["StatusCode"]));
    }
    Ok(out.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        for bad in ["", "m", "-1m", "x"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cpus() {
        assert_eq!(parse_cpus("1.5").unwrap(), 1_500_000_000);
        assert_eq!(parse_cpus("0.5").unwrap(), 500_000_000);
        assert_eq!(parse_cpus(".25").unwrap(), 250_000_000);
        assert_eq!(parse_cpus("2").unwrap(), 2_000_000_000);
        assert_eq!(parse_cpus("0.000000001").unwrap(), 1);
        for bad in ["", ".", "-1", "1.5.1", "x", "1e3", "0.0000000001", "99999999999"] {
            assert!(parse_cpus(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tails() {
        let log = b"a\nb\nc\n";
        assert_eq!(tail_lines(log, None), log);
        assert_eq!(tail_lines(log, Some(1)), b"c\n");
        assert_eq!(tail_lines(log, Some(2)), b"b\nc\n");
        assert_eq!(tail_lines(log, Some(9)), log);
        assert_eq!(tail_lines(log, Some(0)), b"");
        assert_eq!(tail_lines(b"a\nb", Some(1)), b"b");
        assert_eq!(tail_lines(b"", Some(1)), b"");
    }

    #[test]
    fn socket_paths() {
        assert_eq!(
            socket_path(Some("unix:///tmp/c.sock")),
            PathBuf::from("/tmp/c.sock")
        );
        assert_eq!(socket_path(None), PathBuf::from(DEFAULT_SOCKET));
    }
}
