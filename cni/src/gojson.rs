//! Go-compatible JSON decoding. The reference plugins decode configs with Go's `encoding/json`, where an object
//! key matches a struct field case-insensitively when no key matches it exactly (`"IsGateway"` sets
//! `isGateway`). Runtimes and hand-written conflists rely on it, so corral decodes the same way: a wrapper
//! around `serde_json::Value` renames such keys to the field's own name, using the field list serde passes to
//! `deserialize_struct`, at every level of nesting.

use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// `obj[key]` with Go's key matching, for free-form objects read as `Value` (`runtimeConfig.portMappings`
/// entries, whose keys containerd writes as Go field names, `HostPort`): the exact key, else the first key
/// equal to it ignoring ASCII case.
pub fn lookup<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    let map = obj.as_object()?;
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// A JSON value deserialized with Go's key matching.
pub struct GoValue(pub Value);

type Error = serde_json::Error;

/// Renames keys of `map` that match one of `fields` only case-insensitively (and whose field has no exact key).
fn match_fields(map: Map<String, Value>, fields: &[&str]) -> Map<String, Value> {
    let mut out = Map::with_capacity(map.len());
    let exact: Vec<bool> = fields.iter().map(|f| map.contains_key(*f)).collect();
    for (key, value) in map {
        let target = if fields.contains(&key.as_str()) {
            key
        } else {
            fields
                .iter()
                .enumerate()
                .find(|(i, f)| !exact[*i] && f.eq_ignore_ascii_case(&key))
                .map(|(_, f)| (*f).to_string())
                .unwrap_or(key)
        };
        // As Go does, a later key for the same field wins.
        out.insert(target, value);
    }
    out
}

impl<'de> Deserializer<'de> for GoValue {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Object(map) => visitor.visit_map(GoMap {
                iter: map.into_iter(),
                value: None,
            }),
            Value::Array(items) => visitor.visit_seq(GoSeq {
                iter: items.into_iter(),
            }),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Value::Object(map) => {
                let map = match_fields(map, fields);
                visitor.visit_map(GoMap {
                    iter: map.into_iter(),
                    value: None,
                })
            }
            other => other.deserialize_struct(name, fields, visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            other => visitor.visit_some(GoValue(other)),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit unit_struct
        seq tuple tuple_struct map identifier ignored_any
    }
}

impl<'de> IntoDeserializer<'de, Error> for GoValue {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

struct GoMap {
    iter: serde_json::map::IntoIter,
    value: Option<Value>,
}

impl<'de> MapAccess<'de> for GoMap {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        match self.iter.next() {
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(Value::String(key)).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        match self.value.take() {
            Some(value) => seed.deserialize(GoValue(value)),
            None => Err(de::Error::custom("value requested before key")),
        }
    }
}

struct GoSeq {
    iter: std::vec::IntoIter<Value>,
}

impl<'de> SeqAccess<'de> for GoSeq {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        self.iter.next().map(|v| seed.deserialize(GoValue(v))).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase")]
    struct Inner {
        range_start: Option<String>,
        #[serde(default)]
        subnet: String,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase")]
    struct Conf {
        #[serde(default)]
        is_gateway: bool,
        #[serde(default)]
        mtu: u32,
        #[serde(default)]
        ranges: Vec<Vec<Inner>>,
        #[serde(default)]
        ipam: Option<Inner>,
        #[serde(default)]
        extra: Option<Value>,
    }

    fn go<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, Error> {
        T::deserialize(GoValue(serde_json::from_str(json).unwrap()))
    }

    #[test]
    fn keys_match_fields_case_insensitively_at_every_level() {
        let c: Conf = go(r#"{"IsGateway": true, "MTU": 1400, "Ranges": [[{"SUBNET": "10.0.0.0/24", "rangestart": "10.0.0.5"}]],
                             "Ipam": {"Subnet": "10.1.0.0/16"}}"#)
        .unwrap();
        assert!(c.is_gateway);
        assert_eq!(c.mtu, 1400);
        assert_eq!(
            c.ranges[0][0],
            Inner {
                range_start: Some("10.0.0.5".into()),
                subnet: "10.0.0.0/24".into()
            }
        );
        assert_eq!(c.ipam.unwrap().subnet, "10.1.0.0/16");
    }

    #[test]
    fn an_exact_key_wins_over_a_case_insensitive_one() {
        let c: Conf = go(r#"{"isGateway": true, "ISGATEWAY": false}"#).unwrap();
        assert!(c.is_gateway);
    }

    #[test]
    fn free_form_values_keep_their_keys() {
        let c: Conf = go(r#"{"extra": {"MixedCase": 1}}"#).unwrap();
        assert_eq!(c.extra.unwrap()["MixedCase"], 1);
    }

    #[test]
    fn lookup_prefers_the_exact_key() {
        let v: Value = serde_json::from_str(r#"{"HostPort": 1, "hostport": 2, "containerPort": 3}"#).unwrap();
        assert_eq!(lookup(&v, "hostport"), Some(&Value::from(2)));
        assert_eq!(lookup(&v, "ContainerPort"), Some(&Value::from(3)));
        assert_eq!(lookup(&v, "hostIP"), None);
        assert_eq!(lookup(&Value::from(5), "x"), None);
    }

    #[test]
    fn type_errors_still_fail() {
        assert!(go::<Conf>(r#"{"mtu": "big"}"#).is_err());
        assert!(go::<Conf>(r#"{"ranges": {}}"#).is_err());
    }
}
