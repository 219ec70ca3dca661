//! The network configuration a plugin reads on stdin: the keys every plugin shares. Each plugin decodes its
//! own keys from the same bytes.

use crate::error::CniError;
use crate::result::Dns;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Keys common to every plugin's config (SPEC.md section 1 and 3).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NetConf {
    /// Selected spec version.
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    /// Network name.
    #[serde(default)]
    pub name: String,
    /// Plugin type (binary name).
    #[serde(rename = "type", default)]
    pub plugin_type: String,
    /// IPAM section, decoded by the IPAM plugin.
    #[serde(default)]
    pub ipam: Option<Value>,
    /// DNS settings to put in the result.
    #[serde(default)]
    pub dns: Option<Dns>,
    /// The previous plugin's result in a chain (and the final one on DEL/CHECK).
    #[serde(rename = "prevResult", default)]
    pub prev_result: Option<Value>,
    /// Capability arguments from the runtime.
    #[serde(rename = "runtimeConfig", default)]
    pub runtime_config: Option<Value>,
    /// Optional metadata, `args.cni.*` (CONVENTIONS.md).
    #[serde(default)]
    pub args: Option<Value>,
    /// GC: the attachments the runtime still has.
    #[serde(rename = "cni.dev/valid-attachments", default)]
    pub valid_attachments: Option<Vec<Attachment>>,
    /// GC, legacy key some libcni versions also set.
    #[serde(rename = "cni.dev/attachments", default)]
    pub legacy_attachments: Option<Vec<Attachment>>,
}

/// What a delegating plugin reads of its `ipam` object: the IPAM plugin's type (the rest is the IPAM
/// plugin's own business).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct IpamRef {
    /// The IPAM plugin, found in CNI_PATH.
    #[serde(rename = "type", default)]
    pub plugin_type: String,
}

impl IpamRef {
    /// The IPAM plugin's name, if one is configured.
    pub fn plugin(&self) -> Option<&str> {
        Some(self.plugin_type.as_str()).filter(|t| !t.is_empty())
    }
}

/// One (container, interface) attachment named in a GC request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Attachment {
    /// Container id.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// Interface name.
    pub ifname: String,
}

impl NetConf {
    /// Validates the network name: a letter or digit, then letters, digits, `_`, `.`, `-` (code 7).
    pub fn validate_name(&self) -> Result<(), CniError> {
        let mut chars = self.name.chars();
        let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if ok {
            Ok(())
        } else if self.name.is_empty() {
            Err(CniError::invalid_config("missing network name"))
        } else {
            Err(CniError::invalid_config(format!(
                "invalid network name \"{}\": must start with a letter or digit and contain only letters, \
                 digits, '_', '.' and '-'",
                self.name
            )))
        }
    }

    /// The attachments a GC request keeps: the spec's key, else the legacy one.
    pub fn gc_valid_attachments(&self) -> Vec<Attachment> {
        self.valid_attachments
            .clone()
            .or_else(|| self.legacy_attachments.clone())
            .unwrap_or_default()
    }

    /// [`NetConf::gc_valid_attachments`] as (container id, ifname) pairs, the key of every record a plugin keeps
    /// per attachment.
    pub fn gc_valid_pairs(&self) -> Vec<(String, String)> {
        self.gc_valid_attachments()
            .into_iter()
            .map(|a| (a.container_id, a.ifname))
            .collect()
    }

    /// `args.cni.<key>` if present (keys matched as Go matches them).
    pub fn args_cni(&self, key: &str) -> Option<&Value> {
        crate::gojson::lookup(crate::gojson::lookup(self.args.as_ref()?, "cni")?, key)
    }

    /// `runtimeConfig.<key>` if present (keys matched as Go matches them).
    pub fn runtime(&self, key: &str) -> Option<&Value> {
        crate::gojson::lookup(self.runtime_config.as_ref()?, key)
    }
}

/// Decodes a plugin's typed config from stdin bytes; malformed JSON or a wrongly typed value is code 6, and
/// the message names the key (`ipam.ranges[0][0].subnet`) when the JSON itself was well formed.
///
/// Keys match fields as Go's `encoding/json` matches them (case-insensitively when there is no exact key), as
/// the reference plugins decode configs: see [`crate::gojson`].
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, CniError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| CniError::decode(format!("cannot decode {what}")).with_details(e))?;
    serde_path_to_error::deserialize(crate::gojson::GoValue(value)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = if path == "." {
            format!("cannot decode {what}")
        } else {
            format!("cannot decode {what}: bad value for \"{path}\"")
        };
        CniError::decode(msg).with_details(inner)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(name: &str) -> NetConf {
        NetConf {
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn validates_network_names() {
        for ok in ["a", "net-1", "my_net.v2", "0x"] {
            assert!(conf(ok).validate_name().is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a/b", "a b", "../x", "a:b"] {
            assert_eq!(conf(bad).validate_name().unwrap_err().code, 7, "{bad}");
        }
    }

    #[test]
    fn gc_reads_either_attachment_key() {
        let c: NetConf = serde_json::from_str(
            r#"{"cniVersion":"1.1.0","name":"n","cni.dev/attachments":[{"containerID":"a","ifname":"eth0"}]}"#,
        )
        .unwrap();
        assert_eq!(
            c.gc_valid_attachments(),
            vec![Attachment {
                container_id: "a".into(),
                ifname: "eth0".into()
            }]
        );
        assert_eq!(c.gc_valid_pairs(), vec![("a".to_string(), "eth0".to_string())]);
        let c: NetConf = serde_json::from_str(
            r#"{"name":"n","cni.dev/valid-attachments":[{"containerID":"b","ifname":"net1"}],
                "cni.dev/attachments":[{"containerID":"a","ifname":"eth0"}]}"#,
        )
        .unwrap();
        assert_eq!(c.gc_valid_attachments()[0].container_id, "b");
    }

    #[test]
    fn reads_args_cni_and_runtime_config() {
        let c: NetConf = serde_json::from_str(
            r#"{"name":"n","args":{"cni":{"ips":["10.0.0.9"]}},"runtimeConfig":{"mac":"c2:11:22:33:44:55"}}"#,
        )
        .unwrap();
        assert_eq!(c.args_cni("ips").unwrap()[0], "10.0.0.9");
        assert_eq!(c.runtime("mac").unwrap(), "c2:11:22:33:44:55");
        assert!(c.runtime("ips").is_none());
    }

    #[test]
    fn decode_error_names_the_key() {
        #[derive(Debug, serde::Deserialize)]
        struct Conf {
            #[allow(dead_code)]
            mtu: u32,
        }
        let e = decode::<Conf>(br#"{"mtu": "big"}"#, "config").unwrap_err();
        assert_eq!(e.code, 6);
        assert!(e.msg.contains("\"mtu\""), "{e}");
        assert!(e.details.contains("big"), "{e}");
    }

    #[test]
    fn decode_error_is_code_6() {
        assert_eq!(decode::<NetConf>(b"{not json", "config").unwrap_err().code, 6);
        assert_eq!(
            decode::<NetConf>(br#"{"name": 5}"#, "config").unwrap_err().code,
            6
        );
    }
}
