//! Trace records (SPEC §1.3): variable names, the `Record` type, and its canonical one-line JSON
//! form, which is how the project writes traces.

use std::fmt;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::hlc::Hlc;
use crate::json;
use crate::value::{SetValue, Value};

/// Longest node id, in bytes.
pub const MAX_NODE_ID_BYTES: usize = 255;

/// A variable name `log.key`; both parts are identifiers `[A-Za-z_][A-Za-z0-9_]*`.
///
/// Ordered by the full name's bytes, which is also the order by (log, key): `.` sorts below every
/// identifier character.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VarName {
    name: String,
    dot: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VarNameError {
    pub name: String,
}

impl fmt::Display for VarNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bad variable name {} (expected log.key with identifiers [A-Za-z_][A-Za-z0-9_]*)",
            json::quote(&self.name)
        )
    }
}

impl std::error::Error for VarNameError {}

/// Whether `s` is an identifier `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl VarName {
    pub fn parse(name: &str) -> Result<VarName, VarNameError> {
        let err = || VarNameError {
            name: name.to_string(),
        };
        let (log, key) = name.split_once('.').ok_or_else(err)?;
        if !is_identifier(log) || !is_identifier(key) {
            return Err(err());
        }
        Ok(VarName {
            name: name.to_string(),
            dot: log.len(),
        })
    }

    pub fn new(log: &str, key: &str) -> Result<VarName, VarNameError> {
        VarName::parse(&format!("{log}.{key}"))
    }

    pub fn log(&self) -> &str {
        self.name.get(..self.dot).unwrap_or_default()
    }

    pub fn key(&self) -> &str {
        self.name.get(self.dot + 1..).unwrap_or_default()
    }

    /// The full `log.key`.
    pub fn as_str(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for VarName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// The full `log.key` as a string.
impl Serialize for VarName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name)
    }
}

/// One line of a trace. Within a record `unset`, then `set`, then `remove`, then `add` apply,
/// then `leave` (see `NodeState::apply`).
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// Non-empty, at most 255 bytes.
    pub node: String,
    pub hlc: Hlc,
    /// Assignments in input order; `None` is a JSON `null`, which unsets the variable.
    pub set: Vec<(VarName, Option<Value>)>,
    pub unset: Vec<VarName>,
    pub add: Vec<(VarName, SetValue)>,
    pub remove: Vec<(VarName, SetValue)>,
    pub leave: bool,
    /// The node's physical clock reading in ms, for clock-skew analysis.
    pub pt: Option<u64>,
}

impl Record {
    /// A heartbeat for `node` at `hlc` (no changes).
    pub fn heartbeat(node: impl Into<String>, hlc: Hlc) -> Record {
        Record {
            node: node.into(),
            hlc,
            set: Vec::new(),
            unset: Vec::new(),
            add: Vec::new(),
            remove: Vec::new(),
            leave: false,
            pt: None,
        }
    }

    /// A record that changes nothing: only says the node's clock reached `hlc`. `"set": {}`,
    /// `"unset": []` and `"leave": false` change nothing either, so they count as heartbeats.
    pub fn is_heartbeat(&self) -> bool {
        self.set.is_empty()
            && self.unset.is_empty()
            && self.add.is_empty()
            && self.remove.is_empty()
            && !self.leave
    }

    /// Every variable the record names in `set`/`unset`/`add`/`remove` (with repeats), which is
    /// what makes a record a candidate for a query (SPEC §6).
    pub fn touched_vars(&self) -> impl Iterator<Item = &VarName> {
        self.unset
            .iter()
            .chain(self.set.iter().map(|(v, _)| v))
            .chain(self.remove.iter().map(|(v, _)| v))
            .chain(self.add.iter().map(|(v, _)| v))
    }

    /// The record as one canonical JSON line (no trailing newline; see the `Serialize` impl).
    /// The reader gives back an equal `Record`.
    pub fn to_json_line(&self) -> String {
        json::to_string(self)
    }

    /// Appends [`Record::to_json_line`].
    pub fn write_json(&self, out: &mut String) {
        out.push_str(&self.to_json_line());
    }
}

/// The canonical JSON object: fields in the order node, hlc (`[l,c]`), set, unset, remove, add,
/// leave, pt, with empty ones (no changes, `leave` false, no `pt`) left out. `set`, `remove` and
/// `add` are objects keyed by variable name in the record's order; a `set` entry of `None` is
/// `null`.
impl Serialize for Record {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let present = [
            !self.set.is_empty(),
            !self.unset.is_empty(),
            !self.remove.is_empty(),
            !self.add.is_empty(),
            self.leave,
            self.pt.is_some(),
        ];
        let len = 2 + present.iter().filter(|&&p| p).count();
        let mut out = serializer.serialize_struct("Record", len)?;
        out.serialize_field("node", &self.node)?;
        out.serialize_field("hlc", &self.hlc)?;
        if self.set.is_empty() {
            out.skip_field("set")?;
        } else {
            out.serialize_field("set", &VarMap(&self.set))?;
        }
        if self.unset.is_empty() {
            out.skip_field("unset")?;
        } else {
            out.serialize_field("unset", &self.unset)?;
        }
        if self.remove.is_empty() {
            out.skip_field("remove")?;
        } else {
            out.serialize_field("remove", &VarMap(&self.remove))?;
        }
        if self.add.is_empty() {
            out.skip_field("add")?;
        } else {
            out.serialize_field("add", &VarMap(&self.add))?;
        }
        if self.leave {
            out.serialize_field("leave", &true)?;
        } else {
            out.skip_field("leave")?;
        }
        match self.pt {
            Some(pt) => out.serialize_field("pt", &pt)?,
            None => out.skip_field("pt")?,
        }
        out.end()
    }
}

/// `(variable, value)` pairs as a JSON object, in the given order.
struct VarMap<'a, V>(&'a [(VarName, V)]);

impl<V: Serialize> Serialize for VarMap<'_, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(var, value)| (var, value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(s: &str) -> VarName {
        VarName::parse(s).unwrap()
    }

    #[test]
    fn var_names() {
        let v = var("inv.a");
        assert_eq!((v.log(), v.key(), v.as_str()), ("inv", "a", "inv.a"));
        assert_eq!(v.to_string(), "inv.a");
        let v = var("_x9.Key_2");
        assert_eq!((v.log(), v.key()), ("_x9", "Key_2"));
        assert_eq!(VarName::new("zk", "time"), Ok(var("zk.time")));
        for bad in [
            "inv", "", ".", "inv.", ".a", "inv.a.b", "9inv.a", "inv.9a", "in v.a", "inv.a-b",
            "inv.é", "inv..a",
        ] {
            assert!(VarName::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            VarName::parse("inv").unwrap_err().to_string(),
            r#"bad variable name "inv" (expected log.key with identifiers [A-Za-z_][A-Za-z0-9_]*)"#
        );
        assert!(VarName::new("a.b", "c").is_err());
    }

    #[test]
    fn var_name_order_is_log_then_key() {
        let mut names = [var("a_x.c"), var("a.z"), var("ab.a"), var("a.b")];
        names.sort();
        let names: Vec<_> = names.iter().map(VarName::as_str).collect();
        assert_eq!(names, ["a.b", "a.z", "a_x.c", "ab.a"]);
    }

    #[test]
    fn heartbeat() {
        let hlc = Hlc::new(1, 2).unwrap();
        let mut r = Record::heartbeat("n1", hlc);
        assert!(r.is_heartbeat());
        r.pt = Some(5);
        assert!(r.is_heartbeat());
        r.leave = true;
        assert!(!r.is_heartbeat());
        let mut r = Record::heartbeat("n1", hlc);
        r.unset.push(var("inv.a"));
        assert!(!r.is_heartbeat());
        let mut r = Record::heartbeat("n1", hlc);
        r.add.push((var("inv.s"), SetValue::new()));
        assert!(!r.is_heartbeat());
        let mut r = Record::heartbeat("n1", hlc);
        r.set.push((var("inv.a"), None));
        assert!(!r.is_heartbeat());
        assert_eq!(
            r.touched_vars().map(VarName::as_str).collect::<Vec<_>>(),
            ["inv.a"]
        );
    }

    #[test]
    fn json_line() {
        let mut r = Record::heartbeat("n\"1", Hlc::new(1_700_000_000_123, 4).unwrap());
        assert_eq!(
            r.to_json_line(),
            r#"{"node":"n\"1","hlc":[1700000000123,4]}"#
        );
        r.set = vec![
            (var("inv.b"), Some(Value::Float(2.0))),
            (var("inv.a"), None),
        ];
        r.unset = vec![var("zk.x")];
        r.add = vec![(
            var("zk.m"),
            SetValue::from_values([Value::Str("n3".into()), Value::Int(1)]).unwrap(),
        )];
        r.remove = vec![(var("zk.m"), SetValue::new())];
        r.leave = true;
        r.pt = Some(17);
        assert_eq!(
            r.to_json_line(),
            r#"{"node":"n\"1","hlc":[1700000000123,4],"set":{"inv.b":2.0,"inv.a":null},"unset":["zk.x"],"remove":{"zk.m":[]},"add":{"zk.m":[1,"n3"]},"leave":true,"pt":17}"#
        );
        assert_eq!(serde_json::to_string(&r).unwrap(), r.to_json_line());
        let mut out = String::from("x");
        r.write_json(&mut out);
        assert_eq!(out, format!("x{}", r.to_json_line()));
        let json = serde_json::to_value(&r).unwrap();
        assert!(json["set"]["inv.a"].is_null());
        assert!(json["set"]["inv.b"].is_f64());
        assert_eq!(serde_json::to_string(&r.hlc).unwrap(), "[1700000000123,4]");
        assert_eq!(serde_json::to_string(&var("zk.m")).unwrap(), r#""zk.m""#);
    }
}
