//! The runtime side of CNI, as libcni does it: read a network configuration list, derive each plugin's
//! request config (name, cniVersion, prevResult, runtimeConfig from capabilities), and run the chain: ADD in
//! order, DEL in reverse, CHECK, STATUS and GC on every plugin. Tests, benchmarks and corral's own launcher use
//! it to drive plugins exactly as an orchestrator would.

use crate::error::CniError;
use crate::invoke::{exec_plugin, find_in_path};
use crate::skel::Command;
use crate::version;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A parsed `.conflist` (a single-plugin `.conf` is read as a list of one).
#[derive(Debug, Clone, PartialEq)]
pub struct Conflist {
    /// The list's cniVersion.
    pub cni_version: String,
    /// Network name.
    pub name: String,
    /// Each plugin's own config object, in chain order.
    pub plugins: Vec<Map<String, Value>>,
    /// `disableCheck`: CHECK is a no-op.
    pub disable_check: bool,
    /// `disableGC`: GC is a no-op.
    pub disable_gc: bool,
}

#[derive(Deserialize)]
struct RawList {
    #[serde(rename = "cniVersion", default)]
    cni_version: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    plugins: Option<Vec<Map<String, Value>>>,
    #[serde(rename = "disableCheck", default)]
    disable_check: bool,
    #[serde(rename = "disableGC", default)]
    disable_gc: bool,
}

/// What the runtime knows about one attachment.
#[derive(Debug, Clone, Default)]
pub struct Attachment {
    /// CNI_CONTAINERID.
    pub container_id: String,
    /// CNI_NETNS (empty on a DEL after the netns is gone).
    pub netns: String,
    /// CNI_IFNAME.
    pub ifname: String,
    /// CNI_ARGS pairs.
    pub args: Vec<(String, String)>,
    /// Capability arguments (`portMappings`, `ips`, `mac`, ...); passed to plugins that declare them.
    pub capability_args: Map<String, Value>,
}

/// Where plugins are and what extra environment they get.
#[derive(Debug, Clone, Default)]
pub struct Runtime {
    /// CNI_PATH directories.
    pub cni_path: Vec<PathBuf>,
    /// Extra environment (PATH, CORRAL_STATE_DIR, ...).
    pub env: BTreeMap<String, String>,
}

impl Conflist {
    /// Parses a conflist, or a single plugin config.
    pub fn parse(bytes: &[u8]) -> Result<Self, CniError> {
        let raw: RawList = crate::config::decode(bytes, "network configuration list")?;
        let plugins = match raw.plugins {
            Some(p) => p,
            None => vec![crate::config::decode(bytes, "network configuration")?],
        };
        if plugins.is_empty() {
            return Err(CniError::invalid_config(format!(
                "network \"{}\" has no plugins",
                raw.name
            )));
        }
        for (i, p) in plugins.iter().enumerate() {
            if p.get("type").and_then(Value::as_str).is_none_or(str::is_empty) {
                return Err(CniError::invalid_config(format!(
                    "plugin {i} of network \"{}\" has no type",
                    raw.name
                )));
            }
        }
        let cni_version = if raw.cni_version.is_empty() {
            version::DEFAULT_WHEN_ABSENT.into()
        } else {
            raw.cni_version
        };
        Ok(Conflist {
            cni_version,
            name: raw.name,
            plugins,
            disable_check: raw.disable_check,
            disable_gc: raw.disable_gc,
        })
    }

    /// The request config for plugin `i`: its object plus name, cniVersion, runtimeConfig and prevResult.
    pub fn plugin_config(&self, i: usize, att: &Attachment, prev: Option<&Value>) -> Value {
        let mut conf = self.plugins.get(i).cloned().unwrap_or_default();
        conf.insert("name".into(), json!(self.name));
        conf.insert("cniVersion".into(), json!(self.cni_version));
        let caps: Vec<String> = conf
            .get("capabilities")
            .and_then(Value::as_object)
            .map(|c| {
                c.iter()
                    .filter(|(_, on)| on.as_bool() == Some(true))
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default();
        let runtime: Map<String, Value> = att
            .capability_args
            .iter()
            .filter(|(k, _)| caps.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !runtime.is_empty() {
            conf.insert("runtimeConfig".into(), Value::Object(runtime));
        }
        if let Some(p) = prev {
            conf.insert("prevResult".into(), p.clone());
        }
        Value::Object(conf)
    }

    fn plugin_type(&self, i: usize) -> &str {
        self.plugins
            .get(i)
            .and_then(|p| p.get("type"))
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    fn env(&self, rt: &Runtime, att: &Attachment) -> BTreeMap<String, String> {
        let mut env = rt.env.clone();
        let path: Vec<String> = rt.cni_path.iter().map(|p| p.display().to_string()).collect();
        env.insert("CNI_PATH".into(), path.join(":"));
        env.insert("CNI_CONTAINERID".into(), att.container_id.clone());
        env.insert("CNI_NETNS".into(), att.netns.clone());
        env.insert("CNI_IFNAME".into(), att.ifname.clone());
        let args: Vec<String> = att.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        env.insert("CNI_ARGS".into(), args.join(";"));
        env
    }

    fn run(
        &self,
        i: usize,
        cmd: Command,
        rt: &Runtime,
        env: &BTreeMap<String, String>,
        conf: &Value,
    ) -> Result<Option<Value>, CniError> {
        let t = self.plugin_type(i);
        let path = find_in_path(t, &rt.cni_path)?;
        let bytes =
            serde_json::to_vec(conf).map_err(|e| CniError::internal("encode config").with_details(e))?;
        exec_plugin(&path, cmd, env, &bytes).map_err(|e| e.context(format!("plugin {t} {}", cmd.as_str())))
    }

    /// ADD through the chain; returns the last plugin's result. A failure runs DEL on the whole chain
    /// (as libcni leaves to the runtime) and returns the ADD error.
    pub fn add(&self, rt: &Runtime, att: &Attachment) -> Result<Value, CniError> {
        let env = self.env(rt, att);
        let mut prev: Option<Value> = None;
        for i in 0..self.plugins.len() {
            let conf = self.plugin_config(i, att, prev.as_ref());
            match self.run(i, Command::Add, rt, &env, &conf) {
                Ok(Some(r)) => prev = Some(r),
                Ok(None) => {}
                Err(e) => {
                    let _ = self.del(rt, att, prev.as_ref());
                    return Err(e);
                }
            }
        }
        prev.ok_or_else(|| CniError::decode(format!("network \"{}\": chain returned no result", self.name)))
    }

    /// DEL in reverse order with the cached result; keeps going past failures and returns the first.
    pub fn del(&self, rt: &Runtime, att: &Attachment, prev: Option<&Value>) -> Result<(), CniError> {
        let env = self.env(rt, att);
        let mut first = None;
        for i in (0..self.plugins.len()).rev() {
            let conf = self.plugin_config(i, att, prev);
            if let Err(e) = self.run(i, Command::Del, rt, &env, &conf) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// CHECK on every plugin with the cached result (cniVersion 0.4.0 and later).
    pub fn check(&self, rt: &Runtime, att: &Attachment, prev: &Value) -> Result<(), CniError> {
        if self.disable_check {
            return Ok(());
        }
        let env = self.env(rt, att);
        for i in 0..self.plugins.len() {
            self.run(
                i,
                Command::Check,
                rt,
                &env,
                &self.plugin_config(i, att, Some(prev)),
            )?;
        }
        Ok(())
    }

    /// STATUS on every plugin (cniVersion 1.1.0).
    pub fn status(&self, rt: &Runtime) -> Result<(), CniError> {
        let env = self.env(rt, &Attachment::default());
        for i in 0..self.plugins.len() {
            self.run(
                i,
                Command::Status,
                rt,
                &env,
                &self.plugin_config(i, &Attachment::default(), None),
            )?;
        }
        Ok(())
    }

    /// GC on every plugin with the attachments the runtime still has (cniVersion 1.1.0).
    pub fn gc(&self, rt: &Runtime, valid: &[crate::config::Attachment]) -> Result<(), CniError> {
        if self.disable_gc {
            return Ok(());
        }
        let env = self.env(rt, &Attachment::default());
        let mut first = None;
        for i in 0..self.plugins.len() {
            let mut conf = self.plugin_config(i, &Attachment::default(), None);
            conf["cni.dev/valid-attachments"] = json!(valid);
            if let Err(e) = self.run(i, Command::Gc, rt, &env, &conf) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = r#"{
      "cniVersion": "1.0.0", "name": "podman",
      "plugins": [
        {"type": "bridge", "bridge": "cni-podman0", "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.88.0.0/16"}]]}},
        {"type": "portmap", "capabilities": {"portMappings": true}},
        {"type": "tuning", "capabilities": {"mac": false}}
      ]}"#;

    #[test]
    fn parses_list_and_single_conf() {
        let l = Conflist::parse(LIST.as_bytes()).unwrap();
        assert_eq!(
            (l.name.as_str(), l.cni_version.as_str(), l.plugins.len()),
            ("podman", "1.0.0", 3)
        );
        let one = Conflist::parse(br#"{"cniVersion":"0.4.0","name":"n","type":"bridge"}"#).unwrap();
        assert_eq!(one.plugins.len(), 1);
        assert_eq!(one.plugins[0]["type"], "bridge");
    }

    #[test]
    fn rejects_lists_without_plugins_or_types() {
        assert_eq!(
            Conflist::parse(br#"{"name":"n","plugins":[]}"#).unwrap_err().code,
            7
        );
        assert_eq!(
            Conflist::parse(br#"{"name":"n","plugins":[{"bridge":"x"}]}"#)
                .unwrap_err()
                .code,
            7
        );
        assert_eq!(Conflist::parse(b"{").unwrap_err().code, 6);
    }

    #[test]
    fn plugin_config_injects_name_version_prev_and_only_declared_capabilities() {
        let l = Conflist::parse(LIST.as_bytes()).unwrap();
        let mut att = Attachment::default();
        att.capability_args.insert(
            "portMappings".into(),
            json!([{"hostPort": 8080, "containerPort": 80}]),
        );
        att.capability_args
            .insert("mac".into(), json!("02:00:00:00:00:01"));
        let prev = json!({"cniVersion": "1.0.0"});
        let c0 = l.plugin_config(0, &att, None);
        assert_eq!(
            (c0["name"].as_str(), c0["cniVersion"].as_str()),
            (Some("podman"), Some("1.0.0"))
        );
        assert!(c0.get("runtimeConfig").is_none() && c0.get("prevResult").is_none());
        let c1 = l.plugin_config(1, &att, Some(&prev));
        assert_eq!(c1["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
        assert!(c1["runtimeConfig"].get("mac").is_none());
        assert_eq!(c1["prevResult"], prev);
        assert!(
            l.plugin_config(2, &att, None).get("runtimeConfig").is_none(),
            "capability set to false"
        );
    }
}
