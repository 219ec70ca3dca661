//! Container lifecycle: start (overlay root, network namespace attached through CNI, bundle, shim), stop
//! (TERM, timeout, KILL), kill, remove, wait, and the teardown that always follows an exit: CNI DEL, netns
//! removed, overlay unmounted. A watcher thread per running container does the teardown when the process exits
//! on its own; `recover` restarts the watchers (and finishes teardowns) after a corrald restart.

use crate::bundle;
use crate::container::{read_exit, Container, Paths, Status};
use crate::engine::{ApiError, ApiResult, Engine};
use crate::{failpoint, file, netns, rootfs, user};
use serde_json::{json, Value};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often waiters re-check the state on disk when no shim reports (a shim adopted after a restart).
const POLL: Duration = Duration::from_millis(50);
/// First restart delay of the restart policy.
const RESTART_MIN: Duration = Duration::from_millis(100);
/// Longest restart delay.
const RESTART_MAX: Duration = Duration::from_secs(10);

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(e.to_string())
}

impl Engine {
    /// Waits until `done` holds, re-checking on every shim report and at least every `POLL`; false when
    /// `timeout` passes first.
    fn wait_until(&self, timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
        // No deadline when it lies beyond what an Instant can hold (Duration::MAX).
        let end = Instant::now().checked_add(timeout);
        loop {
            let ticket = self.events.ticket();
            if done() {
                return true;
            }
            let left = match end {
                Some(end) => end.saturating_duration_since(Instant::now()),
                None => POLL,
            };
            if left.is_zero() {
                return false;
            }
            self.events.wait_since(ticket, POLL.min(left));
        }
    }

    /// Waits until the container has exited (true) or `timeout` passes (false).
    fn wait_exit(&self, c: &Container, p: &Paths, timeout: Duration) -> bool {
        self.wait_until(timeout, || matches!(c.status(p), Status::Exited(_)))
    }

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
            if !c.attached {
                // A created container may be started long after its create checked its ports.
                self.check_ports_free(&c.id, &c.ports)?;
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
    fn launch_locked(self: &Arc<Self>, c: &mut Container, p: &Paths) -> Result<(), ApiError> {
        for f in [p.exit(), p.started(), p.error(), p.dir.join("pid")] {
            let _ = std::fs::remove_file(f);
        }
        // The previous run's shim deletes the runtime's record after the exit; let it finish, then delete what a
        // dead shim left, so the runtime can create the container under the same id.
        if let Some(pid) = c.shim_pid.take() {
            self.wait_until(Duration::from_secs(5), || {
                !crate::container::shim_alive(pid, &c.id)
            });
        }
        if self.runtime.root.join(&c.id).exists() {
            let _ = self.runtime.delete(&c.id);
        }
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
        self.wait_until(Duration::from_secs(60), || {
            p.started().exists() || p.exit().exists() || c.status(&p) != Status::Running
        });
        if let Ok(err) = std::fs::read_to_string(p.error()) {
            self.teardown(&c.id);
            return Err(ApiError::internal(err));
        }
        Ok(())
    }

    /// The restart policy's restart of an exited container, keeping its root and network attachment: false when
    /// it is gone, was stopped meanwhile (or was started by someone else, then it runs again: true).
    fn relaunch(self: &Arc<Self>, id: &str) -> Result<bool, ApiError> {
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

    /// Root, network namespace, files, bundle, shim, network; records each step so teardown undoes exactly what
    /// was done. The runtime creates the container (its slowest step) while the CNI plugins attach the network
    /// namespace it joins; the shim starts the process only when told to, once the network is ready.
    fn prepare(self: &Arc<Self>, c: &mut Container, p: &Paths) -> Result<(), ApiError> {
        if !c.mounted {
            rootfs::mount_overlay(&c.layers, &p.upper(), &p.work(), &p.rootfs()).map_err(internal)?;
            failpoint::hit(failpoint::START_OVERLAY);
            c.mounted = true;
            c.save(p).map_err(internal)?;
            for b in c.binds.iter().filter(|b| b.is_volume()) {
                crate::volume::seed_from_image(&p.rootfs(), &b.destination, std::path::Path::new(&b.source))
                    .map_err(internal)?;
            }
        }
        // The user from the container's own /etc/passwd and /etc/group (its upper dir included: a user added by
        // an earlier run counts), before anything is attached; an unknown name is the client's error.
        let user_spec = user::UserSpec::parse(&c.user).map_err(ApiError::bad)?;
        let exec_user = user::resolve_in_rootfs(&user_spec, &p.rootfs()).map_err(ApiError::bad)?;
        let init = match (&self.init_path, c.init) {
            (Some(path), true) => Some(path.as_path()),
            (None, true) => return Err(ApiError::bad("--init: corrald has no init binary")),
            (_, false) => None,
        };
        let ns = self.netns_path(&c.id);
        let attach = c.network != "host" && !c.attached;
        if attach {
            netns::delete(&ns).map_err(internal)?;
            netns::create(&ns).map_err(internal)?;
            failpoint::hit(failpoint::START_NETNS);
            c.attached = true;
            c.save(p).map_err(internal)?;
        }
        // The /etc files must exist for the runtime's bind mounts; those that depend on the network are
        // rewritten in place (their inodes are mounted) once it is attached.
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
            file::write_replace(&p.etc(name), text.as_bytes()).map_err(internal)?;
        }
        let netns = (c.network != "host").then_some(ns.as_path());
        let spec = bundle::spec(c, p, netns, &exec_user, init).map_err(internal)?;
        std::fs::create_dir_all(p.bundle()).map_err(internal)?;
        file::replace_json(&p.bundle().join("config.json"), &spec).map_err(internal)?;
        let mut go = self.spawn_shim(c, p)?;
        if attach {
            // On failure `go` is dropped: the shim sees EOF and deletes the created container.
            let result = self
                .networks
                .attach(&c.id, &ns, &c.network, &c.ports)
                .map_err(|e| {
                    let _ = netns::delete(&ns);
                    c.attached = false;
                    ApiError::internal(e)
                })?;
            failpoint::hit(failpoint::START_CNI);
            c.ip = result.as_ref().and_then(crate::network::first_ip);
            c.cni_result = result;
            c.save(p).map_err(internal)?;
            let resolv = bundle::resolv_conf(c.cni_result.as_ref(), &node_resolv);
            file::write_in_place(&p.etc("resolv.conf"), resolv.as_bytes()).map_err(internal)?;
        }
        // This container's hosts file and its peers' now name each other.
        self.refresh_hosts(&c.network);
        go.write_all(b"start\n")
            .map_err(|e| internal(format!("the shim ended before the start: {e}")))?;
        failpoint::hit(failpoint::START_SENT);
        Ok(())
    }

    /// Starts the shim, which has the runtime create the container and then waits for `start` on the pipe
    /// returned here. Its reports (a line per start and exit) wake the engine's waiters, and so does its end;
    /// it is reaped then (a shim adopted after a corrald restart is init's to reap).
    fn spawn_shim(self: &Arc<Self>, c: &mut Container, p: &Paths) -> Result<ChildStdin, ApiError> {
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
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(shim_log))
            .process_group(0)
            .spawn()
            .map_err(|e| internal(format!("start the shim: {e}")))?;
        failpoint::hit(failpoint::START_SHIM);
        c.shim_pid = i32::try_from(child.id()).ok();
        c.started_at = Some(file::now());
        let go = child.stdin.take();
        let reports = child.stdout.take();
        let engine = Arc::clone(self);
        std::thread::spawn(move || {
            if let Some(out) = reports {
                for _ in std::io::BufRead::lines(std::io::BufReader::new(out)) {
                    engine.events.notify();
                }
            }
            let _ = child.wait();
            engine.events.notify();
        });
        c.save(p).map_err(internal)?;
        go.ok_or_else(|| internal("the shim has no control pipe"))
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
        // The shim deletes the runtime's record after reporting the exit, while this teardown runs (it touches
        // neither the network nor the root); delete it here only when no shim will: it died, or the container
        // never started. A restart deletes a record left behind before it creates the container again.
        let shim_alive = c
            .shim_pid
            .is_some_and(|pid| crate::container::shim_alive(pid, id));
        if !shim_alive && self.runtime.root.join(id).exists() {
            let _ = self.runtime.delete(id);
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
                let ticket = engine.events.ticket();
                if matches!(c.status(&p), Status::Running) {
                    engine.events.wait_since(ticket, POLL);
                }
            }
            if let Ok(mut w) = engine.watching.lock() {
                w.remove(&id);
            }
        });
    }

    /// After a restart (corrald may have been killed at any point): removes what a dead create left, watches
    /// running containers (their watcher finishes the teardown, or applies the restart policy, of those that
    /// exited meanwhile), adopts a shim whose start was not recorded, undoes a start cut short, and then frees
    /// what no record accounts for (`collect_orphans`). Returns how many containers run.
    pub fn recover(self: &Arc<Self>) -> usize {
        self.remove_unrecorded();
        let mut running = 0;
        for c in self.all() {
            let p = self.paths(&c.id);
            if (c.attached || c.mounted) && !p.started().exists() {
                if self.settle_interrupted_start(c, &p) {
                    running += 1;
                }
                continue;
            }
            match c.status(&p) {
                Status::Running => {
                    running += 1;
                    self.watch(&c.id);
                }
                Status::Exited(_) if c.attached || c.mounted => self.watch(&c.id),
                _ => {}
            }
        }
        self.collect_orphans();
        running
    }

    /// A start that corrald did not see through (it died in `prepare`): the shim, if it got that far, starts
    /// the container only on corrald's word and gives up when its control pipe closes. If corrald's word was
    /// sent, the container starts and is adopted (true); otherwise the start is undone and the container stays
    /// `created`, its `error` file saying why.
    fn settle_interrupted_start(self: &Arc<Self>, mut c: Container, p: &Paths) -> bool {
        let shim = c
            .shim_pid
            .filter(|pid| crate::container::shim_alive(*pid, &c.id))
            .or_else(|| crate::container::find_shim(&c.id));
        if let Some(pid) = shim {
            self.wait_until(Duration::from_secs(10), || {
                p.started().exists() || !crate::container::shim_alive(pid, &c.id)
            });
            if p.started().exists() {
                c.shim_pid = Some(pid);
                if let Err(e) = c.save(p) {
                    eprintln!("corrald: container {}: save: {e}", c.name);
                }
                self.watch(&c.id);
                return true;
            }
        }
        self.teardown(&c.id);
        if let Ok(mut c) = Container::load(p) {
            c.shim_pid = None;
            c.started_at = None;
            let _ = std::fs::remove_file(p.exit());
            if let Err(e) = c.save(p) {
                eprintln!("corrald: container {}: save: {e}", c.name);
            }
        }
        false
    }

    /// Container dirs without a record (corrald died in `create`, or the record was lost): their shim and
    /// runtime state, overlay and network namespace, and the dir itself. Their CNI leftovers go in the GC.
    fn remove_unrecorded(&self) {
        let Ok(_g) = self.lock.lock() else { return };
        let dirs = std::fs::read_dir(self.state.join("containers"))
            .into_iter()
            .flatten()
            .flatten();
        for e in dirs {
            let id = e.file_name().to_string_lossy().into_owned();
            let p = self.paths(&id);
            if !e.path().is_dir() || Container::load(&p).is_ok() {
                continue;
            }
            eprintln!("corrald: removing container dir {id}: no valid record");
            if let Some(pid) = crate::container::find_shim(&id) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
            }
            let _ = self.runtime.delete(&id);
            let cleaned = rootfs::unmount(&p.rootfs()).and_then(|()| {
                netns::delete(&self.netns_path(&id)).map_err(|e| e.to_string())?;
                std::fs::remove_dir_all(&p.dir).map_err(|e| format!("{}: {e}", p.dir.display()))
            });
            if let Err(e) = cleaned {
                eprintln!("corrald: container dir {id}: {e}");
            }
        }
    }

    /// Frees what no record accounts for: network namespaces of containers not attached, overlay mounts of
    /// containers not mounted, runtime state of containers not running, anonymous volumes no container uses,
    /// and, through CNI GC of every network, the addresses and NAT entries of attachments that are not
    /// recorded (the loopback list keeps no state and needs none).
    pub fn collect_orphans(&self) {
        let Ok(_g) = self.lock.lock() else { return };
        let records: std::collections::HashMap<String, Container> =
            self.all().into_iter().map(|c| (c.id.clone(), c)).collect();
        let netns_dir = self.state.join("netns");
        for e in std::fs::read_dir(&netns_dir).into_iter().flatten().flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            if !records.get(&id).is_some_and(|c| c.attached) {
                eprintln!("corrald: removing network namespace {id}: no attached container");
                if let Err(err) = netns::delete(&e.path()) {
                    eprintln!("corrald: network namespace {id}: {err}");
                }
            }
        }
        for (id, rootfs) in self.overlay_mounts() {
            if !records.get(&id).is_some_and(|c| c.mounted) {
                eprintln!("corrald: unmounting the root of container {id}: not mounted per its record");
                if let Err(err) = rootfs::unmount(&rootfs) {
                    eprintln!("corrald: {err}");
                }
            }
        }
        for e in std::fs::read_dir(&self.runtime.root)
            .into_iter()
            .flatten()
            .flatten()
        {
            let id = e.file_name().to_string_lossy().into_owned();
            let running = records
                .get(&id)
                .is_some_and(|c| c.status(&self.paths(&id)) == Status::Running);
            if e.path().is_dir() && !running {
                eprintln!("corrald: deleting runtime state of container {id}: not running");
                if let Err(err) = self.runtime.delete(&id) {
                    eprintln!("corrald: {err}");
                }
            }
        }
        for v in self.volumes.list().into_iter().filter(|v| v.anonymous) {
            if !records
                .values()
                .any(|c| c.binds.iter().any(|b| b.volume.as_ref() == Some(&v.name)))
            {
                eprintln!("corrald: removing anonymous volume {}: no container", v.name);
                if let Err(err) = self.volumes.remove(&v.name) {
                    eprintln!("corrald: volume {}: {err}", v.name);
                }
            }
        }
        for (network, _) in self.networks.list().unwrap_or_default() {
            let attached: Vec<String> = records
                .values()
                .filter(|c| c.attached && c.network == network)
                .map(|c| c.id.clone())
                .collect();
            if let Err(err) = self.networks.gc(&network, &attached) {
                eprintln!("corrald: {err}");
            }
        }
    }

    /// The overlay roots mounted under the state dir: (container id, mount point), from this mount namespace's
    /// mountinfo.
    fn overlay_mounts(&self) -> Vec<(String, std::path::PathBuf)> {
        let containers = self.state.join("containers");
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        info.lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(std::path::PathBuf::from)
            .filter_map(|m| {
                let rel = m.strip_prefix(&containers).ok()?;
                let mut parts = rel.iter();
                let id = parts.next()?.to_string_lossy().into_owned();
                (parts.next()? == "rootfs" && parts.next().is_none()).then_some((id, m.clone()))
            })
            .collect()
    }

    /// `POST /containers/{id}/stop?t=SECONDS`: TERM, then KILL after the timeout; then teardown.
    pub fn stop(&self, key: &str, timeout: Duration) -> ApiResult {
        let (c, p) = self.find(key)?;
        self.mark_stopped(&p)?;
        if c.status(&p) == Status::Running {
            let _ = self.runtime.kill(&c.id, "TERM");
            if !self.wait_exit(&c, &p, timeout) {
                let _ = self.runtime.kill(&c.id, "KILL");
                if !self.wait_exit(&c, &p, Duration::from_secs(10)) {
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
            if !self.wait_exit(&c, &p, Duration::from_secs(10)) {
                return Err(internal(format!("container {} did not exit after KILL", c.name)));
            }
        }
        let _g = self.lock.lock().map_err(|_| internal("lock poisoned"))?;
        self.teardown_locked(&c.id);
        let c = Container::load(&p).map_err(internal)?;
        // The runtime's record (and cgroups) go with the container: its shim deletes them after the exit report,
        // alongside the teardown; wait for that, then delete whatever a dead shim left.
        if let Some(pid) = c.shim_pid {
            self.wait_until(Duration::from_secs(5), || {
                !crate::container::shim_alive(pid, &c.id)
            });
        }
        if self.runtime.root.join(&c.id).exists() {
            let _ = self.runtime.delete(&c.id);
        }
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
        let mut code = None;
        self.wait_until(Duration::MAX, || {
            code = match c.status(&p) {
                Status::Exited(n) => Some(Ok(n)),
                _ if !p.dir.exists() => Some(Ok(read_exit(&p).unwrap_or(255))),
                Status::Created => Some(Err(())),
                Status::Running => None,
            };
            code.is_some()
        });
        match code {
            Some(Ok(n)) => Ok(json!({ "StatusCode": n })),
            _ => Err(ApiError::conflict(format!(
                "container {} was never started",
                c.name
            ))),
        }
    }
}
