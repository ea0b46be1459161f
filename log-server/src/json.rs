//! JSON in and out.
//!
//! In: JSON text to a small tree that keeps what `serde_json::Value` loses: duplicate keys are
//! rejected instead of the last one silently winning, and every integer keeps its exact value
//! (serde_json turns integers outside i64/u64 into floats, so `-9223372036854775809` would read
//! as a float instead of being rejected).
//!
//! serde_json does all the parsing. Each object or array is read with its members captured as
//! raw text (`RawValue`), which is then converted recursively; a number's raw text tells an
//! integer literal from a float one. The cost: a byte nested d levels deep is scanned d + 1
//! times, which is nothing for trace lines (depth 2 to 4) and bounded by `MAX_DEPTH` otherwise.
//!
//! Out: every type that is written as JSON implements `serde::Serialize`, and [`to_string`] turns
//! it into text with serde_json.

use std::collections::HashSet;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde::Serialize;
use serde_json::value::RawValue;

/// `value` as compact JSON text.
///
/// serde_json only fails on an I/O error (there is none writing to memory), a map key that is not
/// a string, or an error raised by a `Serialize` impl; the trace types have none of these, so the
/// `null` fallback is never taken. It keeps the output valid JSON regardless.
pub(crate) fn to_string<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_string())
}

/// `s` as a JSON string literal, for quoting names in error messages.
pub(crate) fn quote(s: &str) -> String {
    to_string(s)
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    /// An integer literal (no `.` or exponent); anything outside i128 is already an error.
    Int(i128),
    /// A float literal; always finite.
    Float(f64),
    Str(String),
    Arr(Vec<Json>),
    /// Members in input order, keys distinct.
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// The JSON type name, for error messages.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Int(_) => "an integer",
            Json::Float(_) => "a float",
            Json::Str(_) => "a string",
            Json::Arr(_) => "an array",
            Json::Obj(_) => "an object",
        }
    }
}

/// Parses one JSON document. Errors are record-error reasons (`invalid JSON: ...`,
/// `duplicate key ...`, ...).
pub(crate) fn parse(text: &str) -> Result<Json, String> {
    // The first pass checks the syntax of the whole text, so syntax errors get a column that
    // refers to the whole line.
    let raw: &RawValue = serde_json::from_str(text).map_err(|e| syntax_error(text, &e))?;
    convert(raw.get(), 0)
}

/// Deepest nesting of arrays and objects accepted. serde_json checks the syntax of skipped
/// (raw) values without a depth limit, and `convert` recurses once per level, so this bound is
/// what keeps a line like `[[[[...` from overflowing the stack. It is serde_json's own default.
pub(crate) const MAX_DEPTH: usize = 128;

fn syntax_error(text: &str, e: &serde_json::Error) -> String {
    let at = e.column().saturating_sub(1);
    if let Some(rest) = text.get(at..) {
        // serde_json reports these as "expected value"/"invalid number"; name the real problem.
        for word in ["NaN", "Infinity"] {
            if rest.starts_with(word) {
                let minus = if at > 0 && text.as_bytes().get(at - 1) == Some(&b'-') {
                    "-"
                } else {
                    ""
                };
                return format!("invalid JSON: non-finite number {minus}{word}");
            }
        }
    }
    format!("invalid JSON: {} at column {}", error_text(e), e.column())
}

/// serde_json's message without its "at line L column C" suffix.
fn error_text(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    match msg.rfind(" at line ") {
        Some(cut) => msg[..cut].to_string(),
        None => msg,
    }
}

fn nested_error(e: serde_json::Error) -> String {
    format!("invalid JSON: {}", error_text(&e))
}

/// Converts the raw text of one value that serde_json has already checked; `depth` is the
/// number of arrays and objects around it.
fn convert(raw: &str, depth: usize) -> Result<Json, String> {
    if matches!(raw.as_bytes().first(), Some(b'{' | b'[')) && depth >= MAX_DEPTH {
        return Err(format!(
            "invalid JSON: nested deeper than {MAX_DEPTH} levels"
        ));
    }
    match raw.as_bytes().first() {
        Some(b'{') => {
            let RawObject(members) = serde_json::from_str(raw).map_err(nested_error)?;
            let mut seen = HashSet::with_capacity(members.len());
            for (key, _) in &members {
                if !seen.insert(key.as_str()) {
                    return Err(format!("duplicate key {} in a JSON object", quote(key)));
                }
            }
            let mut out = Vec::with_capacity(members.len());
            for (key, value) in members {
                out.push((key, convert(value.get(), depth + 1)?));
            }
            Ok(Json::Obj(out))
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(raw).map_err(nested_error)?;
            items
                .into_iter()
                .map(|item| convert(item.get(), depth + 1))
                .collect::<Result<Vec<_>, _>>()
                .map(Json::Arr)
        }
        Some(b'"') => serde_json::from_str(raw)
            .map(Json::Str)
            .map_err(nested_error),
        Some(b't' | b'f') => serde_json::from_str(raw)
            .map(Json::Bool)
            .map_err(nested_error),
        Some(b'n') => Ok(Json::Null),
        _ => number(raw),
    }
}

fn number(raw: &str) -> Result<Json, String> {
    if raw.contains(['.', 'e', 'E']) {
        match raw.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Json::Float(f)),
            _ => Err(format!(
                "non-finite number {} (out of the range of f64)",
                excerpt(raw)
            )),
        }
    } else {
        raw.parse::<i128>()
            .map(Json::Int)
            .map_err(|_| format!("integer {} out of range of i64", excerpt(raw)))
    }
}

/// The start of a possibly huge literal, for messages.
pub(crate) fn excerpt(s: &str) -> String {
    const MAX: usize = 40;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// An object's members as raw text, duplicates included (a map type would drop them).
struct RawObject<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;

        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = RawObject<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, &'de RawValue>()? {
                    members.push(member);
                }
                Ok(RawObject(members))
            }
        }

        deserializer.deserialize_map(MembersVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_tree() {
        let j = parse(r#" {"a": [1, -2.5e1, "x\u00e9", true, false, null], "b": {"c": {}}} "#);
        assert_eq!(
            j,
            Ok(Json::Obj(vec![
                (
                    "a".into(),
                    Json::Arr(vec![
                        Json::Int(1),
                        Json::Float(-25.0),
                        Json::Str("xé".into()),
                        Json::Bool(true),
                        Json::Bool(false),
                        Json::Null,
                    ])
                ),
                ("b".into(), Json::Obj(vec![("c".into(), Json::Obj(vec![]))])),
            ]))
        );
    }

    #[test]
    fn integers_keep_their_exact_value() {
        assert_eq!(
            parse("18446744073709551615"),
            Ok(Json::Int(18_446_744_073_709_551_615))
        );
        assert_eq!(
            parse("-9223372036854775809"),
            Ok(Json::Int(-9_223_372_036_854_775_809))
        );
        assert_eq!(parse("-0"), Ok(Json::Int(0)));
        assert_eq!(parse("1E2"), Ok(Json::Float(100.0)));
        let err = parse("[123456789012345678901234567890123456789012345]").unwrap_err();
        assert!(err.starts_with("integer 1234567890"), "{err}");
        assert!(err.contains("out of range"), "{err}");
    }

    #[test]
    fn rejects_duplicate_keys_at_any_depth() {
        assert_eq!(
            parse(r#"{"a":1,"a":2}"#),
            Err(r#"duplicate key "a" in a JSON object"#.into())
        );
        assert_eq!(
            parse(r#"{"x":[{"b":1,"c":2,"b":3}]}"#),
            Err(r#"duplicate key "b" in a JSON object"#.into())
        );
        // Escapes are decoded before comparing.
        assert!(parse(r#"{"a":1,"\u0061":2}"#).is_err());
    }

    #[test]
    fn rejects_non_finite_numbers() {
        assert_eq!(
            parse(r#"{"a":NaN}"#),
            Err("invalid JSON: non-finite number NaN".into())
        );
        assert_eq!(
            parse(r#"{"a":-Infinity}"#),
            Err("invalid JSON: non-finite number -Infinity".into())
        );
        assert_eq!(
            parse(r#"[Infinity]"#),
            Err("invalid JSON: non-finite number Infinity".into())
        );
        let err = parse(r#"{"a":[1e400]}"#).unwrap_err();
        assert!(err.contains("non-finite number 1e400"), "{err}");
        assert_eq!(parse("1e-400"), Ok(Json::Float(0.0)));
    }

    #[test]
    fn rejects_lone_surrogates() {
        for text in [r#""\ud800""#, r#"{"a":"\udc00x"}"#, r#"{"\ud800":1}"#] {
            let err = parse(text).unwrap_err();
            assert!(err.starts_with("invalid JSON:"), "{text}: {err}");
        }
        assert_eq!(parse(r#""\ud83d\ude00""#), Ok(Json::Str("😀".into())));
    }

    #[test]
    fn syntax_errors_name_the_column() {
        assert_eq!(
            parse(r#"{"a":1} x"#),
            Err("invalid JSON: trailing characters at column 9".into())
        );
        assert!(parse("").unwrap_err().starts_with("invalid JSON: EOF"));
        assert!(parse("{\"a\":").is_err());
        assert!(parse("[1,]").is_err());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let arrays = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        let objects = |n: usize| format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n));
        assert!(parse(&arrays(MAX_DEPTH)).is_ok());
        assert!(parse(&objects(MAX_DEPTH)).is_ok());
        let too_deep = "invalid JSON: nested deeper than 128 levels";
        assert_eq!(parse(&arrays(MAX_DEPTH + 1)), Err(too_deep.to_string()));
        assert_eq!(parse(&objects(MAX_DEPTH + 1)), Err(too_deep.to_string()));
        assert_eq!(parse(&arrays(100_000)), Err(too_deep.to_string()));
    }

    #[test]
    fn excerpt_cuts_long_text_on_char_boundaries() {
        assert_eq!(excerpt("short"), "short");
        let long = "é".repeat(30);
        let e = excerpt(&long);
        assert!(e.ends_with("...") && e.len() <= 43);
    }
}
