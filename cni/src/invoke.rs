//! Running another plugin: find it in CNI_PATH, exec it with the same environment and config, forward its
//! stderr, and read its result or error from stdout (SPEC.md section 4, delegation).

use crate::error::{codes, CniError};
use crate::result::CniResult;
use crate::skel::{Command, Plugin, Request};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// Finds an executable named `plugin` in the directories of CNI_PATH.
pub fn find_in_path(plugin: &str, dirs: &[PathBuf]) -> Result<PathBuf, CniError> {
    if plugin.is_empty() || plugin.contains('/') || plugin == "." || plugin == ".." {
        return Err(CniError::invalid_config(format!(
            "invalid plugin type \"{plugin}\""
        )));
    }
    if dirs.is_empty() {
        return Err(CniError::invalid_env(format!(
            "CNI_PATH is empty: cannot find plugin \"{plugin}\""
        )));
    }
    dirs.iter()
        .map(|d| d.join(plugin))
        .find(|p| is_executable(p))
        .ok_or_else(|| {
            let list: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
            CniError::invalid_config(format!(
                "failed to find plugin \"{plugin}\" in path [{}]",
                list.join(" ")
            ))
        })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Execs a plugin binary with `env` (CNI_COMMAND replaced by `command`) and `stdin`; stderr is inherited.
/// Returns the parsed stdout (None when empty), or the plugin's error with its own code.
pub fn exec_plugin(
    path: &Path,
    command: Command,
    env: &BTreeMap<String, String>,
    stdin: &[u8],
) -> Result<Option<Value>, CniError> {
    let name = path.display();
    let mut child = spawn_retrying_busy(path, command, env)
        .map_err(|e| CniError::io(format!("cannot run plugin {name}")).with_details(e))?;
    if let Some(mut input) = child.stdin.take() {
        // A plugin may exit without reading its config; its exit status tells what happened, not EPIPE.
        match input.write_all(stdin) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                return Err(CniError::io(format!("cannot write config to {name}")).with_details(e))
            }
            _ => {}
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| CniError::io(format!("waiting for {name}")).with_details(e))?;
    let parsed: Option<Value> = if out.stdout.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(serde_json::from_slice(&out.stdout).map_err(|e| {
            CniError::decode(format!("cannot decode output of {name}"))
                .with_details(format!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
        })?)
    };
    if out.status.success() {
        return Ok(parsed);
    }
    let err = parsed
        .as_ref()
        .and_then(CniError::from_json)
        .unwrap_or_else(|| CniError::new(codes::INTERNAL, format!("plugin {name} failed ({})", out.status)));
    Err(err)
}

/// Spawns the plugin; retries briefly on ETXTBSY, which exec returns while a binary that is being installed
/// (or a file another thread's fork still holds open for writing) is executed.
fn spawn_retrying_busy(
    path: &Path,
    command: Command,
    env: &BTreeMap<String, String>,
) -> std::io::Result<std::process::Child> {
    let mut attempt = 0;
    loop {
        let spawned = std::process::Command::new(path)
            .env_clear()
            .envs(env)
            .env("CNI_COMMAND", command.as_str())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn();
        match spawned {
            Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) && attempt < 20 => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// A delegate corral can run inside the calling plugin: its type name and its implementation.
pub type Builtin<'a> = (&'a str, &'a dyn Plugin);

/// Set to `1` to always exec delegates, even corral's own (tests that kill a delegate mid-ADD use it).
pub const EXEC_ENV: &str = "CORRAL_DELEGATE_EXEC";

/// The built-in implementation to use for `plugin`, if the binary CNI_PATH resolves it to is corral's own
/// build of it (see [`crate::identity`]): then running it here does exactly what exec'ing it would, minus the
/// exec. Any other binary of that name is exec'd as the spec says.
fn builtin_for<'a>(
    plugin: &str,
    path: &Path,
    req: &Request,
    builtins: &[Builtin<'a>],
) -> Option<&'a dyn Plugin> {
    if req.env.get(EXEC_ENV).is_some_and(|v| v == "1") {
        return None;
    }
    let (_, p) = builtins.iter().find(|(name, _)| *name == plugin)?;
    crate::identity::is_corral_plugin(path).then_some(*p)
}

/// What a delegate gave back.
enum Outcome {
    /// A result from a built-in.
    Result(CniResult),
    /// JSON printed by an exec'd plugin.
    Json(Value),
    /// Nothing.
    Done,
}

/// Calls the delegate named `plugin` (usually the IPAM type) for `command` with the request's own
/// environment and config bytes: exec'd from CNI_PATH or, when that binary is corral's own and a built-in is
/// given, run in this process.
fn delegate(
    plugin: &str,
    command: Command,
    req: &Request,
    builtins: &[Builtin<'_>],
) -> Result<Outcome, CniError> {
    let path = find_in_path(plugin, &req.cni_path)?;
    if let Some(local) = builtin_for(plugin, &path, req, builtins) {
        let req = Request {
            command,
            ..req.clone()
        };
        tracing::debug!(plugin, verb = command.as_str(), "delegate runs in-process");
        return match command {
            Command::Add => local.add(&req).map(Outcome::Result),
            Command::Del => local.del(&req).map(|()| Outcome::Done),
            Command::Check => local.check(&req).map(|()| Outcome::Done),
            Command::Status => local.status(&req).map(|()| Outcome::Done),
            Command::Gc => local.gc(&req).map(|()| Outcome::Done),
            Command::Version => Ok(Outcome::Done),
        };
    }
    exec_plugin(&path, command, &req.env, &req.stdin).map(|v| v.map_or(Outcome::Done, Outcome::Json))
}

/// ADD on a delegate, returning its result read in the request's version.
pub fn delegate_add(plugin: &str, req: &Request, builtins: &[Builtin<'_>]) -> Result<CniResult, CniError> {
    match delegate(plugin, Command::Add, req, builtins)? {
        Outcome::Result(r) => Ok(r),
        Outcome::Json(out) => {
            CniResult::parse(&out, req.version()).map_err(|e| e.context(format!("result of \"{plugin}\"")))
        }
        Outcome::Done => Err(CniError::decode(format!(
            "plugin \"{plugin}\" returned no result"
        ))),
    }
}

/// DEL (or CHECK, GC, STATUS) on a delegate.
pub fn delegate_void(
    plugin: &str,
    command: Command,
    req: &Request,
    builtins: &[Builtin<'_>],
) -> Result<(), CniError> {
    delegate(plugin, command, req, builtins).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("corral-cni-invoke-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn finds_first_executable_in_path() {
        let d = tmpdir("find");
        let a = d.join("a");
        let b = d.join("b");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(a.join("ipam"), "not executable").unwrap();
        let want = script(&b, "ipam", "true");
        assert_eq!(find_in_path("ipam", &[a.clone(), b.clone()]).unwrap(), want);
        let e = find_in_path("nope", &[a, b]).unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("nope"));
        assert_eq!(find_in_path("x", &[]).unwrap_err().code, 4);
        assert_eq!(
            find_in_path("../x", std::slice::from_ref(&d)).unwrap_err().code,
            7
        );
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn passes_env_and_stdin_and_reads_result() {
        let d = tmpdir("ok");
        let p = script(
            &d,
            "echo",
            r#"read -r line; printf '{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.7/24"}],"dns":{"domain":"%s-%s"}}' "$CNI_COMMAND" "$MARK""#,
        );
        let mut env = BTreeMap::new();
        env.insert("MARK".to_string(), "m".to_string());
        let v = exec_plugin(&p, Command::Add, &env, b"{}\n").unwrap().unwrap();
        let r = CniResult::parse(&v, "1.0.0").unwrap();
        assert_eq!(r.dns.domain, "ADD-m");
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn delegate_error_keeps_code() {
        let d = tmpdir("err");
        let p = script(
            &d,
            "bad",
            r#"echo '{"cniVersion":"1.0.0","code":11,"msg":"busy"}'; exit 1"#,
        );
        let e = exec_plugin(&p, Command::Add, &BTreeMap::new(), b"{}").unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (11, "busy"));
        let p = script(&d, "crash", "exit 3");
        assert_eq!(
            exec_plugin(&p, Command::Del, &BTreeMap::new(), b"{}")
                .unwrap_err()
                .code,
            999
        );
        let p = script(&d, "empty", "true");
        assert_eq!(
            exec_plugin(&p, Command::Del, &BTreeMap::new(), b"{}").unwrap(),
            None
        );
        std::fs::remove_dir_all(d).unwrap();
    }
}
