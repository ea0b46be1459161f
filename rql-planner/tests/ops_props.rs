//! Property tests of the scalar semantics in `rql_planner::ops`: nothing panics on any value, the
//! results agree with exact oracles (i128 and big rationals), and the logic and IN operators
//! follow SQL's definitions.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use log_server::{SetValue, Value, ValueKey};
use num_bigint::BigInt;
use num_rational::BigRational;
use proptest::prelude::*;
use rql_planner::ops::*;

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::Int),
        prop_oneof![
            Just(0i64),
            Just(1),
            Just(-1),
            Just(i64::MIN),
            Just(i64::MAX),
            Just(1 << 53),
            Just((1 << 53) + 1),
            -5i64..5,
        ]
        .prop_map(Value::Int),
        any::<u64>()
            .prop_map(f64::from_bits)
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::Float),
        prop_oneof![
            Just(0.0f64),
            Just(-0.0),
            Just(0.5),
            Just(-2.5),
            Just(1e308),
            Just(f64::MAX),
            Just(5e-324),
            Just(9007199254740992.0),
            Just(9223372036854775808.0),
            Just(-9223372036854775808.0),
            -5.0f64..5.0,
        ]
        .prop_map(Value::Float),
        "[a-cé1-3 .eE+-]{0,6}".prop_map(Value::Str),
        any::<bool>().prop_map(Value::Bool),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(2, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(scalar(), 0..4)
                .prop_map(|xs| Value::Set(SetValue::from_values(xs).unwrap_or_default())),
            prop::collection::btree_map("[a-c]", inner, 0..3).prop_map(Value::Struct),
        ]
    })
}

fn val() -> impl Strategy<Value = Val> {
    prop_oneof![1 => Just(None), 6 => value().prop_map(Some)]
}

fn number() -> impl Strategy<Value = Value> {
    scalar().prop_filter("number", Value::is_number)
}

fn arith_op() -> impl Strategy<Value = ArithOp> {
    prop_oneof![
        Just(ArithOp::Add),
        Just(ArithOp::Sub),
        Just(ArithOp::Mul),
        Just(ArithOp::Div),
        Just(ArithOp::Mod),
    ]
}

fn cmp_op() -> impl Strategy<Value = CmpOp> {
    prop_oneof![
        Just(CmpOp::Eq),
        Just(CmpOp::NotEq),
        Just(CmpOp::Lt),
        Just(CmpOp::LtEq),
        Just(CmpOp::Gt),
        Just(CmpOp::GtEq),
    ]
}

fn tri() -> impl Strategy<Value = Option<bool>> {
    prop_oneof![Just(None), Just(Some(false)), Just(Some(true))]
}

fn exact(v: &Value) -> Option<BigRational> {
    match v {
        Value::Int(i) => Some(BigRational::from_integer(BigInt::from(*i))),
        Value::Float(f) => BigRational::from_float(*f),
        _ => None,
    }
}

fn is_valid_result(v: &Val) -> bool {
    match v {
        Some(Value::Float(f)) => f.is_finite(),
        _ => true,
    }
}

proptest! {
    #[test]
    fn arith_is_total_and_follows_kinds(op in arith_op(), a in val(), b in val()) {
        let mut w = Warnings::new();
        let r = arith(op, &a, &b, &mut w);
        prop_assert!(is_valid_result(&r));
        prop_assert!(w.total() <= 1);
        match (&a, &b) {
            (None, _) | (_, None) => {
                prop_assert_eq!(&r, &None);
                prop_assert!(w.is_empty());
            }
            (Some(x), Some(y)) if !x.is_number() || !y.is_number() => {
                prop_assert_eq!(&r, &None);
                prop_assert_eq!(w.get(WarningKind::NonNumericOperand), 1);
            }
            (Some(Value::Int(x)), Some(Value::Int(y))) if op != ArithOp::Div => {
                let (x, y) = (i128::from(*x), i128::from(*y));
                let want = match op {
                    ArithOp::Add => Some(x + y),
                    ArithOp::Sub => Some(x - y),
                    ArithOp::Mul => Some(x * y),
                    _ => (y != 0).then(|| x % y),
                };
                match want {
                    None => {
                        prop_assert_eq!(&r, &None);
                        prop_assert_eq!(w.get(WarningKind::DivisionByZero), 1);
                    }
                    Some(v) => match i64::try_from(v) {
                        Ok(v) => prop_assert_eq!(&r, &Some(Value::Int(v))),
                        Err(_) => {
                            prop_assert_eq!(&r, &None);
                            prop_assert_eq!(w.get(WarningKind::IntegerOverflow), 1);
                        }
                    },
                }
            }
            _ => {
                // Any float involved, or `/`: a float or NULL with a warning.
                match &r {
                    Some(Value::Float(_)) => prop_assert!(w.is_empty()),
                    None => prop_assert_eq!(w.total(), 1),
                    other => prop_assert!(false, "unexpected {:?}", other),
                }
            }
        }
    }

    #[test]
    fn neg_is_total(a in val()) {
        let mut w = Warnings::new();
        let r = neg(&a, &mut w);
        match (&a, &r) {
            (Some(Value::Int(i)), Some(Value::Int(n))) => prop_assert_eq!(i128::from(*n), -i128::from(*i)),
            (Some(Value::Int(i)), None) => prop_assert_eq!(*i, i64::MIN),
            (Some(Value::Float(f)), Some(Value::Float(n))) => prop_assert_eq!(n.to_bits(), (-f).to_bits()),
            (None, None) => prop_assert!(w.is_empty()),
            (Some(_), None) => prop_assert_eq!(w.get(WarningKind::NonNumericOperand), 1),
            other => prop_assert!(false, "unexpected {:?}", other),
        }
    }

    #[test]
    fn number_comparison_is_exact_and_antisymmetric(a in number(), b in number()) {
        let want = exact(&a).zip(exact(&b)).map(|(x, y)| x.cmp(&y));
        prop_assert!(want.is_some());
        let mut w = Warnings::new();
        let (sa, sb) = (Some(a.clone()), Some(b.clone()));
        let lt = compare(CmpOp::Lt, &sa, &sb, &mut w);
        let eq = compare(CmpOp::Eq, &sa, &sb, &mut w);
        let gt = compare(CmpOp::Gt, &sa, &sb, &mut w);
        prop_assert!(w.is_empty());
        prop_assert_eq!(&lt, &Some(Value::Bool(want == Some(Ordering::Less))));
        prop_assert_eq!(&eq, &Some(Value::Bool(want == Some(Ordering::Equal))));
        prop_assert_eq!(&gt, &Some(Value::Bool(want == Some(Ordering::Greater))));
        for op in [CmpOp::Eq, CmpOp::NotEq, CmpOp::Lt, CmpOp::LtEq, CmpOp::Gt, CmpOp::GtEq] {
            prop_assert_eq!(
                compare(op, &sa, &sb, &mut w),
                compare(op.flip(), &sb, &sa, &mut w)
            );
        }
        // `=` agrees with the hashing used by COUNT_DISTINCT and sets.
        prop_assert_eq!(
            ValueKey(a) == ValueKey(b),
            want == Some(Ordering::Equal)
        );
    }

    #[test]
    fn compare_is_total_and_symmetric(op in cmp_op(), a in val(), b in val()) {
        let mut w1 = Warnings::new();
        let mut w2 = Warnings::new();
        let r = compare(op, &a, &b, &mut w1);
        let flipped = compare(op.flip(), &b, &a, &mut w2);
        prop_assert_eq!(&r, &flipped);
        prop_assert_eq!(&w1, &w2);
        prop_assert!(matches!(r, None | Some(Value::Bool(_))));
        if a.is_none() || b.is_none() {
            prop_assert_eq!(&r, &None);
            prop_assert!(w1.is_empty());
        } else {
            // NULL exactly when warned.
            prop_assert_eq!(r.is_none(), w1.total() == 1);
        }
        if let (Some(x), Some(y)) = (&a, &b) {
            if op == CmpOp::Eq {
                if let Some(Value::Bool(e)) = &r {
                    prop_assert_eq!(*e, ValueKey(x.clone()) == ValueKey(y.clone()));
                }
            }
        }
    }

    #[test]
    fn in_list_is_an_or_of_equalities(x in val(), items in prop::collection::vec(val(), 1..5)) {
        let mut w = Warnings::new();
        let got = in_list(&x, &items, &mut w);
        // SQL: x IN (a, b, ...) = (x = a) OR (x = b) OR ...
        let mut want = Some(false);
        for item in &items {
            let eq = compare(CmpOp::Eq, &x, item, &mut w);
            want = or3(want, truth(&eq, &mut w));
        }
        prop_assert_eq!(got, want.map(Value::Bool));
    }

    #[test]
    fn in_set_is_never_null_for_sets(x in value(), elems in prop::collection::vec(scalar(), 0..5)) {
        let set = SetValue::from_values(elems.clone()).unwrap_or_default();
        let mut w = Warnings::new();
        let got = in_set(&Some(x.clone()), &Some(Value::Set(set)), &mut w);
        let want = elems.iter().any(|e| x.sql_eq(e) == Some(true));
        prop_assert_eq!(got, Some(Value::Bool(want)));
        prop_assert!(w.is_empty());
    }

    #[test]
    fn scalar_functions_are_total(
        f in prop::sample::select(ScalarFn::ALL.to_vec()),
        args in prop::collection::vec(val(), 0..4),
    ) {
        let mut w = Warnings::new();
        let r = call_scalar(f, &args, &mut w);
        prop_assert!(is_valid_result(&r));
        prop_assert!(w.total() <= 1);
        if r.is_some() && f.is_numeric() {
            prop_assert!(r.as_ref().is_some_and(Value::is_number));
        }
        if r.is_some() && f.is_string() {
            prop_assert!(matches!(r, Some(Value::Str(_))));
        }
        if f != ScalarFn::Coalesce && args.iter().any(Option::is_none) {
            prop_assert_eq!(&r, &None);
            prop_assert!(w.is_empty());
        }
    }

    #[test]
    fn conversions_round_trip_through_str(v in number()) {
        let mut w = Warnings::new();
        let text = Some(Value::Str(to_str(&v)));
        match v {
            Value::Int(i) => {
                prop_assert_eq!(call_scalar(ScalarFn::Int, &[text], &mut w), Some(Value::Int(i)));
            }
            Value::Float(f) => {
                let back = call_scalar(ScalarFn::Float, &[text], &mut w);
                prop_assert!(matches!(back, Some(Value::Float(g)) if g.to_bits() == f.to_bits()));
            }
            _ => {}
        }
        prop_assert!(w.is_empty());
    }

    #[test]
    fn int_of_any_string_is_total(s in ".{0,8}") {
        let mut w = Warnings::new();
        let r = call_scalar(ScalarFn::Int, &[Some(Value::Str(s.clone()))], &mut w);
        match r {
            Some(Value::Int(i)) => {
                // Whatever was accepted is a number without surrounding text.
                prop_assert!(s.trim() == s && !s.is_empty());
                let f: f64 = s.parse().unwrap_or(f64::NAN);
                prop_assert!(f.is_finite());
                prop_assert_eq!(i, f.trunc() as i64);
            }
            None => prop_assert_eq!(w.total(), 1),
            other => prop_assert!(false, "unexpected {:?}", other),
        }
    }

    #[test]
    fn aggregates_are_total(
        f in prop::sample::select(AggFn::ALL.to_vec()),
        inputs in prop::collection::vec(val(), 0..6),
    ) {
        let mut w = Warnings::new();
        let r = aggregate(f, &inputs, &mut w);
        prop_assert!(is_valid_result(&r));
        prop_assert!(w.total() <= 1);
        let present = inputs.iter().flatten().count() as i64;
        match f {
            AggFn::Count => prop_assert_eq!(r, Some(Value::Int(present))),
            AggFn::CountDistinct => {
                prop_assert!(matches!(r, Some(Value::Int(n)) if n <= present && (n > 0) == (present > 0)));
            }
            _ => {}
        }
    }

    #[test]
    fn int_sum_and_extremes_match_oracle(xs in prop::collection::vec(prop::option::of(any::<i64>()), 0..8)) {
        let inputs: Vec<Val> = xs.iter().map(|x| x.map(Value::Int)).collect();
        let present: Vec<i64> = xs.iter().flatten().copied().collect();
        let mut w = Warnings::new();
        let total: i128 = present.iter().map(|&x| i128::from(x)).sum();
        prop_assert_eq!(
            aggregate(AggFn::Sum, &inputs, &mut w),
            i64::try_from(total).ok().map(Value::Int)
        );
        prop_assert_eq!(
            aggregate(AggFn::Min, &inputs, &mut w),
            present.iter().min().map(|&m| Value::Int(m))
        );
        prop_assert_eq!(
            aggregate(AggFn::Max, &inputs, &mut w),
            present.iter().max().map(|&m| Value::Int(m))
        );
        if !present.is_empty() {
            let mean = BigRational::new(BigInt::from(total), BigInt::from(present.len()));
            let got = aggregate(AggFn::Avg, &inputs, &mut w);
            // f64 nearest to the exact mean: check no neighbour is strictly closer.
            let Some(Value::Float(g)) = got else {
                return Err(TestCaseError::fail(format!("AVG gave {got:?}")));
            };
            let dist = |x: f64| {
                let d = BigRational::from_float(x).unwrap_or_default() - &mean;
                if d < BigRational::from_integer(BigInt::from(0)) { -d } else { d }
            };
            let up = f64::from_bits(if g > 0.0 { g.to_bits() + 1 } else { g.to_bits().wrapping_sub(1) });
            let down = f64::from_bits(if g > 0.0 { g.to_bits() - 1 } else { g.to_bits() + 1 });
            for n in [up, down] {
                if n.is_finite() && g != 0.0 {
                    prop_assert!(dist(g) <= dist(n));
                }
            }
        }
    }

    #[test]
    fn float_sum_and_avg_are_order_independent(
        (xs, shuffled) in prop::collection::vec(number().prop_map(Some), 0..10)
            .prop_flat_map(|xs| (Just(xs.clone()), Just(xs).prop_shuffle())),
    ) {
        let mut w1 = Warnings::new();
        let mut w2 = Warnings::new();
        for f in [AggFn::Sum, AggFn::Avg] {
            prop_assert_eq!(
                aggregate(f, &xs, &mut w1).map(|v| v.to_json()),
                aggregate(f, &shuffled, &mut w2).map(|v| v.to_json())
            );
        }
        // MIN/MAX agree up to `=` (ties keep the first input, whose kind may differ).
        for f in [AggFn::Min, AggFn::Max] {
            let a = aggregate(f, &xs, &mut w1);
            let b = aggregate(f, &shuffled, &mut w2);
            prop_assert_eq!(a.map(ValueKey), b.map(ValueKey));
        }
        prop_assert_eq!(w1, w2);
    }

    #[test]
    fn field_paths_are_total(v in val(), path in prop::collection::vec("[a-c]", 0..3)) {
        let got = field(&v, &path);
        if path.is_empty() {
            prop_assert_eq!(got, v);
        } else if let Some(g) = got {
            // Walking the path by hand finds the same value.
            let mut cur = v;
            for p in &path {
                cur = match cur {
                    Some(Value::Struct(m)) => m.get(p).cloned(),
                    _ => None,
                };
            }
            prop_assert_eq!(Some(g), cur);
        }
    }
}

#[test]
fn three_valued_logic_truth_tables() {
    // SQL's logic as min/max/complement over FALSE < NULL < TRUE.
    fn rank(x: Option<bool>) -> u8 {
        match x {
            Some(false) => 0,
            None => 1,
            Some(true) => 2,
        }
    }
    let all = [Some(false), None, Some(true)];
    for a in all {
        assert_eq!(rank(not3(a)), 2 - rank(a));
        for b in all {
            assert_eq!(rank(and3(a, b)), rank(a).min(rank(b)), "{a:?} AND {b:?}");
            assert_eq!(rank(or3(a, b)), rank(a).max(rank(b)), "{a:?} OR {b:?}");
            // De Morgan holds in three-valued logic too.
            assert_eq!(not3(and3(a, b)), or3(not3(a), not3(b)));
        }
    }
}

proptest! {
    #[test]
    fn logic_is_commutative_and_associative(a in tri(), b in tri(), c in tri()) {
        prop_assert_eq!(and3(a, b), and3(b, a));
        prop_assert_eq!(or3(a, b), or3(b, a));
        prop_assert_eq!(and3(and3(a, b), c), and3(a, and3(b, c)));
        prop_assert_eq!(or3(or3(a, b), c), or3(a, or3(b, c)));
    }
}

#[test]
fn struct_equality_is_structural() {
    let mk = |pairs: &[(&str, Value)]| {
        Some(Value::Struct(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<BTreeMap<_, _>>(),
        ))
    };
    let mut w = Warnings::new();
    let a = mk(&[("x", Value::Int(1)), ("y", Value::Str("s".into()))]);
    let b = mk(&[("y", Value::Str("s".into())), ("x", Value::Float(1.0))]);
    let c = mk(&[("x", Value::Int(1))]);
    assert_eq!(compare(CmpOp::Eq, &a, &b, &mut w), Some(Value::Bool(true)));
    assert_eq!(
        compare(CmpOp::NotEq, &a, &c, &mut w),
        Some(Value::Bool(true))
    );
    assert!(w.is_empty());
}
