//! The state of one node (SPEC §1.4): its variables after applying its records in HLC order.
//! Whether `add`/`remove` hit a non-set value depends on this state, so that rule is checked
//! here rather than when a line is parsed.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::Hash;

use crate::record::{Record, VarName};
use crate::value::{SetValue, Value};

/// A node's variables. Absent variables (never set, unset, or cleared by `leave`) have no entry.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeState {
    pub vars: BTreeMap<VarName, Value>,
}

/// `add` or `remove` on a variable holding something other than a set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyError {
    /// `"add"` or `"remove"`.
    pub op: &'static str,
    pub var: VarName,
    /// `kind_name()` of the value found.
    pub found: &'static str,
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "\"{}\" on a non-set value of {} ({})",
            self.op, self.var, self.found
        )
    }
}

impl std::error::Error for ApplyError {}

impl NodeState {
    pub fn new() -> NodeState {
        NodeState::default()
    }

    pub fn get(&self, var: &VarName) -> Option<&Value> {
        self.vars.get(var)
    }

    /// Applies one record of this node: `unset`, then `set`, then `remove`, then `add` (an
    /// absent variable counts as the empty set and the result is stored even if empty), then
    /// `leave` (clears everything). On error nothing is changed.
    pub fn apply(&mut self, rec: &Record) -> Result<(), ApplyError> {
        self.check(rec)?;
        for var in &rec.unset {
            self.vars.remove(var);
        }
        for (var, value) in &rec.set {
            match value {
                Some(v) => {
                    self.vars.insert(var.clone(), v.clone());
                }
                None => {
                    self.vars.remove(var);
                }
            }
        }
        for (op, changes) in [("remove", &rec.remove), ("add", &rec.add)] {
            for (var, elems) in changes {
                let slot = self
                    .vars
                    .entry(var.clone())
                    .or_insert_with(|| Value::Set(SetValue::new()));
                match slot {
                    Value::Set(set) if op == "add" => set.union_with(elems),
                    Value::Set(set) => set.difference_with(elems),
                    // `check` has ruled this out; report rather than panic all the same.
                    other => {
                        return Err(ApplyError {
                            op,
                            var: var.clone(),
                            found: other.kind_name(),
                        })
                    }
                }
            }
        }
        if rec.leave {
            self.vars.clear();
        }
        Ok(())
    }

    /// Whether `apply` would succeed: every `add`/`remove` target, as it stands after the
    /// record's `unset` and `set`, is absent or a set. (`remove` cannot change a kind, so
    /// checking every target against that intermediate state is exact.)
    pub fn check(&self, rec: &Record) -> Result<(), ApplyError> {
        for (op, changes) in [("remove", &rec.remove), ("add", &rec.add)] {
            for (var, _) in changes {
                if let Some(value) = self.value_after_assignments(rec, var) {
                    if !matches!(value, Value::Set(_)) {
                        return Err(ApplyError {
                            op,
                            var: var.clone(),
                            found: value.kind_name(),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    fn value_after_assignments<'a>(&'a self, rec: &'a Record, var: &VarName) -> Option<&'a Value> {
        if let Some((_, value)) = rec.set.iter().rev().find(|(v, _)| v == var) {
            return value.as_ref();
        }
        if rec.unset.contains(var) {
            return None;
        }
        self.vars.get(var)
    }
}

/// Checks records one at a time, in HLC order, for what [`NodeState::apply`] would reject
/// (`add`/`remove` on a non-set value), keeping only the kinds of non-set variables: the
/// validating pass of a streaming replay, which must not keep the trace.
#[derive(Debug, Default)]
pub struct ApplyCheck {
    nodes: HashMap<String, NonSetKinds<String>>,
}

impl ApplyCheck {
    /// The error `NodeState::apply` would give for `rec`; on error nothing changes.
    pub fn check(&mut self, rec: &Record) -> Result<(), ApplyError> {
        let kinds = match self.nodes.get_mut(rec.node.as_str()) {
            Some(k) => k,
            None => self.nodes.entry(rec.node.clone()).or_default(),
        };
        kinds.apply(rec, |_| true)
    }
}

/// The part of a node's state that decides `add`/`remove` errors, and nothing more: the kind
/// of every (tracked) variable holding a non-set value. An absent variable and a set are both
/// fine targets, so they need no entry. Replaying a trace's records through this gives exactly
/// the results of [`NodeState::apply`] without cloning any value.
///
/// `K` is the key: `&str` borrowed from the records (a trace in memory) or `String` (the log
/// server, which keeps the kinds of every node while its records come and go).
#[derive(Debug)]
pub(crate) struct NonSetKinds<K> {
    kinds: HashMap<K, &'static str>,
}

impl<K> Default for NonSetKinds<K> {
    fn default() -> Self {
        NonSetKinds {
            kinds: HashMap::new(),
        }
    }
}

/// How to undo one change [`NonSetKinds::apply_journaled`] made.
#[derive(Debug)]
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub(crate) enum KindUndo<K> {
    /// The variable's kind before (`None`: no entry).
    Entry(K, Option<&'static str>),
    /// Every entry before a `leave` cleared them.
    All(HashMap<K, &'static str>),
}

impl<K: Borrow<str> + Eq + Hash> NonSetKinds<K> {
    /// What `NodeState::apply` would return for `rec`, updating the kinds as it would update
    /// the state (nothing on error). `tracked` must hold for every variable that is ever an
    /// `add`/`remove` target; the kinds of other variables are never asked for, so not kept.
    pub(crate) fn apply<'r>(
        &mut self,
        rec: &'r Record,
        tracked: impl Fn(&str) -> bool,
    ) -> Result<(), ApplyError>
    where
        K: From<&'r str>,
    {
        self.apply_journaled(rec, tracked, None)
    }

    /// [`NonSetKinds::apply`], pushing onto `journal` (if given) what [`NonSetKinds::undo`]
    /// needs to take the changes back. Only real changes are journaled, so a record that
    /// leaves every kind as it was costs nothing to undo.
    pub(crate) fn apply_journaled<'r>(
        &mut self,
        rec: &'r Record,
        tracked: impl Fn(&str) -> bool,
        mut journal: Option<&mut Vec<KindUndo<K>>>,
    ) -> Result<(), ApplyError>
    where
        K: From<&'r str>,
    {
        for (op, changes) in [("remove", &rec.remove), ("add", &rec.add)] {
            for (var, _) in changes {
                if let Some(found) = self.kind_after_assignments(rec, var) {
                    return Err(ApplyError {
                        op,
                        var: var.clone(),
                        found,
                    });
                }
            }
        }
        let assigned = rec.unset.iter().chain(rec.set.iter().map(|(var, _)| var));
        if !self.kinds.is_empty() || assigned.clone().any(|var| tracked(var.as_str())) {
            for var in &rec.unset {
                self.put(var.as_str(), None, journal.as_deref_mut());
            }
            for (var, value) in &rec.set {
                let kind = match value {
                    Some(v) if !matches!(v, Value::Set(_)) && tracked(var.as_str()) => {
                        Some(v.kind_name())
                    }
                    _ => None,
                };
                self.put(var.as_str(), kind, journal.as_deref_mut());
            }
        }
        // `remove`/`add` leave a set behind (checked above to be allowed).
        for (var, _) in rec.remove.iter().chain(&rec.add) {
            self.put(var.as_str(), None, journal.as_deref_mut());
        }
        if rec.leave && !self.kinds.is_empty() {
            let before = std::mem::take(&mut self.kinds);
            if let Some(journal) = journal {
                journal.push(KindUndo::All(before));
            }
        }
        Ok(())
    }

    /// Takes back the changes journaled since `journal` was empty, newest first.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn undo(&mut self, journal: impl DoubleEndedIterator<Item = KindUndo<K>>) {
        for change in journal.rev() {
            match change {
                KindUndo::Entry(var, Some(kind)) => {
                    self.kinds.insert(var, kind);
                }
                KindUndo::Entry(var, None) => {
                    self.kinds.remove(var.borrow());
                }
                KindUndo::All(kinds) => self.kinds = kinds,
            }
        }
    }

    /// Sets `var`'s entry to `kind` (`None`: no entry).
    fn put<'r>(
        &mut self,
        var: &'r str,
        kind: Option<&'static str>,
        journal: Option<&mut Vec<KindUndo<K>>>,
    ) where
        K: From<&'r str>,
    {
        let before = self.kinds.get(var).copied();
        if before == kind {
            return;
        }
        if let Some(journal) = journal {
            journal.push(KindUndo::Entry(K::from(var), before));
        }
        match (kind, self.kinds.get_mut(var)) {
            (Some(kind), Some(slot)) => *slot = kind,
            (Some(kind), None) => {
                self.kinds.insert(K::from(var), kind);
            }
            (None, _) => {
                self.kinds.remove(var);
            }
        }
    }

    /// The kind of `var` after the record's `unset` and `set`, if it is not a set (as
    /// `NodeState::check` sees it).
    fn kind_after_assignments(&self, rec: &Record, var: &VarName) -> Option<&'static str> {
        if let Some((_, value)) = rec.set.iter().rev().find(|(v, _)| v == var) {
            return value
                .as_ref()
                .filter(|v| !matches!(v, Value::Set(_)))
                .map(Value::kind_name);
        }
        if rec.unset.contains(var) {
            return None;
        }
        self.kinds.get(var.as_str()).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::Hlc;

    fn var(s: &str) -> VarName {
        VarName::parse(s).unwrap()
    }

    fn set(values: Vec<Value>) -> SetValue {
        SetValue::from_values(values).unwrap()
    }

    fn rec() -> Record {
        Record::heartbeat("n1", Hlc::new(1, 0).unwrap())
    }

    #[test]
    fn set_and_unset() {
        let mut st = NodeState::new();
        let mut r = rec();
        r.set = vec![
            (var("inv.a"), Some(Value::Int(5))),
            (var("inv.b"), Some(Value::Int(3))),
        ];
        st.apply(&r).unwrap();
        assert_eq!(st.get(&var("inv.a")), Some(&Value::Int(5)));
        let mut r = rec();
        r.set = vec![(var("inv.b"), None)];
        r.unset = vec![var("inv.a")];
        st.apply(&r).unwrap();
        assert!(st.vars.is_empty());
    }

    #[test]
    fn unset_applies_before_set() {
        let mut st = NodeState::new();
        let mut r = rec();
        r.unset = vec![var("inv.a")];
        r.set = vec![(var("inv.a"), Some(Value::Int(1)))];
        st.apply(&r).unwrap();
        assert_eq!(st.get(&var("inv.a")), Some(&Value::Int(1)));
    }

    #[test]
    fn add_and_remove_on_absent_store_the_set() {
        let mut st = NodeState::new();
        let mut r = rec();
        r.remove = vec![(var("zk.m"), set(vec![Value::Int(1)]))];
        st.apply(&r).unwrap();
        assert_eq!(st.get(&var("zk.m")), Some(&Value::Set(SetValue::new())));
        let mut r = rec();
        r.add = vec![(var("zk.n"), set(vec![]))];
        st.apply(&r).unwrap();
        assert_eq!(st.get(&var("zk.n")), Some(&Value::Set(SetValue::new())));
    }

    #[test]
    fn remove_applies_before_add() {
        let mut st = NodeState::new();
        let mut r = rec();
        r.set = vec![(
            var("zk.m"),
            Some(Value::Set(set(vec![
                Value::Str("n1".into()),
                Value::Str("n2".into()),
            ]))),
        )];
        st.apply(&r).unwrap();
        let mut r = rec();
        r.add = vec![(var("zk.m"), set(vec![Value::Str("n1".into())]))];
        r.remove = vec![(
            var("zk.m"),
            set(vec![Value::Str("n1".into()), Value::Str("n2".into())]),
        )];
        st.apply(&r).unwrap();
        assert_eq!(
            st.get(&var("zk.m")),
            Some(&Value::Set(set(vec![Value::Str("n1".into())])))
        );
    }

    #[test]
    fn set_elements_compare_with_sql_eq() {
        let mut st = NodeState::new();
        let mut r = rec();
        r.add = vec![(var("zk.m"), set(vec![Value::Int(1), Value::Int(2)]))];
        st.apply(&r).unwrap();
        let mut r = rec();
        r.remove = vec![(var("zk.m"), set(vec![Value::Float(1.0)]))];
        r.add = vec![(var("zk.m"), set(vec![Value::Float(2.0)]))];
        st.apply(&r).unwrap();
        assert_eq!(
            st.get(&var("zk.m")),
            Some(&Value::Set(set(vec![Value::Int(2)])))
        );
    }

    #[test]
    fn add_on_non_set_is_an_error_and_changes_nothing() {
        let mut st = NodeState::new();
        let mut r = rec();
        r.set = vec![(var("inv.a"), Some(Value::Int(1)))];
        st.apply(&r).unwrap();
        let before = st.clone();
        let mut r = rec();
        r.set = vec![(var("inv.b"), Some(Value::Int(2)))];
        r.add = vec![(var("inv.a"), set(vec![Value::Int(2)]))];
        let err = st.apply(&r).unwrap_err();
        assert_eq!(err.to_string(), "\"add\" on a non-set value of inv.a (int)");
        assert_eq!(st, before);
        let mut r = rec();
        r.remove = vec![(var("inv.a"), set(vec![]))];
        assert_eq!(
            st.apply(&r).unwrap_err().to_string(),
            "\"remove\" on a non-set value of inv.a (int)"
        );
    }

    #[test]
    fn add_checks_the_value_after_set_and_unset() {
        let mut st = NodeState::new();
        let mut r = rec();
        r.set = vec![(var("inv.a"), Some(Value::Int(1)))];
        st.apply(&r).unwrap();
        // Unset first: the add sees an absent variable.
        let mut r = rec();
        r.unset = vec![var("inv.a")];
        r.add = vec![(var("inv.a"), set(vec![Value::Int(2)]))];
        st.apply(&r).unwrap();
        assert_eq!(
            st.get(&var("inv.a")),
            Some(&Value::Set(set(vec![Value::Int(2)])))
        );
        // Set to a string in the same record: the add fails.
        let mut r = rec();
        r.set = vec![(var("inv.a"), Some(Value::Str("x".into())))];
        r.add = vec![(var("inv.a"), set(vec![Value::Int(3)]))];
        assert_eq!(
            st.apply(&r).unwrap_err(),
            ApplyError {
                op: "add",
                var: var("inv.a"),
                found: "string"
            }
        );
        // Set to null (unset) in the same record: fine.
        let mut r = rec();
        r.set = vec![(var("inv.a"), None)];
        r.add = vec![(var("inv.a"), set(vec![Value::Int(3)]))];
        st.apply(&r).unwrap();
        assert_eq!(
            st.get(&var("inv.a")),
            Some(&Value::Set(set(vec![Value::Int(3)])))
        );
    }

    #[test]
    fn leave_clears_the_state_after_the_other_changes() {
        let mut st = NodeState::new();
        let mut r = rec();
        r.set = vec![(var("inv.a"), Some(Value::Int(1)))];
        st.apply(&r).unwrap();
        let mut r = rec();
        r.set = vec![(var("inv.b"), Some(Value::Int(1)))];
        r.leave = true;
        st.apply(&r).unwrap();
        assert!(st.vars.is_empty());
    }

    fn sorted(kinds: &HashMap<String, &'static str>) -> BTreeMap<String, &'static str> {
        kinds.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// `NonSetKinds` gives the same results as `NodeState::apply` on any record sequence, and
    /// its journal undoes exactly what a record changed.
    #[test]
    fn non_set_kinds_agree_with_node_state() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};

        let name = prop_oneof![Just("a.x"), Just("a.y"), Just("a.z")].prop_map(var);
        let value = prop_oneof![
            Just(None),
            Just(Some(Value::Int(1))),
            Just(Some(Value::Str("s".into()))),
            Just(Some(Value::Set(SetValue::new()))),
        ];
        let changes = |n| prop::collection::vec((name.clone(), Just(SetValue::new())), 0..n);
        let record = (
            prop::collection::vec((name.clone(), value), 0..3),
            prop::collection::vec(name.clone(), 0..2),
            changes(2),
            changes(2),
            prop::bool::weighted(0.1),
        )
            .prop_map(|(set, unset, add, remove, leave)| Record {
                set,
                unset,
                add,
                remove,
                leave,
                ..rec()
            });
        let mut runner = TestRunner::new(Config {
            cases: 2000,
            ..Config::default()
        });
        runner
            .run(&prop::collection::vec(record, 0..12), |records| {
                // Only a.x and a.y are tracked: a.z must then never be an add/remove target.
                let records: Vec<Record> = records
                    .into_iter()
                    .map(|mut r| {
                        r.add.retain(|(v, _)| v.as_str() != "a.z");
                        r.remove.retain(|(v, _)| v.as_str() != "a.z");
                        r
                    })
                    .collect();
                let mut state = NodeState::new();
                let mut kinds = NonSetKinds::<&str>::default();
                let mut owned = NonSetKinds::<String>::default();
                for r in &records {
                    let want = state.apply(r);
                    prop_assert_eq!(kinds.apply(r, |v| v != "a.z"), want.clone());
                    // Applying and undoing changes nothing; applying again agrees.
                    let before = format!("{:?}", sorted(&owned.kinds));
                    let mut journal = Vec::new();
                    let got = owned.apply_journaled(r, |v| v != "a.z", Some(&mut journal));
                    prop_assert_eq!(&got, &want);
                    owned.undo(journal.into_iter());
                    prop_assert_eq!(format!("{:?}", sorted(&owned.kinds)), before);
                    prop_assert_eq!(owned.apply(r, |v| v != "a.z"), want);
                }
                Ok(())
            })
            .unwrap();
    }
}
