//! `corral list-nat` and `corral nat reconcile`: what corral's NAT manager holds, read from the kernel (corral's
//! sets and maps dumped over netlink, `nft -j` as the fallback) and joined with the on-disk records, so every row
//! names its owner and any drift between the two shows.

use clap::{Args, Subcommand};
use corral_nat::{EntryState, MasqView, NatManager, NftCli, Owner, PortEntry, PortListing};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where corral's state lives.
#[derive(Debug, Args)]
pub struct StateDir {
    /// corral's state directory (NAT records live in its `nat/` subdirectory).
    #[arg(long, env = "CORRAL_STATE_DIR", default_value = "/var/lib/corral")]
    state_dir: PathBuf,
}

/// `corral list-nat` arguments.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    state: StateDir,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Only entries of this network.
    #[arg(long)]
    network: Option<String>,
    /// Only entries of containers whose id starts with this.
    #[arg(long)]
    container: Option<String>,
}

/// `corral nat` arguments.
#[derive(Debug, Args)]
pub struct NatArgs {
    #[command(subcommand)]
    verb: NatVerb,
}

#[derive(Debug, Subcommand)]
enum NatVerb {
    /// Re-apply every recorded NAT entry (after `nft flush ruleset` or a firewall reload).
    Reconcile(StateDir),
}

fn manager(state: &StateDir) -> NatManager<NftCli> {
    NatManager::new(&state.state_dir, NftCli::new())
}

/// Runs `list-nat`.
pub fn list(args: ListArgs) -> Result<String, String> {
    list_in(
        &args.state.state_dir,
        args.json,
        args.network.as_deref(),
        args.container.as_deref(),
        None,
    )
}

/// Whether `list-nat` was asked for JSON, and its filters (the client forwards them to corrald).
pub fn list_options(args: &ListArgs) -> (bool, Option<&str>, Option<&str>) {
    (args.json, args.network.as_deref(), args.container.as_deref())
}

/// The listing of the NAT state under `state_dir`, filtered; with `names` (container id → name, from
/// corrald) every owner also shows its container's name.
pub fn list_in(
    state_dir: &std::path::Path,
    json: bool,
    network: Option<&str>,
    container: Option<&str>,
    names: Option<&BTreeMap<String, String>>,
) -> Result<String, String> {
    let mut listing = NatManager::new(state_dir, NftCli::new())
        .list_ports()
        .map_err(|e| e.to_string())?;
    let keep = |o: &Option<Owner>| {
        network.is_none_or(|n| o.as_ref().is_some_and(|o| o.network == n))
            && container.is_none_or(|c| {
                o.as_ref().is_some_and(|o| {
                    o.container_id.starts_with(c)
                        || names
                            .and_then(|m| m.get(&o.container_id))
                            .is_some_and(|name| name == c)
                })
            })
    };
    listing.entries.retain(|e| keep(&e.owner));
    listing.masq.retain(|m| keep(&m.owner));
    if json {
        serde_json::to_string_pretty(&to_json(&listing, names)).map_err(|e| e.to_string())
    } else {
        Ok(to_table(&listing, names))
    }
}

/// Runs `nat reconcile`.
pub fn nat(args: NatArgs) -> Result<String, String> {
    match args.verb {
        NatVerb::Reconcile(state) => {
            let report = manager(&state).reconcile().map_err(|e| e.to_string())?;
            let mut out = format!("re-applied the NAT entries of {} records", report.records);
            for c in &report.conflicts {
                out.push_str(&format!("\nleft out (overlaps another record): {c:?}"));
            }
            for e in &report.unreadable {
                out.push_str(&format!("\nunreadable record: {e}"));
            }
            Ok(out)
        }
    }
}

fn state_name(s: EntryState) -> &'static str {
    match s {
        EntryState::Active => "active",
        EntryState::NotRecorded => "not-recorded",
        EntryState::Missing => "missing",
    }
}

type Names<'a> = Option<&'a BTreeMap<String, String>>;

fn owner_json(o: &Option<Owner>, names: Names) -> Value {
    match o {
        Some(o) => {
            let mut v = json!({ "network": o.network, "containerID": o.container_id, "ifname": o.ifname });
            if let Some(n) = names.and_then(|m| m.get(&o.container_id)) {
                v["name"] = json!(n);
            }
            v
        }
        None => Value::Null,
    }
}

fn port_json(e: &PortEntry, names: Names) -> Value {
    json!({
        "protocol": e.protocol.to_string(),
        "hostIP": e.host_ip,
        "hostPort": e.host_port,
        "containerIP": e.container_ip,
        "containerPort": e.container_port,
        "owner": owner_json(&e.owner, names),
        "state": state_name(e.state),
        "stale": e.stale,
        "packets": e.counters.map(|c| c.packets),
        "bytes": e.counters.map(|c| c.bytes),
    })
}

fn masq_json(m: &MasqView, names: Names) -> Value {
    json!({
        "source": m.ip,
        "subnet": m.subnet,
        "owner": owner_json(&m.owner, names),
        "state": state_name(m.state),
        "stale": m.stale,
    })
}

fn to_json(l: &PortListing, names: Names) -> Value {
    json!({
        "dnat": l.entries.iter().map(|e| port_json(e, names)).collect::<Vec<_>>(),
        "snat": l.masq.iter().map(|m| masq_json(m, names)).collect::<Vec<_>>(),
        "tablePresent": l.table_present,
        "unreadableRecords": l.unreadable.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
    })
}

fn owner_cells(o: &Option<Owner>) -> [String; 3] {
    match o {
        Some(o) => [
            o.network.clone(),
            o.container_id.chars().take(12).collect(),
            o.ifname.clone(),
        ],
        None => ["-".into(), "-".into(), "-".into()],
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

fn to_table(l: &PortListing, names: Names) -> String {
    let mut out = String::new();
    if !l.table_present {
        out.push_str("(table inet corral is not in the kernel: run `corral nat reconcile` to restore it)\n");
    }
    let mut dnat = vec![row(&[
        "PROTO",
        "HOST IP",
        "HOST PORT",
        "CONTAINER",
        "NETWORK",
        "CONTAINER ID",
        "IFNAME",
        "STATE",
        "STALE",
        "PACKETS",
        "BYTES",
    ])];
    for e in &l.entries {
        let [net, id, ifname] = owner_cells(&e.owner);
        let target = match e.container_ip {
            std::net::IpAddr::V6(ip) => format!("[{ip}]:{}", e.container_port),
            ip => format!("{ip}:{}", e.container_port),
        };
        dnat.push(vec![
            e.protocol.to_string(),
            e.host_ip.map(|i| i.to_string()).unwrap_or_else(|| "*".into()),
            e.host_port.to_string(),
            target,
            net,
            id,
            ifname,
            state_name(e.state).into(),
            e.stale.map(|_| "yes".to_string()).unwrap_or_else(|| "no".into()),
            opt(e.counters.map(|c| c.packets)),
            opt(e.counters.map(|c| c.bytes)),
        ]);
    }
    if let Some(m) = names {
        add_name_column(&mut dnat, l.entries.iter().map(|e| &e.owner), m);
    }
    out.push_str("DNAT (published ports)\n");
    out.push_str(&crate::table::render(&dnat));
    let mut snat = vec![row(&[
        "SOURCE",
        "KEPT TOWARDS",
        "NETWORK",
        "CONTAINER ID",
        "IFNAME",
        "STATE",
        "STALE",
    ])];
    for m in &l.masq {
        let [net, id, ifname] = owner_cells(&m.owner);
        snat.push(vec![
            m.ip.to_string(),
            opt(m.subnet),
            net,
            id,
            ifname,
            state_name(m.state).into(),
            m.stale.map(|_| "yes".to_string()).unwrap_or_else(|| "no".into()),
        ]);
    }
    if let Some(m) = names {
        add_name_column(&mut snat, l.masq.iter().map(|e| &e.owner), m);
    }
    out.push_str("\nSNAT (masqueraded container addresses)\n");
    out.push_str(&crate::table::render(&snat));
    for e in &l.unreadable {
        out.push_str(&format!("\nunreadable record: {e}"));
    }
    out.trim_end().to_string()
}

/// Inserts a NAME column after CONTAINER ID (rows: header first, then one per owner).
fn add_name_column<'a>(
    rows: &mut [Vec<String>],
    owners: impl Iterator<Item = &'a Option<Owner>>,
    names: &BTreeMap<String, String>,
) {
    let Some(at) = rows
        .first()
        .and_then(|h| h.iter().position(|c| c == "CONTAINER ID"))
    else {
        return;
    };
    if let Some(h) = rows.first_mut() {
        h.insert(at + 1, "NAME".into());
    }
    for (r, o) in rows.iter_mut().skip(1).zip(owners) {
        let name = o.as_ref().and_then(|o| names.get(&o.container_id)).cloned();
        r.insert(at + 1, name.unwrap_or_else(|| "-".into()));
    }
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_listing_still_has_headers_and_says_table_missing() {
        let t = to_table(&PortListing::default(), None);
        assert!(t.contains("not in the kernel"));
        assert!(t.contains("HOST PORT") && t.contains("SOURCE"));
        let j = to_json(&PortListing::default(), None);
        assert_eq!(j["dnat"], json!([]));
        assert_eq!(j["tablePresent"], false);
    }
}
