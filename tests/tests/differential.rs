//! Differential testing of the engine (SPEC §3.2's "random small traces and queries evaluated
//! by the engine and by a second, deliberately naive evaluator agree"): random traces of a few
//! nodes and random queries from templates that cover the language, run through
//! `rql_exec::replay` and through `rql_tests::naive::evaluate`, must give the same records.
//!
//! The naive evaluator is itself checked against every query of `../shared/examples` (computed
//! by an independent reference implementation), so a disagreement points at the engine.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use log_server::{read_traces, Hlc, ReadOptions, Record, TraceInput};
use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use rql_exec::{catalog_of, replay, ExecOptions, OutputRecord};
use rql_parser::LinkKind;
use rql_planner::{plan_statement, Plan};
use rql_tests::compare::same_output;
use rql_tests::naive;
use rql_tests::{
    example_queries, examples_dir, inputs_per_node, read_trace_records, run_live, run_streaming,
    with_heartbeats,
};
use serde_json::{json, Map, Value as J};

// ---------------------------------------------------------------------------------------------
// The naive evaluator against the reference outputs

fn plan_of(query: &str, records: &[Record]) -> Result<Plan, String> {
    let stmt = rql_parser::parse_single(query).map_err(|d| d.one_line(query))?;
    let catalog = catalog_of(records.iter());
    plan_statement(&stmt, query, &catalog).map_err(|d| d.one_line(query))
}

fn lines(records: &[OutputRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| serde_json::to_string(r).expect("output records serialize"))
        .collect()
}

#[test]
fn naive_evaluator_matches_every_example() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for ex in example_queries() {
        let dir = examples_dir().join(&ex.folder);
        let trace = dir.join("trace.ndjson");
        let records =
            read_trace_records(&trace).unwrap_or_else(|e| panic!("{}: {e}", trace.display()));
        for (k, query) in &ex.queries {
            // Malformed queries (expected_K.err) are the parser's and planner's business.
            let Ok(expected) = std::fs::read_to_string(dir.join(format!("expected_{k}.jsonl")))
            else {
                continue;
            };
            let what = format!("{} query {k}: {query}", ex.folder);
            match plan_of(query, &records) {
                Ok(plan) => {
                    let got = lines(&naive::evaluate(&plan, &records));
                    if let Err(diff) = same_output(&expected, &got) {
                        failures.push(format!("{what}\n{diff}"));
                    }
                }
                Err(e) => failures.push(format!("{what}\ndoes not plan: {e}")),
            }
            checked += 1;
        }
    }
    assert!(checked >= 140, "only {checked} queries checked");
    assert!(
        failures.is_empty(),
        "{} of {checked} differ:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Random traces

/// Node ids: `10.0.0.7:2181` sorts before `n1` by bytes, which the witness order must respect.
const NODE_POOL: [&str; 6] = ["n1", "n2", "n3", "n4", "n5", "10.0.0.7:2181"];
/// Physical times are small (ms since the epoch), so `ON TIME` integers, `HLC(l, c)` and RFC
/// 3339 times near 1970-01-01T00:00:01Z all hit the trace.
const BASE_MS: u64 = 1000;
/// Physical offsets 0..SPAN and counters 0..2: few distinct HLCs, so equal HLCs across nodes
/// (one step, several records) are frequent.
const SPAN_MS: u64 = 7;

/// inv.a / inv.b / inv.c: mostly small ints, sometimes floats, strings, booleans, NULL (a set
/// to null unsets), and the i64 extremes for overflow.
fn scalar() -> impl Strategy<Value = J> {
    prop_oneof![
        20 => (-3i64..10).prop_map(|i| json!(i)),
        3 => select(vec![0.5, 1.5, 2.0, -1.5, 2.5, 0.0]).prop_map(|f| json!(f)),
        1 => select(vec!["x", "n1", "b"]).prop_map(|s| json!(s)),
        1 => any::<bool>().prop_map(|b| json!(b)),
        2 => Just(J::Null),
        1 => select(vec![i64::MAX, i64::MIN, 1 << 62]).prop_map(|i| json!(i)),
        // Exactness across int and float: 2^53 + 1 has no f64; -0.0 = 0; 1e308 * 2 is not
        // finite.
        1 => prop_oneof![
            Just(json!(9_007_199_254_740_993_i64)),
            Just(json!(9_007_199_254_740_992.0)),
            Just(json!(-0.0)),
            Just(json!(1e308)),
        ],
    ]
}

/// Elements of the set variable inv.s (2 and 2.0 are one element).
fn elements() -> impl Strategy<Value = Vec<J>> {
    prop::collection::vec(
        prop_oneof![
            (0i64..4).prop_map(|i| json!(i)),
            Just(json!(2.0)),
            select(vec!["n1", "n2", "x"]).prop_map(|s| json!(s)),
        ],
        0..3,
    )
}

/// inv.st: a struct with field f (int or string), one without f, or not a struct at all.
fn structure() -> impl Strategy<Value = J> {
    prop_oneof![
        4 => (-2i64..5).prop_map(|f| json!({"f": f})),
        1 => Just(json!({"f": "x", "g": 1})),
        1 => Just(json!({"g": 1})),
        1 => Just(json!(3)),
        1 => Just(J::Null),
    ]
}

/// One `set` entry: a variable and a value of the kind that variable takes.
fn assignment() -> impl Strategy<Value = (&'static str, J)> {
    prop_oneof![
        4 => scalar().prop_map(|v| ("inv.a", v)),
        4 => scalar().prop_map(|v| ("inv.b", v)),
        4 => scalar().prop_map(|v| ("inv.c", v)),
        1 => structure().prop_map(|v| ("inv.st", v)),
        1 => prop_oneof![elements().prop_map(J::Array), Just(J::Null)].prop_map(|v| ("inv.s", v)),
        1 => prop_oneof![(0i64..3).prop_map(|i| json!(i)), Just(J::Null)].prop_map(|v| ("other.x", v)),
    ]
}

fn set_object(entries: Vec<(&'static str, J)>) -> J {
    let mut m = Map::new();
    for (k, v) in entries {
        m.insert(k.to_string(), v);
    }
    J::Object(m)
}

/// The change part of a record (`trace` adds node and hlc).
fn body() -> impl Strategy<Value = J> {
    let set = prop::collection::vec(assignment(), 1..4).prop_map(|s| json!({"set": set_object(s)}));
    let unset = subsequence(
        vec!["inv.a", "inv.b", "inv.c", "inv.st", "inv.s", "other.x"],
        1..3,
    )
    .prop_map(|u| json!({"unset": u}));
    let set_and_unset = (
        prop::collection::vec(assignment(), 1..3),
        select(vec!["inv.a", "inv.b", "inv.c"]),
    )
        .prop_map(|(s, u)| json!({"set": set_object(s), "unset": [u]}));
    let set_ops = (elements(), elements(), 0..3u8).prop_map(|(add, remove, which)| match which {
        0 => json!({"add": {"inv.s": add}}),
        1 => json!({"remove": {"inv.s": remove}}),
        _ => json!({"add": {"inv.s": add}, "remove": {"inv.s": remove}}),
    });
    let leave = prop::option::of(assignment()).prop_map(|s| match s {
        None => json!({"leave": true}),
        // The set applies, then the leave clears it.
        Some(a) => json!({"set": set_object(vec![a]), "leave": true}),
    });
    // inv.a, inv.b and inv.c together, so that the seed predicates have something to find.
    let set_abc = (scalar(), scalar(), scalar())
        .prop_map(|(a, b, c)| json!({"set": {"inv.a": a, "inv.b": b, "inv.c": c}}));
    prop_oneof![
        8 => set,
        6 => set_abc,
        2 => unset,
        1 => set_and_unset,
        2 => set_ops,
        2 => leave,
        2 => Just(json!({})),
    ]
}

/// A trace: NDJSON text in generation order (the reader sorts it stably by HLC).
fn trace() -> impl Strategy<Value = String> {
    subsequence(NODE_POOL.to_vec(), 2..=5).prop_flat_map(|nodes| {
        let n = nodes.len();
        prop::collection::vec((0..n, 0..SPAN_MS, 0..2u64, body()), 5..=30).prop_map(move |recs| {
            let mut text = String::new();
            for (node, l, c, body) in recs {
                let mut obj = Map::new();
                obj.insert("node".into(), json!(nodes[node]));
                obj.insert("hlc".into(), json!([BASE_MS + l, c]));
                if let J::Object(fields) = body {
                    obj.extend(fields);
                }
                text.push_str(&J::Object(obj).to_string());
                text.push('\n');
            }
            text
        })
    })
}

fn read(text: &str) -> Vec<Record> {
    let input = TraceInput {
        name: "generated".into(),
        reader: Box::new(std::io::Cursor::new(text.as_bytes().to_vec())),
    };
    let trace = read_traces(vec![input], &ReadOptions::default())
        .unwrap_or_else(|e| panic!("generated trace rejected: {e}\n{text}"));
    trace.records.into_iter().map(|(_, r)| r).collect()
}

// ---------------------------------------------------------------------------------------------
// Random queries

/// A value expression of WHEN.
#[derive(Clone, Debug)]
enum N {
    /// An occurrence of a variable: a placeholder (`inv.a`, `inv.st.f`, `inv.s`, ...).
    Var(&'static str),
    /// Text with no placeholder: a literal, a `['n']` selector or an aggregate call.
    Text(&'static str),
    Bin(&'static str, Box<N>, Box<N>),
    Neg(Box<N>),
    Func(&'static str, Box<N>),
    /// `COALESCE(x, y)`: the one function that does not pass a NULL through.
    Coalesce(Box<N>, Box<N>),
    /// `(e) LINK SAME_NODE` around a value (seed 4).
    Same(Box<N>),
}

/// A boolean expression of WHEN.
#[derive(Clone, Debug)]
enum B {
    Cmp(&'static str, N, N),
    IsNull(N, bool),
    InList(N, Vec<N>, bool),
    InSet(N, N, bool),
    /// `NODE($k) op NODE($j)` or `NODE($k) op 'n2'`; `k`/`j` pick among the placeholders that
    /// may be named at that point (resolved when the query is rendered).
    Node(&'static str, usize, Option<usize>, &'static str),
    And(Box<B>, Box<B>),
    Or(Box<B>, Box<B>),
    Not(Box<B>),
    Link(LinkKind, Box<B>),
    True,
}

fn var() -> impl Strategy<Value = N> {
    prop_oneof![
        4 => Just(N::Var("inv.a")),
        4 => Just(N::Var("inv.b")),
        4 => Just(N::Var("inv.c")),
        1 => Just(N::Var("inv.st.f")),
        1 => Just(N::Func("CARDINALITY", Box::new(N::Var("inv.s")))),
    ]
}

/// Operands with no placeholder: literals, selectors, aggregates (SPEC §3.3).
fn constant_like() -> impl Strategy<Value = N> {
    select(vec![
        "0",
        "1",
        "2",
        "3",
        "5",
        "(-2)",
        "1.5",
        "0.5",
        "NULL",
        "'x'",
        "inv.a['n1']",
        "inv.b['n2']",
        "inv.c['10.0.0.7:2181']",
        "inv.st.f['n3']",
        "COUNT(*)",
        "COUNT(inv.a)",
        "SUM(inv.a)",
        "SUM(inv.b)",
        "MIN(inv.b)",
        "MAX(inv.a)",
        "MAX(inv.c)",
        "AVG(inv.a)",
        "COUNT_DISTINCT(inv.c)",
        "SUM(inv.a + inv.b)",
        "MIN(inv.a['n1'])",
        "MAX(inv.st.f)",
        "COUNT(inv.s)",
        "MAX(CARDINALITY(inv.s))",
    ])
    .prop_map(N::Text)
}

fn leaf() -> impl Strategy<Value = N> {
    prop_oneof![3 => var(), 2 => constant_like()]
}

fn value_expr(depth: u32, link_ok: bool) -> BoxedStrategy<N> {
    if depth == 0 {
        return leaf().boxed();
    }
    let sub = || value_expr(depth - 1, link_ok);
    let ops = select(vec!["+", "-", "*", "/", "%", "+", "-"]);
    let mut choices: Vec<(u32, BoxedStrategy<N>)> = vec![
        (6, leaf().boxed()),
        (
            3,
            (ops, sub(), sub())
                .prop_map(|(o, l, r)| N::Bin(o, Box::new(l), Box::new(r)))
                .boxed(),
        ),
        (1, sub().prop_map(|x| N::Neg(Box::new(x))).boxed()),
        (
            1,
            (select(vec!["ABS", "FLOOR", "INT"]), sub())
                .prop_map(|(f, x)| N::Func(f, Box::new(x)))
                .boxed(),
        ),
        (
            1,
            (sub(), sub())
                .prop_map(|(x, y)| N::Coalesce(Box::new(x), Box::new(y)))
                .boxed(),
        ),
    ];
    if link_ok {
        choices.push((
            1,
            (select(vec!["+", "-"]), var(), var())
                .prop_map(|(o, l, r)| N::Same(Box::new(N::Bin(o, Box::new(l), Box::new(r)))))
                .boxed(),
        ));
    }
    proptest::strategy::Union::new_weighted(choices).boxed()
}

fn cmp_op() -> impl Strategy<Value = &'static str> {
    select(vec!["=", "!=", "<", "<=", ">", ">=", "<>", "=="])
}

fn atom(link_ok: bool) -> BoxedStrategy<B> {
    let v = || value_expr(1, link_ok);
    prop_oneof![
        8 => (cmp_op(), v(), v()).prop_map(|(o, l, r)| B::Cmp(o, l, r)),
        1 => (var(), select(vec!["'x'", "'n1'", "TRUE"]))
            .prop_map(|(x, s)| B::Cmp("=", x, N::Text(s))),
        // Sets and structs have = and != only.
        1 => (select(vec!["=", "!="]), select(vec!["inv.s", "inv.st"]))
            .prop_map(|(o, v)| B::Cmp(o, N::Var(v), N::Var(v))),
        2 => (v(), any::<bool>()).prop_map(|(x, n)| B::IsNull(x, n)),
        2 => (var(), prop::collection::vec(
                prop_oneof![3 => select(vec!["1", "2", "2.0", "NULL", "'x'"]).prop_map(N::Text),
                            1 => var()],
                1..4), any::<bool>())
            .prop_map(|(x, l, n)| B::InList(x, l, n)),
        2 => (prop_oneof![var(), select(vec!["1", "'n1'", "2.0"]).prop_map(N::Text)],
              any::<bool>())
            .prop_map(|(x, n)| B::InSet(x, N::Var("inv.s"), n)),
        2 => (select(vec!["=", "!=", "<"]), 0..4usize, prop::option::of(0..4usize),
              select(vec!["'n2'", "'10.0.0.7:2181'"]))
            .prop_map(|(o, k, j, s)| B::Node(o, k, j, s)),
        1 => Just(B::True),
    ]
    .boxed()
}

fn bool_expr(depth: u32, link_ok: bool) -> BoxedStrategy<B> {
    if depth == 0 {
        return atom(link_ok);
    }
    let sub = || bool_expr(depth - 1, link_ok);
    let mut choices: Vec<(u32, BoxedStrategy<B>)> = vec![
        (4, atom(link_ok)),
        (
            2,
            (sub(), sub())
                .prop_map(|(l, r)| B::And(Box::new(l), Box::new(r)))
                .boxed(),
        ),
        (
            2,
            (sub(), sub())
                .prop_map(|(l, r)| B::Or(Box::new(l), Box::new(r)))
                .boxed(),
        ),
        (1, sub().prop_map(|x| B::Not(Box::new(x))).boxed()),
    ];
    if link_ok {
        // LINK groups may not nest: the body is generated without LINK.
        choices.push((
            3,
            (
                prop_oneof![Just(LinkKind::SameNode), Just(LinkKind::EachNode)],
                bool_expr(depth - 1, false),
            )
                .prop_map(|(k, b)| B::Link(k, Box::new(b)))
                .boxed(),
        ));
    }
    proptest::strategy::Union::new_weighted(choices).boxed()
}

/// The five seed predicates of SPEC §3.2, as written there.
fn seed() -> impl Strategy<Value = B> {
    let sum = || N::Bin("+", Box::new(N::Var("inv.a")), Box::new(N::Var("inv.b")));
    let le = move || B::Cmp("<=", sum(), N::Var("inv.c"));
    select(vec![
        B::Link(LinkKind::SameNode, Box::new(le())),
        le(),
        B::Link(LinkKind::EachNode, Box::new(le())),
        B::Cmp("<=", N::Same(Box::new(sum())), N::Var("inv.c")),
        // NODE($1) = NODE($3): picks 0 and 2 among the outer placeholders $1, $2, $3.
        B::And(Box::new(le()), Box::new(B::Node("=", 0, Some(2), "''"))),
    ])
}

/// Where each placeholder lies: `None` outside LINK, else (group index, kind).
type Layout = Vec<Option<(usize, LinkKind)>>;

/// Placeholders and groups of a WHEN expression, numbered in textual order as SPEC §3.2 says
/// (the walk visits operands in the order `render` prints them).
#[derive(Default)]
struct Walk {
    layout: Layout,
    groups: usize,
    group: Option<(usize, LinkKind)>,
}

impl Walk {
    fn n(&mut self, e: &N) {
        match e {
            N::Var(_) => self.layout.push(self.group),
            N::Text(_) => {}
            N::Bin(_, l, r) => {
                self.n(l);
                self.n(r);
            }
            N::Neg(x) | N::Func(_, x) => self.n(x),
            N::Coalesce(x, y) => {
                self.n(x);
                self.n(y);
            }
            N::Same(x) => self.linked(LinkKind::SameNode, |w| w.n(x)),
        }
    }

    fn b(&mut self, e: &B) {
        match e {
            B::Cmp(_, l, r) | B::InSet(l, r, _) => {
                self.n(l);
                self.n(r);
            }
            B::IsNull(x, _) => self.n(x),
            B::InList(x, items, _) => {
                self.n(x);
                items.iter().for_each(|i| self.n(i));
            }
            B::Node(..) | B::True => {}
            B::And(l, r) | B::Or(l, r) => {
                self.b(l);
                self.b(r);
            }
            B::Not(x) => self.b(x),
            B::Link(k, x) => self.linked(*k, |w| w.b(x)),
        }
    }

    fn linked(&mut self, kind: LinkKind, f: impl FnOnce(&mut Walk)) {
        let g = self.groups;
        self.groups += 1;
        self.group = Some((g, kind));
        f(self);
        self.group = None;
    }

    /// Outer binding units: free placeholders plus SAME_NODE groups.
    fn units(&self) -> usize {
        let free = self.layout.iter().filter(|p| p.is_none()).count();
        let same: BTreeSet<usize> = self
            .layout
            .iter()
            .filter_map(|p| match p {
                Some((g, LinkKind::SameNode)) => Some(*g),
                _ => None,
            })
            .collect();
        free + same.len()
    }
}

/// Renders WHEN text; `NODE($k)` picks are resolved against the layout so that they name a
/// placeholder that exists and may be named there (not one inside another EACH_NODE group).
struct Render<'a> {
    layout: &'a Layout,
    out: String,
    groups: usize,
    group: Option<(usize, LinkKind)>,
}

impl Render<'_> {
    fn n(&mut self, e: &N) {
        match e {
            N::Var(v) => self.out.push_str(v),
            N::Text(t) => self.out.push_str(t),
            N::Bin(o, l, r) => {
                self.out.push('(');
                self.n(l);
                let _ = write!(self.out, " {o} ");
                self.n(r);
                self.out.push(')');
            }
            // `-(x)`, never `--x`, which would start a comment.
            N::Neg(x) => {
                self.out.push_str("-(");
                self.n(x);
                self.out.push(')');
            }
            N::Func(f, x) => {
                let _ = write!(self.out, "{f}(");
                self.n(x);
                self.out.push(')');
            }
            N::Coalesce(x, y) => {
                self.out.push_str("COALESCE(");
                self.n(x);
                self.out.push_str(", ");
                self.n(y);
                self.out.push(')');
            }
            N::Same(x) => {
                self.out.push('(');
                self.enter(LinkKind::SameNode);
                self.n(x);
                self.group = None;
                self.out.push_str(") LINK SAME_NODE");
            }
        }
    }

    fn b(&mut self, e: &B) {
        match e {
            B::Cmp(o, l, r) => {
                self.n(l);
                let _ = write!(self.out, " {o} ");
                self.n(r);
            }
            B::IsNull(x, neg) => {
                self.n(x);
                self.out
                    .push_str(if *neg { " IS NOT NULL" } else { " IS NULL" });
            }
            B::InList(x, items, neg) => {
                self.n(x);
                self.out.push_str(if *neg { " NOT IN (" } else { " IN (" });
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(", ");
                    }
                    self.n(item);
                }
                self.out.push(')');
            }
            B::InSet(x, s, neg) => {
                self.n(x);
                self.out.push_str(if *neg { " NOT IN " } else { " IN " });
                self.n(s);
            }
            B::Node(o, k, j, s) => {
                // Nameable: outer placeholders, and those of the EACH_NODE group we are in.
                let ok: Vec<usize> = (0..self.layout.len())
                    .filter(|&i| match self.layout[i] {
                        None | Some((_, LinkKind::SameNode)) => true,
                        Some(g) => Some(g) == self.group,
                    })
                    .collect();
                if ok.is_empty() {
                    self.out.push_str("TRUE");
                    return;
                }
                let pick = |x: usize| ok[x % ok.len()] + 1;
                let _ = write!(self.out, "NODE(${}) {o} ", pick(*k));
                match j {
                    Some(j) => {
                        let _ = write!(self.out, "NODE(${})", pick(*j));
                    }
                    None => self.out.push_str(s),
                }
            }
            B::And(l, r) | B::Or(l, r) => {
                self.out.push('(');
                self.b(l);
                self.out.push_str(if matches!(e, B::And(..)) {
                    " AND "
                } else {
                    " OR "
                });
                self.b(r);
                self.out.push(')');
            }
            B::Not(x) => {
                self.out.push_str("NOT (");
                self.b(x);
                self.out.push(')');
            }
            B::Link(k, x) => {
                self.out.push('(');
                self.enter(*k);
                self.b(x);
                self.group = None;
                self.out.push_str(match k {
                    LinkKind::SameNode => ") LINK SAME_NODE",
                    LinkKind::EachNode => ") LINK EACH_NODE",
                });
            }
            B::True => self.out.push_str("TRUE"),
        }
    }

    fn enter(&mut self, kind: LinkKind) {
        self.group = Some((self.groups, kind));
        self.groups += 1;
    }
}

/// Arithmetic that is monotone in each variable (sums, differences, scaling by a constant,
/// aggregates): the shapes an engine may answer from per-variable extremes instead of by
/// enumeration, where overflow, NULLs, non-numbers and int/float exactness are the traps.
fn linear() -> BoxedStrategy<N> {
    let v = || var().boxed();
    let k = || {
        select(vec![
            "2",
            "(-1)",
            "0.5",
            "3",
            "MAX(inv.a)",
            "MIN(inv.c)",
            "SUM(inv.b)",
        ])
    };
    fn b(o: &'static str, l: N, r: N) -> N {
        N::Bin(o, Box::new(l), Box::new(r))
    }
    prop_oneof![
        3 => v(),
        3 => (v(), v()).prop_map(|(l, r)| b("+", l, r)).boxed(),
        2 => (v(), v()).prop_map(|(l, r)| b("-", l, r)).boxed(),
        1 => (v(), k()).prop_map(|(x, c)| b("*", N::Text(c), x)).boxed(),
        1 => (v(), k()).prop_map(|(x, c)| b("/", x, N::Text(c))).boxed(),
        1 => (v(), k()).prop_map(|(x, c)| b("+", x, N::Text(c))).boxed(),
        1 => v().prop_map(|x| N::Neg(Box::new(x))).boxed(),
        1 => (v(), v(), v()).prop_map(|(x, y, z)| b("-", b("+", x, y), z)).boxed(),
    ]
    .boxed()
}

fn linear_when() -> BoxedStrategy<B> {
    let cmp = || {
        (cmp_op(), linear(), linear())
            .prop_map(|(o, l, r)| B::Cmp(o, l, r))
            .boxed()
    };
    let link = prop_oneof![Just(LinkKind::SameNode), Just(LinkKind::EachNode)];
    prop_oneof![
        6 => cmp(),
        2 => (link, cmp()).prop_map(|(k, c)| B::Link(k, Box::new(c))).boxed(),
        1 => (cmp(), select(vec!["!=", "<"]), 0..4usize, 0..4usize)
            .prop_map(|(c, o, k, j)| B::And(Box::new(c), Box::new(B::Node(o, k, Some(j), ""))))
            .boxed(),
        1 => (cmp(), cmp()).prop_map(|(l, r)| B::Or(Box::new(l), Box::new(r))).boxed(),
    ]
    .boxed()
}

/// WHEN text with at most 4 outer binding units (so naive enumeration stays cheap).
fn when_clause() -> impl Strategy<Value = String> {
    render_when(prop_oneof![1 => seed(), 5 => bool_expr(2, true)])
}

fn render_when(e: impl Strategy<Value = B>) -> impl Strategy<Value = String> {
    e.prop_filter_map("more than 4 outer binding units", |e| {
        let mut w = Walk::default();
        w.b(&e);
        if w.units() > 4 {
            return None;
        }
        let mut r = Render {
            layout: &w.layout,
            out: String::new(),
            groups: 0,
            group: None,
        };
        r.b(&e);
        Some(r.out)
    })
}

fn select_list(with_other: bool) -> BoxedStrategy<String> {
    let mut items = vec![
        "inv.a",
        "inv.b",
        "inv.c",
        "inv.st.f",
        "inv.s",
        "inv.st",
        "inv.a['n1']",
        "inv.c['10.0.0.7:2181']",
        "inv.st.f['n1']",
        "inv.b[n2]",
        "inv.*",
        "COUNT(*)",
        "COUNT(inv.a)",
        "SUM(inv.a)",
        "MIN(inv.b)",
        "MAX(inv.c)",
        "AVG(inv.a)",
        "COUNT_DISTINCT(inv.b)",
        "SUM(inv.a + inv.b) AS m1",
        "MAX(inv.st.f) AS m2",
        "MIN(inv.a['n2'])",
        "avg(inv.c) as m3",
    ];
    if with_other {
        items.extend(["other.x", "other.*", "COUNT(other.x)"]);
    }
    prop_oneof![
        1 => Just("*".to_string()),
        9 => prop::collection::vec(select(items), 1..4).prop_map(|v| v.join(", ")),
    ]
    .boxed()
}

fn node_id() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec!["n1", "n2", "n3", "n4", "n5"]).prop_map(String::from),
        select(NODE_POOL.to_vec()).prop_map(|n| format!("'{n}'")),
    ]
}

fn time_clause() -> impl Strategy<Value = String> {
    // From just before the first record to just after the last.
    let ms = || (0..SPAN_MS + 2).prop_map(|x| BASE_MS - 1 + x);
    let hlc = || (ms(), 0..3u64).prop_map(|(l, c)| format!("HLC({l}, {c})"));
    // 1970-01-01T00:00:01.00xZ is BASE_MS + x.
    let rfc = || (0..SPAN_MS + 1).prop_map(|x| format!("'1970-01-01T00:00:01.{x:03}Z'"));
    prop_oneof![
        3 => (ms(), ms()).prop_map(|(a, b)| format!("ON TIME {a} TO {b}")),
        2 => (hlc(), hlc()).prop_map(|(a, b)| format!("ON TIME {a} TO {b}")),
        1 => (hlc(), ms()).prop_map(|(a, b)| format!("ON TIME {a} TO {b}")),
        3 => ms().prop_map(|a| format!("ON TIME {a}")),
        2 => hlc().prop_map(|a| format!("ON TIME {a}")),
        1 => (rfc(), rfc()).prop_map(|(a, b)| format!("ON TIME {a} TO {b}")),
        1 => (0..5u64).prop_map(|x| format!("ON TIME NOW - {x} TO NOW")),
        1 => (0..3u64).prop_map(|x| format!("ON TIME NOW - {x}")),
    ]
}

/// A whole query: SELECT ... FROM ... [WHEN] [AT NODES] [ON TIME] [EMIT] [LIMIT].
fn query() -> impl Strategy<Value = String> {
    query_with(|| when_clause().boxed())
}

/// A query whose WHEN is always a comparison of [`linear`] expressions.
fn linear_query() -> impl Strategy<Value = String> {
    query_with(|| render_when(linear_when()).boxed())
}

fn query_with(
    when: impl Fn() -> BoxedStrategy<String> + Clone + 'static,
) -> impl Strategy<Value = String> {
    prop_oneof![4 => Just(false), 1 => Just(true)].prop_flat_map(move |with_other| {
        (
            select_list(with_other),
            prop::option::weighted(0.85, when()),
            prop::option::weighted(0.25, prop::collection::vec(node_id(), 1..4)),
            prop::option::weighted(0.3, time_clause()),
            select(vec![
                "",
                "",
                "",
                " EMIT CUTS",
                " EMIT CHANGES",
                " EMIT CHANGES",
            ]),
            prop::option::weighted(0.2, 0..4u64),
        )
            .prop_map(move |(sel, when, at, time, emit, limit)| {
                let mut q = format!(
                    "SELECT {sel} FROM {}",
                    if with_other { "inv, other" } else { "inv" }
                );
                if let Some(w) = when {
                    let _ = write!(q, " WHEN {w}");
                }
                if let Some(at) = at {
                    let _ = write!(q, " AT NODES {}", at.join(", "));
                }
                if let Some(t) = time {
                    let _ = write!(q, " {t}");
                }
                q.push_str(emit);
                if let Some(n) = limit {
                    let _ = write!(q, " LIMIT {n}");
                }
                q
            })
    })
}

// ---------------------------------------------------------------------------------------------
// The comparison

/// What the query names, read off its text independently of the planner: `log.key` (a struct
/// field or selector still names `log.key`), and logs referenced whole by `log.*` or `*`.
fn referenced_in_text(query: &str, logs: &[String]) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut vars = BTreeSet::new();
    let mut whole = BTreeSet::new();
    if query.starts_with("SELECT * ") {
        whole.extend(logs.iter().cloned());
    }
    for log in logs {
        let pat = format!("{log}.");
        let mut rest = query;
        while let Some(i) = rest.find(&pat) {
            // Only at a word start (not inside another identifier or a string like 'n1').
            let before = query.len() - rest.len() + i;
            let ok_start = before == 0
                || !query.as_bytes()[before - 1].is_ascii_alphanumeric()
                    && query.as_bytes()[before - 1] != b'_'
                    && query.as_bytes()[before - 1] != b'.';
            rest = &rest[i + pat.len()..];
            if !ok_start {
                continue;
            }
            if rest.starts_with('*') {
                whole.insert(log.clone());
                continue;
            }
            let key: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !key.is_empty() {
                vars.insert(format!("{log}.{key}"));
            }
        }
    }
    (vars, whole)
}

/// The live driver, fed the records in a random interleaving (each node's records in order,
/// evaluated in random batches), emits what a replay of the same records emits, unless a
/// record arrived late (then the SPEC promises nothing of the kind).
fn check_live(
    plan: &rql_planner::Plan,
    records: &[Record],
    trace_text: &str,
    query: &str,
) -> Result<(), TestCaseError> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (trace_text, query).hash(&mut hasher);
    let mut rng = hasher.finish() | 1;
    let mut next = move |n: usize| {
        // xorshift64: deterministic per case, so a failure reproduces.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n.max(1) as u64) as usize
    };
    let mut queues: BTreeMap<&str, std::collections::VecDeque<usize>> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        queues.entry(r.node.as_str()).or_default().push_back(i);
    }
    let mut arrival = Vec::with_capacity(records.len());
    while !queues.is_empty() {
        let key = *queues
            .keys()
            .nth(next(queues.len()))
            .expect("a node is left");
        let q = queues.get_mut(key).expect("the node's queue");
        arrival.extend(q.pop_front());
        if q.is_empty() {
            queues.remove(key);
        }
    }
    let last = records.iter().map(|r| r.hlc).max().unwrap_or(Hlc::MIN);
    let last = match plan.time {
        rql_planner::TimeSpec::Snapshot { at } => last.max(at),
        _ => last,
    };
    let Some(close) = last.packed().checked_add(1).map(Hlc::from_packed) else {
        return Ok(());
    };
    let batch = 1 + next(4);
    let live = run_live(plan, records, &arrival, close, batch)
        .map_err(|e| TestCaseError::fail(format!("live failed: {e}\nquery: {query}")))?;
    let Some(live) = live else {
        LIVE_SKIPPED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Ok(());
    };
    LIVE_COMPARED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let all = with_heartbeats(records, close);
    let refs: Vec<&Record> = all.iter().collect();
    let mut replayed = Vec::new();
    replay(plan, &refs, ExecOptions::default(), &mut |r| {
        replayed.push(r)
    })
    .map_err(|e| TestCaseError::fail(format!("replay failed: {e}")))?;
    let (live, replayed) = (lines(&live), lines(&replayed));
    if live != replayed {
        let sorted: String = all.iter().map(|r| r.to_json_line() + "\n").collect();
        return Err(TestCaseError::fail(format!(
            "live and replay disagree\nquery: {query}\nbatch {batch}, arrival {arrival:?}\n\
             trace (sorted, with heartbeats):\n{sorted}live:\n{}\nreplay:\n{}",
            live.join("\n"),
            replayed.join("\n")
        )));
    }
    Ok(())
}

static LIVE_SKIPPED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static LIVE_COMPARED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Runs one case; `Ok(false)` if the query does not plan (skipped).
fn check(trace_text: &str, query: &str) -> Result<bool, TestCaseError> {
    let records = read(trace_text);
    let Ok(plan) = plan_of(query, &records) else {
        return Ok(false);
    };
    let (vars, whole) = referenced_in_text(query, &plan.logs);
    let planned: BTreeSet<String> = plan.referenced.vars.iter().map(|v| v.name()).collect();
    prop_assert_eq!(&planned, &vars, "referenced variables of {}", query);
    prop_assert_eq!(
        &plan.referenced.whole_logs,
        &whole,
        "whole logs of {}",
        query
    );

    let refs: Vec<&Record> = records.iter().collect();
    let mut engine = Vec::new();
    let run = replay(&plan, &refs, ExecOptions::default(), &mut |r| {
        engine.push(r)
    });
    if let Err(e) = run {
        return Err(TestCaseError::fail(format!(
            "engine failed: {e}\nquery: {query}\ntrace:\n{trace_text}"
        )));
    }
    // The streaming driver (inputs per node, merged, read twice) gives the same records.
    let streamed = match run_streaming(&plan, &inputs_per_node(&records), ExecOptions::default()) {
        Ok(out) => lines(&out),
        Err(e) => {
            return Err(TestCaseError::fail(format!(
                "streaming failed: {e}\nquery: {query}\ntrace:\n{trace_text}"
            )))
        }
    };
    check_live(&plan, &records, trace_text, query)?;
    let naive = naive::evaluate(&plan, &records);
    let (engine, naive) = (lines(&engine), lines(&naive));
    prop_assert_eq!(
        &streamed,
        &engine,
        "streaming replay differs\nquery: {}",
        query
    );
    if engine != naive {
        let sorted: String = records.iter().map(|r| r.to_json_line() + "\n").collect();
        return Err(TestCaseError::fail(format!(
            "engine and naive evaluator disagree\nquery: {query}\ntrace (sorted):\n{sorted}\
             engine:\n{}\nnaive:\n{}",
            engine.join("\n"),
            naive.join("\n")
        )));
    }
    Ok(true)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 3000,
        max_global_rejects: 20_000,
        // A failure prints the shrunk query and trace; no regression file in the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn engine_agrees_with_the_naive_evaluator(trace in trace(), query in query()) {
        check(&trace, &query)?;
        let (skipped, compared) = (
            LIVE_SKIPPED.load(std::sync::atomic::Ordering::Relaxed),
            LIVE_COMPARED.load(std::sync::atomic::Ordering::Relaxed),
        );
        // Cases with a late record (a node left, and came back behind the frontier) are not
        // comparable; they must stay the exception, or the live check tests little.
        prop_assert!(compared + skipped < 200 || skipped * 4 < compared, "{skipped} live cases skipped, {compared} compared");
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1500,
        max_global_rejects: 20_000,
        // A failure prints the shrunk query and trace; no regression file in the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn engine_agrees_on_linear_comparisons(trace in trace(), query in linear_query()) {
        check(&trace, &query)?;
    }
}

/// The generators must produce queries that plan (a skipped case tests nothing) and cases
/// that emit something (an empty output on both sides tests little). Also reports, with
/// `--nocapture`, how often each kind of plan comes up.
#[test]
fn generated_cases_mostly_plan_and_emit() {
    const SAMPLE: usize = 300;
    let generators: [(&str, BoxedStrategy<String>); 2] = [
        ("query", query().boxed()),
        ("linear_query", linear_query().boxed()),
    ];
    for (name, queries) in generators {
        let mut runner = TestRunner::deterministic();
        let traces = trace();
        let (mut planned, mut emitted, mut with_when, mut witnessed) = (0, 0, 0, 0);
        let mut unplanned = Vec::new();
        // How often each evaluation strategy comes up: every one must be exercised.
        let mut strategies: std::collections::BTreeMap<String, usize> = Default::default();
        for _ in 0..SAMPLE {
            let t = traces.new_tree(&mut runner).expect("trace").current();
            let q = queries.new_tree(&mut runner).expect("query").current();
            let records = read(&t);
            match plan_of(&q, &records) {
                Ok(plan) => {
                    planned += 1;
                    let chosen = rql_planner::strategy::choose(&plan);
                    *strategies
                        .entry(format!("outer {:?}", chosen.outer))
                        .or_default() += 1;
                    for a in &chosen.aggregates {
                        *strategies.entry(format!("aggregate {a:?}")).or_default() += 1;
                    }
                    for g in chosen.groups.iter().flatten() {
                        *strategies.entry(format!("group {g:?}")).or_default() += 1;
                    }
                    with_when += usize::from(plan.when.is_some());
                    let out = naive::evaluate(&plan, &records);
                    emitted += usize::from(!out.is_empty());
                    witnessed += usize::from(
                        out.iter()
                            .any(|r| matches!(r, OutputRecord::Cut(c) if c.witness.is_some())),
                    );
                }
                Err(e) => unplanned.push(format!("{q}\n  {e}")),
            }
        }
        println!(
            "{name}: {planned} of {SAMPLE} plan, {with_when} with WHEN, {emitted} emit, \
             {witnessed} with a witness; strategies {strategies:?}"
        );
        let wanted: &[&str] = if name == "query" {
            &[
                "outer Always",
                "outer Direct",
                "outer NodeCache",
                "outer Extremes",
                "outer Enumerate",
                "aggregate Incremental",
                "aggregate ScanPerCut",
                "group NodeCache",
                "group ForAllPerBinding",
            ]
        } else {
            &["outer Extremes"]
        };
        for w in wanted {
            let n = strategies.get(*w).copied().unwrap_or(0);
            assert!(
                n >= 3,
                "{name}: strategy {w} came up {n} times in {SAMPLE} cases"
            );
        }
        assert!(
            planned * 100 >= SAMPLE * 80,
            "{name}: only {planned} of {SAMPLE} generated queries plan; e.g.\n{}",
            unplanned[..unplanned.len().min(10)].join("\n")
        );
        assert!(
            with_when * 100 >= planned * 70,
            "{name}: {with_when} of {planned} have WHEN"
        );
        assert!(
            emitted * 100 >= planned * 30,
            "{name}: {emitted} of {planned} emit"
        );
        assert!(
            witnessed * 100 >= planned * 15,
            "{name}: {witnessed} of {planned} have a witness"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Disagreements found by the properties above, kept as fixed cases

/// Engine output and naive output for one query over one NDJSON trace.
fn both(trace_text: &str, query: &str) -> (Vec<String>, Vec<String>) {
    let records = read(trace_text);
    let plan = plan_of(query, &records).expect("plans");
    let refs: Vec<&Record> = records.iter().collect();
    let mut engine = Vec::new();
    replay(&plan, &refs, ExecOptions::default(), &mut |r| {
        engine.push(r)
    })
    .expect("runs");
    (lines(&engine), lines(&naive::evaluate(&plan, &records)))
}

/// SPEC §4.3: `LIMIT n` stops after n records, so `LIMIT 0` emits none.
#[test]
fn limit_zero_emits_nothing() {
    let trace = r#"{"node":"n1","hlc":[1000,0],"set":{"inv.a":1}}"#;
    let (engine, naive) = both(trace, "SELECT inv.a FROM inv LIMIT 0");
    assert_eq!(naive, Vec::<String>::new());
    assert_eq!(engine, naive);
}

/// SPEC §3.4: `<`/`<=`/... order strings by bytes, and §3.2: the cut satisfies WHEN iff some
/// binding makes it TRUE. Here c_n1 = 'a' <= b_n1 = 'x', so `inv.c <= inv.b` holds with the
/// witness {$1: n1, $2: n1}; and MAX(inv.b) = 'x' (§6: MIN/MAX are defined over all-strings),
/// so `inv.b >= MAX(inv.b)` holds on n1; although no value is a number.
#[test]
fn order_comparisons_of_placeholders_holding_strings() {
    let trace = concat!(
        r#"{"node":"n1","hlc":[1000,0],"set":{"inv.b":"x","inv.c":"a"}}"#,
        "\n",
        r#"{"node":"n2","hlc":[1000,0],"set":{"inv.b":"b","inv.c":"z"}}"#,
    );
    let values = r#""values":{"inv.b":{"n1":"x","n2":"b"}}"#;
    for (query, witness) in [
        (
            "SELECT inv.b FROM inv WHEN inv.c <= inv.b",
            r#"{"$1":"n1","$2":"n1"}"#,
        ),
        (
            "SELECT inv.b FROM inv WHEN inv.b >= MAX(inv.b)",
            r#"{"$1":"n1"}"#,
        ),
    ] {
        let (engine, naive) = both(trace, query);
        let expected = format!(r#"{{"seq":1,"hlc":[1000,0],{values},"witness":{witness}}}"#);
        assert_eq!(naive, [expected], "{query}");
        assert_eq!(engine, naive, "{query}");
    }
}

/// A cached WHEN answer must not outlive a change of P(t): here n4 leaves, P(t) becomes
/// empty, and an EACH_NODE group evaluated per cut (its body reads an aggregate) is FALSE,
/// although no aggregate value changed.
#[test]
fn a_cached_answer_is_not_reused_when_p_changes() {
    let trace = concat!(
        r#"{"node":"n2","hlc":[1000,0],"set":{"inv.a":0}}"#,
        "\n",
        r#"{"node":"n4","hlc":[1000,0],"set":{"inv.b":0}}"#,
        "\n",
        r#"{"node":"n4","hlc":[1005,1],"leave":true}"#,
    );
    let query = "SELECT * FROM inv WHEN (COUNT(inv.a) IS NOT NULL) LINK EACH_NODE AT NODES n4";
    let (engine, naive) = both(trace, query);
    assert_eq!(naive.len(), 1, "{naive:?}");
    assert_eq!(engine, naive);
}
