//! ADD, DEL and CHECK against the container's interface CNI_IFNAME.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use corral_cni::{CniError, CniResult, Request};
use corral_netops::{open_netns, read_sysctl, run_in_netns, write_sysctl, LinkInfo, Netlink, NetopsError};

use crate::config::{self, format_mac, parse_mac, Tuning};
use crate::saved::{self, Saved};

fn net(what: &'static str) -> impl Fn(NetopsError) -> CniError {
    move |e| CniError::new(e.code(), format!("{what}: {e}"))
}

fn load(req: &Request) -> Result<Tuning, CniError> {
    config::load(req, Path::new(config::DEFAULT_ALLOWLIST))
}

fn chained(req: &Request) -> Result<CniResult, CniError> {
    req.prev_result()?
        .ok_or_else(|| CniError::invalid_config("must be called as chained plugin (no prevResult)"))
}

/// The container netns, its netlink handle and the interface.
fn container(req: &Request) -> Result<(File, Netlink, LinkInfo), CniError> {
    let path = req.require_netns()?;
    let ns =
        open_netns(path).map_err(|e| CniError::invalid_env(format!("CNI_NETNS {}: {e}", path.display())))?;
    let nl = Netlink::in_netns(&ns).map_err(net("netlink in container"))?;
    let link = nl
        .link_by_name(&req.ifname)
        .map_err(net("container interface"))?
        .ok_or_else(|| CniError::internal(format!("no interface {} in the container", req.ifname)))?;
    Ok((ns, nl, link))
}

fn read_sysctls(ns: &File, keys: Vec<String>) -> Result<BTreeMap<String, String>, CniError> {
    run_in_netns(ns, move || {
        keys.into_iter()
            .map(|k| read_sysctl(&k).map(|v| (k, v)))
            .collect::<Result<BTreeMap<_, _>, _>>()
    })
    .map_err(net("enter container netns"))?
    .map_err(net("read sysctl"))
}

fn write_sysctls(ns: &File, values: &BTreeMap<String, String>) -> Result<(), CniError> {
    run_in_netns(ns, || values.iter().try_for_each(|(k, v)| write_sysctl(k, v)))
        .map_err(net("enter container netns"))?
        .map_err(net("write sysctl"))
}

/// ADD: saves the originals, applies sysctls then link settings, returns prevResult with the new MAC.
pub fn add(req: &Request) -> Result<CniResult, CniError> {
    let tuning = load(req)?;
    let mut result = chained(req)?;
    let (ns, nl, link) = container(req)?;
    let originals = read_sysctls(&ns, tuning.sysctl.keys().cloned().collect())?;
    let file = saved::path(&tuning.data_dir, &req.container_id, &req.ifname);
    if (tuning.changes_link() || !originals.is_empty()) && saved::read(&file)?.is_none() {
        saved::write(&file, &originals_of(&tuning, &link, originals))?;
    }
    write_sysctls(&ns, &tuning.sysctl)?;
    apply_link(&nl, &link, &tuning)?;
    if let Some(mac) = tuning.mac {
        let sandbox = req
            .netns
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        for iface in result
            .interfaces
            .iter_mut()
            .filter(|i| i.name == req.ifname && (i.sandbox.is_empty() || i.sandbox == sandbox))
        {
            iface.mac = format_mac(&mac);
        }
    }
    Ok(result)
}

fn originals_of(tuning: &Tuning, link: &LinkInfo, sysctl: BTreeMap<String, String>) -> Saved {
    Saved {
        mac: tuning.mac.and(link.mac).map(|m| format_mac(&m)),
        promisc: tuning.promisc.then_some(link.promisc),
        mtu: tuning.mtu.map(|_| link.mtu),
        allmulti: tuning.allmulti.map(|_| link.allmulti),
        txqlen: tuning.txqlen.map(|_| link.txqlen),
        sysctl,
    }
}

fn apply_link(nl: &Netlink, link: &LinkInfo, t: &Tuning) -> Result<(), CniError> {
    let i = link.index;
    if let Some(mtu) = t.mtu {
        nl.set_mtu(i, mtu).map_err(net("set mtu"))?;
    }
    if let Some(mac) = t.mac {
        nl.set_mac(i, mac).map_err(net("set mac"))?;
    }
    if t.promisc {
        nl.set_promisc(i, true).map_err(net("set promisc"))?;
    }
    if let Some(on) = t.allmulti {
        nl.set_allmulti(i, on).map_err(net("set allmulticast"))?;
    }
    if let Some(len) = t.txqlen {
        nl.set_txqlen(i, len).map_err(net("set txqueuelen"))?;
    }
    Ok(())
}

/// DEL: restores what ADD saved and removes the file. No file, no netns or no interface: nothing to restore.
pub fn del(req: &Request) -> Result<(), CniError> {
    let tuning = load(req)?;
    let file = saved::path(&tuning.data_dir, &req.container_id, &req.ifname);
    let Some(saved) = saved::read(&file)? else {
        return Ok(());
    };
    if let Some(path) = req.netns.as_ref().filter(|_| !req.netns_is_own()) {
        match open_netns(path) {
            Ok(ns) => restore(&ns, &req.ifname, &saved)?,
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(net("open netns")(e)),
        }
    }
    saved::remove(&file)
}

fn restore(ns: &File, ifname: &str, saved: &Saved) -> Result<(), CniError> {
    let nl = Netlink::in_netns(ns).map_err(net("netlink in container"))?;
    let Some(link) = nl.link_by_name(ifname).map_err(net("container interface"))? else {
        return Ok(());
    };
    let restored = Tuning {
        sysctl: BTreeMap::new(),
        mac: saved.mac.as_deref().and_then(parse_mac),
        promisc: false,
        mtu: saved.mtu,
        allmulti: saved.allmulti,
        txqlen: saved.txqlen,
        data_dir: Default::default(),
    };
    apply_link(&nl, &link, &restored)?;
    if let Some(on) = saved.promisc {
        nl.set_promisc(link.index, on).map_err(net("restore promisc"))?;
    }
    write_sysctls(ns, &saved.sysctl)
}

/// CHECK: every configured value is what the kernel has.
pub fn check(req: &Request) -> Result<(), CniError> {
    let tuning = load(req)?;
    chained(req)?;
    let (ns, _nl, link) = container(req)?;
    let have = read_sysctls(&ns, tuning.sysctl.keys().cloned().collect())?;
    for (key, want) in &tuning.sysctl {
        let got = have.get(key).map(String::as_str).unwrap_or_default();
        if got.trim() != want.trim() {
            return Err(CniError::check_mismatch(format!(
                "sysctl {key}: want {want:?}, have {got:?}"
            )));
        }
    }
    let mismatch = |what: &str, want: String, have: String| {
        Err(CniError::check_mismatch(format!(
            "{}: {what} is {have}, config says {want}",
            link.name
        )))
    };
    if let Some(mac) = tuning.mac.filter(|m| link.mac != Some(*m)) {
        return mismatch(
            "mac",
            format_mac(&mac),
            link.mac.map(|m| format_mac(&m)).unwrap_or_default(),
        );
    }
    if let Some(mtu) = tuning.mtu.filter(|m| *m != link.mtu) {
        return mismatch("mtu", mtu.to_string(), link.mtu.to_string());
    }
    if tuning.promisc && !link.promisc {
        return mismatch("promisc", "on".into(), "off".into());
    }
    if let Some(on) = tuning.allmulti.filter(|a| *a != link.allmulti) {
        return mismatch("allmulti", on.to_string(), link.allmulti.to_string());
    }
    if let Some(len) = tuning.txqlen.filter(|l| *l != link.txqlen) {
        return mismatch("txQLen", len.to_string(), link.txqlen.to_string());
    }
    Ok(())
}
