//! Rust values to trace [`Value`]s for the recorder (`recorder.set("inv.a", 5)`), and the check
//! that a value will pass the server's reader.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::ndjson::parse_value;
use crate::value::{SetValue, Value};

/// A Rust value that can be a trace value (SPEC §1.1). Fallible because not every one can: a
/// non-finite float, an integer beyond i64, a set holding a set.
pub trait IntoValue {
    /// The trace value, or why there is none.
    fn into_value(self) -> Result<Value, String>;
}

impl IntoValue for Value {
    fn into_value(self) -> Result<Value, String> {
        Ok(self)
    }
}

impl IntoValue for &Value {
    fn into_value(self) -> Result<Value, String> {
        Ok(self.clone())
    }
}

impl IntoValue for SetValue {
    fn into_value(self) -> Result<Value, String> {
        Ok(Value::Set(self))
    }
}

macro_rules! exact_int {
    ($($t:ty),*) => {$(
        impl IntoValue for $t {
            fn into_value(self) -> Result<Value, String> {
                Ok(Value::Int(i64::from(self)))
            }
        }
    )*};
}
exact_int!(i8, i16, i32, i64, u8, u16, u32);

macro_rules! checked_int {
    ($($t:ty),*) => {$(
        impl IntoValue for $t {
            fn into_value(self) -> Result<Value, String> {
                i64::try_from(self)
                    .map(Value::Int)
                    .map_err(|_| format!("integer {self} is out of the range of i64"))
            }
        }
    )*};
}
checked_int!(u64, usize, isize, i128, u128);

impl IntoValue for f64 {
    fn into_value(self) -> Result<Value, String> {
        Value::float(self).ok_or_else(|| format!("non-finite float {self}"))
    }
}

impl IntoValue for f32 {
    fn into_value(self) -> Result<Value, String> {
        f64::from(self).into_value()
    }
}

impl IntoValue for bool {
    fn into_value(self) -> Result<Value, String> {
        Ok(Value::Bool(self))
    }
}

impl IntoValue for &str {
    fn into_value(self) -> Result<Value, String> {
        Ok(Value::Str(self.to_string()))
    }
}

impl IntoValue for String {
    fn into_value(self) -> Result<Value, String> {
        Ok(Value::Str(self))
    }
}

impl IntoValue for &String {
    fn into_value(self) -> Result<Value, String> {
        Ok(Value::Str(self.clone()))
    }
}

/// A JSON array in a trace is a set: the elements must be scalars, duplicates collapse.
impl<T: IntoValue> IntoValue for Vec<T> {
    fn into_value(self) -> Result<Value, String> {
        set_of(self).map(Value::Set)
    }
}

impl<T: IntoValue, const N: usize> IntoValue for [T; N] {
    fn into_value(self) -> Result<Value, String> {
        set_of(self).map(Value::Set)
    }
}

impl<T: IntoValue> IntoValue for BTreeSet<T> {
    fn into_value(self) -> Result<Value, String> {
        set_of(self).map(Value::Set)
    }
}

/// A JSON object in a trace is a struct.
impl<K: Into<String>, T: IntoValue> IntoValue for BTreeMap<K, T> {
    fn into_value(self) -> Result<Value, String> {
        struct_of(self)
    }
}

impl<K: Into<String>, T: IntoValue, S> IntoValue for HashMap<K, T, S> {
    fn into_value(self) -> Result<Value, String> {
        struct_of(self)
    }
}

fn struct_of<K: Into<String>, T: IntoValue>(
    fields: impl IntoIterator<Item = (K, T)>,
) -> Result<Value, String> {
    let mut out = BTreeMap::new();
    for (name, value) in fields {
        let name = name.into();
        let value = value
            .into_value()
            .map_err(|e| format!("field {name:?}: {e}"))?;
        out.insert(name, value);
    }
    Ok(Value::Struct(out))
}

/// The elements as a set (they must be scalars).
pub(crate) fn set_of<T: IntoValue>(elems: impl IntoIterator<Item = T>) -> Result<SetValue, String> {
    let values = elems
        .into_iter()
        .map(IntoValue::into_value)
        .collect::<Result<Vec<_>, _>>()?;
    SetValue::from_values(values).map_err(|e| e.to_string())
}

/// Whether the server's reader accepts `value` (finite floats everywhere, nesting within the
/// reader's depth bound, ...). A `Value` can be built by hand, so the recorder checks every one
/// with the reader itself instead of restating its rules; an error here is immediate and names
/// the variable, whereas a bad line at the server would reject a whole batch.
pub(crate) fn check(value: &Value) -> Result<(), String> {
    parse_value(&value.to_json()).map(|_| ())
}

/// [`check`] for a set.
pub(crate) fn check_set(set: &SetValue) -> Result<(), String> {
    let mut json = String::new();
    set.write_json(&mut json);
    parse_value(&json).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(5i32.into_value(), Ok(Value::Int(5)));
        assert_eq!(
            u64::MAX.into_value().unwrap_err(),
            format!("integer {} is out of the range of i64", u64::MAX)
        );
        assert_eq!(7usize.into_value(), Ok(Value::Int(7)));
        assert_eq!(1.5f64.into_value(), Ok(Value::Float(1.5)));
        assert_eq!(f64::NAN.into_value().unwrap_err(), "non-finite float NaN");
        assert!(f32::INFINITY.into_value().is_err());
        assert_eq!(true.into_value(), Ok(Value::Bool(true)));
        assert_eq!("x".into_value(), Ok(Value::Str("x".into())));
        assert_eq!(String::from("y").into_value(), Ok(Value::Str("y".into())));
        let set = vec![2, 1, 2].into_value().unwrap();
        assert_eq!(set.to_json(), "[1,2]");
        assert_eq!(["b", "a"].into_value().unwrap().to_json(), r#"["a","b"]"#);
        let nested = vec![vec![1]].into_value().unwrap_err();
        assert!(nested.contains("scalars"), "{nested}");
        let st = BTreeMap::from([("b", 1.into_value().unwrap()), ("a", Value::Bool(false))])
            .into_value()
            .unwrap();
        assert_eq!(st.to_json(), r#"{"a":false,"b":1}"#);
        let bad = HashMap::from([("f", f64::NAN)]).into_value().unwrap_err();
        assert_eq!(bad, "field \"f\": non-finite float NaN");
    }

    #[test]
    fn hand_built_values_are_checked_by_the_reader() {
        assert_eq!(check(&Value::Int(1)), Ok(()));
        assert!(check(&Value::Float(f64::NAN)).is_err());
        let inner = Value::Struct(BTreeMap::from([(
            "x".to_string(),
            Value::Float(f64::INFINITY),
        )]));
        assert!(check(&inner).is_err());
        let mut deep = Value::Int(0);
        for _ in 0..200 {
            deep = Value::Struct(BTreeMap::from([("d".to_string(), deep)]));
        }
        assert!(check(&deep).is_err());
        assert_eq!(check_set(&set_of([1, 2]).unwrap()), Ok(()));
    }
}
