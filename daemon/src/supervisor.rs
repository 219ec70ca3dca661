//! Container lifecycle: start (overlay root, network namespace attached through CNI, bundle, shim), stop
//! (TERM, timeout, KILL), kill, remove, wait, and the teardown that always follows an exit: CNI DEL, netns
//! removed, overlay unmounted. A watcher thread per running container does the teardown when the process exits
//! on its own; `recover` restarts the watchers (and finishes teardowns) after a corrald restart.

use crate::bundle;
use crate::container::{read_exit, Container, Paths, Status};
use crate::engine::{ApiError, ApiResult, Engine};
use crate::{file, netns, rootfs};
use serde_json::{json, Value};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(50);
/// First restart delay of the restart policy.
const RESTART_MIN: Duration = Duration::from_millis(100);
/// Longest restart delay.
const RESTART_MAX: Duration = Duration::from_secs(10);

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(e.to_string())
}

/// Waits until the container has exited (true) or `timeout` passes (false).
fn wait_exit(c: &Container, p: &Paths, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if matches!(c.status(p), Status::Exited(_)) {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

impl Engine {
    /// `POST /containers/{id}/start`.
    pub fn start(self: &Arc<Self>, key: &str) -> ApiResult {
        let id = {
            let _g = self.lock.lock().map_err(|_| internal("lock poisoned"))?;
            let (mut c, p) = self.find(key)?;
            if c.status(&p) == Status::Running {
                return Err(ApiError::conflict(format!(
                    "container {} is already running",
                    c.name
                )));
            }
            c.stopped = false;
            self.launch_locked(&mut c, &p)?;
            c.id
        };
        self.await_start(&id)?;
        self.watch(&id);
        Ok(Value::Null)
    }

    /// Clears the last run's files and prepares and starts the shim; undoes everything on failure.
    fn launch_locked(&self, c: &mut Container, p: &Paths) -> Result<(), ApiError> {
        for f in [p.exit(), p.started(), p.error(), p.dir.join("pid")] {
            let _ = std::fs::remove_file(f);
        }
        c.shim_pid = None;
        if let Err(e) = self.prepare(c, p) {
            let _ = c.save(p);
            self.teardown_locked(&c.id);
            return Err(e);
        }
        Ok(())
    }

    /// Waits for the shim to report: the process started, or the runtime failed (then tears down).
    fn await_start(&self, id: &str) -> Result<(), ApiError> {
        let (c, p) = self.find(id)?;
        let end = Instant::now() + Duration::from_secs(60);
        while !p.started().exists() && !p.exit().exists() && Instant::now() < end {
            if c.status(&p) != Status::Running {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Ok(err) = std::fs::read_to_string(p.error()) {
            self.teardown(&c.id);
            return Err(ApiError::internal(err));
        }
        Ok(())
    }

    /// The restart policy's restart of an exited container, keeping its root and network attachment: false when
    /// it is gone, was stopped meanwhile (or was started by someone else, then it runs again: true).
    fn relaunch(&self, id: &str) -> Result<bool, ApiError> {
        {
            let _g = self.lock.lock().map_err(|_| internal("lock poisoned"))?;
            let Ok((mut c, p)) = self.find(id) else {
                return Ok(false);
            };
            match c.status(&p) {
                Status::Running => return Ok(true),
                _ if c.stopped => return Ok(false),
                _ => {}
            }
            c.restart_count += 1;
            self.launch_locked(&mut c, &p)?;
        }
        self.await_start(id)?;
        Ok(true)
    }

    /// Root, network, files, bundle, shim; records each step so teardown undoes exactly what was done.
    fn prepare(&self, c: &mut Container, p: &Paths) -> Result<(), ApiError> {
        if !c.mounted {
            rootfs::mount_overlay(&c.layers, &p.upper(), &p.work(), &p.rootfs()).map_err(internal)?;
            c.mounted = true;
            c.save(p).map_err(internal)?;
            for b in c.binds.iter().filter(|b| b.is_volume()) {
                crate::volume::seed_from_image(&p.rootfs(), &b.destination, std::path::Path::new(&b.source))
                    .map_err(internal)?;
            }
        }
        let ns = self.netns_path(&c.id);
        if c.network != "host" && !c.attached {
            netns::delete(&ns).map_err(internal)?;
            netns::create(&ns).map_err(internal)?;
            c.attached = true;
            c.save(p).map_err(internal)?;
            let result = self
                .networks
                .attach(&c.id, &ns, &c.network, &c.ports)
                .map_err(|e| {
                    let _ = netns::delete(&ns);
                    c.attached = false;
                    ApiError::internal(e)
                })?;
            c.ip = result.as_ref().and_then(crate::network::first_ip);
            c.cni_result = result;
            c.save(p).map_err(internal)?;
        }
        let node_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let short: String = c.id.chars().take(12).collect();
        for (name, text) in [
            ("hosts", bundle::hosts(c, &[])),
            (
                "resolv.conf",
                bundle::resolv_conf(c.cni_result.as_ref(), &node_resolv),
            ),
            ("hostname", format!("{short}\n")),
        ] {
            file::write_atomic(&p.etc(name), text.as_bytes()).map_err(internal)?;
        }
        // This container's hosts file and its peers' now name each other.
        self.refresh_hosts(&c.network);
        let spec = bundle::spec(c, p, (c.network != "host").then_some(ns.as_path())).map_err(internal)?;
        std::fs::create_dir_all(p.bundle()).map_err(internal)?;
        file::write_json(&p.bundle().join("config.json"), &spec).map_err(internal)?;
        let shim_log = std::fs::File::create(p.shim_log()).map_err(internal)?;
        let mut child = Command::new(&self.exe)
            .arg("shim")
            .arg("--id")
            .arg(&c.id)
            .arg("--state-dir")
            .arg(&self.state)
            .arg("--runtime")
            .arg(&self.runtime.binary)
            .arg("--runtime-root")
            .arg(&self.runtime.root)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(shim_log))
            .process_group(0)
            .spawn()
            .map_err(|e| internal(format!("start the shim: {e}")))?;
        c.shim_pid = i32::try_from(child.id()).ok();
        c.started_at = Some(file::now());
        c.save(p).map_err(internal)?;
        // Reap the shim when it ends (a shim adopted after a restart is init's to reap).
        std::thread::spawn(move || child.wait());
        Ok(())
    }

    /// Undoes what `prepare` did, in reverse; keeps going past failures. Takes the engine lock.
    pub fn teardown(&self, id: &str) {
        if let Ok(_g) = self.lock.lock() {
            self.teardown_locked(id);
        }
    }

    fn teardown_locked(&self, id: &str) {
        let p = self.paths(id);
        let Ok(mut c) = Container::load(&p) else { return };
        let _ = self.runtime.delete(id);
        let was_attached = c.attached;
        if c.attached {
            let ns = self.netns_path(id);
            if let Err(e) = self
                .networks
                .detach(id, &ns, &c.network, &c.ports, c.cni_result.as_ref())
            {
                eprintln!("corrald: container {}: CNI DEL: {e}", c.name);
            }
            if let Err(e) = netns::delete(&ns) {
                eprintln!("corrald: container {}: {e}", c.name);
            }
            c.attached = false;
            c.cni_result = None;
            c.ip = None;
        }
        if c.mounted {
            match rootfs::unmount(&p.rootfs()) {
                Ok(()) => c.mounted = false,
                Err(e) => eprintln!("corrald: container {}: {e}", c.name),
            }
        }
        if let Err(e) = c.save(&p) {
            eprintln!("corrald: container {}: save: {e}", c.name);
        }
        if was_attached {
            self.refresh_hosts(&c.network);
        }
    }

    /// Follows a running container in a thread. When it exits: restarts it if its restart policy says so (after
    /// a backoff of 100 ms doubling up to 10 s, back to 100 ms after a run of 10 s or more), else tears it down
    /// (and removes it with `--rm`).
    pub fn watch(self: &Arc<Self>, id: &str) {
        let Ok(mut w) = self.watching.lock() else { return };
        if !w.insert(id.to_string()) {
            return;
        }
        let (engine, id) = (Arc::clone(self), id.to_string());
        std::thread::spawn(move || {
            let p = engine.paths(&id);
            let mut delay = RESTART_MIN;
            while let Ok(c) = Container::load(&p) {
                if let Status::Exited(code) = c.status(&p) {
                    if !c.stopped && c.restart.applies(code, c.restart_count) {
                        if c.started_at.is_some_and(|t| file::now().saturating_sub(t) >= 10) {
                            delay = RESTART_MIN;
                        }
                        std::thread::sleep(delay);
                        delay = (delay * 2).min(RESTART_MAX);
                        match engine.relaunch(&id) {
                            Ok(true) => continue,
                            Ok(false) => {}
                            Err(e) => eprintln!("corrald: container {}: restart: {}", c.name, e.message),
                        }
                    }
                    engine.teardown(&id);
                    if c.auto_remove {
                        let _ = engine.remove(&id, false);
                    }
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if let Ok(mut w) = engine.watching.lock() {
                w.remove(&id);
            }
        });
    }

    /// After a restart: watch running containers; the watcher finishes the teardown (or applies the restart
    /// policy) of those that exited meanwhile.
    pub fn recover(self: &Arc<Self>) -> usize {
        let mut running = 0;
        for c in self.all() {
            let p = self.paths(&c.id);
            match c.status(&p) {
                Status::Running => {
                    running += 1;
                    self.watch(&c.id);
                }
                Status::Exited(_) if c.attached || c.mounted => self.watch(&c.id),
                _ => {}
            }
        }
        running
    }

    /// `POST /containers/{id}/stop?t=SECONDS`: TERM, then KILL after the timeout; then teardown.
    pub fn stop(&self, key: &str, timeout: Duration) -> ApiResult {
        let (c, p) = self.find(key)?;
        self.mark_stopped(&p)?;
        if c.status(&p) == Status::Running {
            let _ = self.runtime.kill(&c.id, "TERM");
            if !wait_exit(&c, &p, timeout) {
                let _ = self.runtime.kill(&c.id, "KILL");
                if !wait_exit(&c, &p, Duration::from_secs(10)) {
                    return Err(internal(format!("container {} did not exit after KILL", c.name)));
                }
            }
        }
        self.teardown(&c.id);
        Ok(Value::Null)
    }

    /// Records that the user stopped the container: the restart policy no longer applies.
    fn mark_stopped(&self, p: &Paths) -> Result<(), ApiError> {
        let _g = self.lock.lock().map_err(|_| internal("lock poisoned"))?;
        let mut rec = Container::load(p).map_err(internal)?;
        rec.stopped = true;
        rec.save(p).map_err(internal)
    }

    /// `POST /containers/{id}/kill?signal=SIG`.
    pub fn kill(&self, key: &str, signal: &str) -> ApiResult {
        let (c, p) = self.find(key)?;
        if c.status(&p) != Status::Running {
            return Err(ApiError::conflict(format!("container {} is not running", c.name)));
        }
        let sig = signal.trim_start_matches("SIG");
        if sig.is_empty() || !sig.chars().all(|ch| ch.is_ascii_alphanumeric()) {
            return Err(ApiError::bad(format!("invalid signal {signal}")));
        }
        self.runtime.kill(&c.id, sig).map_err(internal)?;
        Ok(Value::Null)
    }

    /// `DELETE /containers/{id}[?force=1]`: refuses a running container unless forced.
    pub fn remove(&self, key: &str, force: bool) -> ApiResult {
        let (c, p) = self.find(key)?;
        if c.status(&p) == Status::Running {
            if !force {
                return Err(ApiError::conflict(format!(
                    "container {} is running: stop it first or use rm -f",
                    c.name
                )));
            }
            self.mark_stopped(&p)?;
            let _ = self.runtime.kill(&c.id, "KILL");
            if !wait_exit(&c, &p, Duration::from_secs(10)) {
                return Err(internal(format!("container {} did not exit after KILL", c.name)));
            }
        }
        let _g = self.lock.lock().map_err(|_| internal("lock poisoned"))?;
        self.teardown_locked(&c.id);
        let c = Container::load(&p).map_err(internal)?;
        if c.mounted || c.attached {
            return Err(internal(format!(
                "container {}: teardown incomplete, not removing",
                c.name
            )));
        }
        std::fs::remove_dir_all(&p.dir).map_err(|e| internal(format!("{}: {e}", p.dir.display())))?;
        self.remove_anonymous_volumes(&c);
        Ok(Value::Null)
    }

    /// `POST /containers/{id}/wait`: blocks until the container exits; `{"StatusCode": n}`.
    pub fn wait(&self, key: &str) -> ApiResult {
        let (c, p) = self.find(key)?;
        loop {
            if let Status::Exited(code) = c.status(&p) {
                return Ok(json!({ "StatusCode": code }));
            }
            if !p.dir.exists() {
                return Ok(json!({ "StatusCode": read_exit(&p).unwrap_or(255) }));
            }
            if c.status(&p) == Status::Created {
                return Err(ApiError::conflict(format!(
                    "container {} was never started",
                    c.name
                )));
            }
            std::thread::sleep(POLL);
        }
    }
}
