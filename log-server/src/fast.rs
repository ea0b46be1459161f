//! The fast path of the trace-line reader: serde_json deserializes a line straight into a
//! [`Record`] through hand-written visitors, with no intermediate tree.
//!
//! It is an accelerator, not a second definition of the format. It gives up whenever it is not
//! sure, including on every bad line, and the caller then runs the reference reader
//! (`json::parse` + the conversion in `ndjson`), which decides and words the error. So the only
//! property this file must keep is: **whatever it accepts, the reference reader accepts with an
//! equal `Record`**. Every rule of SPEC §1.3/§6 is therefore enforced here too (by rejecting).
//!
//! Numbers inside values are the subtle part. serde_json (without `arbitrary_precision` or
//! `float_roundtrip`, which would change it for the whole workspace) reports an integer literal
//! outside i64/u64 as an f64, so `1.8446744073709552e19` and `18446744073709551616` look alike,
//! and its default float parsing is not correctly rounded (about a third of random f64s,
//! written in shortest form, read back an ulp off). So a value is captured as its literal text
//! (`RawValue`, which serde_json has already checked) and a number is read from that text
//! exactly as the reference reader does: no `.`/`e`/`E` means an integer (it must fit i64),
//! otherwise `str::parse::<f64>` (correctly rounded; must be finite). Strings, arrays and
//! objects in that text are deserialized again with serde_json (values are short; the reference
//! reader rescans much more). The record's own integers (`hlc`, `pt`) are deserialized as u64,
//! which serde_json does exactly, and anything else there (negative, `-0`, float-looking, too
//! big) is left to the reference reader.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::thread::LocalKey;

use serde::de::{
    self, DeserializeSeed, Deserializer as _, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::value::RawValue;

use crate::columnar::{NodeIdx, NodeTable, VarIdx, VarTable};
use crate::hlc::Hlc;
use crate::record::{Record, VarName, MAX_NODE_ID_BYTES};
use crate::value::{SetValue, Value};

/// Deepest nesting of arrays and objects inside one variable's value that the fast path reads
/// (a set is 1, a struct holding a set 2, ...); deeper values go to the reference reader, whose
/// own limit (`json::MAX_DEPTH`, counted from the record object) is larger.
const MAX_VALUE_DEPTH: usize = 32;

/// The record on `text` (one line; surrounding whitespace allowed), or `None` if the line is
/// bad or the fast path is unsure; see the module documentation.
#[cfg(test)]
pub(crate) fn record(text: &str) -> Option<Record> {
    let mut rec = Record::heartbeat(String::new(), Hlc::MIN);
    fill(text, &mut rec).then_some(rec)
}

/// Reads the record on `text` into `rec`, which must be a fresh heartbeat (it is filled in
/// place: a `Record` is big enough that moving it through return values costs as much as a
/// third of the parse). `false` if the line is bad or the fast path is unsure, and then `rec`
/// holds garbage.
pub(crate) fn fill(text: &str, rec: &mut Record) -> bool {
    let mut de = serde_json::Deserializer::from_str(text);
    (&mut de).deserialize_map(RecordVisitor(rec)).is_ok() && de.end().is_ok()
}

/// "Not on the fast path". The reason does not matter: the reference reader gives it.
#[derive(Debug)]
struct Reject;

fn reject<E: de::Error>() -> E {
    E::custom("not on the fast path")
}

fn lift<T, E: de::Error>(r: Result<T, Reject>) -> Result<T, E> {
    r.map_err(|Reject| reject())
}

#[derive(Clone, Copy)]
enum Field {
    Node,
    Hlc,
    Set,
    Unset,
    Add,
    Remove,
    Leave,
    Pt,
}

struct FieldSeed;

impl<'de> DeserializeSeed<'de> for FieldSeed {
    type Value = Field;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Field, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for FieldSeed {
    type Value = Field;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a record field name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Field, E> {
        Ok(match name {
            "node" => Field::Node,
            "hlc" => Field::Hlc,
            "set" => Field::Set,
            "unset" => Field::Unset,
            "add" => Field::Add,
            "remove" => Field::Remove,
            "leave" => Field::Leave,
            "pt" => Field::Pt,
            _ => return Err(reject()),
        })
    }
}

/// Reads the record object into the (heartbeat) record it holds.
struct RecordVisitor<'a>(&'a mut Record);

impl<'de> Visitor<'de> for RecordVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a trace record object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let rec = self.0;
        // One bit per field: a repeated field is a duplicate key.
        let mut seen = 0u8;
        while let Some(field) = map.next_key_seed(FieldSeed)? {
            let bit = 1u8 << field as u8;
            if seen & bit != 0 {
                return Err(reject());
            }
            seen |= bit;
            match field {
                Field::Node => {
                    rec.node = map.next_value()?;
                    if rec.node.is_empty() || rec.node.len() > MAX_NODE_ID_BYTES {
                        return Err(reject());
                    }
                }
                Field::Hlc => rec.hlc = map.next_value_seed(HlcSeed)?,
                Field::Set => rec.set = map.next_value_seed(AssignmentsSeed)?,
                Field::Unset => rec.unset = map.next_value_seed(UnsetSeed)?,
                Field::Add => rec.add = map.next_value_seed(ChangesSeed)?,
                Field::Remove => rec.remove = map.next_value_seed(ChangesSeed)?,
                Field::Leave => rec.leave = map.next_value()?,
                // serde_json gives u64 exactly for a non-negative integer literal in range and
                // fails for anything else (negative, `-0`, float literal, beyond u64).
                Field::Pt => rec.pt = Some(map.next_value::<u64>()?),
            }
        }
        // Both required.
        let both = (1 << Field::Node as u8) | (1 << Field::Hlc as u8);
        if seen & both != both {
            return Err(reject());
        }
        Ok(())
    }
}

/// `[l, c]` or a packed u64.
struct HlcSeed;

impl<'de> DeserializeSeed<'de> for HlcSeed {
    type Value = Hlc;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Hlc, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for HlcSeed {
    type Value = Hlc;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an HLC")
    }

    fn visit_u64<E: de::Error>(self, packed: u64) -> Result<Hlc, E> {
        Ok(Hlc::from_packed(packed))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Hlc, A::Error> {
        let l: u64 = seq.next_element()?.ok_or_else(reject)?;
        let c: u64 = seq.next_element()?.ok_or_else(reject)?;
        if seq.next_element::<IgnoredAny>()?.is_some() {
            return Err(reject());
        }
        Hlc::new(l, c).map_err(|_| reject())
    }
}

/// A `log.key` string.
struct VarSeed;

impl<'de> DeserializeSeed<'de> for VarSeed {
    type Value = VarName;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<VarName, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for VarSeed {
    type Value = VarName;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a variable name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<VarName, E> {
        VarName::parse(name).map_err(|_| reject())
    }
}

thread_local! {
    static ASSIGNMENTS: Scratch<(VarName, Option<Value>)> = const { RefCell::new(Vec::new()) };
    static NAMES: Scratch<VarName> = const { RefCell::new(Vec::new()) };
    static CHANGES: Scratch<(VarName, SetValue)> = const { RefCell::new(Vec::new()) };
}

/// A per-thread buffer, reused from line to line.
type Scratch<T> = RefCell<Vec<T>>;

/// The items `fill` pushes, in a `Vec` of exactly their number: they are gathered in a reused
/// per-thread buffer first, since a `Vec` grown by pushing holds four elements for one (most
/// records change one variable) and a trace keeps millions of records.
fn collect_exact<T: 'static, E>(
    scratch: &'static LocalKey<Scratch<T>>,
    fill: impl FnOnce(&mut Vec<T>) -> Result<(), E>,
) -> Result<Vec<T>, E> {
    // Taken out rather than borrowed, so that a nested use (there is none) or a thread being
    // torn down would only cost an allocation.
    let mut buf = scratch
        .try_with(|cell| {
            cell.try_borrow_mut()
                .map(|mut b| std::mem::take(&mut *b))
                .ok()
        })
        .ok()
        .flatten()
        .unwrap_or_default();
    buf.clear();
    let out = fill(&mut buf).map(|()| {
        let mut exact = Vec::with_capacity(buf.len());
        exact.append(&mut buf);
        exact
    });
    buf.clear();
    if buf.capacity() > 1024 {
        // Not worth keeping after an unusually big object.
        buf = Vec::new();
    }
    let _ = scratch.try_with(|cell| {
        if let Ok(mut b) = cell.try_borrow_mut() {
            *b = buf;
        }
    });
    out
}

/// Whether the keys of one JSON object (already decoded) are distinct. Objects in traces are
/// small, so a quadratic scan wins until they are not.
fn distinct<'a, T: 'a>(items: &'a [T], key: impl Fn(&'a T) -> &'a str) -> bool {
    if items.len() <= 16 {
        items
            .iter()
            .enumerate()
            .all(|(i, a)| items[..i].iter().all(|b| key(a) != key(b)))
    } else {
        let mut keys: Vec<&str> = items.iter().map(key).collect();
        keys.sort_unstable();
        keys.windows(2).all(|w| w[0] != w[1])
    }
}

/// The `set` object.
struct AssignmentsSeed;

impl<'de> DeserializeSeed<'de> for AssignmentsSeed {
    type Value = Vec<(VarName, Option<Value>)>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for AssignmentsSeed {
    type Value = Vec<(VarName, Option<Value>)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of assignments")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        collect_exact(&ASSIGNMENTS, |out| {
            while let Some(var) = map.next_key_seed(VarSeed)? {
                let raw: &'de RawValue = map.next_value()?;
                let value = match raw.get() {
                    "null" => None,
                    text => Some(lift(value(text, 0))?),
                };
                out.push((var, value));
            }
            if !distinct(out, |(var, _)| var.as_str()) {
                return Err(reject());
            }
            Ok(())
        })
    }
}

/// The `unset` array.
struct UnsetSeed;

impl<'de> DeserializeSeed<'de> for UnsetSeed {
    type Value = Vec<VarName>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for UnsetSeed {
    type Value = Vec<VarName>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of variable names")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        collect_exact(&NAMES, |out| {
            while let Some(var) = seq.next_element_seed(VarSeed)? {
                out.push(var);
            }
            Ok(())
        })
    }
}

/// The `add` or `remove` object.
struct ChangesSeed;

impl<'de> DeserializeSeed<'de> for ChangesSeed {
    type Value = Vec<(VarName, SetValue)>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ChangesSeed {
    type Value = Vec<(VarName, SetValue)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of set changes")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        collect_exact(&CHANGES, |out| {
            while let Some(var) = map.next_key_seed(VarSeed)? {
                let elems = map.next_value_seed(ElementsSeed)?;
                out.push((var, elems));
            }
            if !distinct(out, |(var, _)| var.as_str()) {
                return Err(reject());
            }
            Ok(())
        })
    }
}

/// A JSON array of scalars, as a set (duplicates collapse onto the first).
struct ElementsSeed;

impl<'de> DeserializeSeed<'de> for ElementsSeed {
    type Value = SetValue;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<SetValue, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ElementsSeed {
    type Value = SetValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of set elements")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SetValue, A::Error> {
        let mut elems = Vec::new();
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            elems.push(lift(scalar(raw.get()))?);
        }
        SetValue::from_values(elems).map_err(|_| reject())
    }
}

/// A struct: an object of non-null values with distinct keys.
struct StructVisitor {
    depth: usize,
}

impl<'de> Visitor<'de> for StructVisitor {
    type Value = BTreeMap<String, Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a struct")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = BTreeMap::new();
        while let Some(name) = map.next_key::<String>()? {
            let raw: &'de RawValue = map.next_value()?;
            let v = lift(value(raw.get(), self.depth + 1))?;
            if fields.insert(name, v).is_some() {
                return Err(reject());
            }
        }
        Ok(fields)
    }
}

/// The value whose literal text (checked by serde_json) is `text`, `null` excluded; `depth`
/// counts the arrays and objects around it inside the variable's value.
fn value(text: &str, depth: usize) -> Result<Value, Reject> {
    match text.as_bytes().first() {
        Some(b'[') if depth < MAX_VALUE_DEPTH => {
            let mut de = serde_json::Deserializer::from_str(text);
            let set = ElementsSeed.deserialize(&mut de).map_err(|_| Reject)?;
            de.end().map_err(|_| Reject)?;
            Ok(Value::Set(set))
        }
        Some(b'{') if depth < MAX_VALUE_DEPTH => {
            let mut de = serde_json::Deserializer::from_str(text);
            let fields = (&mut de)
                .deserialize_map(StructVisitor { depth })
                .map_err(|_| Reject)?;
            de.end().map_err(|_| Reject)?;
            Ok(Value::Struct(fields))
        }
        _ => scalar(text),
    }
}

/// A set element or other scalar from its literal text: no `null`, array or object.
fn scalar(text: &str) -> Result<Value, Reject> {
    match text.as_bytes().first() {
        Some(b'"') => serde_json::from_str(text)
            .map(Value::Str)
            .map_err(|_| Reject),
        Some(b'-' | b'0'..=b'9') => number(text),
        _ => match text {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(Reject),
        },
    }
}

/// A JSON number literal, read as the reference reader reads it (`json::number`): without `.`,
/// `e` or `E` an integer, which must fit i64; otherwise a correctly rounded, finite f64.
fn number(text: &str) -> Result<Value, Reject> {
    if text.contains(['.', 'e', 'E']) {
        text.parse::<f64>()
            .ok()
            .and_then(Value::float)
            .ok_or(Reject)
    } else {
        text.parse::<i64>().map(Value::Int).map_err(|_| Reject)
    }
}

/// One line read by [`fill_columnar`]: the record's fields, with node and variables interned.
/// Reused from line to line (the vectors keep their capacity).
#[derive(Debug, Default)]
pub(crate) struct LineParts {
    pub(crate) node: NodeIdx,
    pub(crate) hlc: Hlc,
    pub(crate) leave: bool,
    pub(crate) unset: Vec<VarIdx>,
    pub(crate) set: Vec<(VarIdx, Option<Value>)>,
    pub(crate) remove: Vec<(VarIdx, SetValue)>,
    pub(crate) add: Vec<(VarIdx, SetValue)>,
}

impl LineParts {
    fn clear(&mut self) {
        self.node = 0;
        self.hlc = Hlc::MIN;
        self.leave = false;
        self.unset.clear();
        self.set.clear();
        self.remove.clear();
        self.add.clear();
    }
}

/// The columnar fast path: like [`fill`], but the node id and variable names are interned in
/// `nodes`/`vars` as they are read (no string is allocated for a name seen before) and the
/// fields land in `parts`. `false` if the line is bad or the fast path is unsure; then `parts`
/// holds garbage and `nodes`/`vars` may hold names of this line, which the caller forgets.
pub(crate) fn fill_columnar(
    text: &str,
    nodes: &mut NodeTable,
    vars: &mut VarTable,
    parts: &mut LineParts,
) -> bool {
    parts.clear();
    let mut de = serde_json::Deserializer::from_str(text);
    let visitor = ColumnarVisitor { nodes, vars, parts };
    (&mut de).deserialize_map(visitor).is_ok() && de.end().is_ok()
}

struct ColumnarVisitor<'a> {
    nodes: &'a mut NodeTable,
    vars: &'a mut VarTable,
    parts: &'a mut LineParts,
}

impl<'de> Visitor<'de> for ColumnarVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a trace record object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let ColumnarVisitor { nodes, vars, parts } = self;
        let mut seen = 0u8;
        while let Some(field) = map.next_key_seed(FieldSeed)? {
            let bit = 1u8 << field as u8;
            if seen & bit != 0 {
                return Err(reject());
            }
            seen |= bit;
            match field {
                Field::Node => parts.node = map.next_value_seed(NodeSeed(nodes))?,
                Field::Hlc => parts.hlc = map.next_value_seed(HlcSeed)?,
                Field::Set => map.next_value_seed(AssignIdxSeed(vars, &mut parts.set))?,
                Field::Unset => map.next_value_seed(UnsetIdxSeed(vars, &mut parts.unset))?,
                Field::Add => map.next_value_seed(ChangesIdxSeed(vars, &mut parts.add))?,
                Field::Remove => map.next_value_seed(ChangesIdxSeed(vars, &mut parts.remove))?,
                Field::Leave => parts.leave = map.next_value()?,
                // Not part of the columnar form, but checked like the reference reader does.
                Field::Pt => {
                    map.next_value::<u64>()?;
                }
            }
        }
        let both = (1 << Field::Node as u8) | (1 << Field::Hlc as u8);
        if seen & both != both {
            return Err(reject());
        }
        Ok(())
    }
}

/// A node id, interned.
struct NodeSeed<'a>(&'a mut NodeTable);

impl<'de> DeserializeSeed<'de> for NodeSeed<'_> {
    type Value = NodeIdx;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<NodeIdx, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for NodeSeed<'_> {
    type Value = NodeIdx;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a node id")
    }

    fn visit_str<E: de::Error>(self, id: &str) -> Result<NodeIdx, E> {
        if id.is_empty() || id.len() > MAX_NODE_ID_BYTES {
            return Err(reject());
        }
        Ok(self.0.intern(id))
    }
}

/// A `log.key` string, interned.
struct VarIdxSeed<'a>(&'a mut VarTable);

impl<'de> DeserializeSeed<'de> for VarIdxSeed<'_> {
    type Value = VarIdx;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<VarIdx, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for VarIdxSeed<'_> {
    type Value = VarIdx;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a variable name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<VarIdx, E> {
        self.0.intern_str(name).ok_or_else(reject)
    }
}

/// Whether the variables of one JSON object are distinct (an escaped spelling of a name
/// interns to the same index, so this also catches `"a.b"` next to `"\u0061.b"`).
fn distinct_idx<T>(items: &[(VarIdx, T)]) -> bool {
    if items.len() <= 16 {
        items
            .iter()
            .enumerate()
            .all(|(i, a)| items[..i].iter().all(|b| a.0 != b.0))
    } else {
        let mut keys: Vec<VarIdx> = items.iter().map(|(v, _)| *v).collect();
        keys.sort_unstable();
        keys.windows(2).all(|w| w[0] != w[1])
    }
}

/// The `set` object.
struct AssignIdxSeed<'a>(&'a mut VarTable, &'a mut Vec<(VarIdx, Option<Value>)>);

impl<'de> DeserializeSeed<'de> for AssignIdxSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for AssignIdxSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of assignments")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let AssignIdxSeed(vars, out) = self;
        while let Some(var) = map.next_key_seed(VarIdxSeed(vars))? {
            let raw: &'de RawValue = map.next_value()?;
            let value = match raw.get() {
                "null" => None,
                text => Some(lift(value(text, 0))?),
            };
            out.push((var, value));
        }
        if !distinct_idx(out) {
            return Err(reject());
        }
        Ok(())
    }
}

/// The `unset` array.
struct UnsetIdxSeed<'a>(&'a mut VarTable, &'a mut Vec<VarIdx>);

impl<'de> DeserializeSeed<'de> for UnsetIdxSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for UnsetIdxSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of variable names")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let UnsetIdxSeed(vars, out) = self;
        while let Some(var) = seq.next_element_seed(VarIdxSeed(vars))? {
            out.push(var);
        }
        Ok(())
    }
}

/// The `add` or `remove` object.
struct ChangesIdxSeed<'a>(&'a mut VarTable, &'a mut Vec<(VarIdx, SetValue)>);

impl<'de> DeserializeSeed<'de> for ChangesIdxSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ChangesIdxSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of set changes")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let ChangesIdxSeed(vars, out) = self;
        while let Some(var) = map.next_key_seed(VarIdxSeed(vars))? {
            let elems = map.next_value_seed(ElementsSeed)?;
            out.push((var, elems));
        }
        if !distinct_idx(out) {
            return Err(reject());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast(line: &str) -> Option<Record> {
        record(line)
    }

    #[test]
    fn reads_typical_lines() {
        let r = fast(r#"{"node":"n17","hlc":[1700000001234,3],"set":{"inv.a":57}}"#).unwrap();
        assert_eq!(r.node, "n17");
        assert_eq!(r.hlc, Hlc::new(1_700_000_001_234, 3).unwrap());
        assert_eq!(
            r.set,
            vec![(VarName::parse("inv.a").unwrap(), Some(Value::Int(57)))]
        );
        let r = fast(r#" {"hlc":5,"node":"x","leave":true,"pt":0} "#).unwrap();
        assert_eq!((r.hlc.packed(), r.leave, r.pt), (5, true, Some(0)));
    }

    #[test]
    fn leaves_doubtful_numbers_to_the_reference_reader() {
        for line in [
            // Integer literals beyond i64 (serde_json would hand over u64 or an f64).
            r#"{"node":"n","hlc":[1,0],"set":{"a.b":9223372036854775808}}"#,
            r#"{"node":"n","hlc":[1,0],"set":{"a.b":-9223372036854775809}}"#,
            r#"{"node":"n","hlc":[1,0],"set":{"a.b":18446744073709551616}}"#,
            r#"{"node":"n","hlc":[1,0],"add":{"a.b":[99999999999999999999999]}}"#,
            r#"{"node":"n","hlc":18446744073709551616}"#,
            r#"{"node":"n","hlc":[1,0],"pt":18446744073709551616}"#,
            // `-0` is the integer 0 to the reference reader, -0.0 to serde_json.
            r#"{"node":"n","hlc":[-0,0]}"#,
            r#"{"node":"n","hlc":[1,0],"pt":-0}"#,
            // Overflowing floats.
            r#"{"node":"n","hlc":[1,0],"set":{"a.b":1e400}}"#,
        ] {
            assert_eq!(fast(line), None, "{line}");
        }
    }

    #[test]
    fn floats_are_correctly_rounded() {
        // serde_json's default parser reads the first two an ulp off; `str::parse` does not.
        for text in [
            "6.934698245112694e276",
            "8.383658838626809e-78",
            "0.30000000000000004",
            "1.7976931348623157e308",
        ] {
            let line = format!(r#"{{"node":"n","hlc":[1,0],"set":{{"a.b":{text}}}}}"#);
            let want = text.parse::<f64>().unwrap();
            assert_eq!(
                fast(&line).map(|r| r.set[0].1.clone()),
                Some(Some(Value::Float(want))),
                "{text}"
            );
        }
        assert!(matches!(number("-0"), Ok(Value::Int(0))));
    }

    #[test]
    fn rejects_what_the_reference_reader_rejects() {
        for line in [
            r#"{"node":"n","node":"m","hlc":[1,0]}"#,
            r#"{"node":"n","hlc":[1,0],"set":{"a.b":1,"a.b":2}}"#,
            r#"{"node":"n","hlc":[1,0],"set":{"a.b":1,"\u0061.b":2}}"#,
            r#"{"node":"n","hlc":[1,0],"add":{"a.b":[1],"a.b":[2]}}"#,
            r#"{"node":"n","hlc":[1,0],"set":{"a.b":{"f":1,"f":2}}}"#,
            r#"{"node":"n","hlc":[1,0],"set":{"a.b":[1,null]}}"#,
            r#"{"node":"n","hlc":[1,0],"set":{"a.b":{"f":null}}}"#,
            r#"{"node":"n","hlc":[1,0],"set":{"a.b":[[1]]}}"#,
            r#"{"node":"n","hlc":[1,0],"set":{"a.b":"\ud800"}}"#,
            r#"{"node":"n","hlc":[1,0],"add":{"a.b":null}}"#,
            r#"{"node":"n","hlc":[1,0],"unset":["a"]}"#,
            r#"{"node":"n","hlc":[1,0],"sett":{}}"#,
            r#"{"node":"","hlc":[1,0]}"#,
            r#"{"node":"n","hlc":[1,0,0]}"#,
            r#"{"node":"n","hlc":[1,65536]}"#,
            r#"{"node":"n","hlc":[1.0,0]}"#,
            r#"{"node":"n","hlc":[1,0],"leave":1}"#,
            r#"{"node":"n","hlc":[1,0],"pt":1.5}"#,
            r#"{"node":"n","hlc":[1,0]} x"#,
            r#"{"node":"n"}"#,
            r#"[1]"#,
        ] {
            assert_eq!(fast(line), None, "{line}");
        }
        let deep = format!(
            r#"{{"node":"n","hlc":[1,0],"set":{{"a.b":{}1{}}}}}"#,
            "{\"f\":".repeat(MAX_VALUE_DEPTH + 1),
            "}".repeat(MAX_VALUE_DEPTH + 1)
        );
        assert_eq!(fast(&deep), None);
    }

    #[test]
    fn distinct_keys_small_and_large() {
        let small = ["a", "b", "c"];
        assert!(distinct(&small, |s| s));
        assert!(!distinct(&["a", "b", "a"], |s| s));
        let many: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
        assert!(distinct(&many, |s| s.as_str()));
        let mut dup = many.clone();
        dup.push("k7".to_string());
        assert!(!distinct(&dup, |s| s.as_str()));
    }
}
