//! The per-container shim (`corrald shim …`, a re-exec of corrald), in the role of conmon or containerd-shim:
//! it becomes the child subreaper, runs the OCI runtime's `create` (stdout and stderr of the container going to
//! its log file), waits for corrald's `start` on its stdin (corrald attaches the network meanwhile; EOF
//! instead means abandon: delete the container), runs the runtime's `start`, waits for the container's process,
//! writes its exit code (128+signal when killed) to the `exit` file, then deletes the runtime's record of it. It outlives corrald, so containers keep
//! running while corrald restarts. Each file it writes is also reported as a line on its stdout, a pipe
//! corrald reads to wake its waiters at once (writes fail harmlessly once corrald is gone).

use crate::container::Paths;
use crate::file;
use crate::runtime::OciRuntime;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;

/// `corrald shim` arguments (internal: corrald starts it).
#[derive(Debug, clap::Args)]
pub struct ShimArgs {
    /// Container id.
    #[arg(long)]
    pub id: String,
    /// corrald's state dir.
    #[arg(long)]
    pub state_dir: PathBuf,
    /// OCI runtime binary.
    #[arg(long)]
    pub runtime: PathBuf,
    /// The runtime's state root.
    #[arg(long)]
    pub runtime_root: PathBuf,
}

/// Tells corrald that `what` was just recorded.
fn report(what: &str) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{what}").and_then(|_| out.flush());
}

fn fail(p: &Paths, msg: &str) -> i32 {
    let _ = file::write_atomic(&p.error(), msg.as_bytes());
    let _ = file::write_atomic(&p.exit(), b"255");
    report("exit");
    eprintln!("shim: {msg}");
    1
}

fn log_tail(p: &Paths) -> String {
    let s = std::fs::read(p.log()).unwrap_or_default();
    let s = String::from_utf8_lossy(&s[s.len().saturating_sub(2000)..]).into_owned();
    s.trim().to_string()
}

/// Runs the shim; returns its own exit status.
pub fn run(a: ShimArgs) -> i32 {
    let p = Paths::new(&a.state_dir, &a.id);
    let rt = OciRuntime {
        binary: a.runtime,
        root: a.runtime_root,
    };
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        return fail(&p, &format!("cannot become the child subreaper: {e}"));
    }
    let log = match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p.log())
    {
        Ok(f) => f,
        Err(e) => return fail(&p, &format!("{}: {e}", p.log().display())),
    };
    let (out, err) = match (log.try_clone(), log.try_clone()) {
        (Ok(o), Ok(e)) => (o, e),
        _ => return fail(&p, "cannot duplicate the log file"),
    };
    let pid_file = p.dir.join("pid");
    let created = rt
        .command()
        .arg("create")
        .arg("--bundle")
        .arg(p.bundle())
        .arg("--pid-file")
        .arg(&pid_file)
        .arg(&a.id)
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .status();
    match created {
        Ok(s) if s.success() => {}
        Ok(_) => {
            return fail(
                &p,
                &format!("the OCI runtime could not create the container: {}", log_tail(&p)),
            )
        }
        Err(e) => return fail(&p, &format!("{}: {e}", rt.binary.display())),
    }
    let pid = match std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
    {
        Some(pid) => pid,
        None => {
            let _ = rt.delete(&a.id);
            return fail(&p, "the OCI runtime wrote no pid file");
        }
    };
    // corrald attaches the network meanwhile; it says `start` when it is ready, or closes the pipe.
    let mut go = String::new();
    if std::io::stdin().read_line(&mut go).is_err() || go.trim() != "start" {
        let _ = rt.delete(&a.id);
        return fail(
            &p,
            "corrald did not start the container (its setup failed, or corrald ended)",
        );
    }
    if let Err(e) = rt
        .command()
        .arg("start")
        .arg(&a.id)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| e.to_string())
        .and_then(|o| {
            if o.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&o.stderr).trim().to_string())
            }
        })
    {
        let _ = rt.delete(&a.id);
        return fail(&p, &format!("the OCI runtime could not start the container: {e}"));
    }
    // Not durable: a reboot ends the container anyway.
    let _ = file::write_replace(&p.started(), pid.to_string().as_bytes());
    report("started");
    let code = wait_for(pid);
    // Written, reported, then made durable: waiters read the file as soon as it is there; the fsync (about a
    // millisecond) is not on their path.
    let recorded = file::write_replace(&p.exit(), code.to_string().as_bytes());
    report("exit");
    let recorded = recorded.and_then(|_| file::sync(&p.exit()));
    // After the report: corrald's teardown (CNI DEL, unmounts) runs meanwhile; `rm` waits for this shim.
    let _ = rt.delete(&a.id);
    if let Err(e) = recorded {
        eprintln!("shim: cannot record exit code {code}: {e}");
        return 1;
    }
    0
}

/// Reaps children (orphans reparented to us included) until `pid` exits; its exit code, 128+signal if killed.
fn wait_for(pid: i32) -> i32 {
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => return code,
            Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == pid => return 128 + sig as i32,
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                eprintln!("shim: waiting for {pid}: {e}");
                return 255;
            }
        }
    }
}
