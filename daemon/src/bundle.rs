//! The OCI runtime bundle of a container: `config.json` built with the `oci-spec` crate from the container's
//! record. PID, mount, UTS and IPC namespaces always; the network namespace corrald created (joined by path),
//! or none for `--net host`; Docker's default capability set; memory, CPU and pids limits; the user; bind
//! mounts, the generated /etc/hosts, /etc/resolv.conf and /etc/hostname, and the init binary for `--init`.

use crate::container::{Container, Paths};
use crate::user::ExecUser;
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxMemoryBuilder,
    LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder, Mount, MountBuilder,
    ProcessBuilder, RootBuilder, Spec, UserBuilder,
};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Docker's default capabilities.
fn capabilities() -> HashSet<Capability> {
    use Capability::*;
    [
        Chown,
        DacOverride,
        Fsetid,
        Fowner,
        Mknod,
        NetRaw,
        Setgid,
        Setuid,
        Setfcap,
        Setpcap,
        NetBindService,
        SysChroot,
        Kill,
        AuditWrite,
    ]
    .into_iter()
    .collect()
}

/// Where `--init`'s binary is bind-mounted in the container: /dev is the runtime's fresh tmpfs, so the mount
/// point never lands in the container's own root (Podman does the same).
pub const INIT_PATH: &str = "/dev/init";

/// The CFS period corrald sets with `--cpus`, in microseconds (Docker's).
pub const CPU_PERIOD: u64 = 100_000;

/// The CFS quota for a CPU limit in billionths of a CPU: the share of each period the container may run.
pub fn cpu_quota(nano_cpus: i64) -> i64 {
    // Exact in integers: nano_cpus * period / 1e9 with a period of 1e5 µs.
    nano_cpus / (1_000_000_000 / CPU_PERIOD as i64)
}

/// The process's argv: with an init, `init -- argv` (tini and catatonit both take the program after `--`).
pub fn process_args(c: &Container, init: bool) -> Vec<String> {
    let mut args = Vec::new();
    if init {
        args.extend([INIT_PATH.to_string(), "--".to_string()]);
    }
    args.extend(c.args.iter().cloned());
    args
}

/// The process's environment: the container's, with `HOME` from the user's passwd entry unless set.
pub fn process_env(c: &Container, user: &ExecUser) -> Vec<String> {
    let mut env = c.env.clone();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home));
    }
    env
}

fn bind(src: &Path, dst: &str, readonly: bool) -> Result<Mount, String> {
    let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
    options.push(if readonly { "ro" } else { "rw" }.to_string());
    MountBuilder::default()
        .destination(PathBuf::from(dst))
        .typ("bind")
        .source(src.to_path_buf())
        .options(options)
        .build()
        .map_err(|e| e.to_string())
}

/// The spec for a container; `netns` is the namespace to join (None = share corrald's, `--net host`), `user`
/// the resolved user and `init` the init binary on the node, when the container has `--init`.
pub fn spec(
    c: &Container,
    p: &Paths,
    netns: Option<&Path>,
    user: &ExecUser,
    init: Option<&Path>,
) -> Result<Spec, String> {
    let e = |e: oci_spec::OciSpecError| e.to_string();
    let caps = capabilities();
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(
            UserBuilder::default()
                .uid(user.uid)
                .gid(user.gid)
                .additional_gids(user.additional_gids.clone())
                .build()
                .map_err(e)?,
        )
        .args(process_args(c, init.is_some()))
        .env(process_env(c, user))
        .cwd(if c.working_dir.is_empty() {
            "/".to_string()
        } else {
            c.working_dir.clone()
        })
        .no_new_privileges(false)
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(caps.clone())
                .effective(caps.clone())
                .permitted(caps)
                .build()
                .map_err(e)?,
        )
        .build()
        .map_err(e)?;
    let mut namespaces = Vec::new();
    for t in [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
    ] {
        namespaces.push(LinuxNamespaceBuilder::default().typ(t).build().map_err(e)?);
    }
    if let Some(ns) = netns {
        namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Network)
                .path(ns.to_path_buf())
                .build()
                .map_err(e)?,
        );
    }
    let mut resources = LinuxResourcesBuilder::default();
    if let Some(m) = c.memory {
        resources = resources.memory(LinuxMemoryBuilder::default().limit(m).build().map_err(e)?);
    }
    if let Some(n) = c.pids_limit {
        resources = resources.pids(LinuxPidsBuilder::default().limit(n).build().map_err(e)?);
    }
    if let Some(n) = c.nano_cpus {
        resources = resources.cpu(
            LinuxCpuBuilder::default()
                .quota(cpu_quota(n))
                .period(CPU_PERIOD)
                .build()
                .map_err(e)?,
        );
    }
    let default_linux = oci_spec::runtime::Linux::default();
    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(PathBuf::from(format!("/corral/{}", c.id)))
        .resources(resources.build().map_err(e)?)
        .masked_paths(default_linux.masked_paths().clone().unwrap_or_default())
        .readonly_paths(default_linux.readonly_paths().clone().unwrap_or_default())
        .build()
        .map_err(e)?;
    let mut mounts = oci_spec::runtime::get_default_mounts();
    // /sys read-only is in the defaults; with the node's network namespace, sysfs would show the node's links.
    for (file, dst) in [
        ("hosts", "/etc/hosts"),
        ("resolv.conf", "/etc/resolv.conf"),
        ("hostname", "/etc/hostname"),
    ] {
        mounts.push(bind(&p.etc(file), dst, false)?);
    }
    if let Some(init) = init {
        mounts.push(bind(init, INIT_PATH, true)?);
    }
    // Binds, volumes and tmpfs mounts, shallowest destination first, so a mount inside another one lands on top.
    let mut user: Vec<(usize, Mount)> = Vec::new();
    let depth = |d: &str| d.split('/').filter(|s| !s.is_empty()).count();
    for b in &c.binds {
        user.push((
            depth(&b.destination),
            bind(Path::new(&b.source), &b.destination, b.readonly)?,
        ));
    }
    for t in &c.tmpfs {
        let m = MountBuilder::default()
            .destination(PathBuf::from(&t.destination))
            .typ("tmpfs")
            .source(PathBuf::from("tmpfs"))
            .options(t.options.clone())
            .build()
            .map_err(e)?;
        user.push((depth(&t.destination), m));
    }
    user.sort_by_key(|(d, _)| *d);
    mounts.extend(user.into_iter().map(|(_, m)| m));
    let mut spec = Spec::default();
    spec.set_process(Some(process))
        .set_root(Some(
            RootBuilder::default()
                .path(p.rootfs())
                .readonly(false)
                .build()
                .map_err(e)?,
        ))
        .set_hostname(Some(c.id.chars().take(12).collect()))
        .set_mounts(Some(mounts))
        .set_linux(Some(linux));
    Ok(spec)
}

/// /etc/hosts of a container: localhost, itself, then the other containers of its network (`peers`, which may
/// include `c`) by name and short id.
pub fn hosts(c: &Container, peers: &[Container]) -> String {
    let short = |c: &Container| c.id.chars().take(12).collect::<String>();
    let mut s = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    match &c.ip {
        Some(ip) => s.push_str(&format!("{ip}\t{} {}\n", short(c), c.name)),
        None => s.push_str(&format!("127.0.1.1\t{} {}\n", short(c), c.name)),
    }
    let mut others: Vec<&Container> = peers.iter().filter(|p| p.id != c.id).collect();
    others.sort_by(|a, b| a.name.cmp(&b.name));
    for p in others {
        if let Some(ip) = &p.ip {
            s.push_str(&format!("{ip}\t{} {}\n", p.name, short(p)));
        }
    }
    s
}

/// /etc/resolv.conf: the CNI result's `dns`, else the node's own without loopback nameservers (they would
/// point into the container itself).
pub fn resolv_conf(result: Option<&serde_json::Value>, node: &str) -> String {
    let dns = result.map(|r| &r["dns"]);
    let servers: Vec<&str> = dns
        .and_then(|d| d["nameservers"].as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    if !servers.is_empty() {
        let mut s: String = servers.iter().map(|n| format!("nameserver {n}\n")).collect();
        if let Some(search) = dns.and_then(|d| d["search"].as_array()) {
            let words: Vec<&str> = search.iter().filter_map(|v| v.as_str()).collect();
            if !words.is_empty() {
                s.push_str(&format!("search {}\n", words.join(" ")));
            }
        }
        return s;
    }
    node.lines()
        .filter(|l| {
            let mut w = l.split_whitespace();
            !(w.next() == Some("nameserver") && w.next().is_some_and(|a| a.starts_with("127.") || a == "::1"))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cpu_quota_is_the_share_of_the_period() {
        assert_eq!(cpu_quota(1_500_000_000), 150_000);
        assert_eq!(cpu_quota(500_000_000), 50_000);
        assert_eq!(cpu_quota(10_000_000), 1_000);
    }

    #[test]
    fn resolv_conf_prefers_cni_dns_and_drops_loopback() {
        let r = json!({"dns": {"nameservers": ["10.0.0.1"], "search": ["corral"]}});
        assert_eq!(
            resolv_conf(Some(&r), "nameserver 1.1.1.1"),
            "nameserver 10.0.0.1\nsearch corral\n"
        );
        assert_eq!(
            resolv_conf(None, "nameserver 127.0.0.53\nnameserver 9.9.9.9\noptions edns0"),
            "nameserver 9.9.9.9\noptions edns0\n"
        );
    }
}
