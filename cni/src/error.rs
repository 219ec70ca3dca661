//! CNI error objects: the spec's codes, and the `{cniVersion, code, msg, details}` JSON a plugin prints.

use serde_json::{json, Value};
use std::fmt;

/// Well-known CNI error codes (SPEC.md "Error"). Codes 100 and above are plugin specific.
pub mod codes {
    /// The config's cniVersion is not supported.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// A field is not supported; the message names the key and value.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// The container is unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid or missing environment variables; the message names them.
    pub const INVALID_ENV: u32 = 4;
    /// An I/O failure, such as reading stdin.
    pub const IO_FAILURE: u32 = 5;
    /// Content could not be decoded (malformed JSON, a value of the wrong type).
    pub const DECODE_FAILURE: u32 = 6;
    /// The network configuration is invalid.
    pub const INVALID_CONFIG: u32 = 7;
    /// CNI_NETNS is the plugin's own network namespace (reference skel extension).
    pub const INVALID_NETNS: u32 = 8;
    /// A transient failure (a lock timed out); the runtime should retry later.
    pub const TRY_AGAIN: u32 = 11;
    /// STATUS: the plugin cannot serve ADD now.
    pub const NOT_AVAILABLE: u32 = 50;
    /// STATUS: not available, and existing attachments may have limited connectivity.
    pub const LIMITED_CONNECTIVITY: u32 = 51;
    /// corral: no free address is left in the range set (host-local ADD).
    pub const ADDRESS_EXHAUSTED: u32 = 100;
    /// corral: CHECK found the attachment differs from its prevResult or its recorded state.
    pub const CHECK_MISMATCH: u32 = 101;
    /// corral: a host port is owned by another live attachment (portmap ADD).
    pub const HOST_PORT_IN_USE: u32 = 102;
    /// An unexpected failure the spec has no code for (kernel refused an operation).
    pub const INTERNAL: u32 = 999;
}

/// A CNI error as the spec defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    /// Numeric code, see [`codes`].
    pub code: u32,
    /// Short message naming the object.
    pub msg: String,
    /// Longer explanation (the source chain).
    pub details: String,
}

impl CniError {
    /// An error with a code and message.
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }
    /// Adds details (usually the underlying error).
    pub fn with_details(mut self, details: impl fmt::Display) -> Self {
        self.details = details.to_string();
        self
    }
    /// Prefixes the message with context, keeping the code.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.msg = format!("{what}: {}", self.msg);
        self
    }
    /// Code 1.
    pub fn incompatible_version(config: &str) -> Self {
        CniError::new(codes::INCOMPATIBLE_VERSION, "incompatible CNI versions").with_details(format!(
            "config is \"{config}\", plugin supports {:?}",
            crate::version::SUPPORTED
        ))
    }
    /// Code 2: the message carries the key and its value, as the spec requires.
    pub fn unsupported_field(key: &str, value: impl fmt::Display) -> Self {
        CniError::new(
            codes::UNSUPPORTED_FIELD,
            format!("unsupported field \"{key}\" with value {value}"),
        )
    }
    /// Code 4: names the variables.
    pub fn invalid_env(msg: impl Into<String>) -> Self {
        CniError::new(codes::INVALID_ENV, msg)
    }
    /// Code 5.
    pub fn io(msg: impl Into<String>) -> Self {
        CniError::new(codes::IO_FAILURE, msg)
    }
    /// Code 6.
    pub fn decode(msg: impl Into<String>) -> Self {
        CniError::new(codes::DECODE_FAILURE, msg)
    }
    /// Code 7.
    pub fn invalid_config(msg: impl Into<String>) -> Self {
        CniError::new(codes::INVALID_CONFIG, msg)
    }
    /// Code 11.
    pub fn try_again(msg: impl Into<String>) -> Self {
        CniError::new(codes::TRY_AGAIN, msg)
    }
    /// Code 50.
    pub fn not_available(msg: impl Into<String>) -> Self {
        CniError::new(codes::NOT_AVAILABLE, msg)
    }
    /// Code 101: CHECK found a difference.
    pub fn check_mismatch(msg: impl Into<String>) -> Self {
        CniError::new(codes::CHECK_MISMATCH, msg)
    }
    /// Code 999: the kernel or a tool refused an operation the spec has no code for.
    pub fn internal(msg: impl Into<String>) -> Self {
        CniError::new(codes::INTERNAL, msg)
    }

    /// The error object in JSON, labelled with the request's cniVersion.
    pub fn to_json(&self, cni_version: &str) -> Value {
        let mut v = json!({ "cniVersion": cni_version, "code": self.code, "msg": self.msg });
        if !self.details.is_empty() {
            v["details"] = Value::String(self.details.clone());
        }
        v
    }

    /// Parses an error object printed by a delegate plugin.
    pub fn from_json(v: &Value) -> Option<Self> {
        let code = u32::try_from(v.get("code")?.as_u64()?).ok()?;
        let msg = v
            .get("msg")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let details = v
            .get("details")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        Some(CniError { code, msg, details })
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.details.is_empty() {
            write!(f, "{} (code {})", self.msg, self.code)
        } else {
            write!(f, "{}: {} (code {})", self.msg, self.details, self.code)
        }
    }
}

impl std::error::Error for CniError {}

/// One error from many (DEL and GC keep going past failures): the first one's code and message, every other
/// error appended to its details. No errors is success.
pub fn combine(errors: Vec<CniError>) -> Result<(), CniError> {
    let mut it = errors.into_iter();
    let Some(first) = it.next() else { return Ok(()) };
    let rest: Vec<String> = it.map(|e| e.to_string()).collect();
    if rest.is_empty() {
        return Err(first);
    }
    let details = if first.details.is_empty() {
        rest.join("; ")
    } else {
        format!("{}; {}", first.details, rest.join("; "))
    };
    Err(CniError { details, ..first })
}

/// Shorthand for results in plugins.
pub type CniResultOf<T> = std::result::Result<T, CniError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_has_version_code_msg_and_details() {
        let e = CniError::invalid_config("bad vlan").with_details("vlan 9999 > 4094");
        let j = e.to_json("1.0.0");
        assert_eq!(j["cniVersion"], "1.0.0");
        assert_eq!(j["code"], 7);
        assert_eq!(j["msg"], "bad vlan");
        assert_eq!(j["details"], "vlan 9999 > 4094");
        assert_eq!(CniError::from_json(&j), Some(e));
    }

    #[test]
    fn combine_keeps_the_first_code_and_every_message() {
        assert_eq!(combine(vec![]), Ok(()));
        let one = CniError::io("a");
        assert_eq!(combine(vec![one.clone()]), Err(one));
        let e = combine(vec![
            CniError::io("first").with_details("why"),
            CniError::internal("second"),
            CniError::try_again("third"),
        ])
        .unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (5, "first"));
        assert!(e.details.starts_with("why; second"), "{}", e.details);
        assert!(e.details.contains("third (code 11)"), "{}", e.details);
    }

    #[test]
    fn details_omitted_when_empty() {
        let j = CniError::try_again("lock").to_json("1.1.0");
        assert!(j.get("details").is_none());
    }

    #[test]
    fn unsupported_field_names_key_and_value() {
        let e = CniError::unsupported_field("vlanTrunk", "[1]");
        assert_eq!(e.code, 2);
        assert!(e.msg.contains("vlanTrunk") && e.msg.contains("[1]"));
    }
}
