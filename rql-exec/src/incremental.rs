//! Parts of a query kept up to date from the nodes each step touches, so a step costs work in
//! proportion to what it changed, not to the size of the cluster:
//! - [`AggState`]: an aggregate over P(t) (COUNT/SUM/AVG/COUNT_DISTINCT in O(1) per touched
//!   node, MIN/MAX in O(log N) with a tournament tree);
//! - [`NodeTruth`]: a per-node cached truth value of a node-local condition, with the count and
//!   the ordered set of nodes where it holds (EACH_NODE groups, and a one-unit WHEN);
//! - [`Extremes`]: per variable, its numeric values over P(t) in a tournament tree.
//!
//! Each is told about a node with `update(n)` whenever the node's P(t) membership or one of the
//! query's variables on it changed; each keeps the node's previous contribution so it can be
//! taken back exactly.

use std::collections::{BTreeSet, HashMap};

use log_server::{Value, ValueKey};

use rql_planner::exact_sum::ExactSum;
use rql_planner::ops::{AggFn, Val, WarningKind, Warnings};

use crate::columnar::{NodeIdx, VarIdx};
use crate::compile::{eval, holds, CExpr, Env, Site};
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

/// A node's slot in [`ExtremeTree`] that holds no value.
const EMPTY: u32 = u32::MAX;

/// Node values in a tournament tree over node index (= id order): the smallest and the largest
/// value — the first node by id among equal ones — in O(1), an update in O(log N) cheap
/// comparisons with no allocation, and the first node by id whose value passes a monotone test
/// in O(log N) tests (SPEC §7: the witness without enumeration).
#[derive(Default)]
pub(crate) struct ExtremeTree {
    /// Leaves: a power of two, at least the node count.
    size: usize,
    keys: Vec<Option<OrdKey>>,
    /// The numeric part of each key (f64, residual), compared directly while no key is a
    /// string: the update loop is then a few float comparisons per level.
    nums: Vec<(f64, i64)>,
    strings: usize,
    /// Heap layout (root at 1, leaves at `size..2*size`): the winning node of each subtree.
    min: Vec<u32>,
    max: Vec<u32>,
}

impl ExtremeTree {
    fn new(nodes: usize) -> ExtremeTree {
        let size = nodes.max(1).next_power_of_two();
        ExtremeTree {
            size,
            keys: vec![None; size],
            nums: vec![(0.0, 0); size],
            strings: 0,
            min: vec![EMPTY; 2 * size],
            max: vec![EMPTY; 2 * size],
        }
    }

    /// Set (or clear) node n's value. Returns whether the smallest or largest value (or the
    /// node holding it) may have changed.
    fn set(&mut self, n: NodeIdx, key: Option<OrdKey>) -> bool {
        let n = n as usize;
        if n >= self.size {
            self.grow(n + 1);
        }
        let leaf = if key.is_some() { n as u32 } else { EMPTY };
        if let Some(OrdKey::Num(f, r)) = &key {
            self.nums[n] = (f.0, *r);
        }
        let was_string = matches!(self.keys[n], Some(OrdKey::Str(_)));
        let is_string = matches!(key, Some(OrdKey::Str(_)));
        self.strings = self.strings + is_string as usize - was_string as usize;
        self.keys[n] = key;
        let leaf_at = n + self.size;
        self.min[leaf_at] = leaf;
        self.max[leaf_at] = leaf;
        let min_moved = self.replay_up(leaf_at, n as u32, false);
        let max_moved = self.replay_up(leaf_at, n as u32, true);
        min_moved || max_moved
    }

    /// Replays the matches above leaf `i` (node n) in one direction; false if they stopped
    /// below the root.
    #[inline(always)]
    fn replay_up(&mut self, mut i: usize, n: u32, max: bool) -> bool {
        while i > 1 {
            i /= 2;
            let (l, r) = (2 * i, 2 * i + 1);
            let winners = if max { &self.max } else { &self.min };
            let won = self.pick(winners[l], winners[r], max);
            // Same winner, not the changed node: nothing above changes.
            if won == winners[i] && won != n {
                return false;
            }
            if max {
                self.max[i] = won;
            } else {
                self.min[i] = won;
            }
        }
        true
    }

    /// The winner of two subtrees; on equal values the left one (the smaller node index).
    #[inline(always)]
    fn pick(&self, a: u32, b: u32, max: bool) -> u32 {
        if a == EMPTY {
            return b;
        }
        if b == EMPTY {
            return a;
        }
        let b_wins = if self.strings == 0 {
            let ((x, i), (y, j)) = (self.nums[a as usize], self.nums[b as usize]);
            if max {
                y > x || (y == x && j > i)
            } else {
                y < x || (y == x && j < i)
            }
        } else {
            let (ka, kb) = (&self.keys[a as usize], &self.keys[b as usize]);
            if max {
                kb > ka
            } else {
                kb < ka
            }
        };
        if b_wins {
            b
        } else {
            a
        }
    }

    fn grow(&mut self, nodes: usize) {
        let mut bigger = ExtremeTree::new(nodes);
        for (n, k) in self.keys.drain(..).enumerate() {
            if k.is_some() {
                bigger.set(n as NodeIdx, k);
            }
        }
        *self = bigger;
    }

    /// The first node (by id) holding the smallest or largest value.
    fn extreme(&self, max: bool) -> Option<NodeIdx> {
        let root = if max {
            self.max.get(1)
        } else {
            self.min.get(1)
        };
        root.copied().filter(|&n| n != EMPTY)
    }

    /// The first node by id whose value passes `test`, where passing is upward closed in value
    /// order if `max` (a larger value passes whenever a smaller one does), downward closed
    /// otherwise: a subtree holds a passing node exactly when its extreme passes. `test` sees
    /// nodes only through their values; `None` from it (undecidable) ends the search with `None`.
    fn first_passing(
        &self,
        max: bool,
        test: &mut dyn FnMut(NodeIdx) -> Option<bool>,
    ) -> Option<Option<NodeIdx>> {
        let best = if max { &self.max } else { &self.min };
        let Some(top) = best.get(1).copied().filter(|&n| n != EMPTY) else {
            return Some(None);
        };
        if !test(top)? {
            return Some(None);
        }
        let mut i = 1;
        while i < self.size {
            let left = best[2 * i];
            i = if left != EMPTY && test(left)? {
                2 * i
            } else {
                2 * i + 1
            };
        }
        Some(Some((i - self.size) as NodeIdx))
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
    ordered: ExtremeTree,
    strings: u64,
    // COUNT_DISTINCT
    distinct: HashMap<ValueKey, u32>,
    /// Bumped whenever the value may have changed: a reader that saw this version can keep
    /// the value it computed then.
    version: u64,
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
            ordered: if matches!(func, AggFn::Min | AggFn::Max) {
                ExtremeTree::new(nodes)
            } else {
                ExtremeTree::default()
            },
            strings: 0,
            distinct: HashMap::new(),
            version: 0,
        }
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn update(&mut self, cut: &CutState, n: NodeIdx, w: &mut Warnings) {
        let new = if !cut.in_p(n) {
            None
        } else {
            Some(match &self.arg {
                // The common argument, a plain variable: compare in place, clone only a change.
                Some(CExpr::Var {
                    var: Some(var),
                    path,
                    site: Site::Local,
                }) if path.is_empty() => {
                    let now = cut.value(n, *var);
                    if let (Some(Some(old)), Some(now)) = (&self.input[n as usize], now) {
                        if same_value(old, now) {
                            return;
                        }
                    }
                    now.cloned()
                }
                Some(arg) => eval(arg, &local_env(cut, n), w),
                None => None,
            })
        };
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
        let kinds = (self.non_numeric, self.numbers, self.strings);
        if let Some(old) = self.input[n as usize].take() {
            self.account(&old, false);
        }
        if let Some(v) = new {
            self.account(&v, true);
            self.input[n as usize] = Some(v);
        }
        if matches!(self.func, AggFn::Min | AggFn::Max) {
            let key = self.input[n as usize].as_ref().and_then(|v| {
                v.as_ref()
                    .filter(|v| matches!(v, Value::Int(_) | Value::Float(_) | Value::Str(_)))
                    .and_then(OrdKey::of)
            });
            // MIN/MAX change only with an extreme or with the kinds of input (NULL on a mix).
            let extreme_moved = self.ordered.set(n, key);
            if extreme_moved || kinds != (self.non_numeric, self.numbers, self.strings) {
                self.version += 1;
            }
        } else {
            self.version += 1;
        }
    }

    fn account(&mut self, v: &Val, add: bool) {
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
                    _ => self.non_numeric = self.non_numeric.wrapping_add_signed(d),
                }
                // The ordered tree is set from the node's final input in `update`.
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
        self.value_as(self.func, w)
    }

    /// Whether this state can answer `func(arg)` too: MIN and MAX of one argument share a tree.
    pub fn answers(&self, func: AggFn, arg: &Option<CExpr>) -> bool {
        let min_max = |f| matches!(f, AggFn::Min | AggFn::Max);
        min_max(self.func) && min_max(func) && self.arg == *arg
    }

    /// The value of `func` over this state's inputs; `func` is the state's own function or one
    /// it [`answers`](Self::answers).
    pub fn value_as(&self, func: AggFn, w: &mut Warnings) -> Val {
        match func {
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
                let n = self.ordered.extreme(func == AggFn::Max)?;
                self.input[n as usize].clone().flatten()
            }
        }
    }
}

/// Identical values, kind included (1 and 1.0 differ: MIN/MAX keep the kind).
pub(crate) fn same_value(a: &Value, b: &Value) -> bool {
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
    ordered: ExtremeTree,
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
            ordered: ExtremeTree::new(nodes),
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
        }
        self.ordered.set(n, now.as_ref().and_then(OrdKey::of));
        if let Some(v) = now {
            self.count(&v, true);
            self.input[n as usize] = Some(v);
        }
    }

    /// The first node by id (holding a number) for which `test` passes, where passing is
    /// monotone in the node's value (upward closed if `max`); see [`ExtremeTree::first_passing`].
    pub fn first_passing(
        &self,
        max: bool,
        test: &mut dyn FnMut(NodeIdx) -> Option<bool>,
    ) -> Option<Option<NodeIdx>> {
        self.ordered.first_passing(max, test)
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

    proptest! {
        /// Against a brute-force scan: extremes (first node by id among equal values) and the
        /// first node passing a threshold test, after any sequence of sets and clears, with the
        /// tree growing past its initial size.
        #[test]
        fn extreme_tree_agrees_with_a_scan(
            ops in proptest::collection::vec((0u32..40, proptest::option::of(0u8..12)), 1..120),
            threshold in 0u8..12,
        ) {
            // Small ints, their float twins (equal values, tie by node) and a few strings.
            let value = |x: u8| match x {
                0..=4 => Value::Int(x as i64),
                5..=8 => Value::Float((x - 4) as f64),
                _ => Value::Str(((b'a' + x - 9) as char).to_string()),
            };
            let key = |x: u8| OrdKey::of(&value(x)).unwrap();
            let mut tree = ExtremeTree::new(3);
            let mut vals: Vec<Option<OrdKey>> = vec![None; 40];
            let limit = key(threshold);
            for (n, v) in ops {
                vals[n as usize] = v.map(key);
                tree.set(n, v.map(key));
                let present = || vals.iter().enumerate().filter_map(|(i, v)| v.clone().map(|v| (i as u32, v)));
                let min = present().min_by(|(i, a), (j, b)| a.cmp(b).then(i.cmp(j))).map(|(i, _)| i);
                let max = present().max_by(|(i, a), (j, b)| a.cmp(b).then(j.cmp(i))).map(|(i, _)| i);
                prop_assert_eq!(tree.extreme(false), min);
                prop_assert_eq!(tree.extreme(true), max);
                let passes = |n: NodeIdx, up: bool| {
                    let k = vals[n as usize].as_ref().unwrap();
                    if up { *k >= limit } else { *k <= limit }
                };
                let up = present().find(|&(i, _)| passes(i, true)).map(|(i, _)| i);
                prop_assert_eq!(tree.first_passing(true, &mut |n| Some(passes(n, true))), Some(up));
                let down = present().find(|&(i, _)| passes(i, false)).map(|(i, _)| i);
                prop_assert_eq!(tree.first_passing(false, &mut |n| Some(passes(n, false))), Some(down));
            }
        }
    }
}
