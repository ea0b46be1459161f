//! Values of trace variables (SPEC §1.1, §6): ints, finite floats, strings, booleans, sets of
//! scalars and structs; the exact int/float order, SQL `=`, hashing consistent with it, and the
//! canonical JSON output.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};

use serde::{Serialize, Serializer};

use crate::json;

/// A variable's value.
///
/// The derived `==` is *representation* equality (`Int(1) != Float(1.0)`), handy in tests and
/// for "did this record change anything"; SPEC `=` is [`Value::sql_eq`], and the total order
/// and hashing used for set elements and COUNT_DISTINCT are [`Value::total_cmp`] and
/// [`ValueKey`].
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Int(i64),
    /// Always finite: the reader rejects NaN and infinities, and so must any other producer.
    Float(f64),
    Str(String),
    Bool(bool),
    Set(SetValue),
    /// Fields sorted by name (byte order), which is also the canonical output order.
    Struct(BTreeMap<String, Value>),
}

impl Value {
    /// `Some(Value::Float(f))` if `f` is finite.
    pub fn float(f: f64) -> Option<Value> {
        f.is_finite().then_some(Value::Float(f))
    }

    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::Bool(_) => "bool",
            Value::Set(_) => "set",
            Value::Struct(_) => "struct",
        }
    }

    /// Scalars are what a set may hold.
    pub fn is_scalar(&self) -> bool {
        !matches!(self, Value::Set(_) | Value::Struct(_))
    }

    pub fn is_number(&self) -> bool {
        matches!(self, Value::Int(_) | Value::Float(_))
    }

    /// SPEC `=`: numbers compare numerically across int and float, strings by bytes, booleans,
    /// sets and structs structurally (inside them, elements of different kinds are simply
    /// unequal). Operands of different kinds give `None` (NULL + warning, SPEC §3.4).
    pub fn sql_eq(&self, other: &Value) -> Option<bool> {
        if kind_rank(self) != kind_rank(other) {
            return None;
        }
        Some(self.total_cmp(other) == Ordering::Equal)
    }

    /// SPEC `<`, `<=`, ...: numbers (exactly, across int and float) and strings (by bytes).
    /// Anything else, including two booleans, sets or structs, gives `None`.
    pub fn sql_cmp(&self, other: &Value) -> Option<Ordering> {
        match (self, other) {
            (Value::Str(a), Value::Str(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
            _ => cmp_numbers(self, other),
        }
    }

    /// A total order over all values whose equality is SPEC `=`: booleans (false < true), then
    /// numbers (exact, `1 == 1.0`, `-0.0 == 0.0`), then strings by bytes, then sets, then
    /// structs (both lexicographically). Sets are kept in this order.
    pub fn total_cmp(&self, other: &Value) -> Ordering {
        let by_kind = kind_rank(self).cmp(&kind_rank(other));
        if by_kind != Ordering::Equal {
            return by_kind;
        }
        match (self, other) {
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (Value::Str(a), Value::Str(b)) => a.as_bytes().cmp(b.as_bytes()),
            (Value::Set(a), Value::Set(b)) => cmp_seq(a.iter(), b.iter()),
            (Value::Struct(a), Value::Struct(b)) => {
                let mut a = a.iter();
                let mut b = b.iter();
                loop {
                    match (a.next(), b.next()) {
                        (None, None) => return Ordering::Equal,
                        (None, Some(_)) => return Ordering::Less,
                        (Some(_), None) => return Ordering::Greater,
                        (Some((ka, va)), Some((kb, vb))) => {
                            let o = ka
                                .as_bytes()
                                .cmp(kb.as_bytes())
                                .then_with(|| va.total_cmp(vb));
                            if o != Ordering::Equal {
                                return o;
                            }
                        }
                    }
                }
            }
            _ => cmp_numbers(self, other).unwrap_or(Ordering::Equal),
        }
    }

    /// Appends the canonical JSON form (see the `Serialize` impl).
    pub fn write_json(&self, out: &mut String) {
        out.push_str(&self.to_json());
    }

    /// The canonical JSON form (see the `Serialize` impl).
    pub fn to_json(&self) -> String {
        json::to_string(self)
    }
}

/// The canonical JSON form: ints as integers, floats as serde_json prints them (shortest text
/// that reads back as the same f64, always with a `.` or an exponent so it never reads back as
/// an int: `3.0`, `1e+16`, `-0.0`, `1.5e-7`), sets as arrays in canonical order, structs as
/// objects with fields sorted by name. A non-finite float, which is never a valid `Value`, comes
/// out as `null`.
impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Int(i) => serializer.serialize_i64(*i),
            Value::Float(f) => serializer.serialize_f64(*f),
            Value::Str(s) => serializer.serialize_str(s),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Set(set) => set.serialize(serializer),
            // A BTreeMap serializes in key order, which is the canonical field order.
            Value::Struct(fields) => fields.serialize(serializer),
        }
    }
}

/// Shows the canonical JSON form.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

fn kind_rank(v: &Value) -> u8 {
    match v {
        Value::Bool(_) => 0,
        Value::Int(_) | Value::Float(_) => 1,
        Value::Str(_) => 2,
        Value::Set(_) => 3,
        Value::Struct(_) => 4,
    }
}

fn cmp_seq<'a>(
    mut a: impl Iterator<Item = &'a Value>,
    mut b: impl Iterator<Item = &'a Value>,
) -> Ordering {
    loop {
        match (a.next(), b.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let o = x.total_cmp(y);
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

/// Exact comparison of two numbers; `None` unless both are numbers.
pub fn cmp_numbers(a: &Value, b: &Value) -> Option<Ordering> {
    Some(match (a, b) {
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::Int(x), Value::Float(y)) => cmp_int_float(*x, *y),
        (Value::Float(x), Value::Int(y)) => cmp_int_float(*y, *x).reverse(),
        (Value::Float(x), Value::Float(y)) => cmp_floats(*x, *y),
        _ => return None,
    })
}

/// 2^63 as an f64 (exact).
const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;

/// Compares an i64 with an f64 exactly. Casting the int to f64 would round (2^53 + 1 becomes
/// 2^53), so instead the float's integral part, which fits i64 once the range is checked, is
/// compared as an integer and the fraction breaks ties. NaN (never a valid `Value`) sorts last.
pub fn cmp_int_float(i: i64, f: f64) -> Ordering {
    if f.is_nan() || f >= TWO_POW_63 {
        return Ordering::Less;
    }
    if f < -TWO_POW_63 {
        return Ordering::Greater;
    }
    let t = f.trunc();
    // In [-2^63, 2^63) and integral, so the cast is exact.
    let ti = t as i64;
    i.cmp(&ti).then(if f > t {
        Ordering::Less
    } else if f < t {
        Ordering::Greater
    } else {
        Ordering::Equal
    })
}

/// Float order with `-0.0 == 0.0` and NaN (never a valid `Value`) last.
fn cmp_floats(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// A value that may not go into a set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotScalar {
    /// `kind_name()` of the rejected value.
    pub kind: &'static str,
}

impl fmt::Display for NotScalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "set elements must be scalars (int, float, string, bool), found a {}",
            self.kind
        )
    }
}

impl std::error::Error for NotScalar {}

/// A set of distinct scalar values (distinct as SPEC `=` says: 1 and 1.0 are one element, the
/// first one seen stays), kept in canonical order: false, true, numbers ascending, strings by
/// bytes.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct SetValue {
    elems: Vec<Value>,
}

impl SetValue {
    pub fn new() -> SetValue {
        SetValue::default()
    }

    /// Builds a set; duplicates collapse onto their first occurrence.
    pub fn from_values(values: impl IntoIterator<Item = Value>) -> Result<SetValue, NotScalar> {
        let mut elems = Vec::new();
        for v in values {
            if !v.is_scalar() {
                return Err(NotScalar {
                    kind: v.kind_name(),
                });
            }
            elems.push(v);
        }
        // Stable, so among equal elements the first seen comes first and survives dedup.
        elems.sort_by(Value::total_cmp);
        elems.dedup_by(|later, kept| later.total_cmp(kept) == Ordering::Equal);
        Ok(SetValue { elems })
    }

    fn position(&self, v: &Value) -> Result<usize, usize> {
        self.elems.binary_search_by(|e| e.total_cmp(v))
    }

    /// Adds `v` unless an equal element is present; returns whether it was added.
    pub fn insert(&mut self, v: Value) -> Result<bool, NotScalar> {
        if !v.is_scalar() {
            return Err(NotScalar {
                kind: v.kind_name(),
            });
        }
        match self.position(&v) {
            Ok(_) => Ok(false),
            Err(at) => {
                self.elems.insert(at, v);
                Ok(true)
            }
        }
    }

    /// Removes the element equal to `v`; returns whether there was one.
    pub fn remove(&mut self, v: &Value) -> bool {
        match self.position(v) {
            Ok(at) => {
                self.elems.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    /// Membership as SPEC `=` says (`2.0` is in `[1, 2]`).
    pub fn contains(&self, v: &Value) -> bool {
        self.position(v).is_ok()
    }

    /// Adds every element of `other` (elements already present keep their representation).
    pub fn union_with(&mut self, other: &SetValue) {
        for v in &other.elems {
            if let Err(at) = self.position(v) {
                self.elems.insert(at, v.clone());
            }
        }
    }

    /// Removes every element equal to one of `other`.
    pub fn difference_with(&mut self, other: &SetValue) {
        self.elems.retain(|v| !other.contains(v));
    }

    pub fn len(&self) -> usize {
        self.elems.len()
    }

    pub fn is_empty(&self) -> bool {
        self.elems.is_empty()
    }

    /// The elements in canonical order.
    pub fn iter(&self) -> std::slice::Iter<'_, Value> {
        self.elems.iter()
    }

    pub fn as_slice(&self) -> &[Value] {
        &self.elems
    }

    /// Appends the canonical JSON form: an array in canonical order.
    pub fn write_json(&self, out: &mut String) {
        out.push_str(&json::to_string(self));
    }
}

/// An array of the elements in canonical order.
impl Serialize for SetValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(&self.elems)
    }
}

impl<'a> IntoIterator for &'a SetValue {
    type Item = &'a Value;
    type IntoIter = std::slice::Iter<'a, Value>;
    fn into_iter(self) -> Self::IntoIter {
        self.elems.iter()
    }
}

/// A value as a hash/ordered-map key under SPEC `=` (for COUNT_DISTINCT and the like):
/// `ValueKey(Int(1)) == ValueKey(Float(1.0))`, `-0.0` equals `0.0`, and the hash agrees.
#[derive(Clone, Debug)]
pub struct ValueKey(pub Value);

impl PartialEq for ValueKey {
    fn eq(&self, other: &ValueKey) -> bool {
        self.0.total_cmp(&other.0) == Ordering::Equal
    }
}

impl Eq for ValueKey {}

impl PartialOrd for ValueKey {
    fn partial_cmp(&self, other: &ValueKey) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ValueKey {
    fn cmp(&self, other: &ValueKey) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl Hash for ValueKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_value(&self.0, state);
    }
}

fn hash_value<H: Hasher>(v: &Value, state: &mut H) {
    match v {
        Value::Bool(b) => {
            state.write_u8(0);
            b.hash(state);
        }
        Value::Int(i) => hash_int(*i, state),
        Value::Float(f) => {
            let f = *f;
            if f.is_nan() {
                state.write_u8(2);
            } else if f.trunc() == f && (-TWO_POW_63..TWO_POW_63).contains(&f) {
                // Integral and in range: equal to exactly one i64, so hash as that int (this
                // also maps -0.0 to 0).
                hash_int(f as i64, state);
            } else {
                // Not equal to any int; distinct floats have distinct bits here.
                state.write_u8(3);
                state.write_u64(f.to_bits());
            }
        }
        Value::Str(s) => {
            state.write_u8(4);
            s.hash(state);
        }
        Value::Set(s) => {
            state.write_u8(5);
            state.write_usize(s.len());
            for e in s {
                hash_value(e, state);
            }
        }
        Value::Struct(fields) => {
            state.write_u8(6);
            state.write_usize(fields.len());
            for (k, v) in fields {
                k.hash(state);
                hash_value(v, state);
            }
        }
    }
}

fn hash_int<H: Hasher>(i: i64, state: &mut H) {
    state.write_u8(1);
    state.write_i64(i);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::DefaultHasher;
    use std::collections::HashSet;

    fn set(values: Vec<Value>) -> SetValue {
        SetValue::from_values(values).unwrap()
    }

    fn s(x: &str) -> Value {
        Value::Str(x.to_string())
    }

    fn hash_of(v: &Value) -> u64 {
        let mut h = DefaultHasher::new();
        ValueKey(v.clone()).hash(&mut h);
        h.finish()
    }

    #[test]
    fn int_float_comparison_is_exact() {
        // 2^53 + 1 rounds to 2^53 as an f64: a cast would call these equal.
        assert_eq!(
            cmp_int_float(9_007_199_254_740_993, 9_007_199_254_740_992.0),
            Ordering::Greater
        );
        assert_eq!(
            cmp_int_float(9_007_199_254_740_992, 9_007_199_254_740_992.0),
            Ordering::Equal
        );
        assert_eq!(cmp_int_float(i64::MAX, TWO_POW_63), Ordering::Less);
        assert_eq!(cmp_int_float(i64::MIN, -TWO_POW_63), Ordering::Equal);
        assert_eq!(cmp_int_float(i64::MIN, -1e19), Ordering::Greater);
        assert_eq!(cmp_int_float(1, 1.5), Ordering::Less);
        assert_eq!(cmp_int_float(2, 1.5), Ordering::Greater);
        assert_eq!(cmp_int_float(-1, -0.5), Ordering::Less);
        assert_eq!(cmp_int_float(0, -0.5), Ordering::Greater);
        assert_eq!(cmp_int_float(0, -0.0), Ordering::Equal);
        assert_eq!(cmp_int_float(-2, -1.5), Ordering::Less);
        assert_eq!(cmp_int_float(i64::MAX, f64::INFINITY), Ordering::Less);
        assert_eq!(
            cmp_int_float(i64::MIN, f64::NEG_INFINITY),
            Ordering::Greater
        );
        assert_eq!(
            cmp_numbers(&Value::Float(1.5), &Value::Int(1)),
            Some(Ordering::Greater)
        );
        assert_eq!(cmp_numbers(&Value::Float(1.5), &s("1")), None);
    }

    #[test]
    fn negative_zero_equals_zero() {
        assert_eq!(Value::Float(-0.0).sql_eq(&Value::Float(0.0)), Some(true));
        assert_eq!(Value::Float(-0.0).sql_eq(&Value::Int(0)), Some(true));
        assert_eq!(hash_of(&Value::Float(-0.0)), hash_of(&Value::Int(0)));
        assert_eq!(hash_of(&Value::Float(0.0)), hash_of(&Value::Int(0)));
    }

    #[test]
    fn sql_eq_follows_spec() {
        assert_eq!(Value::Int(1).sql_eq(&Value::Float(1.0)), Some(true));
        assert_eq!(Value::Int(1).sql_eq(&Value::Float(1.5)), Some(false));
        assert_eq!(s("a").sql_eq(&s("a")), Some(true));
        assert_eq!(s("a").sql_eq(&s("b")), Some(false));
        assert_eq!(Value::Bool(true).sql_eq(&Value::Bool(true)), Some(true));
        assert_eq!(Value::Bool(true).sql_eq(&Value::Int(1)), None);
        assert_eq!(s("1").sql_eq(&Value::Int(1)), None);
        let a = Value::Set(set(vec![Value::Int(1), s("x")]));
        let b = Value::Set(set(vec![s("x"), Value::Float(1.0)]));
        assert_eq!(a.sql_eq(&b), Some(true));
        let c = Value::Set(set(vec![s("x")]));
        assert_eq!(a.sql_eq(&c), Some(false));
        assert_eq!(a.sql_eq(&s("x")), None);
        let st1 = Value::Struct(BTreeMap::from([
            ("f".to_string(), Value::Int(2)),
            ("g".to_string(), s("y")),
        ]));
        let st2 = Value::Struct(BTreeMap::from([
            ("g".to_string(), s("y")),
            ("f".to_string(), Value::Float(2.0)),
        ]));
        let st3 = Value::Struct(BTreeMap::from([("f".to_string(), s("2"))]));
        assert_eq!(st1.sql_eq(&st2), Some(true));
        // Different kinds inside a struct are just unequal, not NULL.
        assert_eq!(st1.sql_eq(&st3), Some(false));
    }

    #[test]
    fn sql_cmp_only_orders_numbers_and_strings() {
        assert_eq!(
            Value::Int(2).sql_cmp(&Value::Float(2.5)),
            Some(Ordering::Less)
        );
        assert_eq!(s("B").sql_cmp(&s("a")), Some(Ordering::Less));
        assert_eq!(Value::Bool(false).sql_cmp(&Value::Bool(true)), None);
        assert_eq!(s("1").sql_cmp(&Value::Int(1)), None);
        let a = Value::Set(set(vec![]));
        assert_eq!(a.sql_cmp(&a), None);
    }

    #[test]
    fn set_canonical_order_and_dedup() {
        let v = set(vec![
            s("b"),
            Value::Float(2.5),
            Value::Bool(true),
            Value::Int(1),
            s("a"),
            Value::Float(1.0),
            Value::Bool(false),
            Value::Int(-3),
            Value::Bool(true),
            s("b"),
            Value::Float(-0.0),
            Value::Int(0),
        ]);
        assert_eq!(
            v.as_slice(),
            &[
                Value::Bool(false),
                Value::Bool(true),
                Value::Int(-3),
                Value::Float(-0.0),
                Value::Int(1),
                Value::Float(2.5),
                s("a"),
                s("b"),
            ]
        );
        // 1 then 1.0: the first seen stays.
        assert!(matches!(v.as_slice()[4], Value::Int(1)));
        let w = set(vec![Value::Float(1.0), Value::Int(1)]);
        assert_eq!(w.as_slice(), &[Value::Float(1.0)]);
        // Strings by bytes: uppercase before lowercase, "é" (0xC3..) after "z".
        let x = set(vec![s("é"), s("z"), s("Z")]);
        assert_eq!(x.as_slice(), &[s("Z"), s("z"), s("é")]);
    }

    #[test]
    fn set_rejects_non_scalars() {
        let err = SetValue::from_values(vec![Value::Set(SetValue::new())]).unwrap_err();
        assert_eq!(err.kind, "set");
        assert_eq!(
            err.to_string(),
            "set elements must be scalars (int, float, string, bool), found a set"
        );
        let mut v = SetValue::new();
        assert_eq!(
            v.insert(Value::Struct(BTreeMap::new())),
            Err(NotScalar { kind: "struct" })
        );
    }

    #[test]
    fn set_insert_remove_contains() {
        let mut v = SetValue::new();
        assert_eq!(v.insert(Value::Int(2)), Ok(true));
        assert_eq!(v.insert(Value::Float(2.0)), Ok(false));
        assert_eq!(v.insert(s("n1")), Ok(true));
        assert_eq!(v.insert(Value::Bool(false)), Ok(true));
        assert_eq!(v.as_slice(), &[Value::Bool(false), Value::Int(2), s("n1")]);
        assert!(v.contains(&Value::Float(2.0)));
        assert!(!v.contains(&Value::Float(2.5)));
        assert!(!v.contains(&Value::Set(SetValue::new())));
        assert!(v.remove(&Value::Float(2.0)));
        assert!(!v.remove(&Value::Int(2)));
        assert_eq!(v.len(), 2);
        let mut a = set(vec![Value::Int(1), Value::Int(2)]);
        a.union_with(&set(vec![Value::Float(2.0), Value::Int(3)]));
        assert_eq!(a.as_slice(), &[Value::Int(1), Value::Int(2), Value::Int(3)]);
        a.difference_with(&set(vec![Value::Float(1.0), s("x")]));
        assert_eq!(a.as_slice(), &[Value::Int(2), Value::Int(3)]);
        a.difference_with(&a.clone());
        assert!(a.is_empty());
    }

    #[test]
    fn total_order_across_kinds() {
        let mut vals = [
            Value::Struct(BTreeMap::new()),
            Value::Set(SetValue::new()),
            s("a"),
            Value::Float(0.5),
            Value::Int(-1),
            Value::Bool(true),
            Value::Bool(false),
        ];
        vals.sort_by(Value::total_cmp);
        let kinds: Vec<_> = vals.iter().map(Value::kind_name).collect();
        assert_eq!(
            kinds,
            ["bool", "bool", "int", "float", "string", "set", "struct"]
        );
        let short = Value::Set(set(vec![Value::Int(1)]));
        let long = Value::Set(set(vec![Value::Int(1), Value::Int(2)]));
        assert_eq!(short.total_cmp(&long), Ordering::Less);
    }

    #[test]
    fn value_key_hash_agrees_with_equality() {
        let mut distinct = HashSet::new();
        for v in [
            Value::Int(1),
            Value::Float(1.0),
            Value::Float(1.5),
            Value::Int(0),
            Value::Float(-0.0),
            Value::Float(1e19),
            Value::Bool(true),
            s("1"),
            Value::Set(set(vec![Value::Int(1)])),
            Value::Set(set(vec![Value::Float(1.0)])),
        ] {
            distinct.insert(ValueKey(v));
        }
        // {1, 1.0}, {1.5}, {0, -0.0}, {1e19}, {true}, {"1"}, {[1], [1.0]}
        assert_eq!(distinct.len(), 7);
        assert_eq!(
            hash_of(&Value::Float(9_007_199_254_740_992.0)),
            hash_of(&Value::Int(9_007_199_254_740_992))
        );
        assert_ne!(
            ValueKey(Value::Float(9_007_199_254_740_992.0)),
            ValueKey(Value::Int(9_007_199_254_740_993))
        );
    }

    #[test]
    fn canonical_json() {
        let st = Value::Struct(BTreeMap::from([
            ("z".to_string(), Value::Float(3.0)),
            ("a".to_string(), s("q\"\\\n\u{1}é")),
            (
                "m".to_string(),
                Value::Set(set(vec![s("x"), Value::Int(2), Value::Bool(true)])),
            ),
        ]));
        assert_eq!(
            st.to_json(),
            r#"{"a":"q\"\\\n\u0001é","m":[true,2,"x"],"z":3.0}"#
        );
        // serde_json writes large exponents with a sign; SPEC §6 allows `1e16` or `1.0e+16`.
        assert_eq!(Value::Float(1e16).to_json(), "1e+16");
        assert_eq!(Value::Float(1.5e-7).to_json(), "1.5e-7");
        assert_eq!(Value::Float(-0.0).to_json(), "-0.0");
        assert_eq!(Value::Float(0.1).to_json(), "0.1");
        assert_eq!(Value::Int(i64::MIN).to_json(), "-9223372036854775808");
        assert_eq!(Value::Bool(false).to_string(), "false");
        assert_eq!(Value::float(f64::NAN), None);
        assert_eq!(Value::Float(f64::NAN).to_json(), "null");
        for f in [
            1e16,
            1.5e-7,
            5e-324,
            f64::MAX,
            -123.456,
            1e300,
            0.30000000000000004,
        ] {
            let text = Value::Float(f).to_json();
            assert!(text.contains(['.', 'e']), "{text}");
            assert_eq!(text.parse::<f64>().unwrap(), f);
        }
    }

    #[test]
    fn serde_json_output_keeps_floats_floats_and_sorts_fields() {
        let floats = [3.0, 1e16, -0.0, 1.5e-7];
        let v = Value::Struct(BTreeMap::from([
            ("z".to_string(), Value::Float(floats[0])),
            ("b".to_string(), Value::Float(floats[1])),
            ("a".to_string(), Value::Float(floats[2])),
            ("B".to_string(), Value::Float(floats[3])),
            (
                "s".to_string(),
                Value::Set(set(floats.iter().map(|&f| Value::Float(f)).collect())),
            ),
            ("i".to_string(), Value::Int(3)),
        ]));
        let text = serde_json::to_string(&v).unwrap();
        // Fields sorted by name (bytes: "B" < "a"), set elements ascending.
        assert_eq!(
            text,
            r#"{"B":1.5e-7,"a":-0.0,"b":1e+16,"i":3,"s":[-0.0,1.5e-7,3.0,1e+16],"z":3.0}"#
        );
        assert_eq!(v.to_json(), text);
        assert_eq!(v.to_string(), text);
        let mut written = String::from("x");
        v.write_json(&mut written);
        assert_eq!(written, format!("x{text}"));

        // serde_json reads every float back as a float with the same value, the int as an int.
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        let check = |json: &serde_json::Value, f: f64| {
            assert!(json.is_f64(), "{json} read back as a non-float");
            let g = json.as_f64().unwrap();
            assert_eq!(g.to_bits(), f.to_bits(), "{json}");
        };
        for (name, f) in [
            ("z", floats[0]),
            ("b", floats[1]),
            ("a", floats[2]),
            ("B", floats[3]),
        ] {
            check(&back[name], f);
        }
        let elems = back["s"].as_array().unwrap();
        for (json, f) in elems.iter().zip([-0.0, 1.5e-7, 3.0, 1e16]) {
            check(json, f);
        }
        assert!(back["i"].is_i64());

        // So does the trace reader, into an equal Value of the same kinds.
        let parsed = crate::ndjson::parse_value(&text).unwrap();
        assert_eq!(parsed, v);
        let Value::Struct(fields) = &parsed else {
            panic!("{parsed:?}")
        };
        assert!(matches!(fields["a"], Value::Float(f) if f.to_bits() == (-0.0f64).to_bits()));
        assert!(matches!(fields["z"], Value::Float(_)));
        assert!(matches!(fields["i"], Value::Int(3)));
    }

    #[test]
    fn kind_names() {
        assert_eq!(Value::Int(1).kind_name(), "int");
        assert_eq!(Value::Float(1.0).kind_name(), "float");
        assert_eq!(s("").kind_name(), "string");
        assert_eq!(Value::Bool(true).kind_name(), "bool");
        assert_eq!(Value::Set(SetValue::new()).kind_name(), "set");
        assert_eq!(Value::Struct(BTreeMap::new()).kind_name(), "struct");
    }
}
