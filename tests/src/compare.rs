//! The comparison rule of `../shared/examples/cmp.py`: JSON values compared structurally,
//! ints and floats distinct, floats equal within a relative tolerance of 1e-9, arrays inside
//! a `values` object compared as multisets, all other arrays in order.

use serde_json::Value;

const REL_TOL: f64 = 1e-9;

/// `Ok(())` if the two outputs are equal line by line (blank lines ignored), else a message
/// naming the first difference.
pub fn same_output(expected: &str, actual: &[String]) -> Result<(), String> {
    let exp: Vec<&str> = expected.lines().filter(|l| !l.trim().is_empty()).collect();
    let act: Vec<&str> = actual
        .iter()
        .map(String::as_str)
        .filter(|l| !l.trim().is_empty())
        .collect();
    for k in 0..exp.len().max(act.len()) {
        let (e, a) = (exp.get(k), act.get(k));
        let equal = match (e, a) {
            (Some(e), Some(a)) => match (
                serde_json::from_str::<Value>(e),
                serde_json::from_str::<Value>(a),
            ) {
                (Ok(je), Ok(ja)) => same(&je, &ja, false),
                _ => false,
            },
            _ => false,
        };
        if !equal {
            return Err(format!(
                "first difference at line {} (expected {} lines, actual {})\nexpected: {}\nactual:   {}",
                k + 1,
                exp.len(),
                act.len(),
                e.unwrap_or(&"<no line>"),
                a.unwrap_or(&"<no line>")
            ));
        }
    }
    Ok(())
}

pub fn same(a: &Value, b: &Value, in_values: bool) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.is_f64(), y.is_f64()) {
            (false, false) => x == y,
            (true, true) => {
                let (fx, fy) = (
                    x.as_f64().unwrap_or(f64::NAN),
                    y.as_f64().unwrap_or(f64::NAN),
                );
                fx == fy || (fx - fy).abs() <= REL_TOL * fx.abs().max(fy.abs())
            }
            _ => false,
        },
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter().all(|(k, v)| {
                    y.get(k)
                        .is_some_and(|w| same(v, w, in_values || k == "values"))
                })
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return false;
            }
            if !in_values {
                return x.iter().zip(y).all(|(p, q)| same(p, q, false));
            }
            let mut free: Vec<&Value> = y.iter().collect();
            for p in x {
                match free.iter().position(|q| same(p, q, true)) {
                    Some(i) => {
                        free.remove(i);
                    }
                    None => return false,
                }
            }
            true
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_and_floats_differ_sets_are_sets() {
        let e = r#"{"seq":1,"values":{"x":[1,"a",2.0]},"hlc":[1,0]}"#;
        assert!(same_output(
            e,
            &[r#"{"hlc":[1,0],"seq":1,"values":{"x":["a",2.0,1]}}"#.into()]
        )
        .is_ok());
        assert!(same_output(
            e,
            &[r#"{"hlc":[1,0],"seq":1,"values":{"x":["a",2,1]}}"#.into()]
        )
        .is_err());
        assert!(same_output(
            e,
            &[r#"{"hlc":[0,1],"seq":1,"values":{"x":[1,"a",2.0]}}"#.into()]
        )
        .is_err());
        assert!(same_output("{\"a\":1.0}", &["{\"a\":1.0000000000001}".into()]).is_ok());
        assert!(same_output("{\"a\":1}\n", &[]).is_err());
    }
}
