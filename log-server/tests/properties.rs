//! Property tests: the reader never panics, whatever the bytes; records written canonically read
//! back equal; the int/float order and hashing agree with an independent reference.

use std::cmp::Ordering;
use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use log_server::value::cmp_int_float;
use log_server::{
    parse_record, parse_value, read_trace, Hlc, ReadOptions, Record, SetValue, Value, ValueKey,
    VarName,
};
use proptest::prelude::*;

fn var_name() -> impl Strategy<Value = VarName> {
    "[A-Za-z_][A-Za-z0-9_]{0,4}\\.[A-Za-z_][A-Za-z0-9_]{0,4}"
        .prop_filter_map("valid name", |s| VarName::parse(&s).ok())
}

fn finite_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
        (-1000i64..1000).prop_map(|i| i as f64 / 4.0),
        Just(-0.0),
        Just(1e16),
        Just(9_007_199_254_740_992.0),
    ]
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::Int),
        (-3i64..3).prop_map(Value::Int),
        finite_f64().prop_map(Value::Float),
        any::<String>().prop_map(Value::Str),
        "[a-c]{0,2}".prop_map(Value::Str),
        any::<bool>().prop_map(Value::Bool),
    ]
}

fn set_value() -> impl Strategy<Value = SetValue> {
    prop::collection::vec(scalar(), 0..6)
        .prop_map(|v| SetValue::from_values(v).expect("scalars only"))
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            set_value().prop_map(Value::Set),
            prop::collection::btree_map(any::<String>(), inner, 0..4).prop_map(Value::Struct),
        ]
    })
}

fn changes<T: std::fmt::Debug + Clone>(
    values: impl Strategy<Value = T>,
) -> impl Strategy<Value = Vec<(VarName, T)>> {
    // Distinct names (a JSON object may not repeat a key), in any order.
    prop::collection::btree_map(var_name(), values, 0..4)
        .prop_map(|m| m.into_iter().collect::<Vec<_>>())
        .prop_shuffle()
}

fn record() -> impl Strategy<Value = Record> {
    (
        "(?s).{1,20}",
        any::<u64>(),
        changes(prop::option::weighted(0.8, value())),
        prop::collection::vec(var_name(), 0..3),
        changes(set_value()),
        changes(set_value()),
        any::<bool>(),
        prop::option::of(any::<u64>()),
    )
        .prop_map(|(node, hlc, set, unset, add, remove, leave, pt)| Record {
            node,
            hlc: Hlc::from_packed(hlc),
            set,
            unset,
            add,
            remove,
            leave,
            pt,
        })
}

/// Exact int/float order through i128, independent of the library's method.
fn reference_cmp(i: i64, f: f64) -> Ordering {
    let i = i128::from(i);
    if f.abs() >= 1e30 {
        if f > 0.0 {
            Ordering::Less
        } else {
            Ordering::Greater
        }
    } else if f.fract() == 0.0 {
        i.cmp(&(f as i128))
    } else if i <= f.floor() as i128 {
        Ordering::Less
    } else {
        Ordering::Greater
    }
}

fn hash_of(v: &Value) -> u64 {
    let mut h = DefaultHasher::new();
    ValueKey(v.clone()).hash(&mut h);
    h.finish()
}

const VALID_LINE: &str = r#"{"node":"n1","hlc":[1700000000123,0],"set":{"inv.a":5,"zk.m":["n1",2.5,true],"inv.st":{"f":1}},"unset":["inv.b"],"add":{"zk.s":["x"]},"leave":false,"pt":1700000000124}"#;

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_record(&bytes);
        let _ = read_trace(bytes.as_slice(), &ReadOptions { skip_bad: false });
        let _ = read_trace(bytes.as_slice(), &ReadOptions { skip_bad: true });
    }

    #[test]
    fn json_like_text_never_panics(text in r#"[\[\]{}",:0-9a-zA-Z.eE+\-\\ \n]{0,200}"#) {
        let _ = parse_record(text.as_bytes());
        let _ = parse_value(&text);
        let _ = read_trace(text.as_bytes(), &ReadOptions { skip_bad: true });
    }

    #[test]
    fn mutated_valid_lines_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6)
    ) {
        let mut bytes = VALID_LINE.as_bytes().to_vec();
        for (at, byte, op) in edits {
            let i = at.index(bytes.len() + 1);
            match op {
                0 => bytes.insert(i, byte),
                1 if i < bytes.len() => { bytes.remove(i); }
                _ if i < bytes.len() => bytes[i] = byte,
                _ => {}
            }
        }
        let _ = parse_record(&bytes);
        let mut two = bytes.clone();
        two.push(b'\n');
        two.extend_from_slice(&bytes);
        let _ = read_trace(two.as_slice(), &ReadOptions { skip_bad: true });
    }

    #[test]
    fn records_round_trip(rec in record()) {
        let line = rec.to_json_line();
        prop_assert!(!line.contains('\n'));
        prop_assert_eq!(parse_record(line.as_bytes()), Ok(rec.clone()));
        // Writing is canonical: the re-read record writes the same text.
        let again = parse_record(line.as_bytes()).map(|r| r.to_json_line());
        prop_assert_eq!(again, Ok(line));
    }

    #[test]
    fn values_round_trip(v in value()) {
        let text = v.to_json();
        let back = parse_value(&text);
        prop_assert_eq!(back.as_ref(), Ok(&v), "{}", text);
        // Kinds survive: a float never reads back as an int.
        prop_assert_eq!(back.map(|b| b.kind_name()), Ok(v.kind_name()));
    }

    #[test]
    fn int_float_order_is_exact(
        i in prop_oneof![any::<i64>(), -5i64..5, Just(i64::MAX), Just(i64::MIN)],
        delta in prop_oneof![Just(0.0), Just(0.5), Just(-0.5), Just(1.0), Just(-1.0)],
        f in finite_f64(),
        near in any::<bool>(),
    ) {
        let f = if near { i as f64 + delta } else { f };
        prop_assert_eq!(cmp_int_float(i, f), reference_cmp(i, f), "{} vs {:?}", i, f);
        let (a, b) = (Value::Int(i), Value::Float(f));
        prop_assert_eq!(a.total_cmp(&b), reference_cmp(i, f));
        prop_assert_eq!(b.total_cmp(&a), reference_cmp(i, f).reverse());
        if a.total_cmp(&b) == Ordering::Equal {
            prop_assert_eq!(hash_of(&a), hash_of(&b));
            prop_assert_eq!(a.sql_eq(&b), Some(true));
        }
    }

    #[test]
    fn equal_values_hash_equally(a in value(), b in value()) {
        prop_assert_eq!(a.total_cmp(&b), b.total_cmp(&a).reverse());
        if ValueKey(a.clone()) == ValueKey(b.clone()) {
            prop_assert_eq!(hash_of(&a), hash_of(&b));
        }
        prop_assert_eq!(hash_of(&a), hash_of(&a.clone()));
    }

    #[test]
    fn sets_are_sorted_and_distinct(values in prop::collection::vec(scalar(), 0..12)) {
        let set = SetValue::from_values(values.clone()).expect("scalars only");
        prop_assert!(set.as_slice().windows(2).all(|w| w[0].total_cmp(&w[1]) == Ordering::Less));
        for v in &values {
            prop_assert!(set.contains(v));
        }
        // Inserting one by one gives the same set.
        let mut incremental = SetValue::new();
        for v in values {
            let _ = incremental.insert(v);
        }
        prop_assert_eq!(incremental, set);
    }
}

#[test]
fn struct_fields_are_written_sorted() {
    let v = Value::Struct(BTreeMap::from([
        ("b".to_string(), Value::Int(1)),
        ("B".to_string(), Value::Int(2)),
        ("a".to_string(), Value::Int(3)),
    ]));
    assert_eq!(v.to_json(), r#"{"B":2,"a":3,"b":1}"#);
}
