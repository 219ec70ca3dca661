//! The launcher's engine: container records, images and networks under one state dir, and what the API asks of
//! them (create, inspect, list, and the lifecycle in `supervisor`). All state is on disk, written atomically, so
//! a restarted corrald picks up where the last one stopped (`recover`).

use crate::cni_cmd::parse_publish;
use crate::container::{
    valid_name, Bind, Container, CreateRequest, Paths, RestartPolicy, Status, Tmpfs, VolumesFrom,
};
use crate::failpoint;
use crate::image::Store;
use crate::network::{self, Networks};
use crate::runtime::OciRuntime;
use crate::volume::Volumes;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// An API failure: HTTP status and message.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// What went wrong, naming the object.
    pub message: String,
}

impl ApiError {
    /// 400.
    pub fn bad(m: impl Into<String>) -> Self {
        ApiError {
            status: 400,
            message: m.into(),
        }
    }
    /// 404.
    pub fn not_found(m: impl Into<String>) -> Self {
        ApiError {
            status: 404,
            message: m.into(),
        }
    }
    /// 409.
    pub fn conflict(m: impl Into<String>) -> Self {
        ApiError {
            status: 409,
            message: m.into(),
        }
    }
    /// 500.
    pub fn internal(m: impl Into<String>) -> Self {
        ApiError {
            status: 500,
            message: m.into(),
        }
    }
}

/// What the API handlers return.
pub type ApiResult = Result<Value, ApiError>;

/// corrald's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// State dir.
    pub state_dir: PathBuf,
    /// CNI plugin dirs.
    pub cni_path: Vec<PathBuf>,
    /// Requested OCI runtime.
    pub runtime: Option<String>,
    /// corrald's own binary (re-executed as the shim).
    pub exe: PathBuf,
    /// The static init binary `--init` runs as PID 1 (tini-static or catatonit), if the node has one.
    pub init_path: Option<PathBuf>,
}

/// The engine.
#[derive(Debug)]
pub struct Engine {
    /// State dir.
    pub state: PathBuf,
    /// Image store.
    pub images: Store,
    /// Networks.
    pub networks: Networks,
    /// Volumes.
    pub volumes: Volumes,
    /// OCI runtime.
    pub runtime: OciRuntime,
    /// corrald's binary.
    pub exe: PathBuf,
    /// The init binary for `--init`.
    pub init_path: Option<PathBuf>,
    /// Serializes changes to the set of containers, networks and images, and teardowns.
    pub lock: Mutex<()>,
    /// Containers a watcher thread follows.
    pub watching: Mutex<HashSet<String>>,
    /// Wakes whoever waits for a container to start or exit.
    pub events: Events,
}

/// Wakes threads that wait for a container to start or exit. Each shim reports over a pipe when its
/// container started and exited (and the pipe closes when the shim ends); every report bumps a counter and
/// wakes all waiters, which then read the files on disk, the only record of state. A shim adopted after a
/// corrald restart has no pipe, so waiters also re-check after a timeout.
#[derive(Debug, Default)]
pub struct Events {
    seq: Mutex<u64>,
    cond: Condvar,
}

impl Events {
    /// Something happened: wake every waiter.
    pub fn notify(&self) {
        if let Ok(mut s) = self.seq.lock() {
            *s = s.wrapping_add(1);
        }
        self.cond.notify_all();
    }

    /// The current position; take it before checking state, then [`Events::wait_since`] it, so a report that
    /// lands between the check and the wait is not missed.
    pub fn ticket(&self) -> u64 {
        self.seq.lock().map(|s| *s).unwrap_or(0)
    }

    /// Sleeps until a report newer than `ticket`, or `timeout`.
    pub fn wait_since(&self, ticket: u64, timeout: Duration) {
        match self.seq.lock() {
            Ok(g) => {
                let _ = self.cond.wait_timeout_while(g, timeout, |s| *s == ticket);
            }
            Err(_) => std::thread::sleep(timeout),
        }
    }
}

impl Engine {
    /// Opens the state dir; returns the engine and a warning about the runtime choice, if any.
    pub fn new(cfg: Config) -> Result<(Engine, Option<String>), String> {
        let state = cfg.state_dir;
        for d in ["containers", "netns", "runtime"] {
            std::fs::create_dir_all(state.join(d))
                .map_err(|e| format!("{}: {e}", state.join(d).display()))?;
        }
        let (runtime, warning) = OciRuntime::choose(cfg.runtime.as_deref(), &state.join("runtime"))?;
        Ok((
            Engine {
                images: Store::open(&state)?,
                networks: Networks::new(&state, cfg.cni_path)?,
                volumes: Volumes::open(&state)?,
                runtime,
                exe: cfg.exe,
                init_path: cfg.init_path,
                lock: Mutex::new(()),
                watching: Mutex::new(HashSet::new()),
                events: Events::default(),
                state,
            },
            warning,
        ))
    }

    /// Paths of a container.
    pub fn paths(&self, id: &str) -> Paths {
        Paths::new(&self.state, id)
    }

    /// The netns file of a container.
    pub fn netns_path(&self, id: &str) -> PathBuf {
        self.state.join("netns").join(id)
    }

    /// Every container record.
    pub fn all(&self) -> Vec<Container> {
        let mut out: Vec<Container> = std::fs::read_dir(self.state.join("containers"))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| Container::load(&Paths { dir: e.path() }).ok())
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| b.created.cmp(&a.created).then(a.name.cmp(&b.name)));
        out
    }

    /// A container by name, full id or unique id prefix.
    pub fn find(&self, key: &str) -> Result<(Container, Paths), ApiError> {
        let all = self.all();
        let found = all
            .iter()
            .find(|c| c.name == key || c.id == key)
            .cloned()
            .or_else(|| {
                let m: Vec<&Container> = all
                    .iter()
                    .filter(|c| !key.is_empty() && c.id.starts_with(key))
                    .collect();
                (m.len() == 1).then(|| m[0].clone())
            });
        let c = found.ok_or_else(|| ApiError::not_found(format!("no such container: {key}")))?;
        let p = self.paths(&c.id);
        Ok((c, p))
    }

    /// `POST /containers/create`: validates everything first, so a bad request creates nothing.
    pub fn create(&self, req: CreateRequest) -> ApiResult {
        let _g = self
            .lock
            .lock()
            .map_err(|_| ApiError::internal("lock poisoned"))?;
        let image = self.images.resolve(&req.image).map_err(ApiError::not_found)?;
        let id = crate::file::random_hex(32).map_err(|e| ApiError::internal(e.to_string()))?;
        let name = if req.name.is_empty() {
            format!("c-{}", &id[..10])
        } else {
            req.name.clone()
        };
        if !valid_name(&name) {
            return Err(ApiError::bad(format!(
                "invalid container name \"{name}\": want [a-zA-Z0-9][a-zA-Z0-9_.-]*"
            )));
        }
        if let Some(c) = self.all().into_iter().find(|c| c.name == name) {
            return Err(ApiError::conflict(format!(
                "the name \"{name}\" is already in use by container {}",
                &c.id[..12]
            )));
        }
        let network = if req.network.is_empty() {
            network::DEFAULT.to_string()
        } else {
            req.network.clone()
        };
        let ports = req
            .publish
            .iter()
            .map(|p| parse_publish(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ApiError::bad)?;
        if !ports.is_empty() && matches!(network.as_str(), "host" | "none") {
            return Err(ApiError::bad(format!(
                "-p needs a network: --net {network} has no published ports"
            )));
        }
        self.check_ports_free(&id, &ports)?;
        let mut binds = req
            .binds
            .iter()
            .map(|b| Bind::parse(b))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ApiError::bad)?;
        let tmpfs = req
            .tmpfs
            .iter()
            .map(|t| Tmpfs::parse(t))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ApiError::bad)?;
        let restart = RestartPolicy::parse(&req.restart).map_err(ApiError::bad)?;
        if restart.name != "no" && req.auto_remove {
            return Err(ApiError::bad("--restart and --rm cannot be combined"));
        }
        let mut dsts: Vec<&str> = binds
            .iter()
            .map(|b| b.destination.as_str())
            .chain(tmpfs.iter().map(|t| t.destination.as_str()))
            .map(|d| d.trim_end_matches('/'))
            .collect();
        dsts.sort_unstable();
        if let Some(w) = dsts.windows(2).find(|w| w[0] == w[1]) {
            return Err(ApiError::bad(format!("duplicate mount point: {}", w[0])));
        }
        for b in binds.iter().filter(|b| !b.is_volume()) {
            if !Path::new(&b.source).exists() {
                return Err(ApiError::bad(format!(
                    "bind source path does not exist: {}",
                    b.source
                )));
            }
        }
        if req.memory.is_some_and(|m| m < 4 << 20) {
            return Err(ApiError::bad("--memory: at least 4m"));
        }
        if req.pids_limit.is_some_and(|n| n < 1) {
            return Err(ApiError::bad("--pids-limit: at least 1"));
        }
        if let Some(n) = req.nano_cpus {
            check_cpus(n, available_cpus()).map_err(ApiError::bad)?;
        }
        if req.init && self.init_path.is_none() {
            return Err(ApiError::bad(
                "--init: corrald found no init binary (install tini for /usr/bin/tini-static, or catatonit; \
                 or start corrald with --init-path)",
            ));
        }
        let cfg = image.config.config().clone().unwrap_or_default();
        // Names are resolved against the container's own /etc/passwd at start; the syntax is checked now.
        let user = if req.user.is_empty() {
            cfg.user().clone().unwrap_or_default()
        } else {
            req.user.clone()
        };
        crate::user::UserSpec::parse(&user).map_err(ApiError::bad)?;
        let shared = self.volumes_from(&req.volumes_from)?;
        let entrypoint = req
            .entrypoint
            .clone()
            .or_else(|| cfg.entrypoint().clone())
            .unwrap_or_default();
        let cmd = if !req.cmd.is_empty() {
            req.cmd.clone()
        } else if req.entrypoint.is_some() {
            vec![]
        } else {
            cfg.cmd().clone().unwrap_or_default()
        };
        let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
        if args.is_empty() {
            return Err(ApiError::bad(format!(
                "no command given and image {} has none",
                image.reference
            )));
        }
        let mut env: Vec<String> = cfg.env().clone().unwrap_or_default();
        for e in &req.env {
            let key = e.split('=').next().unwrap_or(e);
            if key.is_empty() {
                return Err(ApiError::bad(format!("-e {e}: want KEY=VALUE")));
            }
            env.retain(|x| x.split('=').next() != Some(key));
            env.push(if e.contains('=') {
                e.clone()
            } else {
                format!("{e}=")
            });
        }
        // The image's VOLUMEs that no -v or --tmpfs of the run covers become anonymous volumes, as `-v /path`.
        let covered: HashSet<String> = binds
            .iter()
            .map(|b| b.destination.as_str())
            .chain(tmpfs.iter().map(|t| t.destination.as_str()))
            .map(|d| d.trim_end_matches('/').to_string())
            .collect();
        let mut image_volumes: Vec<String> = cfg
            .volumes()
            .iter()
            .flatten()
            .map(|v| v.trim_end_matches('/').to_string())
            .collect();
        image_volumes.sort();
        image_volumes.dedup();
        for path in image_volumes.iter().filter(|p| !covered.contains(*p)) {
            let volume = Bind::parse(path)
                .ok()
                .filter(|b| b.anonymous)
                .ok_or_else(|| ApiError::bad(format!("image {}: bad VOLUME {path:?}", image.reference)))?;
            binds.push(volume);
        }
        if !matches!(network.as_str(), "host" | "none") && !self.networks.exists(&network) {
            if network == network::DEFAULT {
                self.networks
                    .create(network::DEFAULT, None)
                    .map_err(ApiError::internal)?;
            } else {
                return Err(ApiError::not_found(format!("no such network: {network}")));
            }
        }
        // Volumes last: nothing after this can fail but the record's own save.
        for b in binds.iter_mut().filter(|b| b.is_volume()) {
            let (name, anonymous) = match &b.volume {
                Some(n) => (n.clone(), false),
                None => (
                    crate::file::random_hex(32).map_err(|e| ApiError::internal(e.to_string()))?,
                    true,
                ),
            };
            let v = self.volumes.create(&name, anonymous).map_err(ApiError::bad)?;
            b.volume = Some(name);
            b.source = v.mountpoint.to_string_lossy().into_owned();
        }
        let binds = merge_volumes_from(binds, &tmpfs, shared);
        let c = Container {
            id: id.clone(),
            name,
            image: image.reference.clone(),
            image_id: image.id.clone(),
            layers: image.layers.clone(),
            args,
            env,
            working_dir: if req.working_dir.is_empty() {
                cfg.working_dir().clone().unwrap_or_default()
            } else {
                req.working_dir.clone()
            },
            network,
            ports,
            binds,
            tmpfs,
            restart,
            restart_count: 0,
            stopped: false,
            memory: req.memory,
            pids_limit: req.pids_limit,
            auto_remove: req.auto_remove,
            user,
            nano_cpus: req.nano_cpus,
            init: req.init,
            volumes_from: req.volumes_from.clone(),
            created: crate::file::now(),
            started_at: None,
            shim_pid: None,
            cni_result: None,
            ip: None,
            attached: false,
            mounted: false,
        };
        let p = self.paths(&id);
        let saved = std::fs::create_dir_all(&p.dir).and_then(|_| {
            failpoint::hit(failpoint::CREATE_RECORD);
            c.save_durable(&p)
        });
        if let Err(e) = saved {
            let _ = std::fs::remove_dir_all(&p.dir);
            self.remove_anonymous_volumes(&c);
            return Err(ApiError::internal(format!("{}: {e}", p.dir.display())));
        }
        Ok(json!({ "Id": id, "Warnings": [] }))
    }

    /// The mounts `--volumes-from` specs share: each container's binds and volumes (not its tmpfs mounts) with
    /// the spec's mode, if any, in place of theirs. An unknown container is an error.
    fn volumes_from(&self, specs: &[String]) -> Result<Vec<Bind>, ApiError> {
        let mut shared = Vec::new();
        for spec in specs {
            let from = VolumesFrom::parse(spec).map_err(ApiError::bad)?;
            let (c, _) = self
                .find(&from.container)
                .map_err(|e| ApiError::not_found(format!("--volumes-from: {}", e.message)))?;
            shared.extend(c.binds.into_iter().map(|mut b| {
                b.readonly = from.readonly.unwrap_or(b.readonly);
                b
            }));
        }
        Ok(shared)
    }

    /// Refuses host ports that another container publishes (one that runs or is still attached: an exited
    /// container waiting for its restart keeps its ports) or that a process in corrald's network namespace
    /// listens on. Called under the engine lock, at create and again at start: nothing is created or attached
    /// when it fails.
    pub fn check_ports_free(&self, id: &str, ports: &[Value]) -> Result<(), ApiError> {
        if ports.is_empty() {
            return Ok(());
        }
        let holders: Vec<Container> = self
            .all()
            .into_iter()
            .filter(|c| c.id != id && !c.ports.is_empty())
            .filter(|c| c.attached || c.status(&self.paths(&c.id)) == Status::Running)
            .collect();
        let owners = holders.iter().map(|c| (c.name.as_str(), c.ports.as_slice()));
        if let Some(msg) = crate::ports::taken_by_container(ports, owners) {
            return Err(ApiError::conflict(msg));
        }
        if let Some(msg) = crate::ports::taken_on_node(ports) {
            return Err(ApiError::conflict(msg));
        }
        Ok(())
    }

    /// `GET /containers/{id}/json`.
    pub fn inspect(&self, key: &str) -> ApiResult {
        let (c, p) = self.find(key)?;
        Ok(describe(&c, &p, true))
    }

    /// `GET /containers/json[?all=1]`.
    pub fn list(&self, all: bool) -> ApiResult {
        let rows: Vec<Value> = self
            .all()
            .iter()
            .map(|c| describe(c, &self.paths(&c.id), false))
            .filter(|v| all || v["State"] == "running")
            .collect();
        Ok(Value::Array(rows))
    }

    /// `GET /containers/{id}/logs?offset=N`: the log from byte N.
    pub fn logs(&self, key: &str, offset: u64) -> Result<Vec<u8>, ApiError> {
        let (_, p) = self.find(key)?;
        let bytes = std::fs::read(p.log()).unwrap_or_default();
        Ok(bytes.get(offset as usize..).unwrap_or_default().to_vec())
    }

    /// Removes the anonymous volumes of a removed container that no other container (one that shares them with
    /// `--volumes-from`) still mounts.
    pub fn remove_anonymous_volumes(&self, c: &Container) {
        for b in c.binds.iter().filter(|b| b.anonymous) {
            if let Some(name) = &b.volume {
                if self.volume_users(name).iter().any(|user| *user != c.name) {
                    continue;
                }
                if let Err(e) = self.volumes.remove(name) {
                    eprintln!("corrald: container {}: anonymous volume: {e}", c.name);
                }
            }
        }
    }

    /// Names of the containers (any state) whose mounts use volume `name`.
    pub fn volume_users(&self, name: &str) -> Vec<String> {
        self.all()
            .into_iter()
            .filter(|c| c.binds.iter().any(|b| b.volume.as_deref() == Some(name)))
            .map(|c| c.name)
            .collect()
    }

    /// Rewrites `/etc/hosts` of every container attached to `network`: localhost, then the name and address of
    /// every attached container of the network. The files are bind-mounted into running containers, which pins
    /// their inodes, so they are rewritten in place: the new text first, then the file cut to its length.
    pub fn refresh_hosts(&self, network: &str) {
        if matches!(network, "host" | "none") {
            return;
        }
        let peers: Vec<Container> = self
            .all()
            .into_iter()
            .filter(|c| c.network == network && c.attached && c.ip.is_some())
            .collect();
        for c in &peers {
            let text = crate::bundle::hosts(c, &peers);
            let p = self.paths(&c.id);
            if let Err(e) = crate::file::write_in_place(&p.etc("hosts"), text.as_bytes()) {
                eprintln!("corrald: container {}: /etc/hosts: {e}", c.name);
            }
        }
    }

    /// `POST /containers/{id}/exec`: runs `Cmd` in the running container with `runc exec`; its exit code and
    /// output (lossy UTF-8).
    pub fn exec(&self, key: &str, x: &crate::container::ExecRequest) -> ApiResult {
        let (c, p) = self.find(key)?;
        if x.cmd.is_empty() {
            return Err(ApiError::bad("exec: no command"));
        }
        if let Some(e) = x
            .env
            .iter()
            .find(|e| e.split_once('=').is_none_or(|(k, _)| k.is_empty()))
        {
            return Err(ApiError::bad(format!("exec -e {e}: want KEY=VALUE")));
        }
        if !x.working_dir.is_empty() && !x.working_dir.starts_with('/') {
            return Err(ApiError::bad(format!(
                "exec -w {}: want an absolute path",
                x.working_dir
            )));
        }
        let user = (!x.user.is_empty())
            .then(|| crate::user::UserSpec::parse(&x.user))
            .transpose()
            .map_err(ApiError::bad)?;
        if c.status(&p) != Status::Running {
            return Err(ApiError::conflict(format!("container {} is not running", c.name)));
        }
        let mut runc = self.runtime.command();
        runc.arg("exec");
        if let Some(spec) = &user {
            // Resolved in the container's own passwd and group, as for `run -u`; HOME follows the user.
            let u = crate::user::resolve_in_rootfs(spec, &p.rootfs()).map_err(ApiError::bad)?;
            runc.arg("--user").arg(format!("{}:{}", u.uid, u.gid));
            for g in &u.additional_gids {
                runc.arg("--additional-gids").arg(g.to_string());
            }
            if !x.env.iter().any(|e| e.starts_with("HOME=")) {
                runc.arg("--env").arg(format!("HOME={}", u.home));
            }
        }
        for e in &x.env {
            runc.arg("--env").arg(e);
        }
        if !x.working_dir.is_empty() {
            runc.arg("--cwd").arg(&x.working_dir);
        }
        let out = runc
            .arg(&c.id)
            .args(&x.cmd)
            .output()
            .map_err(|e| ApiError::internal(format!("{}: {e}", self.runtime.binary.display())))?;
        let code = out
            .status
            .code()
            .or_else(|| std::os::unix::process::ExitStatusExt::signal(&out.status).map(|s| 128 + s))
            .unwrap_or(255);
        Ok(json!({
            "ExitCode": code,
            "Stdout": String::from_utf8_lossy(&out.stdout),
            "Stderr": String::from_utf8_lossy(&out.stderr),
        }))
    }

    /// Container names by id, for `list-nat`.
    pub fn names(&self) -> std::collections::BTreeMap<String, String> {
        self.all().into_iter().map(|c| (c.id, c.name)).collect()
    }
}

/// The CPUs corrald may use (its affinity), the most `--cpus` can ask for.
fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Checks a `--cpus` limit in billionths of a CPU: from 0.01 (the kernel's smallest quota, 1 ms per 100 ms
/// period) to the CPUs there are, like Docker.
pub fn check_cpus(nano_cpus: i64, available: usize) -> Result<(), String> {
    let most = i64::try_from(available)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000_000);
    if !(10_000_000..=most).contains(&nano_cpus) {
        return Err(format!(
            "--cpus: range of CPUs is from 0.01 to {available}.00, as there are only {available} CPUs available"
        ));
    }
    Ok(())
}

/// The container's own binds plus those shared with `--volumes-from`: a destination the container mounts
/// itself (`-v` or `--tmpfs`) keeps its own mount, and among shared ones the later `--volumes-from` wins, as
/// with Docker.
pub fn merge_volumes_from(own: Vec<Bind>, tmpfs: &[Tmpfs], shared: Vec<Bind>) -> Vec<Bind> {
    let key = |d: &str| d.trim_end_matches('/').to_string();
    let taken: HashSet<String> = own
        .iter()
        .map(|b| key(&b.destination))
        .chain(tmpfs.iter().map(|t| key(&t.destination)))
        .collect();
    let mut merged: Vec<Bind> = Vec::new();
    for b in shared
        .into_iter()
        .filter(|b| !taken.contains(&key(&b.destination)))
    {
        merged.retain(|m| key(&m.destination) != key(&b.destination));
        merged.push(b);
    }
    own.into_iter().chain(merged).collect()
}

/// The JSON of a container: a `ps` row, or the full `inspect` document.
pub fn describe(c: &Container, p: &Paths, full: bool) -> Value {
    let status = c.status(p);
    let (state, mut text, code) = match status {
        Status::Created => ("created", "Created".to_string(), None),
        Status::Running => ("running", "Up".to_string(), None),
        Status::Exited(n) => ("exited", format!("Exited ({n})"), Some(n)),
    };
    if c.restart_count > 0 {
        text.push_str(&format!(", restarts {}", c.restart_count));
    }
    let ports: Vec<String> = c
        .ports
        .iter()
        .map(|m| {
            let ip = m["hostIP"].as_str().map(|i| format!("{i}:")).unwrap_or_default();
            format!(
                "{ip}{}->{}/{}",
                m["hostPort"],
                m["containerPort"],
                m["protocol"].as_str().unwrap_or("tcp")
            )
        })
        .collect();
    if !full {
        return json!({
            "Id": c.id, "Name": c.name, "Image": c.image, "Command": c.args.join(" "), "Created": c.created,
            "State": state, "Status": text, "Ports": ports, "Network": c.network, "IPAddress": c.ip,
            "RestartCount": c.restart_count,
        });
    }
    json!({
        "Id": c.id,
        "Name": c.name,
        "Image": c.image,
        "ImageId": c.image_id,
        "Created": c.created,
        "Args": c.args,
        "Config": { "Env": c.env, "WorkingDir": c.working_dir, "User": c.user },
        "State": {
            "Status": state, "Running": status == Status::Running, "ExitCode": code,
            "StartedAt": c.started_at, "ShimPid": c.shim_pid,
            "Error": std::fs::read_to_string(p.error()).ok(),
        },
        "NetworkSettings": {
            "Network": c.network, "IPAddress": c.ip, "Ports": ports, "PortMappings": c.ports,
            "SandboxKey": c.attached.then(|| p.dir.parent().and_then(Path::parent).map(|s| s.join("netns").join(&c.id))),
            "CniResult": c.cni_result,
        },
        "RestartCount": c.restart_count,
        "Mounts": c.binds,
        "Tmpfs": c.tmpfs,
        "HostConfig": {
            "Memory": c.memory, "PidsLimit": c.pids_limit, "NanoCpus": c.nano_cpus, "AutoRemove": c.auto_remove,
            "Init": c.init, "VolumesFrom": c.volumes_from,
            "RestartPolicy": { "Name": c.restart.name, "MaximumRetryCount": c.restart.max },
        },
        "LogPath": p.log(),
        "RootFs": { "Layers": c.layers, "Upper": p.upper(), "Merged": p.rootfs(), "Mounted": c.mounted },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpus_range_like_docker() {
        assert!(check_cpus(1_500_000_000, 2).is_ok());
        assert!(check_cpus(2_000_000_000, 2).is_ok());
        assert!(check_cpus(10_000_000, 2).is_ok());
        assert_eq!(
            check_cpus(2_000_000_001, 2).unwrap_err(),
            "--cpus: range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available"
        );
        assert!(check_cpus(9_999_999, 2).is_err());
        assert!(check_cpus(0, 2).is_err());
    }

    #[test]
    fn own_mounts_win_over_shared_ones_and_later_sources_over_earlier() {
        let own = vec![Bind::parse("/h:/data").unwrap()];
        let tmpfs = vec![Tmpfs::parse("/run").unwrap()];
        let shared = vec![
            Bind::parse("/a:/data/").unwrap(),
            Bind::parse("/a:/run").unwrap(),
            Bind::parse("/a:/logs").unwrap(),
            Bind::parse("/b:/logs:ro").unwrap(),
            Bind::parse("/b:/srv").unwrap(),
        ];
        let merged = merge_volumes_from(own, &tmpfs, shared);
        let got: Vec<(&str, &str, bool)> = merged
            .iter()
            .map(|b| (b.source.as_str(), b.destination.as_str(), b.readonly))
            .collect();
        assert_eq!(
            got,
            [
                ("/h", "/data", false),
                ("/b", "/logs", true),
                ("/b", "/srv", false)
            ]
        );
    }
}
