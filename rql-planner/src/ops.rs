//! Scalar semantics of RQL (SPEC §3.3–§3.5, §6): arithmetic, comparison, three-valued logic,
//! `IN`, struct fields, scalar functions and aggregates.
//!
//! NULL is `None` (a [`Val`]). Nothing here fails: a run-time problem (overflow, division by
//! zero, a value of the wrong kind, ...) yields NULL and is counted in [`Warnings`], which the
//! query reports with its statistics (SPEC §3.4). A NULL operand by itself is never a warning.
//!
//! This module depends only on `log_server` and [`crate::exact_sum`], so that the planner can
//! share the operator and function enums without pulling in the executor.

use std::collections::HashSet;
use std::fmt;

use log_server::{Value, ValueKey};

use crate::exact_sum::ExactSum;

/// A value or NULL.
pub type Val = Option<Value>;

/// What went wrong when an operation gave NULL for non-NULL inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WarningKind {
    /// An int result outside i64 (`+ - * %`, unary `-`, ABS, SUM of ints, INT()).
    IntegerOverflow,
    /// `/` or `%` by zero (int or float).
    DivisionByZero,
    /// Arithmetic, unary `-` or a numeric function on a string, boolean, set or struct.
    NonNumericOperand,
    /// Comparing values of different kinds (`1 = '1'`, a set with a struct, ...).
    IncomparableKinds,
    /// `<`, `<=`, `>`, `>=` on booleans, sets or structs, which only have `=` and `!=`.
    UnorderedComparison,
    /// A float result that is infinite or NaN (`1e308 * 10`, `SQRT(-1)`, `FLOAT('1e400')`).
    NonFiniteResult,
    /// An operand of AND/OR/NOT (or a WHEN condition) that is not a boolean.
    NonBooleanOperand,
    /// INT()/FLOAT() of a boolean, set, struct or a string that is not a number.
    InvalidConversion,
    /// `x IN s` or CARDINALITY() on a value that is not a set.
    NotASet,
    /// LEN/LOWER/UPPER/REPLACE on a value that is not a string.
    NotAString,
    /// SUM/AVG over a non-number; MIN/MAX over values that are not all numbers or all strings.
    InvalidAggregateInput,
}

impl WarningKind {
    /// Every kind, in declaration order (the order of [`Warnings::iter`]).
    pub const ALL: [WarningKind; 11] = [
        WarningKind::IntegerOverflow,
        WarningKind::DivisionByZero,
        WarningKind::NonNumericOperand,
        WarningKind::IncomparableKinds,
        WarningKind::UnorderedComparison,
        WarningKind::NonFiniteResult,
        WarningKind::NonBooleanOperand,
        WarningKind::InvalidConversion,
        WarningKind::NotASet,
        WarningKind::NotAString,
        WarningKind::InvalidAggregateInput,
    ];

    /// The snake_case name used in statistics output.
    pub fn name(self) -> &'static str {
        match self {
            WarningKind::IntegerOverflow => "integer_overflow",
            WarningKind::DivisionByZero => "division_by_zero",
            WarningKind::NonNumericOperand => "non_numeric_operand",
            WarningKind::IncomparableKinds => "incomparable_kinds",
            WarningKind::UnorderedComparison => "unordered_comparison",
            WarningKind::NonFiniteResult => "non_finite_result",
            WarningKind::NonBooleanOperand => "non_boolean_operand",
            WarningKind::InvalidConversion => "invalid_conversion",
            WarningKind::NotASet => "not_a_set",
            WarningKind::NotAString => "not_a_string",
            WarningKind::InvalidAggregateInput => "invalid_aggregate_input",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for WarningKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Warning counts per kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Warnings {
    counts: [u64; WarningKind::ALL.len()],
}

impl Warnings {
    pub fn new() -> Warnings {
        Warnings::default()
    }

    pub fn add(&mut self, k: WarningKind) {
        self.add_n(k, 1);
    }

    pub fn add_n(&mut self, k: WarningKind, n: u64) {
        let c = &mut self.counts[k.index()];
        *c = c.saturating_add(n);
    }

    /// Adds `other`'s counts (saturating). Kind by kind over the arrays, with no iterator over
    /// the kinds: engines merge on every cut.
    #[inline]
    pub fn merge(&mut self, other: &Warnings) {
        for (c, n) in self.counts.iter_mut().zip(&other.counts) {
            *c = c.saturating_add(*n);
        }
    }

    /// The count of one kind.
    pub fn get(&self, k: WarningKind) -> u64 {
        self.counts[k.index()]
    }

    /// Kinds with a non-zero count, in [`WarningKind::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (WarningKind, u64)> + '_ {
        WarningKind::ALL
            .iter()
            .map(|&k| (k, self.get(k)))
            .filter(|&(_, n)| n > 0)
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, &n| a.saturating_add(n))
    }

    pub fn is_empty(&self) -> bool {
        self.counts.iter().all(|&n| n == 0)
    }
}

/// Counts `k` and yields NULL, the result of every failed operation.
fn warn(w: &mut Warnings, k: WarningKind) -> Val {
    w.add(k);
    None
}

/// A float result, or NULL + warning if it is not finite (a `Value::Float` must be finite).
fn finite(f: f64, w: &mut Warnings) -> Val {
    match Value::float(f) {
        Some(v) => Some(v),
        None => warn(w, WarningKind::NonFiniteResult),
    }
}

/// The numeric value as f64 (ints round to nearest), `None` for non-numbers.
fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}

/// Kinds as far as comparison cares: ints and floats are one kind.
fn kind_class(v: &Value) -> u8 {
    match v {
        Value::Int(_) | Value::Float(_) => 0,
        Value::Str(_) => 1,
        Value::Bool(_) => 2,
        Value::Set(_) => 3,
        Value::Struct(_) => 4,
    }
}

// ---------------------------------------------------------------------------------------------
// Arithmetic

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

impl ArithOp {
    pub fn symbol(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
            ArithOp::Mod => "%",
        }
    }
}

/// `a op b` (SPEC §3.4, §6).
pub fn arith(op: ArithOp, a: &Val, b: &Val, w: &mut Warnings) -> Val {
    let (Some(a), Some(b)) = (a, b) else {
        return None;
    };
    if let (Value::Int(x), Value::Int(y)) = (a, b) {
        return int_arith(op, *x, *y, w);
    }
    match (as_f64(a), as_f64(b)) {
        (Some(x), Some(y)) => float_arith(op, x, y, w),
        _ => warn(w, WarningKind::NonNumericOperand),
    }
}

fn int_arith(op: ArithOp, x: i64, y: i64, w: &mut Warnings) -> Val {
    let r = match op {
        ArithOp::Add => x.checked_add(y),
        ArithOp::Sub => x.checked_sub(y),
        ArithOp::Mul => x.checked_mul(y),
        ArithOp::Div => return float_arith(op, x as f64, y as f64, w),
        ArithOp::Mod => {
            if y == 0 {
                return warn(w, WarningKind::DivisionByZero);
            }
            // The only overflowing case, i64::MIN % -1, is 0 mathematically, which is what
            // wrapping_rem gives.
            Some(x.wrapping_rem(y))
        }
    };
    match r {
        Some(v) => Some(Value::Int(v)),
        None => warn(w, WarningKind::IntegerOverflow),
    }
}

fn float_arith(op: ArithOp, x: f64, y: f64, w: &mut Warnings) -> Val {
    let r = match op {
        ArithOp::Add => x + y,
        ArithOp::Sub => x - y,
        ArithOp::Mul => x * y,
        ArithOp::Div | ArithOp::Mod if y == 0.0 => return warn(w, WarningKind::DivisionByZero),
        ArithOp::Div => x / y,
        // Rust's `%` on f64 is C's fmod: truncated, sign of the dividend.
        ArithOp::Mod => x % y,
    };
    finite(r, w)
}

/// Unary `-`.
pub fn neg(a: &Val, w: &mut Warnings) -> Val {
    match a.as_ref()? {
        Value::Int(i) => match i.checked_neg() {
            Some(v) => Some(Value::Int(v)),
            None => warn(w, WarningKind::IntegerOverflow),
        },
        Value::Float(f) => Some(Value::Float(-f)),
        _ => warn(w, WarningKind::NonNumericOperand),
    }
}

// ---------------------------------------------------------------------------------------------
// Comparison and logic

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

impl CmpOp {
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::NotEq => "!=",
            CmpOp::Lt => "<",
            CmpOp::LtEq => "<=",
            CmpOp::Gt => ">",
            CmpOp::GtEq => ">=",
        }
    }

    /// The operator with its operands swapped (`a < b` is `b > a`).
    pub fn flip(self) -> CmpOp {
        match self {
            CmpOp::Eq => CmpOp::Eq,
            CmpOp::NotEq => CmpOp::NotEq,
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::LtEq => CmpOp::GtEq,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::GtEq => CmpOp::LtEq,
        }
    }
}

/// `a op b`: `Some(Value::Bool)` or NULL (SPEC §3.4, §6).
pub fn compare(op: CmpOp, a: &Val, b: &Val, w: &mut Warnings) -> Val {
    let (Some(a), Some(b)) = (a, b) else {
        return None;
    };
    compare_values(op, a, b, w).map(Value::Bool)
}

fn compare_values(op: CmpOp, a: &Value, b: &Value, w: &mut Warnings) -> Option<bool> {
    if kind_class(a) != kind_class(b) {
        w.add(WarningKind::IncomparableKinds);
        return None;
    }
    match op {
        // Same kind: sql_eq is never None here. It compares numbers exactly and sets and
        // structs structurally.
        CmpOp::Eq => a.sql_eq(b),
        CmpOp::NotEq => a.sql_eq(b).map(|e| !e),
        _ => match a.sql_cmp(b) {
            Some(o) => Some(match op {
                CmpOp::Lt => o.is_lt(),
                CmpOp::LtEq => o.is_le(),
                CmpOp::Gt => o.is_gt(),
                _ => o.is_ge(),
            }),
            None => {
                w.add(WarningKind::UnorderedComparison);
                None
            }
        },
    }
}

/// A value as a condition: booleans are themselves, NULL is NULL, anything else counts as NULL
/// with a warning.
pub fn truth(v: &Val, w: &mut Warnings) -> Option<bool> {
    match v.as_ref()? {
        Value::Bool(b) => Some(*b),
        _ => {
            w.add(WarningKind::NonBooleanOperand);
            None
        }
    }
}

/// SQL AND: FALSE wins over NULL.
pub fn and3(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    }
}

/// SQL OR: TRUE wins over NULL.
pub fn or3(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(true), _) | (_, Some(true)) => Some(true),
        (Some(false), Some(false)) => Some(false),
        _ => None,
    }
}

/// SQL NOT: NULL stays NULL.
pub fn not3(a: Option<bool>) -> Option<bool> {
    a.map(|b| !b)
}

/// `x IN (e1, e2, ...)`, SQL semantics: TRUE if some item equals x; else NULL if x is NULL or
/// some comparison was NULL (a NULL item, or a kind mismatch, which also warns); else FALSE.
pub fn in_list(x: &Val, items: &[Val], w: &mut Warnings) -> Val {
    let x = x.as_ref()?;
    let mut unknown = false;
    for item in items {
        match item {
            None => unknown = true,
            Some(item) => match compare_values(CmpOp::Eq, x, item, w) {
                Some(true) => return Some(Value::Bool(true)),
                Some(false) => {}
                None => unknown = true,
            },
        }
    }
    if unknown {
        None
    } else {
        Some(Value::Bool(false))
    }
}

/// `x IN s` for a set value s: membership under `=` (so `1.0 IN [1]`). FALSE, never NULL,
/// when x is not NULL and no element equals it (even if x is a set or struct, which no element
/// can equal). NULL x or s gives NULL; a non-set s gives NULL + [`WarningKind::NotASet`].
pub fn in_set(x: &Val, s: &Val, w: &mut Warnings) -> Val {
    let (Some(x), Some(s)) = (x, s) else {
        return None;
    };
    match s {
        Value::Set(set) => Some(Value::Bool(set.contains(x))),
        _ => warn(w, WarningKind::NotASet),
    }
}

/// `v.f1.f2...`: the field at `path` of a struct value; NULL if a field is absent or a value
/// on the way is not a struct. An empty path is `v` itself.
pub fn field(v: &Val, path: &[String]) -> Val {
    let mut cur = v.as_ref()?;
    for name in path {
        match cur {
            Value::Struct(fields) => cur = fields.get(name)?,
            _ => return None,
        }
    }
    Some(cur.clone())
}

// ---------------------------------------------------------------------------------------------
// Scalar functions

/// The scalar functions of SPEC §3.5 except `NODE($k)`, which needs the binding and is an
/// expression of its own in the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScalarFn {
    Abs,
    Ceil,
    Floor,
    Round,
    Sqrt,
    Sin,
    Cos,
    Tan,
    Int,
    Float,
    Str,
    Len,
    Lower,
    Upper,
    Replace,
    Coalesce,
    Cardinality,
}

/// How many arguments a function takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arity {
    Exact(usize),
    AtLeast(usize),
}

impl Arity {
    pub fn accepts(self, n: usize) -> bool {
        match self {
            Arity::Exact(k) => n == k,
            Arity::AtLeast(k) => n >= k,
        }
    }
}

impl fmt::Display for Arity {
    /// "1 argument", "3 arguments", "at least 1 argument": for error messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (prefix, n) = match *self {
            Arity::Exact(n) => ("", n),
            Arity::AtLeast(n) => ("at least ", n),
        };
        let plural = if n == 1 { "" } else { "s" };
        write!(f, "{prefix}{n} argument{plural}")
    }
}

impl ScalarFn {
    pub const ALL: [ScalarFn; 17] = [
        ScalarFn::Abs,
        ScalarFn::Ceil,
        ScalarFn::Floor,
        ScalarFn::Round,
        ScalarFn::Sqrt,
        ScalarFn::Sin,
        ScalarFn::Cos,
        ScalarFn::Tan,
        ScalarFn::Int,
        ScalarFn::Float,
        ScalarFn::Str,
        ScalarFn::Len,
        ScalarFn::Lower,
        ScalarFn::Upper,
        ScalarFn::Replace,
        ScalarFn::Coalesce,
        ScalarFn::Cardinality,
    ];

    /// Case-insensitive lookup (function names are not reserved words, SPEC §6).
    pub fn from_name(name: &str) -> Option<ScalarFn> {
        ScalarFn::ALL
            .iter()
            .copied()
            .find(|f| f.name().eq_ignore_ascii_case(name))
    }

    /// The upper-case name.
    pub fn name(self) -> &'static str {
        match self {
            ScalarFn::Abs => "ABS",
            ScalarFn::Ceil => "CEIL",
            ScalarFn::Floor => "FLOOR",
            ScalarFn::Round => "ROUND",
            ScalarFn::Sqrt => "SQRT",
            ScalarFn::Sin => "SIN",
            ScalarFn::Cos => "COS",
            ScalarFn::Tan => "TAN",
            ScalarFn::Int => "INT",
            ScalarFn::Float => "FLOAT",
            ScalarFn::Str => "STR",
            ScalarFn::Len => "LEN",
            ScalarFn::Lower => "LOWER",
            ScalarFn::Upper => "UPPER",
            ScalarFn::Replace => "REPLACE",
            ScalarFn::Coalesce => "COALESCE",
            ScalarFn::Cardinality => "CARDINALITY",
        }
    }

    pub fn arity(self) -> Arity {
        match self {
            ScalarFn::Replace => Arity::Exact(3),
            ScalarFn::Coalesce => Arity::AtLeast(1),
            _ => Arity::Exact(1),
        }
    }

    /// The result is certainly a number (or NULL): for the static check that an EACH_NODE
    /// group is boolean.
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            ScalarFn::Abs
                | ScalarFn::Ceil
                | ScalarFn::Floor
                | ScalarFn::Round
                | ScalarFn::Sqrt
                | ScalarFn::Sin
                | ScalarFn::Cos
                | ScalarFn::Tan
                | ScalarFn::Int
                | ScalarFn::Float
                | ScalarFn::Len
                | ScalarFn::Cardinality
        )
    }

    /// The result is certainly a string (or NULL).
    pub fn is_string(self) -> bool {
        matches!(
            self,
            ScalarFn::Str | ScalarFn::Lower | ScalarFn::Upper | ScalarFn::Replace
        )
    }
}

impl fmt::Display for ScalarFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Calls `f`. NULL in → NULL out (no warning), except COALESCE. A wrong number of arguments is
/// a plan-time error; should it reach here anyway the result is NULL, without a warning.
pub fn call_scalar(f: ScalarFn, args: &[Val], w: &mut Warnings) -> Val {
    if !f.arity().accepts(args.len()) {
        return None;
    }
    if f == ScalarFn::Coalesce {
        return args.iter().find_map(Clone::clone);
    }
    if f == ScalarFn::Replace {
        return match args {
            [Some(s), Some(from), Some(to)] => replace(s, from, to, w),
            _ => None,
        };
    }
    let [Some(x)] = args else {
        return None;
    };
    match f {
        ScalarFn::Abs
        | ScalarFn::Ceil
        | ScalarFn::Floor
        | ScalarFn::Round
        | ScalarFn::Sqrt
        | ScalarFn::Sin
        | ScalarFn::Cos
        | ScalarFn::Tan => numeric_fn(f, x, w),
        ScalarFn::Int => to_int(x, w),
        ScalarFn::Float => to_float(x, w),
        ScalarFn::Str => Some(Value::Str(to_str(x))),
        ScalarFn::Len | ScalarFn::Lower | ScalarFn::Upper => {
            let Value::Str(s) = x else {
                return warn(w, WarningKind::NotAString);
            };
            match f {
                ScalarFn::Len => count(s.chars().count(), w),
                ScalarFn::Lower => Some(Value::Str(s.to_lowercase())),
                _ => Some(Value::Str(s.to_uppercase())),
            }
        }
        ScalarFn::Cardinality => match x {
            Value::Set(set) => count(set.len(), w),
            _ => warn(w, WarningKind::NotASet),
        },
        // Handled above.
        ScalarFn::Replace | ScalarFn::Coalesce => None,
    }
}

/// A length as an int (cannot exceed i64 on any real machine; checked rather than cast).
fn count(n: usize, w: &mut Warnings) -> Val {
    match i64::try_from(n) {
        Ok(n) => Some(Value::Int(n)),
        Err(_) => warn(w, WarningKind::IntegerOverflow),
    }
}

fn numeric_fn(f: ScalarFn, x: &Value, w: &mut Warnings) -> Val {
    match (f, x) {
        (ScalarFn::Abs, Value::Int(i)) => match i.checked_abs() {
            Some(v) => Some(Value::Int(v)),
            None => warn(w, WarningKind::IntegerOverflow),
        },
        (ScalarFn::Ceil | ScalarFn::Floor | ScalarFn::Round, Value::Int(i)) => Some(Value::Int(*i)),
        (ScalarFn::Abs, Value::Float(v)) => Some(Value::Float(v.abs())),
        (ScalarFn::Ceil, Value::Float(v)) => Some(Value::Float(v.ceil())),
        (ScalarFn::Floor, Value::Float(v)) => Some(Value::Float(v.floor())),
        // f64::round rounds half away from zero, as SPEC §6 asks.
        (ScalarFn::Round, Value::Float(v)) => Some(Value::Float(v.round())),
        _ => {
            let Some(v) = as_f64(x) else {
                return warn(w, WarningKind::NonNumericOperand);
            };
            let r = match f {
                ScalarFn::Sqrt => v.sqrt(),
                ScalarFn::Sin => v.sin(),
                ScalarFn::Cos => v.cos(),
                _ => v.tan(),
            };
            finite(r, w)
        }
    }
}

/// 2^63 as an f64 (exact): floats in [-2^63, 2^63) truncate to an i64.
const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;

/// INT(x): ints stay; floats truncate toward zero; strings `[+-]digits` parse as i64, other
/// decimal float strings parse and truncate. Out of i64 range (including a digit string that
/// does not fit, rather than letting it fall back to a rounded float) is NULL +
/// [`WarningKind::IntegerOverflow`]; anything else is NULL + [`WarningKind::InvalidConversion`].
fn to_int(x: &Value, w: &mut Warnings) -> Val {
    match x {
        Value::Int(i) => Some(Value::Int(*i)),
        Value::Float(f) => float_to_int(*f, w),
        Value::Str(s) if is_int_text(s) => match s.parse::<i64>() {
            Ok(i) => Some(Value::Int(i)),
            Err(_) => warn(w, WarningKind::IntegerOverflow),
        },
        Value::Str(s) if is_float_text(s) => match s.parse::<f64>() {
            // May be infinite ("1e400"): out of range, like any other huge value.
            Ok(f) => float_to_int(f, w),
            Err(_) => warn(w, WarningKind::InvalidConversion),
        },
        _ => warn(w, WarningKind::InvalidConversion),
    }
}

fn float_to_int(f: f64, w: &mut Warnings) -> Val {
    let t = f.trunc();
    // NaN fails both tests.
    if (-TWO_POW_63..TWO_POW_63).contains(&t) {
        // Integral and in range: the cast is exact.
        Some(Value::Int(t as i64))
    } else {
        warn(w, WarningKind::IntegerOverflow)
    }
}

/// FLOAT(x): ints convert (rounding to nearest), floats stay, decimal strings (digits only or
/// with fraction/exponent) parse, correctly rounded. A string too large for f64 is NULL +
/// [`WarningKind::NonFiniteResult`]; anything else is NULL + [`WarningKind::InvalidConversion`].
fn to_float(x: &Value, w: &mut Warnings) -> Val {
    match x {
        Value::Int(i) => Some(Value::Float(*i as f64)),
        Value::Float(f) => Some(Value::Float(*f)),
        Value::Str(s) if is_float_text(s) => match s.parse::<f64>() {
            Ok(f) => finite(f, w),
            Err(_) => warn(w, WarningKind::InvalidConversion),
        },
        _ => warn(w, WarningKind::InvalidConversion),
    }
}

/// `[+-]?digits`, ASCII digits only, nothing around it.
fn is_int_text(s: &str) -> bool {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// A decimal number: `[+-]? (digits [. digits?] | . digits) ([eE] [+-]? digits)?`. Checked
/// here rather than left to `f64::from_str`, which also takes `inf`, `infinity` and `nan`
/// (words that must not become numbers) and has no notion of "no trimming".
fn is_float_text(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let digits_from = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    if matches!(b.get(i), Some(b'+' | b'-')) {
        i += 1;
    }
    let mut mantissa_digits = digits_from(&mut i);
    if b.get(i) == Some(&b'.') {
        i += 1;
        mantissa_digits += digits_from(&mut i);
    }
    if mantissa_digits == 0 {
        return false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits_from(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// REPLACE(s, from, to); replacing the empty string changes nothing (rather than inserting
/// `to` between every character, as `str::replace` would).
fn replace(s: &Value, from: &Value, to: &Value, w: &mut Warnings) -> Val {
    let (Value::Str(s), Value::Str(from), Value::Str(to)) = (s, from, to) else {
        return warn(w, WarningKind::NotAString);
    };
    if from.is_empty() {
        return Some(Value::Str(s.clone()));
    }
    Some(Value::Str(s.replace(from.as_str(), to)))
}

/// The text STR() gives: strings unchanged, everything else in its canonical output form
/// (ints in decimal, floats always with a `.` or an exponent, `true`/`false`, sets and structs
/// as canonical JSON).
pub fn to_str(v: &Value) -> String {
    match v {
        Value::Str(s) => s.clone(),
        _ => v.to_json(),
    }
}

// ---------------------------------------------------------------------------------------------
// Aggregates

/// The aggregates of SPEC §3.3. `COUNT(*)` is |P(t)| and needs no argument values; the plan
/// marks it by a missing argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AggFn {
    Count,
    Sum,
    Min,
    Max,
    Avg,
    CountDistinct,
}

impl AggFn {
    pub const ALL: [AggFn; 6] = [
        AggFn::Count,
        AggFn::Sum,
        AggFn::Min,
        AggFn::Max,
        AggFn::Avg,
        AggFn::CountDistinct,
    ];

    /// Case-insensitive lookup.
    pub fn from_name(name: &str) -> Option<AggFn> {
        AggFn::ALL
            .iter()
            .copied()
            .find(|f| f.name().eq_ignore_ascii_case(name))
    }

    /// The upper-case name.
    pub fn name(self) -> &'static str {
        match self {
            AggFn::Count => "COUNT",
            AggFn::Sum => "SUM",
            AggFn::Min => "MIN",
            AggFn::Max => "MAX",
            AggFn::Avg => "AVG",
            AggFn::CountDistinct => "COUNT_DISTINCT",
        }
    }
}

impl fmt::Display for AggFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `f` over `inputs`: the argument's value on each node of P(t), in node-id order (NULLs
/// included; they are skipped). The order matters only for MIN/MAX ties, where the first
/// input wins.
pub fn aggregate(f: AggFn, inputs: &[Val], w: &mut Warnings) -> Val {
    let values = inputs.iter().flatten();
    match f {
        AggFn::Count => count(values.count(), w),
        AggFn::CountDistinct => {
            let distinct: HashSet<ValueKey> = values.cloned().map(ValueKey).collect();
            count(distinct.len(), w)
        }
        AggFn::Sum | AggFn::Avg => {
            let mut acc = ExactSum::new();
            let mut n: u64 = 0;
            let mut any_float = false;
            for v in values {
                match v {
                    Value::Int(i) => acc.add_i64(*i),
                    Value::Float(x) => {
                        acc.add_f64(*x);
                        any_float = true;
                    }
                    _ => return warn(w, WarningKind::InvalidAggregateInput),
                }
                n += 1;
            }
            if f == AggFn::Avg {
                if n == 0 {
                    return None;
                }
                // The mean of finite values is within their range, so this cannot overflow.
                return match acc.mean(n) {
                    Some(m) => finite(m, w),
                    None => warn(w, WarningKind::NonFiniteResult),
                };
            }
            if any_float {
                match acc.to_f64() {
                    Some(s) => finite(s, w),
                    None => warn(w, WarningKind::NonFiniteResult),
                }
            } else {
                match acc.to_i64() {
                    Some(s) => Some(Value::Int(s)),
                    None => warn(w, WarningKind::IntegerOverflow),
                }
            }
        }
        AggFn::Min | AggFn::Max => {
            let mut best: Option<&Value> = None;
            for v in values {
                let orderable = matches!(v, Value::Int(_) | Value::Float(_) | Value::Str(_));
                let Some(b) = best else {
                    if !orderable {
                        return warn(w, WarningKind::InvalidAggregateInput);
                    }
                    best = Some(v);
                    continue;
                };
                // Numbers with numbers (exactly), strings with strings (bytes); None for any
                // other pair, including a number with a string.
                let Some(o) = v.sql_cmp(b) else {
                    return warn(w, WarningKind::InvalidAggregateInput);
                };
                // Strictly better only: ties keep the earlier input, and its kind.
                if (f == AggFn::Min && o.is_lt()) || (f == AggFn::Max && o.is_gt()) {
                    best = Some(v);
                }
            }
            best.cloned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use log_server::SetValue;
    use std::collections::BTreeMap;

    use WarningKind as K;

    fn i(x: i64) -> Val {
        Some(Value::Int(x))
    }
    fn f(x: f64) -> Val {
        Some(Value::Float(x))
    }
    fn s(x: &str) -> Val {
        Some(Value::Str(x.to_string()))
    }
    fn b(x: bool) -> Val {
        Some(Value::Bool(x))
    }
    fn set(xs: Vec<Value>) -> Val {
        SetValue::from_values(xs).ok().map(Value::Set)
    }
    fn st(fields: &[(&str, Value)]) -> Val {
        Some(Value::Struct(
            fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<BTreeMap<_, _>>(),
        ))
    }

    /// Runs `op` with fresh warnings; returns the result and the single warning (if any).
    fn run(op: impl FnOnce(&mut Warnings) -> Val) -> (Val, Option<WarningKind>) {
        let mut w = Warnings::new();
        let r = op(&mut w);
        assert!(w.total() <= 1, "more than one warning: {w:?}");
        let kind = w.iter().next().map(|(k, _)| k);
        (r, kind)
    }

    fn ar(op: ArithOp, a: Val, b: Val) -> (Val, Option<WarningKind>) {
        run(|w| arith(op, &a, &b, w))
    }

    fn cmp(op: CmpOp, a: Val, b: Val) -> (Val, Option<WarningKind>) {
        run(|w| compare(op, &a, &b, w))
    }

    fn call(fun: ScalarFn, args: Vec<Val>) -> (Val, Option<WarningKind>) {
        run(|w| call_scalar(fun, &args, w))
    }

    fn agg(fun: AggFn, inputs: Vec<Val>) -> (Val, Option<WarningKind>) {
        run(|w| aggregate(fun, &inputs, w))
    }

    /// Representation equality, so an int result is not mistaken for a float.
    fn same(got: (Val, Option<WarningKind>), want: (Val, Option<WarningKind>)) {
        assert_eq!(got, want);
    }

    use ArithOp::*;

    #[test]
    fn int_arithmetic_is_checked() {
        same(ar(Add, i(2), i(3)), (i(5), None));
        same(ar(Sub, i(2), i(3)), (i(-1), None));
        same(ar(Mul, i(-4), i(3)), (i(-12), None));
        same(ar(Add, i(i64::MAX), i(1)), (None, Some(K::IntegerOverflow)));
        same(ar(Sub, i(i64::MIN), i(1)), (None, Some(K::IntegerOverflow)));
        same(
            ar(Mul, i(1 << 32), i(1 << 31)),
            (None, Some(K::IntegerOverflow)),
        );
        same(ar(Mul, i(-(1 << 32)), i(1 << 31)), (i(i64::MIN), None));
        same(
            ar(Mul, i(i64::MIN), i(-1)),
            (None, Some(K::IntegerOverflow)),
        );
    }

    #[test]
    fn division_is_always_float() {
        same(ar(Div, i(7), i(2)), (f(3.5), None));
        same(ar(Div, i(6), i(3)), (f(2.0), None));
        same(ar(Div, f(1.0), i(4)), (f(0.25), None));
        // Both operands convert to f64 first.
        same(
            ar(Div, i(9007199254740993), i(1)),
            (f(9007199254740992.0), None),
        );
        same(ar(Div, i(1), i(0)), (None, Some(K::DivisionByZero)));
        same(ar(Div, f(1.0), f(0.0)), (None, Some(K::DivisionByZero)));
        same(ar(Div, f(1.0), f(-0.0)), (None, Some(K::DivisionByZero)));
        same(ar(Div, f(0.0), i(0)), (None, Some(K::DivisionByZero)));
        same(
            ar(Div, f(1e308), f(1e-10)),
            (None, Some(K::NonFiniteResult)),
        );
    }

    #[test]
    fn modulo_is_truncated() {
        same(ar(Mod, i(7), i(2)), (i(1), None));
        same(ar(Mod, i(-7), i(2)), (i(-1), None));
        same(ar(Mod, i(7), i(-2)), (i(1), None));
        same(ar(Mod, i(i64::MIN), i(-1)), (i(0), None));
        same(ar(Mod, i(5), i(0)), (None, Some(K::DivisionByZero)));
        same(ar(Mod, f(-7.5), i(2)), (f(-1.5), None));
        same(ar(Mod, f(7.5), f(-2.0)), (f(1.5), None));
        same(ar(Mod, f(5.0), f(0.0)), (None, Some(K::DivisionByZero)));
        same(ar(Mod, i(5), f(0.0)), (None, Some(K::DivisionByZero)));
        same(ar(Mod, f(5.5), i(0)), (None, Some(K::DivisionByZero)));
    }

    #[test]
    fn mixed_and_float_arithmetic() {
        same(ar(Add, i(1), f(0.5)), (f(1.5), None));
        same(ar(Add, i(1), f(1.0)), (f(2.0), None));
        same(ar(Mul, f(2.0), i(3)), (f(6.0), None));
        same(ar(Sub, f(0.5), f(0.25)), (f(0.25), None));
        same(
            ar(Add, f(1e308), f(1e308)),
            (None, Some(K::NonFiniteResult)),
        );
        same(ar(Mul, f(-1e308), i(10)), (None, Some(K::NonFiniteResult)));
    }

    #[test]
    fn non_numeric_operands_warn_null_operands_do_not() {
        let others = [
            s("1"),
            b(true),
            set(vec![Value::Int(1)]),
            st(&[("a", Value::Int(1))]),
        ];
        for op in [Add, Sub, Mul, Div, Mod] {
            for o in &others {
                same(ar(op, i(1), o.clone()), (None, Some(K::NonNumericOperand)));
                same(
                    ar(op, o.clone(), f(1.0)),
                    (None, Some(K::NonNumericOperand)),
                );
                same(
                    ar(op, o.clone(), o.clone()),
                    (None, Some(K::NonNumericOperand)),
                );
                same(ar(op, None, o.clone()), (None, None));
                same(ar(op, o.clone(), None), (None, None));
            }
            same(ar(op, None, i(1)), (None, None));
            same(ar(op, f(1.0), None), (None, None));
            same(ar(op, None, None), (None, None));
            // NULL wins over a zero divisor too.
            same(ar(op, None, i(0)), (None, None));
        }
    }

    #[test]
    fn unary_minus() {
        same(run(|w| neg(&i(5), w)), (i(-5), None));
        same(run(|w| neg(&i(i64::MAX), w)), (i(-i64::MAX), None));
        same(
            run(|w| neg(&i(i64::MIN), w)),
            (None, Some(K::IntegerOverflow)),
        );
        same(run(|w| neg(&f(2.5), w)), (f(-2.5), None));
        same(run(|w| neg(&s("x"), w)), (None, Some(K::NonNumericOperand)));
        same(
            run(|w| neg(&b(true), w)),
            (None, Some(K::NonNumericOperand)),
        );
        same(run(|w| neg(&None, w)), (None, None));
    }

    use CmpOp::*;

    #[test]
    fn numbers_compare_exactly() {
        same(
            cmp(Gt, i(9007199254740993), f(9007199254740992.0)),
            (b(true), None),
        );
        same(
            cmp(Eq, i(9007199254740993), f(9007199254740992.0)),
            (b(false), None),
        );
        same(
            cmp(Eq, f(9007199254740992.0), i(9007199254740992)),
            (b(true), None),
        );
        same(cmp(Eq, i(1), f(1.0)), (b(true), None));
        same(cmp(NotEq, i(1), f(1.0)), (b(false), None));
        same(cmp(Lt, i(1), f(1.5)), (b(true), None));
        same(cmp(LtEq, f(1.0), i(1)), (b(true), None));
        same(
            cmp(GtEq, i(i64::MAX), f(9223372036854775808.0)),
            (b(false), None),
        );
        same(cmp(Eq, f(-0.0), i(0)), (b(true), None));
    }

    #[test]
    fn strings_compare_by_bytes() {
        same(cmp(Lt, s("B"), s("a")), (b(true), None));
        same(cmp(Gt, s("é"), s("z")), (b(true), None));
        same(cmp(Eq, s("a"), s("a")), (b(true), None));
        same(cmp(LtEq, s(""), s("a")), (b(true), None));
        same(cmp(NotEq, s("a"), s("A")), (b(true), None));
    }

    #[test]
    fn booleans_sets_structs_only_equality() {
        same(cmp(Eq, b(true), b(true)), (b(true), None));
        same(cmp(NotEq, b(true), b(false)), (b(true), None));
        let a = set(vec![Value::Int(1), Value::Str("x".into())]);
        let a2 = set(vec![Value::Str("x".into()), Value::Float(1.0)]);
        let c = set(vec![Value::Int(1)]);
        same(cmp(Eq, a.clone(), a2.clone()), (b(true), None));
        same(cmp(NotEq, a.clone(), c.clone()), (b(true), None));
        let s1 = st(&[("f", Value::Int(2))]);
        let s2 = st(&[("f", Value::Float(2.0))]);
        let s3 = st(&[("f", Value::Str("2".into()))]);
        same(cmp(Eq, s1.clone(), s2.clone()), (b(true), None));
        same(cmp(Eq, s1.clone(), s3.clone()), (b(false), None));
        for op in [Lt, LtEq, Gt, GtEq] {
            same(
                cmp(op, b(false), b(true)),
                (None, Some(K::UnorderedComparison)),
            );
            same(
                cmp(op, a.clone(), c.clone()),
                (None, Some(K::UnorderedComparison)),
            );
            same(
                cmp(op, s1.clone(), s2.clone()),
                (None, Some(K::UnorderedComparison)),
            );
        }
    }

    #[test]
    fn different_kinds_are_incomparable() {
        let vals = [
            i(1),
            s("1"),
            b(true),
            set(vec![Value::Int(1)]),
            st(&[("a", Value::Int(1))]),
        ];
        for op in [Eq, NotEq, Lt, LtEq, Gt, GtEq] {
            for (x, a) in vals.iter().enumerate() {
                for (y, c) in vals.iter().enumerate() {
                    if x != y {
                        same(
                            cmp(op, a.clone(), c.clone()),
                            (None, Some(K::IncomparableKinds)),
                        );
                    }
                }
                same(cmp(op, a.clone(), None), (None, None));
                same(cmp(op, None, a.clone()), (None, None));
            }
        }
        same(
            cmp(Eq, f(1.0), s("1.0")),
            (None, Some(K::IncomparableKinds)),
        );
    }

    #[test]
    fn truth_and_logic() {
        let mut w = Warnings::new();
        assert_eq!(truth(&b(true), &mut w), Some(true));
        assert_eq!(truth(&b(false), &mut w), Some(false));
        assert_eq!(truth(&None, &mut w), None);
        assert!(w.is_empty());
        assert_eq!(truth(&i(1), &mut w), None);
        assert_eq!(truth(&s("true"), &mut w), None);
        assert_eq!(w.get(K::NonBooleanOperand), 2);

        let t = Some(true);
        let fa = Some(false);
        let n = None;
        assert_eq!(and3(t, t), t);
        assert_eq!(and3(t, fa), fa);
        assert_eq!(and3(fa, n), fa);
        assert_eq!(and3(n, fa), fa);
        assert_eq!(and3(t, n), n);
        assert_eq!(and3(n, n), n);
        assert_eq!(or3(fa, fa), fa);
        assert_eq!(or3(t, n), t);
        assert_eq!(or3(n, t), t);
        assert_eq!(or3(fa, n), n);
        assert_eq!(or3(n, n), n);
        assert_eq!(not3(t), fa);
        assert_eq!(not3(fa), t);
        assert_eq!(not3(n), n);
    }

    #[test]
    fn in_list_is_sql_in() {
        let r = |x: Val, items: Vec<Val>| run(|w| in_list(&x, &items, w));
        same(r(i(1), vec![i(3), f(1.0)]), (b(true), None));
        same(r(i(1), vec![i(3), i(4)]), (b(false), None));
        same(r(i(1), vec![i(3), None]), (None, None));
        same(r(i(1), vec![None, i(1)]), (b(true), None));
        same(r(None, vec![i(1)]), (None, None));
        // A kind mismatch is a NULL comparison (and a warning)...
        same(
            r(i(1), vec![s("1"), i(2)]),
            (None, Some(K::IncomparableKinds)),
        );
        // ...unless some item matches (warning counts may vary with evaluation order).
        let mut w = Warnings::new();
        assert_eq!(in_list(&i(1), &[s("1"), i(1)], &mut w), b(true));
        // `x IN (s)` is `x = s`, structurally for sets.
        let a = set(vec![Value::Int(1), Value::Int(2)]);
        let a2 = set(vec![Value::Float(2.0), Value::Int(1)]);
        same(r(a.clone(), vec![a2]), (b(true), None));
        same(r(i(1), vec![a.clone()]), (None, Some(K::IncomparableKinds)));
    }

    #[test]
    fn in_set_is_membership() {
        let r = |x: Val, s_: Val| run(|w| in_set(&x, &s_, w));
        let a = set(vec![
            Value::Int(1),
            Value::Str("n1".into()),
            Value::Bool(true),
        ]);
        same(r(f(1.0), a.clone()), (b(true), None));
        same(r(i(1), a.clone()), (b(true), None));
        same(r(s("n1"), a.clone()), (b(true), None));
        same(r(b(true), a.clone()), (b(true), None));
        same(r(i(2), a.clone()), (b(false), None));
        // Never NULL for a non-NULL x, whatever its kind.
        same(r(s("1"), a.clone()), (b(false), None));
        same(r(b(false), a.clone()), (b(false), None));
        same(r(a.clone(), a.clone()), (b(false), None));
        same(r(st(&[]), a.clone()), (b(false), None));
        same(r(i(1), set(vec![])), (b(false), None));
        same(r(None, a.clone()), (None, None));
        same(r(i(1), None), (None, None));
        same(r(i(1), i(1)), (None, Some(K::NotASet)));
        same(r(s("a"), s("abc")), (None, Some(K::NotASet)));
        same(
            r(i(1), st(&[("a", Value::Int(1))])),
            (None, Some(K::NotASet)),
        );
    }

    #[test]
    fn struct_fields() {
        let inner = st(&[("g", Value::Int(7))]).unwrap_or(Value::Int(0));
        let v = st(&[("f", inner), ("h", Value::Str("x".into()))]);
        let p = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(field(&v, &p(&["f", "g"])), i(7));
        assert_eq!(field(&v, &p(&["h"])), s("x"));
        assert_eq!(field(&v, &p(&["nope"])), None);
        assert_eq!(field(&v, &p(&["h", "x"])), None);
        assert_eq!(field(&v, &p(&["f", "g", "z"])), None);
        assert_eq!(field(&v, &[]), v);
        assert_eq!(field(&i(1), &p(&["a"])), None);
        assert_eq!(field(&None, &p(&["a"])), None);
    }

    use ScalarFn as F;

    #[test]
    fn function_names_and_arity() {
        assert_eq!(ScalarFn::from_name("abs"), Some(F::Abs));
        assert_eq!(ScalarFn::from_name("Coalesce"), Some(F::Coalesce));
        assert_eq!(ScalarFn::from_name("NODE"), None);
        assert_eq!(ScalarFn::from_name("count"), None);
        for fun in ScalarFn::ALL {
            assert_eq!(ScalarFn::from_name(fun.name()), Some(fun));
            assert_eq!(ScalarFn::from_name(&fun.name().to_lowercase()), Some(fun));
            assert!(!(fun.is_numeric() && fun.is_string()));
        }
        assert_eq!(F::Replace.arity(), Arity::Exact(3));
        assert_eq!(F::Coalesce.arity(), Arity::AtLeast(1));
        assert_eq!(F::Round.arity(), Arity::Exact(1));
        assert!(F::Coalesce.arity().accepts(3));
        assert!(!F::Coalesce.arity().accepts(0));
        assert!(!F::Round.arity().accepts(2));
        assert_eq!(Arity::Exact(1).to_string(), "1 argument");
        assert_eq!(Arity::AtLeast(2).to_string(), "at least 2 arguments");
        assert!(F::Len.is_numeric() && F::Cardinality.is_numeric() && F::Int.is_numeric());
        assert!(F::Str.is_string() && F::Replace.is_string());
        assert!(!F::Coalesce.is_numeric() && !F::Coalesce.is_string());
        // A wrong arity reaching run time is NULL, not a panic.
        same(call(F::Round, vec![f(1.5), i(1)]), (None, None));
        same(call(F::Coalesce, vec![]), (None, None));
        same(call(F::Replace, vec![s("a")]), (None, None));
        assert_eq!(
            AggFn::from_name("count_distinct"),
            Some(AggFn::CountDistinct)
        );
        assert_eq!(AggFn::from_name("Avg"), Some(AggFn::Avg));
        assert_eq!(AggFn::from_name("abs"), None);
        for a in AggFn::ALL {
            assert_eq!(AggFn::from_name(a.name()), Some(a));
        }
        assert_eq!(WarningKind::IntegerOverflow.name(), "integer_overflow");
        assert_eq!(WarningKind::NotASet.to_string(), "not_a_set");
    }

    #[test]
    fn null_in_null_out() {
        for fun in ScalarFn::ALL {
            let args = match fun.arity() {
                Arity::Exact(n) | Arity::AtLeast(n) => vec![None; n],
            };
            same(call(fun, args), (None, None));
        }
        same(call(F::Replace, vec![s("a"), None, s("b")]), (None, None));
        same(call(F::Replace, vec![s("a"), s("a"), None]), (None, None));
        same(call(F::Replace, vec![i(1), s("a"), None]), (None, None));
        same(call(F::Coalesce, vec![None, None, i(3)]), (i(3), None));
        same(call(F::Coalesce, vec![None, s("a"), i(3)]), (s("a"), None));
        same(call(F::Coalesce, vec![f(1.0)]), (f(1.0), None));
        same(call(F::Coalesce, vec![None, None]), (None, None));
    }

    #[test]
    fn numeric_functions_keep_kinds() {
        same(call(F::Abs, vec![i(-3)]), (i(3), None));
        same(call(F::Abs, vec![f(-3.5)]), (f(3.5), None));
        same(
            call(F::Abs, vec![i(i64::MIN)]),
            (None, Some(K::IntegerOverflow)),
        );
        same(call(F::Ceil, vec![i(2)]), (i(2), None));
        same(call(F::Ceil, vec![f(2.1)]), (f(3.0), None));
        same(call(F::Floor, vec![f(-2.1)]), (f(-3.0), None));
        same(call(F::Floor, vec![i(-2)]), (i(-2), None));
        same(call(F::Round, vec![i(2)]), (i(2), None));
        same(call(F::Round, vec![f(2.5)]), (f(3.0), None));
        same(call(F::Round, vec![f(-2.5)]), (f(-3.0), None));
        same(call(F::Round, vec![f(2.4999)]), (f(2.0), None));
        same(call(F::Round, vec![f(0.49999999999999994)]), (f(0.0), None));
        same(call(F::Sqrt, vec![i(4)]), (f(2.0), None));
        same(call(F::Sqrt, vec![f(2.25)]), (f(1.5), None));
        same(call(F::Sqrt, vec![i(-1)]), (None, Some(K::NonFiniteResult)));
        same(call(F::Sin, vec![i(0)]), (f(0.0), None));
        same(call(F::Cos, vec![f(0.0)]), (f(1.0), None));
        same(call(F::Tan, vec![i(0)]), (f(0.0), None));
        for fun in [
            F::Abs,
            F::Ceil,
            F::Floor,
            F::Round,
            F::Sqrt,
            F::Sin,
            F::Cos,
            F::Tan,
        ] {
            same(call(fun, vec![s("1")]), (None, Some(K::NonNumericOperand)));
            same(call(fun, vec![b(true)]), (None, Some(K::NonNumericOperand)));
            same(
                call(fun, vec![set(vec![])]),
                (None, Some(K::NonNumericOperand)),
            );
        }
    }

    #[test]
    fn int_conversion() {
        same(call(F::Int, vec![i(7)]), (i(7), None));
        same(call(F::Int, vec![f(-3.9)]), (i(-3), None));
        same(call(F::Int, vec![f(3.9)]), (i(3), None));
        same(call(F::Int, vec![f(-0.5)]), (i(0), None));
        same(
            call(F::Int, vec![f(-9223372036854775808.0)]),
            (i(i64::MIN), None),
        );
        same(
            call(F::Int, vec![f(9223372036854775808.0)]),
            (None, Some(K::IntegerOverflow)),
        );
        same(
            call(F::Int, vec![f(1e300)]),
            (None, Some(K::IntegerOverflow)),
        );
        same(call(F::Int, vec![s("12")]), (i(12), None));
        same(call(F::Int, vec![s("+12")]), (i(12), None));
        same(call(F::Int, vec![s("-0")]), (i(0), None));
        same(
            call(F::Int, vec![s("9223372036854775807")]),
            (i(i64::MAX), None),
        );
        same(
            call(F::Int, vec![s("-9223372036854775808")]),
            (i(i64::MIN), None),
        );
        // Digits out of range overflow rather than going through a rounded float (which would
        // make -2^63 - 1 read as -2^63).
        same(
            call(F::Int, vec![s("-9223372036854775809")]),
            (None, Some(K::IntegerOverflow)),
        );
        same(
            call(F::Int, vec![s("99999999999999999999")]),
            (None, Some(K::IntegerOverflow)),
        );
        same(call(F::Int, vec![s("-3.9")]), (i(-3), None));
        same(call(F::Int, vec![s("1e3")]), (i(1000), None));
        same(call(F::Int, vec![s("2.5E-1")]), (i(0), None));
        same(call(F::Int, vec![s(".5")]), (i(0), None));
        same(call(F::Int, vec![s("5.")]), (i(5), None));
        same(
            call(F::Int, vec![s("1e400")]),
            (None, Some(K::IntegerOverflow)),
        );
        for bad in [
            " 1", "1 ", "", "+", "-", ".", "e5", "1e", "1e+", "1.2.3", "0x10", "1_000", "inf",
            "-inf", "infinity", "Infinity", "nan", "NaN", "１", "1,5", "--1", "+-1",
        ] {
            same(
                call(F::Int, vec![s(bad)]),
                (None, Some(K::InvalidConversion)),
            );
        }
        same(
            call(F::Int, vec![b(true)]),
            (None, Some(K::InvalidConversion)),
        );
        same(
            call(F::Int, vec![set(vec![Value::Int(1)])]),
            (None, Some(K::InvalidConversion)),
        );
        same(
            call(F::Int, vec![st(&[])]),
            (None, Some(K::InvalidConversion)),
        );
    }

    #[test]
    fn float_conversion() {
        same(call(F::Float, vec![i(2)]), (f(2.0), None));
        same(
            call(F::Float, vec![i(9007199254740993)]),
            (f(9007199254740992.0), None),
        );
        same(call(F::Float, vec![f(2.5)]), (f(2.5), None));
        same(call(F::Float, vec![s("12")]), (f(12.0), None));
        same(call(F::Float, vec![s("-3.9")]), (f(-3.9), None));
        same(call(F::Float, vec![s("0.1")]), (f(0.1), None));
        same(call(F::Float, vec![s("1e-400")]), (f(0.0), None));
        same(
            call(F::Float, vec![s("99999999999999999999")]),
            (f(1e20), None),
        );
        same(
            call(F::Float, vec![s("1e400")]),
            (None, Some(K::NonFiniteResult)),
        );
        for bad in [" 1", "1\n", "inf", "NaN", "infinity", "abc", "", "1e"] {
            same(
                call(F::Float, vec![s(bad)]),
                (None, Some(K::InvalidConversion)),
            );
        }
        same(
            call(F::Float, vec![b(false)]),
            (None, Some(K::InvalidConversion)),
        );
    }

    #[test]
    fn str_function() {
        same(call(F::Str, vec![i(-12)]), (s("-12"), None));
        same(call(F::Str, vec![f(3.0)]), (s("3.0"), None));
        same(call(F::Str, vec![f(0.1)]), (s("0.1"), None));
        // Exactly the output form (log-server decides the exponent style), and never int-like.
        let (big, warning) = call(F::Str, vec![f(1e16)]);
        assert_eq!(warning, None);
        assert_eq!(big, s(&Value::Float(1e16).to_json()));
        let Some(Value::Str(text)) = big else {
            panic!("STR gave {big:?}");
        };
        assert!(text.contains(['.', 'e']));
        assert_eq!(text.parse::<f64>().ok(), Some(1e16));
        same(call(F::Str, vec![b(true)]), (s("true"), None));
        same(call(F::Str, vec![s("a\"b")]), (s("a\"b"), None));
        same(
            call(
                F::Str,
                vec![set(vec![
                    Value::Str("x".into()),
                    Value::Int(2),
                    Value::Bool(false),
                ])],
            ),
            (s(r#"[false,2,"x"]"#), None),
        );
        same(
            call(
                F::Str,
                vec![st(&[
                    ("b", Value::Float(1.0)),
                    ("a", Value::Str("q".into())),
                ])],
            ),
            (s(r#"{"a":"q","b":1.0}"#), None),
        );
    }

    #[test]
    fn string_functions() {
        same(call(F::Len, vec![s("héllo")]), (i(5), None));
        same(call(F::Len, vec![s("")]), (i(0), None));
        same(call(F::Len, vec![s("👍🏽")]), (i(2), None));
        same(call(F::Lower, vec![s("ÀBC")]), (s("àbc"), None));
        same(call(F::Upper, vec![s("straße")]), (s("STRASSE"), None));
        same(
            call(F::Replace, vec![s("a-b-c"), s("-"), s("+")]),
            (s("a+b+c"), None),
        );
        same(
            call(F::Replace, vec![s("abc"), s(""), s("x")]),
            (s("abc"), None),
        );
        same(call(F::Replace, vec![s(""), s("a"), s("x")]), (s(""), None));
        same(call(F::Replace, vec![s(""), s(""), s("x")]), (s(""), None));
        same(
            call(F::Replace, vec![s("aaa"), s("aa"), s("b")]),
            (s("ba"), None),
        );
        for fun in [F::Len, F::Lower, F::Upper] {
            same(call(fun, vec![i(1)]), (None, Some(K::NotAString)));
            same(call(fun, vec![set(vec![])]), (None, Some(K::NotAString)));
        }
        same(
            call(F::Replace, vec![s("a"), i(1), s("b")]),
            (None, Some(K::NotAString)),
        );
        same(
            call(F::Replace, vec![b(true), s("t"), s("b")]),
            (None, Some(K::NotAString)),
        );
    }

    #[test]
    fn cardinality() {
        same(
            call(
                F::Cardinality,
                vec![set(vec![Value::Int(1), Value::Float(1.0), Value::Int(2)])],
            ),
            (i(2), None),
        );
        same(call(F::Cardinality, vec![set(vec![])]), (i(0), None));
        same(
            call(F::Cardinality, vec![s("ab")]),
            (None, Some(K::NotASet)),
        );
        same(
            call(F::Cardinality, vec![st(&[])]),
            (None, Some(K::NotASet)),
        );
    }

    use AggFn as A;

    #[test]
    fn aggregates_on_empty_input() {
        for inputs in [vec![], vec![None, None]] {
            same(agg(A::Count, inputs.clone()), (i(0), None));
            same(agg(A::CountDistinct, inputs.clone()), (i(0), None));
            same(agg(A::Sum, inputs.clone()), (i(0), None));
            same(agg(A::Min, inputs.clone()), (None, None));
            same(agg(A::Max, inputs.clone()), (None, None));
            same(agg(A::Avg, inputs.clone()), (None, None));
        }
    }

    #[test]
    fn count_and_count_distinct() {
        same(
            agg(A::Count, vec![i(1), None, s("a"), b(false)]),
            (i(3), None),
        );
        same(
            agg(A::CountDistinct, vec![i(1), f(1.0), i(2), None]),
            (i(2), None),
        );
        same(
            agg(
                A::CountDistinct,
                vec![
                    s("a"),
                    s("a"),
                    b(true),
                    f(-0.0),
                    i(0),
                    set(vec![Value::Int(1)]),
                    set(vec![Value::Float(1.0)]),
                ],
            ),
            (i(4), None),
        );
    }

    #[test]
    fn sum() {
        same(agg(A::Sum, vec![i(1), None, i(2)]), (i(3), None));
        // Overflows mid-way but ends in range: still an int.
        same(
            agg(A::Sum, vec![i(i64::MAX), i(10), i(-20)]),
            (i(i64::MAX - 10), None),
        );
        same(
            agg(A::Sum, vec![i(i64::MIN), i(-1), i(1)]),
            (i(i64::MIN), None),
        );
        same(
            agg(A::Sum, vec![i(i64::MAX), i(1)]),
            (None, Some(K::IntegerOverflow)),
        );
        same(agg(A::Sum, vec![i(1), f(2.0)]), (f(3.0), None));
        same(agg(A::Sum, vec![f(0.1), f(0.2), f(0.3)]), (f(0.6), None));
        same(
            agg(A::Sum, vec![f(1e308), f(1e308), f(-1e308)]),
            (f(1e308), None),
        );
        same(agg(A::Sum, vec![f(1e16), i(1), f(-1e16)]), (f(1.0), None));
        same(
            agg(A::Sum, vec![f(1e308), f(1e308)]),
            (None, Some(K::NonFiniteResult)),
        );
        // Ints beyond i64 in the middle are fine for a float sum too.
        same(
            agg(A::Sum, vec![i(i64::MAX), i(i64::MAX), f(0.5)]),
            (f(18446744073709551614.0), None),
        );
        same(
            agg(A::Sum, vec![i(1), s("2")]),
            (None, Some(K::InvalidAggregateInput)),
        );
        same(
            agg(A::Sum, vec![b(true)]),
            (None, Some(K::InvalidAggregateInput)),
        );
    }

    #[test]
    fn avg() {
        same(agg(A::Avg, vec![i(1), i(2)]), (f(1.5), None));
        same(agg(A::Avg, vec![i(2), None, i(2)]), (f(2.0), None));
        same(agg(A::Avg, vec![f(1e308), f(1e308)]), (f(1e308), None));
        same(
            agg(A::Avg, vec![i(i64::MAX), i(i64::MAX)]),
            (f(9223372036854775807.0), None),
        );
        // The exact mean of 0.1, 0.2, 0.3 is 0.2000000000000000018503717077085942 -> 0.2.
        same(agg(A::Avg, vec![f(0.1), f(0.2), f(0.3)]), (f(0.2), None));
        same(
            agg(A::Avg, vec![i(1), set(vec![])]),
            (None, Some(K::InvalidAggregateInput)),
        );
    }

    #[test]
    fn min_max() {
        same(agg(A::Min, vec![f(1.0), i(1)]), (f(1.0), None));
        same(agg(A::Min, vec![i(1), f(1.0)]), (i(1), None));
        same(agg(A::Max, vec![f(1.0), i(1)]), (f(1.0), None));
        same(agg(A::Max, vec![i(3), None, f(3.5), i(-1)]), (f(3.5), None));
        same(agg(A::Min, vec![i(3), None, f(3.5), i(-1)]), (i(-1), None));
        same(
            agg(
                A::Max,
                vec![
                    f(9007199254740992.0),
                    i(9007199254740993),
                    f(9007199254740992.0),
                ],
            ),
            (i(9007199254740993), None),
        );
        same(agg(A::Min, vec![s("b"), s("B"), s("a")]), (s("B"), None));
        same(agg(A::Max, vec![s("z"), s("é")]), (s("é"), None));
        same(agg(A::Max, vec![None, s("z")]), (s("z"), None));
        same(
            agg(A::Max, vec![i(1), s("a")]),
            (None, Some(K::InvalidAggregateInput)),
        );
        same(
            agg(A::Min, vec![s("a"), f(1.0)]),
            (None, Some(K::InvalidAggregateInput)),
        );
        same(
            agg(A::Min, vec![b(true), b(false)]),
            (None, Some(K::InvalidAggregateInput)),
        );
        same(
            agg(A::Max, vec![i(1), b(false)]),
            (None, Some(K::InvalidAggregateInput)),
        );
        same(
            agg(A::Max, vec![set(vec![])]),
            (None, Some(K::InvalidAggregateInput)),
        );
    }

    #[test]
    fn warnings_accumulate_and_merge() {
        let mut a = Warnings::new();
        assert!(a.is_empty());
        a.add(K::DivisionByZero);
        a.add(K::DivisionByZero);
        a.add(K::NotASet);
        let mut c = Warnings::new();
        c.add(K::IntegerOverflow);
        c.add(K::NotASet);
        a.merge(&c);
        assert_eq!(
            a.iter().collect::<Vec<_>>(),
            vec![
                (K::IntegerOverflow, 1),
                (K::DivisionByZero, 2),
                (K::NotASet, 2)
            ]
        );
        assert_eq!(a.total(), 5);
        assert!(!a.is_empty());
        assert_eq!(a.get(K::NonFiniteResult), 0);
        let names: HashSet<&str> = WarningKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names.len(), WarningKind::ALL.len());
        for (n, k) in WarningKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), n);
        }
    }
}
