//! Networks: each is a conflist under `<state>/networks/<name>.conflist` using corral's plugins (bridge with
//! host-local IPAM and ipMasq, then portmap), with a bridge name derived from the network name and a subnet
//! that overlaps no other corral network. Attaching and detaching a container runs the conflist through
//! `corral_cni::runtime` exactly as an orchestrator does, after a loopback-only list that brings `lo` up.

use crate::file;
use corral_cni::runtime::{Attachment, Conflist, Runtime};
use ipnet::Ipv4Net;
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};

/// The network a container joins when `--net` is not given.
pub const DEFAULT: &str = "corral";

/// The network store and the CNI runtime that attaches containers.
#[derive(Debug, Clone)]
pub struct Networks {
    dir: PathBuf,
    ipam_dir: PathBuf,
    runtime: Runtime,
}

/// The bridge name of a network: `crl-` and 8 hex digits of its name's hash (fits IFNAMSIZ).
pub fn bridge_name(network: &str) -> String {
    let h = Sha256::digest(network.as_bytes());
    format!("crl-{:02x}{:02x}{:02x}{:02x}", h[0], h[1], h[2], h[3])
}

/// The first /16 from 10.88.0.0/16 upward (10.88 … 10.254) overlapping none of `taken`.
pub fn pick_subnet(taken: &[Ipv4Net]) -> Option<Ipv4Net> {
    (88u8..=254)
        .filter_map(|b| Ipv4Net::new(std::net::Ipv4Addr::new(10, b, 0, 0), 16).ok())
        .find(|c| {
            !taken
                .iter()
                .any(|t| t.contains(&c.network()) || c.contains(&t.network()))
        })
}

/// The conflist of a network.
pub fn conflist(name: &str, subnet: Ipv4Net, ipam_dir: &Path) -> Value {
    json!({
        "cniVersion": "1.1.0",
        "name": name,
        "plugins": [
            { "type": "bridge", "bridge": bridge_name(name), "isGateway": true, "ipMasq": true,
              "ipam": { "type": "host-local", "ranges": [[{ "subnet": subnet.to_string() }]],
                        "routes": [{ "dst": "0.0.0.0/0" }], "dataDir": ipam_dir } },
            { "type": "portmap", "capabilities": { "portMappings": true }, "snat": true }
        ]
    })
}

fn loopback_list() -> Result<Conflist, String> {
    Conflist::parse(br#"{"cniVersion":"1.1.0","name":"corral-loopback","plugins":[{"type":"loopback"}]}"#)
        .map_err(|e| e.to_string())
}

/// The subnet of a conflist (first range of the first plugin's IPAM).
pub fn subnet_of(list: &Value) -> Option<Ipv4Net> {
    list["plugins"][0]["ipam"]["ranges"][0][0]["subnet"]
        .as_str()?
        .parse()
        .ok()
}

/// The bridge's gateway address: the range's `gateway`, else host-local's default, the subnet's first host.
pub fn gateway_of(list: &Value) -> Option<std::net::Ipv4Addr> {
    if let Some(g) = list["plugins"][0]["ipam"]["ranges"][0][0]["gateway"].as_str() {
        return g.parse().ok();
    }
    subnet_of(list)?.hosts().next()
}

impl Networks {
    /// The store under the state dir; plugins come from `cni_path` and get `CORRAL_STATE_DIR=state`.
    pub fn new(state: &Path, cni_path: Vec<PathBuf>) -> Result<Self, String> {
        let dir = state.join("networks");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut env: std::collections::BTreeMap<String, String> =
            std::env::vars().filter(|(k, _)| !k.starts_with("CNI_")).collect();
        env.insert("CORRAL_STATE_DIR".into(), state.display().to_string());
        Ok(Networks {
            dir,
            ipam_dir: state.join("ipam"),
            runtime: Runtime { cni_path, env },
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.conflist"))
    }

    /// Every network's conflist, by name.
    pub fn list(&self) -> Result<Vec<(String, Value)>, String> {
        let mut out = Vec::new();
        let rd = std::fs::read_dir(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        for e in rd.flatten() {
            let p = e.path();
            if let Some(name) = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".conflist"))
            {
                let v: Value = file::read_json(&p).map_err(|e| e.to_string())?;
                out.push((name.to_string(), v));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Whether a network exists.
    pub fn exists(&self, name: &str) -> bool {
        self.path(name).exists()
    }

    /// Creates a network; `subnet` is chosen when absent and must not overlap another network's.
    pub fn create(&self, name: &str, subnet: Option<&str>) -> Result<Value, String> {
        if !crate::container::valid_name(name) || matches!(name, "host" | "none") {
            return Err(format!("invalid network name \"{name}\""));
        }
        if self.exists(name) {
            return Err(format!("network {name} already exists"));
        }
        let taken: Vec<Ipv4Net> = self.list()?.iter().filter_map(|(_, v)| subnet_of(v)).collect();
        let subnet = match subnet {
            Some(s) => {
                let n: Ipv4Net = s
                    .parse()
                    .map_err(|_| format!("--subnet {s}: want an IPv4 CIDR"))?;
                let n = n.trunc();
                if n.prefix_len() > 30 {
                    return Err(format!("--subnet {s}: too small"));
                }
                if let Some(t) = taken
                    .iter()
                    .find(|t| t.contains(&n.network()) || n.contains(&t.network()))
                {
                    return Err(format!(
                        "--subnet {s} overlaps {t}, used by another corral network"
                    ));
                }
                n
            }
            None => pick_subnet(&taken).ok_or("no free subnet left in 10.88.0.0-10.254.255.255")?,
        };
        let list = conflist(name, subnet, &self.ipam_dir);
        let p = self.path(name);
        file::write_json(&p, &list).map_err(|e| format!("{}: {e}", p.display()))?;
        Ok(list)
    }

    /// Removes a network's conflist (the caller checks that no container uses it).
    pub fn remove(&self, name: &str) -> Result<(), String> {
        std::fs::remove_file(self.path(name)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("no such network: {name}"),
            _ => format!("{name}: {e}"),
        })
    }

    fn load(&self, name: &str) -> Result<Conflist, String> {
        let p = self.path(name);
        let bytes = std::fs::read(&p).map_err(|_| format!("no such network: {name}"))?;
        Conflist::parse(&bytes).map_err(|e| format!("{}: {e}", p.display()))
    }

    /// Brings `lo` up in `netns` and, unless `network` is `none`, attaches `eth0` with `ports`. Returns the CNI
    /// result (None for `none`). A failure leaves nothing attached.
    pub fn attach(
        &self,
        id: &str,
        netns: &Path,
        network: &str,
        ports: &[Value],
    ) -> Result<Option<Value>, String> {
        let lo = loopback_list()?;
        let lo_att = attachment(id, netns, "lo", &[]);
        if network == "none" {
            lo.add(&self.runtime, &lo_att)
                .map_err(|e| format!("loopback: {e}"))?;
            return Ok(None);
        }
        let list = self.load(network)?;
        let att = attachment(id, netns, "eth0", ports);
        // Two independent attachments (`lo`, `eth0`) of one namespace: both lists run at once.
        let (lo_added, added) = std::thread::scope(|s| {
            let lo_added = s.spawn(|| lo.add(&self.runtime, &lo_att));
            let added = list.add(&self.runtime, &att);
            (lo_added.join(), added)
        });
        match (lo_added, added) {
            (Ok(Ok(_)), Ok(r)) => Ok(Some(r)),
            (Ok(Ok(_)), Err(e)) => {
                let _ = lo.del(&self.runtime, &lo_att, None);
                Err(format!("network {network}: {e}"))
            }
            (lo_failed, added) => {
                if let Ok(r) = &added {
                    let _ = list.del(&self.runtime, &att, Some(r));
                }
                let _ = lo.del(&self.runtime, &lo_att, None);
                Err(match lo_failed {
                    Ok(Err(e)) => format!("loopback: {e}"),
                    _ => "loopback: the CNI thread panicked".to_string(),
                })
            }
        }
    }

    /// CNI DEL for both attachments; keeps going past failures and reports them together.
    pub fn detach(
        &self,
        id: &str,
        netns: &Path,
        network: &str,
        ports: &[Value],
        result: Option<&Value>,
    ) -> Result<(), String> {
        let ns = if netns.exists() { netns } else { Path::new("") };
        let lo = loopback_list()?;
        let lo_del = || {
            lo.del(&self.runtime, &attachment(id, ns, "lo", &[]), None)
                .map_err(|e| format!("loopback: {e}"))
        };
        let net_del = || -> Result<(), String> {
            if network == "none" {
                return Ok(());
            }
            self.load(network)?
                .del(&self.runtime, &attachment(id, ns, "eth0", ports), result)
                .map_err(|e| format!("network {network}: {e}"))
        };
        let (lo_deleted, deleted) = std::thread::scope(|s| {
            let lo_deleted = s.spawn(lo_del);
            (lo_deleted.join(), net_del())
        });
        let errors: Vec<String> = [
            deleted.err(),
            lo_deleted
                .unwrap_or_else(|_| Err("loopback: the CNI thread panicked".into()))
                .err(),
        ]
        .into_iter()
        .flatten()
        .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// CNI GC of a network: its plugins release what they hold (addresses, NAT entries) for every attachment
    /// but `eth0` of the containers in `attached`.
    pub fn gc(&self, network: &str, attached: &[String]) -> Result<(), String> {
        let list = self.load(network)?;
        let valid: Vec<corral_cni::Attachment> = attached
            .iter()
            .map(|id| corral_cni::Attachment {
                container_id: id.clone(),
                ifname: "eth0".into(),
            })
            .collect();
        list.gc(&self.runtime, &valid)
            .map_err(|e| format!("network {network}: GC: {e}"))
    }
}

fn attachment(id: &str, netns: &Path, ifname: &str, ports: &[Value]) -> Attachment {
    let mut capability_args = Map::new();
    if !ports.is_empty() {
        capability_args.insert("portMappings".into(), Value::Array(ports.to_vec()));
    }
    Attachment {
        container_id: id.into(),
        netns: netns.display().to_string(),
        ifname: ifname.into(),
        args: vec![],
        capability_args,
    }
}

/// The container's first IPv4 address in a CNI result, without its prefix length.
pub fn first_ip(result: &Value) -> Option<String> {
    result["ips"]
        .as_array()?
        .iter()
        .filter_map(|i| i["address"].as_str())
        .map(|a| a.split('/').next().unwrap_or(a).to_string())
        .next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_skip_taken_ones() {
        assert_eq!(pick_subnet(&[]).unwrap().to_string(), "10.88.0.0/16");
        let taken = ["10.88.5.0/24".parse().unwrap(), "10.89.0.0/16".parse().unwrap()];
        assert_eq!(pick_subnet(&taken).unwrap().to_string(), "10.90.0.0/16");
        let big = ["10.0.0.0/8".parse().unwrap()];
        assert!(pick_subnet(&big).is_none());
    }

    #[test]
    fn bridge_names_fit_ifnamsiz_and_differ() {
        assert!(bridge_name("a-rather-long-network-name").len() <= 15);
        assert_ne!(bridge_name("a"), bridge_name("b"));
    }

    #[test]
    fn conflist_parses_and_names_the_plugins() {
        let v = conflist("web", "10.88.0.0/16".parse().unwrap(), Path::new("/s/ipam"));
        let l = Conflist::parse(v.to_string().as_bytes()).unwrap();
        let types: Vec<_> = l
            .plugins
            .iter()
            .map(|p| p["type"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(types, ["bridge", "portmap"]);
        assert_eq!(subnet_of(&v).unwrap().to_string(), "10.88.0.0/16");
        assert_eq!(gateway_of(&v).unwrap().to_string(), "10.88.0.1");
        assert_eq!(
            first_ip(&json!({"ips":[{"address":"10.88.0.2/16"}]})).unwrap(),
            "10.88.0.2"
        );
    }
}
