//! Typed reads of GGUF metadata (`general.*`, `<arch>.*`, `tokenizer.*`).

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;

use crate::engine::error::EngineError;

/// The metadata table of a GGUF file, with lookups that convert and explain.
pub(crate) struct Metadata<'a>(pub(crate) &'a HashMap<String, Value>);

impl<'a> Metadata<'a> {
    /// The string at `key`, if present and a string.
    pub(crate) fn str(&self, key: &str) -> Option<&'a str> {
        match self.0.get(key) {
            Some(Value::String(s)) => Some(s.as_str()),
            _ => None,
        }
    }

    /// The unsigned integer at `key`, whatever integer width the file used.
    pub(crate) fn u64(&self, key: &str) -> Option<u64> {
        match self.0.get(key)? {
            Value::U8(v) => Some(u64::from(*v)),
            Value::U16(v) => Some(u64::from(*v)),
            Value::U32(v) => Some(u64::from(*v)),
            Value::U64(v) => Some(*v),
            Value::I8(v) => u64::try_from(*v).ok(),
            Value::I16(v) => u64::try_from(*v).ok(),
            Value::I32(v) => u64::try_from(*v).ok(),
            Value::I64(v) => u64::try_from(*v).ok(),
            _ => None,
        }
    }

    /// The token id at `key` (a non-negative integer that fits `u32`).
    pub(crate) fn token_id(&self, key: &str) -> Option<u32> {
        self.u64(key).and_then(|v| u32::try_from(v).ok())
    }

    /// The boolean at `key`.
    pub(crate) fn bool(&self, key: &str) -> Option<bool> {
        match self.0.get(key) {
            Some(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    /// The array at `key` with each item converted by `item`; `None` when absent, an error
    /// when present with another type or when an item does not convert (`kind` names it).
    fn array<T>(
        &self,
        key: &str,
        kind: &str,
        item: impl Fn(&'a Value) -> Option<T>,
    ) -> Result<Option<Vec<T>>, EngineError> {
        let Some(value) = self.0.get(key) else {
            return Ok(None);
        };
        let Value::Array(items) = value else {
            return Err(EngineError::InvalidModel(format!("{key} is not an array")));
        };
        items
            .iter()
            .map(|v| item(v).ok_or_else(|| EngineError::InvalidModel(format!("{key} holds a non-{kind}"))))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// The array of strings at `key`; an error when present with another type.
    pub(crate) fn str_array(&self, key: &str) -> Result<Option<Vec<&'a str>>, EngineError> {
        self.array(key, "string", |v| match v {
            Value::String(s) => Some(s.as_str()),
            _ => None,
        })
    }

    /// The array of integers at `key` (token types); an error when present with another type.
    pub(crate) fn int_array(&self, key: &str) -> Result<Option<Vec<i64>>, EngineError> {
        self.array(key, "integer", |v| match v {
            Value::I8(v) => Some(i64::from(*v)),
            Value::U8(v) => Some(i64::from(*v)),
            Value::I16(v) => Some(i64::from(*v)),
            Value::U16(v) => Some(i64::from(*v)),
            Value::I32(v) => Some(i64::from(*v)),
            Value::U32(v) => Some(i64::from(*v)),
            Value::I64(v) => Some(*v),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_integers_of_any_width_and_arrays() {
        let mut map = HashMap::new();
        map.insert("a".to_string(), Value::U32(7));
        map.insert("b".to_string(), Value::I32(-1));
        map.insert("c".to_string(), Value::Array(vec![Value::String("x".into())]));
        map.insert("d".to_string(), Value::Array(vec![Value::I32(3), Value::I32(1)]));
        let md = Metadata(&map);
        assert_eq!(md.u64("a"), Some(7));
        assert_eq!(md.u64("b"), None);
        assert_eq!(md.str_array("c").unwrap(), Some(vec!["x"]));
        assert_eq!(md.int_array("d").unwrap(), Some(vec![3, 1]));
        assert!(md.str_array("d").is_err());
        assert_eq!(md.str_array("missing").unwrap(), None);
    }
}
