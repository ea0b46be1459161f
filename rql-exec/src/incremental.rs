//! Parts of a query kept up to date from the nodes each step touches, so a step costs work in
//! proportion to what it changed, not to the size of the cluster:
//! - [`AggState`]: an aggregate over P(t) (COUNT/SUM/AVG/COUNT_DISTINCT in O(1) per touched
//!   node, MIN/MAX in O(log N) with an ordered multiset);
//! - [`NodeTruth`]: a per-node cached truth value of a node-local condition, with the count and
//!   the ordered set of nodes where it holds (EACH_NODE groups, and a one-unit WHEN);
//! - [`Extremes`]: per variable, the ordered multiset of its numeric values over P(t).
//!
//! Each is told about a node with `update(n)` whenever the node's P(t) membership or one of the
//! query's variables on it changed; each keeps the node's previous contribution so it can be
//! taken back exactly.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use log_server::{Value, ValueKey};

use rql_planner::exact_sum::ExactSum;
use rql_planner::ops::{AggFn, Val, WarningKind, Warnings};

use crate::columnar::{NodeIdx, VarIdx};
use crate::compile::{eval, holds, CExpr, Env};
use crate::state::CutState;

/// A cheap exact order over numbers (ints and floats together) and strings, for the ordered
/// multisets: a number is its nearest f64 plus the int's exact distance from it, so comparing
/// is one float comparison and rarely an integer one, never a slow cross-kind path. Numbers
/// sort before strings; equal numbers (1 and 1.0) have equal keys.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum OrdKey {
    Num(F64Ord, i64),
    Str(String),
}

/// An f64 with a total order; -0.0 is stored as 0.0, and NaN never occurs (values are finite).
#[derive(Clone, Copy, Debug, PartialEq)]
struct F64Ord(f64);

impl Eq for F64Ord {}

impl PartialOrd for F64Ord {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for F64Ord {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl OrdKey {
    /// `None` for values that are neither numbers nor strings.
    fn of(v: &Value) -> Option<OrdKey> {
        Some(match v {
            // Exactly representable: no residual (the common case, no wide arithmetic).
            Value::Int(i) if i.unsigned_abs() <= 1 << 53 => OrdKey::Num(F64Ord(*i as f64 + 0.0), 0),
            Value::Int(i) => {
                let r = *i as f64;
                // |i - r| is at most half an ulp of r, far below 2^63.
                let residual = (*i as i128 - r as i128) as i64;
                OrdKey::Num(F64Ord(r), residual)
            }
            Value::Float(f) => OrdKey::Num(F64Ord(f + 0.0), 0),
            Value::Str(s) => OrdKey::Str(s.clone()),
            _ => return None,
        })
    }
}

/// Nodes by value: each distinct value once, with the nodes holding it. Traces repeat values
/// a lot (versions, small counters), so the tree stays small and a step that moves one node
/// between two existing values does no tree work at all.
#[derive(Default)]
struct ValueIndex {
    map: BTreeMap<OrdKey, Vec<NodeIdx>>,
}

impl ValueIndex {
    fn insert(&mut self, k: OrdKey, n: NodeIdx) {
        self.map.entry(k).or_default().push(n);
    }

    fn remove(&mut self, k: &OrdKey, n: NodeIdx) {
        if let Some(nodes) = self.map.get_mut(k) {
            if let Some(i) = nodes.iter().position(|&m| m == n) {
                nodes.swap_remove(i);
            }
            if nodes.is_empty() {
                self.map.remove(k);
            }
        }
    }

    /// The first node (by id) holding the smallest or largest value.
    fn extreme(&self, max: bool) -> Option<NodeIdx> {
        let (_, nodes) = if max {
            self.map.last_key_value()
        } else {
            self.map.first_key_value()
        }?;
        nodes.iter().copied().min()
    }
}

fn local_env(cut: &CutState, n: NodeIdx) -> Env<'_> {
    Env {
        cut,
        units: &[],
        local: Some(n),
        aggs: &[],
        groups: &[],
    }
}

/// An aggregate maintained incrementally. The inputs are the argument's value on each node of
/// P(t), as for [`ops::aggregate`], and the result is the same value.
pub struct AggState {
    func: AggFn,
    /// `None` for COUNT(*).
    arg: Option<CExpr>,
    /// Each node's current input (`None` = not in P(t) or not counted yet).
    input: Vec<Option<Val>>,
    counted: u64,
    non_null: u64,
    // SUM/AVG
    sum: ExactSum,
    floats: u64,
    numbers: u64,
    non_numeric: u64,
    // MIN/MAX: numbers and strings in one order (numbers sort before strings), ties by node.
    ordered: ValueIndex,
    strings: u64,
    // COUNT_DISTINCT
    distinct: HashMap<ValueKey, u32>,
}

impl AggState {
    pub fn new(func: AggFn, arg: Option<CExpr>, nodes: usize) -> AggState {
        AggState {
            func,
            arg,
            input: vec![None; nodes],
            counted: 0,
            non_null: 0,
            sum: ExactSum::new(),
            floats: 0,
            numbers: 0,
            non_numeric: 0,
            ordered: ValueIndex::default(),
            strings: 0,
            distinct: HashMap::new(),
        }
    }

    pub fn update(&mut self, cut: &CutState, n: NodeIdx, w: &mut Warnings) {
        let new = cut.in_p(n).then(|| match &self.arg {
            Some(arg) => eval(arg, &local_env(cut, n), w),
            None => None,
        });
        let old = &self.input[n as usize];
        // Unchanged input (another variable of the node changed): nothing to redo.
        let unchanged = match (&new, old) {
            (Some(Some(a)), Some(Some(b))) => same_value(a, b),
            (Some(None), Some(None)) | (None, None) => true,
            _ => false,
        };
        if unchanged {
            return;
        }
        if let Some(old) = self.input[n as usize].take() {
            self.account(&old, n, false);
        }
        if let Some(v) = new {
            self.account(&v, n, true);
            self.input[n as usize] = Some(v);
        }
    }

    fn account(&mut self, v: &Val, n: NodeIdx, add: bool) {
        let d: i64 = if add { 1 } else { -1 };
        self.counted = self.counted.wrapping_add_signed(d);
        let Some(v) = v else { return };
        self.non_null = self.non_null.wrapping_add_signed(d);
        match self.func {
            AggFn::Count => {}
            AggFn::Sum | AggFn::Avg => match v {
                Value::Int(i) => {
                    self.numbers = self.numbers.wrapping_add_signed(d);
                    if add {
                        self.sum.add_i64(*i)
                    } else {
                        self.sum.sub_i64(*i)
                    }
                }
                Value::Float(f) => {
                    self.numbers = self.numbers.wrapping_add_signed(d);
                    self.floats = self.floats.wrapping_add_signed(d);
                    if add {
                        self.sum.add_f64(*f)
                    } else {
                        self.sum.sub_f64(*f)
                    }
                }
                _ => self.non_numeric = self.non_numeric.wrapping_add_signed(d),
            },
            AggFn::Min | AggFn::Max => {
                match v {
                    Value::Int(_) | Value::Float(_) => {
                        self.numbers = self.numbers.wrapping_add_signed(d)
                    }
                    Value::Str(_) => self.strings = self.strings.wrapping_add_signed(d),
                    _ => {
                        self.non_numeric = self.non_numeric.wrapping_add_signed(d);
                        return;
                    }
                }
                if let Some(k) = OrdKey::of(v) {
                    if add {
                        self.ordered.insert(k, n);
                    } else {
                        self.ordered.remove(&k, n);
                    }
                }
            }
            AggFn::CountDistinct => {
                let key = ValueKey(v.clone());
                if add {
                    *self.distinct.entry(key).or_insert(0) += 1;
                } else if let Some(c) = self.distinct.get_mut(&key) {
                    *c -= 1;
                    if *c == 0 {
                        self.distinct.remove(&key);
                    }
                }
            }
        }
    }

    /// The aggregate's value now (SPEC §3.3, §6).
    pub fn value(&self, w: &mut Warnings) -> Val {
        match self.func {
            AggFn::Count if self.arg.is_none() => Some(Value::Int(self.counted as i64)),
            AggFn::Count => Some(Value::Int(self.non_null as i64)),
            AggFn::CountDistinct => Some(Value::Int(self.distinct.len() as i64)),
            AggFn::Sum | AggFn::Avg if self.non_numeric > 0 => {
                w.add(WarningKind::InvalidAggregateInput);
                None
            }
            AggFn::Sum if self.floats == 0 => match self.sum.to_i64() {
                Some(i) => Some(Value::Int(i)),
                None => {
                    w.add(WarningKind::IntegerOverflow);
                    None
                }
            },
            AggFn::Sum => match self.sum.to_f64().and_then(Value::float) {
                Some(v) => Some(v),
                None => {
                    w.add(WarningKind::NonFiniteResult);
                    None
                }
            },
            AggFn::Avg if self.numbers == 0 => None,
            AggFn::Avg => self.sum.mean(self.numbers).and_then(Value::float),
            AggFn::Min | AggFn::Max => {
                if self.non_numeric > 0 || (self.numbers > 0 && self.strings > 0) {
                    w.add(WarningKind::InvalidAggregateInput);
                    return None;
                }
                // Among equal values the first node by id wins, and keeps its kind (1 vs 1.0).
                let n = self.ordered.extreme(self.func == AggFn::Max)?;
                self.input[n as usize].clone().flatten()
            }
        }
    }
}

/// Identical values, kind included (1 and 1.0 differ: MIN/MAX keep the kind).
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        _ => false,
    }
}

/// A per-node cached truth value of a condition that reads one node only.
pub struct NodeTruth {
    body: CExpr,
    /// Nodes of P(t) where the body holds, in node (= id) order.
    holds: BTreeSet<NodeIdx>,
    cached: Vec<bool>,
}

impl NodeTruth {
    pub fn new(body: CExpr, nodes: usize) -> NodeTruth {
        NodeTruth {
            body,
            holds: BTreeSet::new(),
            cached: vec![false; nodes],
        }
    }

    pub fn update(&mut self, cut: &CutState, n: NodeIdx, w: &mut Warnings) {
        let now = cut.in_p(n) && holds(&self.body, &local_env(cut, n), w);
        let was = std::mem::replace(&mut self.cached[n as usize], now);
        if now != was {
            if now {
                self.holds.insert(n);
            } else {
                self.holds.remove(&n);
            }
        }
    }

    /// The first node (by id) of P(t) where the condition holds.
    pub fn first(&self) -> Option<NodeIdx> {
        self.holds.first().copied()
    }

    /// EACH_NODE: P(t) non-empty and the condition holds on all of it.
    pub fn holds_everywhere(&self, cut: &CutState) -> bool {
        let p = cut.participants().len();
        p > 0 && self.holds.len() == p
    }

    pub fn body(&self) -> &CExpr {
        &self.body
    }
}

/// The numeric values of one variable (at a struct path) over P(t), ordered.
pub struct Extremes {
    pub var: Option<VarIdx>,
    pub path: Vec<String>,
    input: Vec<Option<Value>>,
    ordered: ValueIndex,
    pub ints: u64,
    pub floats: u64,
    /// Nodes where the variable holds a string: strings also compare (by bytes), so while
    /// there are any the numeric extremes do not decide an order comparison.
    pub strings: u64,
    string_at: Vec<bool>,
}

impl Extremes {
    pub fn new(var: Option<VarIdx>, path: Vec<String>, nodes: usize) -> Extremes {
        Extremes {
            var,
            path,
            input: vec![None; nodes],
            ordered: ValueIndex::default(),
            ints: 0,
            floats: 0,
            strings: 0,
            string_at: vec![false; nodes],
        }
    }

    /// The node's value of the variable (at the path), if it is in P(t) and has one.
    fn read<'c>(&self, cut: &'c CutState, n: NodeIdx) -> Option<&'c Value> {
        if !cut.in_p(n) {
            return None;
        }
        let mut v = cut.value(n, self.var?)?;
        for f in &self.path {
            match v {
                Value::Struct(fields) => v = fields.get(f)?,
                _ => return None,
            }
        }
        Some(v)
    }

    pub fn update(&mut self, cut: &CutState, n: NodeIdx) {
        let read = self.read(cut, n);
        // A step usually changes one variable of the node: leave the others' entries alone.
        if let (Some(new), Some(old)) = (read, &self.input[n as usize]) {
            if same_value(new, old) {
                return;
            }
        }
        let is_string = matches!(read, Some(Value::Str(_)));
        if is_string != self.string_at[n as usize] {
            self.string_at[n as usize] = is_string;
            if is_string {
                self.strings += 1;
            } else {
                self.strings -= 1;
            }
        }
        let now = read
            .filter(|v| matches!(v, Value::Int(_) | Value::Float(_)))
            .cloned();
        if let Some(old) = self.input[n as usize].take() {
            self.count(&old, false);
            if let Some(k) = OrdKey::of(&old) {
                self.ordered.remove(&k, n);
            }
        }
        if let Some(v) = now {
            self.count(&v, true);
            if let Some(k) = OrdKey::of(&v) {
                self.ordered.insert(k, n);
            }
            self.input[n as usize] = Some(v);
        }
    }

    fn count(&mut self, v: &Value, add: bool) {
        let c = if matches!(v, Value::Int(_)) {
            &mut self.ints
        } else {
            &mut self.floats
        };
        if add {
            *c += 1
        } else {
            *c -= 1
        }
    }

    /// A node holding the smallest (or largest) value.
    pub fn extreme(&self, max: bool) -> Option<(NodeIdx, &Value)> {
        let n = self.ordered.extreme(max)?;
        self.input[n as usize].as_ref().map(|v| (n, v))
    }

    pub fn has(&self, n: NodeIdx) -> bool {
        self.input[n as usize].is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn num() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<i64>().prop_map(Value::Int),
            (-(1i64 << 60)..(1i64 << 60)).prop_map(Value::Int),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::Float),
            (-(1i64 << 60)..(1i64 << 60)).prop_map(|i| Value::Float(i as f64)),
        ]
    }

    #[test]
    fn ord_key_orders_ints_and_floats_exactly() {
        let big = 9_007_199_254_740_993i64; // 2^53 + 1, not a float
        let cases = [
            (Value::Int(big), Value::Float(9_007_199_254_740_992.0)),
            (Value::Int(1), Value::Float(1.0)),
            (Value::Float(-0.0), Value::Int(0)),
            (Value::Int(i64::MAX), Value::Float(i64::MAX as f64)),
            (Value::Int(i64::MIN), Value::Float(i64::MIN as f64)),
        ];
        for (a, b) in cases {
            let want = log_server::value::cmp_numbers(&a, &b);
            assert_eq!(
                OrdKey::of(&a).cmp(&OrdKey::of(&b)),
                want.unwrap(),
                "{a:?} {b:?}"
            );
        }
        assert!(OrdKey::of(&Value::Int(i64::MAX)) < OrdKey::of(&Value::Str(String::new())));
    }

    proptest! {
        #[test]
        fn ord_key_agrees_with_exact_number_order(a in num(), b in num()) {
            let want = log_server::value::cmp_numbers(&a, &b).unwrap();
            prop_assert_eq!(OrdKey::of(&a).cmp(&OrdKey::of(&b)), want);
        }
    }
}
