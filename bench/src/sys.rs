//! Everything the bench creates outside its own memory — network namespaces and a temp directory — is
//! registered here before it exists and removed on every exit path: normal return, error, SIGINT/SIGTERM/
//! SIGHUP (a dedicated thread waits for them; every other thread has them blocked) and panic (a hook; the
//! release profile aborts on panic, so no destructor would run).

use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};

struct Registry {
    shutting_down: bool,
    netns: Vec<String>,
    dirs: Vec<PathBuf>,
}

static REG: Mutex<Registry> = Mutex::new(Registry {
    shutting_down: false,
    netns: Vec::new(),
    dirs: Vec::new(),
});

fn reg() -> MutexGuard<'static, Registry> {
    REG.lock().unwrap_or_else(|e| e.into_inner())
}

/// Blocks the termination signals in this (the main) thread, so every thread and child spawned later
/// inherits the mask (std resets it in children), and starts the thread that waits for them; installs the
/// panic hook. Call first, before any other thread exists.
pub fn install_cleanup() -> Result<(), String> {
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    set.thread_block().map_err(|e| format!("blocking signals: {e}"))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            if let Ok(sig) = set.wait() {
                eprintln!("\ncni-bench: {sig}, cleaning up");
                let mut r = reg();
                cleanup_locked(&mut r);
                std::process::exit(128 + sig as i32);
            }
        })
        .map_err(|e| format!("spawning the signal thread: {e}"))?;
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // try_lock: the panicking thread may hold the lock.
        if let Ok(mut r) = REG.try_lock() {
            cleanup_locked(&mut r);
        }
        default(info);
    }));
    Ok(())
}

fn cleanup_locked(r: &mut Registry) {
    r.shutting_down = true;
    let names = std::mem::take(&mut r.netns);
    if !names.is_empty() {
        let _ = ip_batch_raw(names.iter().map(|n| format!("netns del {n}")));
    }
    for d in std::mem::take(&mut r.dirs) {
        let _ = std::fs::remove_dir_all(&d);
    }
}

/// Removes everything still registered (the normal exit path).
pub fn cleanup() {
    let mut r = reg();
    cleanup_locked(&mut r);
    r.shutting_down = false;
}

/// Creates a fresh directory (which must not exist) that `cleanup` removes.
pub fn temp_dir(path: &Path) -> Result<(), String> {
    let mut r = reg();
    if r.shutting_down {
        return Err("shutting down".into());
    }
    r.dirs.push(path.to_path_buf());
    std::fs::create_dir(path).map_err(|e| format!("creating {}: {e}", path.display()))
}

/// Creates the named network namespaces (one `ip -batch`), registered first.
pub fn netns_add(names: &[String]) -> Result<(), String> {
    if names.is_empty() {
        return Ok(());
    }
    let mut r = reg();
    if r.shutting_down {
        return Err("shutting down".into());
    }
    r.netns.extend(names.iter().cloned());
    ip_batch_raw(names.iter().map(|n| format!("netns add {n}")))
}

/// Deletes the named network namespaces (one `ip -force -batch`; missing ones are not an error).
pub fn netns_del(names: &[String]) -> Result<(), String> {
    if names.is_empty() {
        return Ok(());
    }
    let mut r = reg();
    r.netns.retain(|n| !names.contains(n));
    ip_batch_raw(names.iter().map(|n| format!("netns del {n}")))
}

fn ip_batch_raw(lines: impl Iterator<Item = String>) -> Result<(), String> {
    let mut child = Command::new("ip")
        .args(["-force", "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("ip -batch: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let text: String = lines.map(|l| l + "\n").collect();
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| format!("ip -batch stdin: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("ip -batch: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip -batch: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Moves the calling thread into the network namespace at `path`. Threads and children created by this
/// thread afterwards start there too.
pub fn enter_netns(path: &Path) -> Result<(), String> {
    let f = File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    nix::sched::setns(&f, CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns {}: {e}", path.display()))
}

/// (device, inode) of a namespace file: equal for the same namespace.
pub fn ns_id(path: &Path) -> Result<(u64, u64), String> {
    let m = std::fs::metadata(path).map_err(|e| format!("stat {}: {e}", path.display()))?;
    Ok((m.dev(), m.ino()))
}

/// Fails unless the calling thread is in the namespace `want` (from `ns_id`): the guard that keeps the
/// plugins off the machine's own network.
pub fn assert_in_netns(want: (u64, u64)) -> Result<(), String> {
    let here = ns_id(Path::new("/proc/thread-self/ns/net"))?;
    if here == want {
        Ok(())
    } else {
        Err("refusing to run plugins: this thread is not in the node namespace".into())
    }
}

/// Runs a command, returns stdout; the error carries stderr.
pub fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
