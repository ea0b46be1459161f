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

/// The high 64 bits of every string's key in [`ExtremeTree`]: above every number's (no finite
/// f64 has order bits `u64::MAX`), so numbers sort before strings.
const STRING_CLASS: u64 = u64::MAX;

/// Added to an int's residual (see [`value_bits`]) so the field orders as an unsigned number.
const RESIDUAL_BIAS: i64 = 1 << 31;

/// The value part (bits 32..128) of a value's key in [`ExtremeTree`], `None` for values that
/// are neither numbers nor strings. A number is its nearest f64 (as order bits) followed by the
/// int's exact distance from it, so the unsigned order of keys is the exact numeric order over
/// ints and floats together, and equal numbers (1 and 1.0) have equal value parts. Every string
/// has the same value part: strings are told apart by comparing their bytes.
fn value_bits(v: &Value) -> Option<u128> {
    let (f, residual) = match v {
        // Exactly representable: no residual (the common case, no wide arithmetic).
        Value::Int(i) if i.unsigned_abs() <= 1 << 53 => (*i as f64, 0),
        Value::Int(i) => {
            let r = *i as f64;
            // |i - r| is at most half an ulp of r, at most 2^10 for an i64: it fits the 32-bit
            // field with room to spare.
            (r, (*i as i128 - r as i128) as i64)
        }
        Value::Float(f) => (*f, 0),
        Value::Str(_) => return Some((STRING_CLASS as u128) << 64),
        _ => return None,
    };
    Some(((order_bits(f) as u128) << 64) | (((residual + RESIDUAL_BIAS) as u128) << 32))
}

/// An f64's bits, mapped so that their unsigned order is the numeric order (-0.0 = 0.0). Never
/// `u64::MAX` (that would be a NaN, and values are finite) nor 0 (-NaN).
fn order_bits(f: f64) -> u64 {
    let b = (f + 0.0).to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | 1 << 63
    }
}

/// The key of an empty subtree in the `min` tree: above every node's key.
const EMPTY_MIN: u128 = u128::MAX;
/// The key of an empty subtree in the `max` tree: below every node's key.
const EMPTY_MAX: u128 = 0;

/// Node values in a tournament tree over node index (= id order): the smallest and the largest
/// value — the first node by id among equal ones — in O(1), an update in O(log N) integer
/// comparisons with no allocation, and the first node by id whose value passes a monotone test
/// in O(log N) tests (SPEC §7: the witness without enumeration).
///
/// Each slot holds its subtree winner's whole key — value and node packed in a `u128` — rather
/// than the winner's index: a match is then one comparison of two adjacent slots, with no
/// lookup of the values and no branch on their kinds, and an update stops as soon as a
/// subtree's winner (node and value) is what it was.
#[derive(Default)]
pub(crate) struct ExtremeTree {
    /// Leaves: a power of two, at least the node count.
    size: usize,
    /// Heap layout (root at 1, leaves at `size..2*size`): the key of each subtree's winner,
    /// `value_bits | node` in `min` and `value_bits | !node` in `max`, so that the smaller key
    /// (in `min`) or the larger one (in `max`) is the smaller node among equal values.
    min: Vec<u128>,
    max: Vec<u128>,
    /// Each node's string, for the nodes whose value is one (sized on the first string).
    strs: Vec<Option<String>>,
    strings: usize,
}

impl ExtremeTree {
    fn new(nodes: usize) -> ExtremeTree {
        let size = nodes.max(1).next_power_of_two();
        ExtremeTree {
            size,
            min: vec![EMPTY_MIN; 2 * size],
            max: vec![EMPTY_MAX; 2 * size],
            strs: Vec::new(),
            strings: 0,
        }
    }

    /// Set (or clear, with `None` or a value that is neither a number nor a string) node n's
    /// value. Returns whether the smallest or largest value, its kind, or the node holding it
    /// may have changed.
    fn set(&mut self, n: NodeIdx, v: Option<&Value>) -> bool {
        let i = n as usize;
        if i >= self.size {
            self.grow(i + 1);
        }
        let leaf = i + self.size;
        let (kmin, kmax) = match v.and_then(value_bits) {
            Some(bits) => (bits | n as u128, bits | !n as u128),
            None => (EMPTY_MIN, EMPTY_MAX),
        };
        let was_string = is_string(self.max[leaf]);
        let now_string = is_string(kmax);
        if was_string || now_string {
            if self.strs.len() < self.size {
                self.strs.resize(self.size, None);
            }
            self.strs[i] = match v {
                Some(Value::Str(s)) => Some(s.clone()),
                _ => None,
            };
            self.strings = self.strings + now_string as usize - was_string as usize;
        }
        self.min[leaf] = kmin;
        self.max[leaf] = kmax;
        let strs = (self.strings > 0).then_some(&self.strs[..]);
        let roots = (self.min[1], self.max[1]);
        // Every match on the way up is replayed, both trees in step: stopping where a winner
        // stays the same saves little at these heights and costs a mispredicted branch per
        // tree, and the two independent chains of comparisons overlap. (Keeping the winner so
        // far in a register and loading only the sibling was slower: the select is then
        // loop-carried, and the compiler turns it into a mispredicted branch.)
        let mut i = leaf;
        while i > 1 {
            let (l, r) = (i & !1, i | 1);
            let min = pick(self.min[l], self.min[r], strs, false);
            let max = pick(self.max[l], self.max[r], strs, true);
            i /= 2;
            self.min[i] = min;
            self.max[i] = max;
        }
        // A root key that stayed the same with n as its node: n's value may still differ in kind
        // (1 and 1.0) or, for a string, in content.
        roots != (self.min[1], self.max[1])
            || self.extreme(false) == Some(n)
            || self.extreme(true) == Some(n)
    }

    fn grow(&mut self, nodes: usize) {
        let mut bigger = ExtremeTree::new(nodes);
        // Leaf keys carry their node, which does not change: move them, then replay every match.
        let (old, new) = (self.size, bigger.size);
        bigger.min[new..new + old].copy_from_slice(&self.min[old..2 * old]);
        bigger.max[new..new + old].copy_from_slice(&self.max[old..2 * old]);
        bigger.strs = std::mem::take(&mut self.strs);
        if !bigger.strs.is_empty() {
            bigger.strs.resize(new, None);
        }
        bigger.strings = self.strings;
        let strs = (bigger.strings > 0).then_some(&bigger.strs[..]);
        for i in (1..new).rev() {
            bigger.min[i] = pick(bigger.min[2 * i], bigger.min[2 * i + 1], strs, false);
            bigger.max[i] = pick(bigger.max[2 * i], bigger.max[2 * i + 1], strs, true);
        }
        *self = bigger;
    }

    /// The first node (by id) holding the smallest or largest value.
    fn extreme(&self, max: bool) -> Option<NodeIdx> {
        let (tree, empty) = self.side(max);
        tree.get(1)
            .copied()
            .filter(|&k| k != empty)
            .map(|k| node_of(k, max))
    }

    fn side(&self, max: bool) -> (&[u128], u128) {
        if max {
            (&self.max, EMPTY_MAX)
        } else {
            (&self.min, EMPTY_MIN)
        }
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
        let (best, empty) = self.side(max);
        let Some(top) = best.get(1).copied().filter(|&k| k != empty) else {
            return Some(None);
        };
        if !test(node_of(top, max))? {
            return Some(None);
        }
        let mut i = 1;
        while i < self.size {
            let left = best[2 * i];
            i = if left != empty && test(node_of(left, max))? {
                2 * i
            } else {
                2 * i + 1
            };
        }
        Some(Some((i - self.size) as NodeIdx))
    }
}

/// Whether a key (of either tree) is a string's; false for both empty keys.
#[inline(always)]
fn is_string(k: u128) -> bool {
    (k >> 64) as u64 == STRING_CLASS && k != EMPTY_MIN
}

/// The node of a non-empty key.
#[inline(always)]
fn node_of(k: u128, max: bool) -> NodeIdx {
    let low = k as u32;
    if max {
        !low
    } else {
        low
    }
}

/// The winner of two subtrees' winners. Keys order numbers exactly and put the smaller node
/// first among equal values; two strings (`strs` is `None` while the tree holds none) are
/// compared by content, then by node.
#[inline(always)]
fn pick(a: u128, b: u128, strs: Option<&[Option<String>]>, max: bool) -> u128 {
    if let Some(strs) = strs {
        if is_string(a) && is_string(b) {
            let (na, nb) = (node_of(a, max), node_of(b, max));
            let (sa, sb) = (&strs[na as usize], &strs[nb as usize]);
            let a_wins = match sa.cmp(sb) {
                std::cmp::Ordering::Equal => na < nb,
                o => o.is_gt() == max,
            };
            return if a_wins { a } else { b };
        }
    }
    if max {
        a.max(b)
    } else {
        a.min(b)
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
    /// The argument's variable when it is a plain variable of the node (the common case, read
    /// and compared in place).
    plain_var: Option<VarIdx>,
    /// MIN or MAX: the inputs are kept in `ordered`.
    min_max: bool,
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
        let plain_var = match &arg {
            Some(CExpr::Var {
                var: Some(var),
                path,
                site: Site::Local,
            }) if path.is_empty() => Some(*var),
            _ => None,
        };
        let min_max = matches!(func, AggFn::Min | AggFn::Max);
        AggState {
            func,
            arg,
            plain_var,
            min_max,
            input: vec![None; nodes],
            counted: 0,
            non_null: 0,
            sum: ExactSum::new(),
            floats: 0,
            numbers: 0,
            non_numeric: 0,
            ordered: if min_max {
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
        let i = n as usize;
        let new = if !cut.in_p(n) {
            None
        } else if let Some(var) = self.plain_var {
            // The common argument, a plain variable: compare in place, clone only a change.
            let now = cut.value(n, var);
            match (&mut self.input[i], now) {
                (Some(Some(old)), Some(now)) => {
                    if same_value(old, now) {
                        return;
                    }
                    // The usual MIN/MAX step, a number replacing a number, changes no count:
                    // only the node's place in the tree.
                    if self.min_max && is_number(old) {
                        if let Some(copy) = number_copy(now) {
                            *old = copy;
                            if self.ordered.set(n, Some(now)) {
                                self.version += 1;
                            }
                            return;
                        }
                    }
                }
                (Some(None), None) => return,
                _ => {}
            }
            Some(now.cloned())
        } else {
            Some(match &self.arg {
                Some(arg) => eval(arg, &local_env(cut, n), w),
                None => None,
            })
        };
        let old = &self.input[i];
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
        if let Some(old) = self.input[i].take() {
            self.account(&old, false);
        }
        if let Some(v) = new {
            self.account(&v, true);
            self.input[i] = Some(v);
        }
        if self.min_max {
            // The tree holds numbers and strings; anything else leaves the node out of it.
            let v = self.input[i].as_ref().and_then(|v| v.as_ref());
            // MIN/MAX change only with an extreme or with the kinds of input (NULL on a mix).
            let extreme_moved = self.ordered.set(n, v);
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

fn is_number(v: &Value) -> bool {
    matches!(v, Value::Int(_) | Value::Float(_))
}

/// A copy of a number (no call into the general clone); `None` for other values.
#[inline(always)]
fn number_copy(v: &Value) -> Option<Value> {
    match v {
        Value::Int(i) => Some(Value::Int(*i)),
        Value::Float(f) => Some(Value::Float(*f)),
        _ => None,
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
        let now = read.and_then(number_copy);
        if let Some(old) = self.input[n as usize].take() {
            self.count(&old, false);
        }
        self.ordered.set(n, now.as_ref());
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

    /// The order of [`value_bits`]' value parts, as a comparison of two values.
    fn key_order(a: &Value, b: &Value) -> std::cmp::Ordering {
        value_bits(a).cmp(&value_bits(b))
    }

    #[test]
    fn keys_order_ints_and_floats_exactly() {
        let big = 9_007_199_254_740_993i64; // 2^53 + 1, not a float
        let cases = [
            (Value::Int(big), Value::Float(9_007_199_254_740_992.0)),
            (Value::Int(1), Value::Float(1.0)),
            (Value::Float(-0.0), Value::Int(0)),
            (Value::Float(-0.0), Value::Float(0.0)),
            (Value::Int(i64::MAX), Value::Float(i64::MAX as f64)),
            (Value::Int(i64::MIN), Value::Float(i64::MIN as f64)),
            (Value::Int(i64::MAX - 1), Value::Int(i64::MAX)),
            (Value::Int(i64::MIN), Value::Int(i64::MIN + 1)),
            (Value::Float(-f64::MAX), Value::Float(f64::MAX)),
            (
                Value::Float(-f64::MIN_POSITIVE),
                Value::Float(f64::MIN_POSITIVE),
            ),
        ];
        for (a, b) in cases {
            let want = log_server::value::cmp_numbers(&a, &b);
            assert_eq!(key_order(&a, &b), want.unwrap(), "{a:?} {b:?}");
        }
        assert!(key_order(&Value::Float(f64::MAX), &Value::Str(String::new())).is_lt());
        assert_eq!(value_bits(&Value::Bool(true)), None);
    }

    proptest! {
        #[test]
        fn keys_agree_with_exact_number_order(a in num(), b in num()) {
            let want = log_server::value::cmp_numbers(&a, &b).unwrap();
            prop_assert_eq!(key_order(&a, &b), want);
        }
    }

    /// The order the tree must follow: numbers exactly, before strings, strings by bytes.
    fn reference_order(a: &Value, b: &Value) -> std::cmp::Ordering {
        match (a, b) {
            (Value::Str(x), Value::Str(y)) => x.cmp(y),
            (Value::Str(_), _) => std::cmp::Ordering::Greater,
            (_, Value::Str(_)) => std::cmp::Ordering::Less,
            _ => log_server::value::cmp_numbers(a, b).unwrap(),
        }
    }

    proptest! {
        /// Against a brute-force scan: extremes (first node by id among equal values) and the
        /// first node passing a threshold test, after any sequence of sets and clears, with the
        /// tree growing past its initial size; and `set` reports every change of an extreme's
        /// node or value (kind included).
        #[test]
        fn extreme_tree_agrees_with_a_scan(
            ops in proptest::collection::vec((0u32..40, proptest::option::of(0u8..14)), 1..120),
            threshold in 0u8..12,
        ) {
            // Small ints, their float twins (equal values, tie by node), a few strings, and
            // values the tree leaves out.
            let value = |x: u8| match x {
                0..=4 => Value::Int(x as i64),
                5..=8 => Value::Float((x - 4) as f64),
                9..=11 => Value::Str(((b'a' + x - 9) as char).to_string()),
                _ => Value::Bool(x == 12),
            };
            let mut tree = ExtremeTree::new(3);
            let mut vals: Vec<Option<Value>> = vec![None; 40];
            let limit = value(threshold);
            // The (node, value) at the minimum and at the maximum after the previous set.
            let mut before: [Option<(u32, Value)>; 2] = [None, None];
            for (n, v) in ops {
                let v = v.map(value);
                let moved = tree.set(n, v.as_ref());
                vals[n as usize] = v.filter(|v| !matches!(v, Value::Bool(_)));
                let present = || vals.iter().enumerate().filter_map(|(i, v)| v.clone().map(|v| (i as u32, v)));
                let min = present().min_by(|(i, a), (j, b)| reference_order(a, b).then(i.cmp(j)));
                let max = present().max_by(|(i, a), (j, b)| reference_order(a, b).then(j.cmp(i)));
                prop_assert_eq!(tree.extreme(false), min.as_ref().map(|m| m.0));
                prop_assert_eq!(tree.extreme(true), max.as_ref().map(|m| m.0));
                let same = |x: &Option<(u32, Value)>, y: &Option<(u32, Value)>| match (x, y) {
                    (Some((i, a)), Some((j, b))) => i == j && same_value(a, b),
                    (None, None) => true,
                    _ => false,
                };
                if !same(&before[0], &min) || !same(&before[1], &max) {
                    prop_assert!(moved);
                }
                before = [min, max];
                let passes = |n: NodeIdx, up: bool| {
                    let o = reference_order(vals[n as usize].as_ref().unwrap(), &limit);
                    if up { o.is_ge() } else { o.is_le() }
                };
                let up = present().find(|&(i, _)| passes(i, true)).map(|(i, _)| i);
                prop_assert_eq!(tree.first_passing(true, &mut |n| Some(passes(n, true))), Some(up));
                let down = present().find(|&(i, _)| passes(i, false)).map(|(i, _)| i);
                prop_assert_eq!(tree.first_passing(false, &mut |n| Some(passes(n, false))), Some(down));
            }
        }
    }
}
