//! `corral cni`: run a conflist's chain for one attachment exactly as a container runtime does (like the
//! reference's `cnitool`), caching the ADD result for DEL and CHECK as libcni does.

use clap::{Args, Subcommand};
use corral_cni::runtime::{Attachment, Conflist, Runtime};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `corral cni` arguments.
#[derive(Debug, Args)]
pub struct CniArgs {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, Subcommand)]
enum Verb {
    /// Attach a network namespace: run ADD through the chain and print the result.
    Add(Target),
    /// Detach: run DEL through the chain in reverse (works when the netns is already gone).
    Del(Target),
    /// Verify an attachment against its cached result.
    Check(Target),
    /// Ask every plugin of the chain whether it is ready (cniVersion 1.1.0).
    Status(ListArg),
    /// Garbage-collect: keep only the given attachments (`ID/IFNAME`), release everything else (1.1.0).
    Gc {
        #[command(flatten)]
        list: ListArg,
        /// Attachments to keep, as `CONTAINERID/IFNAME`.
        #[arg(long = "keep")]
        keep: Vec<String>,
    },
}

#[derive(Debug, Args)]
struct ListArg {
    /// The network configuration list (.conflist) or single config (.conf).
    #[arg(long)]
    conflist: PathBuf,
    /// Directories holding the plugins (CNI_PATH); defaults to the directory of this binary.
    #[arg(long, env = "CNI_PATH", value_delimiter = ':')]
    cni_path: Vec<PathBuf>,
}

#[derive(Debug, Args)]
struct Target {
    #[command(flatten)]
    list: ListArg,
    /// The container's network namespace path (may be empty on DEL).
    #[arg(long, default_value = "")]
    netns: String,
    /// Container id.
    #[arg(long)]
    id: String,
    /// Interface name inside the container.
    #[arg(long, default_value = "eth0")]
    ifname: String,
    /// Publish a port: `[hostIP:]hostPort:containerPort[/tcp|udp|sctp]` (portMappings capability).
    #[arg(short = 'p', long = "publish")]
    publish: Vec<String>,
    /// Extra CNI_ARGS as `K=V`.
    #[arg(long = "arg")]
    args: Vec<String>,
}

/// Runs the subcommand; returns the text to print.
pub fn run(args: CniArgs) -> Result<String, String> {
    match args.verb {
        Verb::Add(t) => {
            let (list, rt, att) = load(&t)?;
            let result = list.add(&rt, &att).map_err(|e| e.to_string())?;
            write_cache(&list, &att, &result)?;
            serde_json::to_string_pretty(&result).map_err(|e| e.to_string())
        }
        Verb::Del(t) => {
            let (list, rt, att) = load(&t)?;
            let cached = read_cache(&list, &att);
            list.del(&rt, &att, cached.as_ref()).map_err(|e| e.to_string())?;
            let _ = std::fs::remove_file(cache_path(&list, &att));
            Ok(String::new())
        }
        Verb::Check(t) => {
            let (list, rt, att) = load(&t)?;
            let cached =
                read_cache(&list, &att).ok_or("no cached result for this attachment: ADD it first")?;
            list.check(&rt, &att, &cached).map_err(|e| e.to_string())?;
            Ok("ok".into())
        }
        Verb::Status(l) => {
            let (list, rt) = load_list(&l)?;
            list.status(&rt).map_err(|e| e.to_string())?;
            Ok("ready".into())
        }
        Verb::Gc { list: l, keep } => {
            let (list, rt) = load_list(&l)?;
            let valid = keep
                .iter()
                .map(|k| {
                    k.split_once('/')
                        .map(|(id, ifname)| corral_cni::Attachment {
                            container_id: id.into(),
                            ifname: ifname.into(),
                        })
                        .ok_or_else(|| format!("--keep {k}: want CONTAINERID/IFNAME"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            list.gc(&rt, &valid).map_err(|e| e.to_string())?;
            Ok(String::new())
        }
    }
}

fn load_list(l: &ListArg) -> Result<(Conflist, Runtime), String> {
    let bytes = std::fs::read(&l.conflist).map_err(|e| format!("{}: {e}", l.conflist.display()))?;
    let list = Conflist::parse(&bytes).map_err(|e| format!("{}: {e}", l.conflist.display()))?;
    let cni_path = if l.cni_path.is_empty() {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find my own directory: {e}"))?;
        vec![exe.parent().map(Path::to_path_buf).unwrap_or_default()]
    } else {
        l.cni_path.clone()
    };
    // Plugins get the runtime's environment, as libcni passes it.
    let env: BTreeMap<String, String> = std::env::vars().filter(|(k, _)| !k.starts_with("CNI_")).collect();
    Ok((list, Runtime { cni_path, env }))
}

fn load(t: &Target) -> Result<(Conflist, Runtime, Attachment), String> {
    let (list, rt) = load_list(&t.list)?;
    let mut capability_args = Map::new();
    if !t.publish.is_empty() {
        let maps = t
            .publish
            .iter()
            .map(|p| parse_publish(p))
            .collect::<Result<Vec<_>, _>>()?;
        capability_args.insert("portMappings".into(), Value::Array(maps));
    }
    let args = t
        .args
        .iter()
        .map(|a| {
            a.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or(format!("--arg {a}: want K=V"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let att = Attachment {
        container_id: t.id.clone(),
        netns: t.netns.clone(),
        ifname: t.ifname.clone(),
        args,
        capability_args,
    };
    Ok((list, rt, att))
}

/// Parses `[hostIP:]hostPort:containerPort[/proto]` into a portMappings entry.
pub fn parse_publish(spec: &str) -> Result<Value, String> {
    let bad = || format!("-p {spec}: want [hostIP:]hostPort:containerPort[/tcp|udp|sctp]");
    let (ports, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    if !matches!(proto, "tcp" | "udp" | "sctp") {
        return Err(bad());
    }
    let (host_ip, rest) = match ports
        .rsplit_once(':')
        .and_then(|(a, c)| a.rsplit_once(':').map(|(ip, h)| (ip, h, c)))
    {
        Some((ip, h, c)) => (Some(ip.trim_matches(['[', ']'])), format!("{h}:{c}")),
        None => (None, ports.to_string()),
    };
    let (h, c) = rest.split_once(':').ok_or_else(bad)?;
    let port = |s: &str| s.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad);
    let mut m = json!({ "hostPort": port(h)?, "containerPort": port(c)?, "protocol": proto });
    if let Some(ip) = host_ip {
        ip.parse::<std::net::IpAddr>().map_err(|_| bad())?;
        m["hostIP"] = json!(ip);
    }
    Ok(m)
}

fn cache_path(list: &Conflist, att: &Attachment) -> PathBuf {
    let dir = std::env::var_os("CORRAL_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/var/lib/corral".into());
    dir.join("results")
        .join(format!("{}-{}-{}.json", list.name, att.container_id, att.ifname))
}

fn write_cache(list: &Conflist, att: &Attachment, result: &Value) -> Result<(), String> {
    let path = cache_path(list, att);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, result.to_string()).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))
}

fn read_cache(list: &Conflist, att: &Attachment) -> Option<Value> {
    std::fs::read(cache_path(list, att))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_publish_specs() {
        assert_eq!(
            parse_publish("8080:80").unwrap(),
            json!({"hostPort":8080,"containerPort":80,"protocol":"tcp"})
        );
        assert_eq!(
            parse_publish("127.0.0.1:53:5353/udp").unwrap(),
            json!({"hostPort":53,"containerPort":5353,"protocol":"udp","hostIP":"127.0.0.1"})
        );
        assert_eq!(parse_publish("[::1]:8080:80").unwrap()["hostIP"], "::1");
        for bad in ["80", "0:80", "8080:80/icmp", "x:80", "1.2.3:80:80", "8080:70000"] {
            assert!(parse_publish(bad).is_err(), "{bad}");
        }
    }
}
