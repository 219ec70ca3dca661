//! The plugin skeleton: reads the environment and stdin, checks them against the spec, calls the plugin's
//! verb and writes the result or the error. Environment, stdin and stdout are injected so the whole protocol
//! is unit-tested without a process.

use crate::args::CniArgs;
use crate::config::{decode, NetConf};
use crate::error::{codes, CniError};
use crate::result::CniResult;
use crate::version;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;

/// The verbs of CNI 1.1.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Attach.
    Add,
    /// Detach (idempotent).
    Del,
    /// Verify an attachment.
    Check,
    /// Report readiness.
    Status,
    /// Collect garbage of attachments the runtime no longer has.
    Gc,
    /// Report supported versions.
    Version,
}

impl Command {
    /// Parses CNI_COMMAND.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            "VERSION" => Command::Version,
            _ => return None,
        })
    }
    /// The CNI_COMMAND spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Gc => "GC",
            Command::Version => "VERSION",
        }
    }
    /// Environment variables this verb requires (besides CNI_COMMAND).
    fn required_env(self) -> &'static [&'static str] {
        match self {
            Command::Add | Command::Check => &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
            Command::Del => &["CNI_CONTAINERID", "CNI_IFNAME"],
            Command::Status | Command::Gc | Command::Version => &[],
        }
    }
    /// The oldest config version in which this verb exists.
    fn min_version(self) -> &'static str {
        match self {
            Command::Check => "0.4.0",
            Command::Status | Command::Gc => "1.1.0",
            _ => "0.1.0",
        }
    }
}

/// One invocation, validated.
#[derive(Debug, Clone)]
pub struct Request {
    /// The verb.
    pub command: Command,
    /// CNI_CONTAINERID (empty for STATUS and GC).
    pub container_id: String,
    /// CNI_NETNS, if given and non-empty.
    pub netns: Option<PathBuf>,
    /// CNI_IFNAME (empty for STATUS and GC).
    pub ifname: String,
    /// CNI_ARGS.
    pub args: CniArgs,
    /// CNI_PATH, split.
    pub cni_path: Vec<PathBuf>,
    /// The common config keys.
    pub conf: NetConf,
    /// The config bytes as received, for the plugin's own keys and for delegates.
    pub stdin: Vec<u8>,
    /// The full environment, passed on to delegates.
    pub env: BTreeMap<String, String>,
}

impl Request {
    /// Decodes the plugin's own config type from stdin (code 6 on failure).
    pub fn decode_conf<T: serde::de::DeserializeOwned>(&self) -> Result<T, CniError> {
        decode(&self.stdin, "network configuration")
    }

    /// The request's cniVersion (as validated).
    pub fn version(&self) -> &str {
        &self.conf.cni_version
    }

    /// The prevResult, read in any version.
    pub fn prev_result(&self) -> Result<Option<CniResult>, CniError> {
        match &self.conf.prev_result {
            None | Some(Value::Null) => Ok(None),
            Some(v) => CniResult::parse(v, &self.conf.cni_version)
                .map(Some)
                .map_err(|e| e.context("prevResult")),
        }
    }

    /// Whether CNI_NETNS names the plugin's own network namespace (and CNI_NETNS_OVERRIDE does not allow
    /// acting there): DEL must then leave links alone.
    pub fn netns_is_own(&self) -> bool {
        self.netns
            .as_deref()
            .is_some_and(|ns| is_own_netns(ns, &self.env))
    }

    /// CNI_NETNS, or a code-4 error naming it (for verbs that need it).
    pub fn require_netns(&self) -> Result<&PathBuf, CniError> {
        self.netns
            .as_ref()
            .ok_or_else(|| CniError::invalid_env("CNI_NETNS is required"))
    }
}

/// What a plugin implements. STATUS and GC default to success with nothing to do.
pub trait Plugin {
    /// ADD: returns the result (the skeleton converts it to the request's version).
    fn add(&self, req: &Request) -> Result<CniResult, CniError>;
    /// DEL: best effort, idempotent.
    fn del(&self, req: &Request) -> Result<(), CniError>;
    /// CHECK: verify against prevResult.
    fn check(&self, req: &Request) -> Result<(), CniError>;
    /// STATUS: ready for ADD?
    fn status(&self, _req: &Request) -> Result<(), CniError> {
        Ok(())
    }
    /// GC: remove what belongs to attachments not in the valid list.
    fn gc(&self, _req: &Request) -> Result<(), CniError> {
        Ok(())
    }
}

/// Process edges, injected.
pub struct Io<'a> {
    /// Environment variables.
    pub env: &'a BTreeMap<String, String>,
    /// Standard input.
    pub stdin: &'a mut dyn Read,
    /// Standard output (results and errors).
    pub stdout: &'a mut dyn Write,
    /// Standard error (the about text).
    pub stderr: &'a mut dyn Write,
}

/// Runs one invocation and returns the process exit code.
pub fn run(plugin: &dyn Plugin, about: &str, io: Io<'_>) -> i32 {
    let Some(cmd) = io.env.get("CNI_COMMAND").filter(|c| !c.is_empty()) else {
        let _ = writeln!(
            io.stderr,
            "{about}\nCNI protocol versions supported: {}",
            version::SUPPORTED.join(", ")
        );
        return 0;
    };
    let (outcome, ver) = dispatch(plugin, cmd, io.env, io.stdin);
    match outcome {
        Ok(Some(v)) => match serde_json::to_writer(&mut *io.stdout, &v) {
            Ok(()) => 0,
            Err(_) => 1,
        },
        Ok(None) => 0,
        Err(e) => {
            tracing::debug!(code = e.code, msg = %e.msg, "returning error");
            let _ = serde_json::to_writer(&mut *io.stdout, &e.to_json(&ver));
            1
        }
    }
}

/// The version to label an error with: the config's if it is one we know, else the newest.
fn label_version(conf_version: &str) -> String {
    if version::is_supported(conf_version) {
        conf_version.to_string()
    } else {
        version::CURRENT.to_string()
    }
}

fn dispatch(
    plugin: &dyn Plugin,
    cmd: &str,
    env: &BTreeMap<String, String>,
    stdin: &mut dyn Read,
) -> (Result<Option<Value>, CniError>, String) {
    let mut bytes = Vec::new();
    let Some(command) = Command::parse(cmd) else {
        return (
            Err(CniError::invalid_env(format!("unknown CNI_COMMAND: {cmd}"))),
            version::CURRENT.into(),
        );
    };
    if let Err(e) = stdin.read_to_end(&mut bytes) {
        return (
            Err(CniError::io("error reading from stdin").with_details(e)),
            version::CURRENT.into(),
        );
    }
    if command == Command::Version {
        return (Ok(Some(version_reply(&bytes))), version::CURRENT.into());
    }
    let req = match build_request(command, env, bytes) {
        Ok(r) => r,
        Err((e, ver)) => return (Err(e), ver),
    };
    let ver = req.conf.cni_version.clone();
    let outcome = match command {
        Command::Add => plugin.add(&req).and_then(|r| r.to_version(&ver)).map(Some),
        Command::Del => plugin.del(&req).map(|()| None),
        Command::Check => plugin.check(&req).map(|()| None),
        Command::Status => plugin.status(&req).map(|()| None),
        Command::Gc => plugin.gc(&req).map(|()| None),
        Command::Version => Ok(None),
    };
    (outcome, ver)
}

/// VERSION: echo the asked version (the newest if none) and list what we support.
fn version_reply(stdin: &[u8]) -> Value {
    let asked = serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion").and_then(Value::as_str).map(str::to_string))
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| version::CURRENT.to_string());
    json!({ "cniVersion": asked, "supportedVersions": version::SUPPORTED })
}

fn build_request(
    command: Command,
    env: &BTreeMap<String, String>,
    stdin: Vec<u8>,
) -> Result<Request, (CniError, String)> {
    let get = |k: &str| env.get(k).map(String::as_str).unwrap_or("");
    // Env is checked first, but the error carries the config's version when it can be read.
    let conf_version = serde_json::from_slice::<Value>(&stdin)
        .ok()
        .and_then(|v| v.get("cniVersion").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default();
    let label = label_version(&conf_version);
    let fail = |e: CniError| (e, label.clone());

    let missing: Vec<&str> = command
        .required_env()
        .iter()
        .copied()
        .filter(|k| get(k).is_empty())
        .collect();
    if !missing.is_empty() {
        return Err(fail(CniError::invalid_env(format!(
            "required env variables [{}] missing",
            missing.join(",")
        ))));
    }
    let container_id = get("CNI_CONTAINERID").to_string();
    let ifname = get("CNI_IFNAME").to_string();
    if !command.required_env().is_empty() {
        validate_container_id(&container_id).map_err(fail)?;
        validate_ifname(&ifname).map_err(fail)?;
    }
    let args = CniArgs::parse(get("CNI_ARGS")).map_err(fail)?;
    let netns = Some(get("CNI_NETNS"))
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    let cni_path = get("CNI_PATH")
        .split(':')
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .collect();

    let mut conf: NetConf = decode(&stdin, "network configuration").map_err(fail)?;
    if conf.cni_version.is_empty() {
        conf.cni_version = version::DEFAULT_WHEN_ABSENT.into();
    }
    if !version::is_supported(&conf.cni_version) {
        return Err((
            CniError::incompatible_version(&conf.cni_version),
            version::CURRENT.into(),
        ));
    }
    let ver = conf.cni_version.clone();
    if !version::at_least(&ver, command.min_version()) {
        return Err((
            CniError::new(
                codes::INCOMPATIBLE_VERSION,
                format!("config version \"{ver}\" does not allow \"{}\"", command.as_str()),
            ),
            ver,
        ));
    }
    conf.validate_name().map_err(|e| (e, ver.clone()))?;
    if let Some(ns) = &netns {
        if matches!(command, Command::Add | Command::Check) {
            check_not_own_netns(ns, env).map_err(|e| (e, ver.clone()))?;
        }
    }
    Ok(Request {
        command,
        container_id,
        netns,
        ifname,
        args,
        cni_path,
        conf,
        stdin,
        env: env.clone(),
    })
}

/// CNI_CONTAINERID: a letter or digit, then letters, digits, `_`, `.`, `-` (code 4).
pub fn validate_container_id(id: &str) -> Result<(), CniError> {
    let mut chars = id.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(CniError::invalid_env(format!(
            "CNI_CONTAINERID \"{id}\" is invalid: must start with a letter or digit and contain only letters, \
             digits, '_', '.' and '-'"
        )))
    }
}

/// CNI_IFNAME: at most 15 bytes, not `.` or `..`, no `/`, `:` or whitespace (code 4).
pub fn validate_ifname(name: &str) -> Result<(), CniError> {
    let why = if name.is_empty() {
        Some("is empty")
    } else if name.len() > 15 {
        Some("is longer than 15 characters")
    } else if name == "." || name == ".." {
        Some("is not a valid name")
    } else if name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()) {
        Some("contains '/', ':' or whitespace")
    } else {
        None
    };
    match why {
        None => Ok(()),
        Some(w) => Err(CniError::invalid_env(format!("CNI_IFNAME \"{name}\" {w}"))),
    }
}

/// Whether `ns` is the calling thread's own network namespace and CNI_NETNS_OVERRIDE does not allow acting
/// there. A reused path (`/proc/<pid>/ns/net` of a process that is gone) can name the node itself: ADD and
/// CHECK are refused there, DEL leaves links alone (reference plugins#714).
fn is_own_netns(ns: &std::path::Path, env: &BTreeMap<String, String>) -> bool {
    let overridden = matches!(
        env.get("CNI_NETNS_OVERRIDE").map(String::as_str),
        Some("1" | "true")
    );
    let ident = |p: &std::path::Path| nix::sys::stat::stat(p).ok().map(|s| (s.st_dev, s.st_ino));
    let theirs = ident(ns);
    !overridden && theirs.is_some() && theirs == ident(std::path::Path::new("/proc/thread-self/ns/net"))
}

/// Refuses to configure the plugin's own netns (it would take the node's `lo` or routes).
fn check_not_own_netns(ns: &std::path::Path, env: &BTreeMap<String, String>) -> Result<(), CniError> {
    if is_own_netns(ns, env) {
        return Err(CniError::new(
            codes::INVALID_NETNS,
            format!("CNI_NETNS {} is the plugin's own network namespace", ns.display()),
        ));
    }
    Ok(())
}

/// Entry point of a plugin binary: real env, stdin and stdout; `--help`/`--version` print the about text.
pub fn main(plugin: &dyn Plugin, about: &str, help: &str) -> ! {
    crate::log::init();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv
        .iter()
        .any(|a| a == "--help" || a == "-h" || a == "--version" || a == "-V")
    {
        println!(
            "{about}\nCNI protocol versions supported: {}\n\n{help}",
            version::SUPPORTED.join(", ")
        );
        std::process::exit(0);
    }
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let code = run(
        plugin,
        about,
        Io {
            env: &env,
            // Unlocked handles: a held stderr lock would block logging from helper threads (netns workers).
            stdin: &mut std::io::stdin(),
            stdout: &mut std::io::stdout(),
            stderr: &mut std::io::stderr(),
        },
    );
    std::process::exit(code)
}

#[cfg(test)]
mod tests;
