//! Network configurations for the suites: a bridge network with host-local IPAM in the node's private state
//! directory, adjusted per test with a shallow JSON merge.

use crate::Node;
use serde_json::{json, Value};

/// The network name every bridge suite uses (state dirs are private per node, so it can be shared).
pub const NET: &str = "net1";

/// Every cniVersion corral speaks, oldest first.
pub const VERSIONS: [&str; 7] = corral_cni::version::SUPPORTED;

/// Versions that have CHECK (0.4.0 and later).
pub fn check_versions() -> impl Iterator<Item = &'static str> {
    VERSIONS
        .into_iter()
        .filter(|v| corral_cni::version::at_least(v, "0.4.0"))
}

/// A bridge network on `br0` with one host-local range set per subnet, merged with `extra` (a key set to
/// `null` in `extra` is removed).
pub fn bridge(node: &Node, version: &str, subnets: &[&str], extra: Value) -> Value {
    let ranges: Vec<Value> = subnets.iter().map(|s| json!([{ "subnet": s }])).collect();
    let base = json!({
        "cniVersion": version,
        "name": NET,
        "type": "bridge",
        "bridge": "br0",
        "ipam": { "type": "host-local", "dataDir": node.data_dir(), "ranges": ranges },
    });
    merge(base, extra)
}

/// Shallow merge: keys of `extra` replace those of `base`; a `null` removes the key.
pub fn merge(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        for (k, v) in e {
            if v.is_null() {
                b.remove(&k);
            } else {
                b.insert(k, v);
            }
        }
    }
    base
}

/// `conf` with `prevResult` set (for CHECK and DEL).
pub fn with_prev(conf: &Value, prev: &Value) -> Value {
    merge(conf.clone(), json!({ "prevResult": prev }))
}

/// `conf` turned into a GC request (cniVersion 1.1.0) whose valid attachments are `(container id, ifname)`.
pub fn gc(conf: &Value, valid: &[(&str, &str)]) -> Value {
    let valid: Vec<Value> = valid
        .iter()
        .map(|(id, ifname)| json!({ "containerID": id, "ifname": ifname }))
        .collect();
    merge(
        conf.clone(),
        json!({ "cniVersion": "1.1.0", "cni.dev/valid-attachments": valid }),
    )
}
