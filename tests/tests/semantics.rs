//! Hand-written semantic tests, one or more per section of `../shared/SPEC.md`. Every trace is a
//! small inline NDJSON text and every expected output was worked out by hand from the SPEC
//! text (not by running the engine); outputs are compared by the rule of
//! `../shared/examples/cmp.py` (`rql_tests::compare::same_output`), plus a few raw-text checks
//! where the SPEC fixes the canonical printed form.

use log_server::Record;
use rql_exec::ExecOptions;
use rql_planner::ops::WarningKind;
use rql_tests::compare::same_output;
use rql_tests::{records_from_ndjson, run_query, run_query_with};

/// Run `query` over `records` and compare with the expected JSON Lines (blank lines ignored).
#[track_caller]
fn check(records: &[Record], query: &str, expected: &str) {
    let lines = run_query(query, records).unwrap_or_else(|e| panic!("query failed: {query}\n{e}"));
    if let Err(diff) = same_output(expected, &lines) {
        panic!(
            "query: {query}\n{diff}\nactual output:\n{}",
            lines.join("\n")
        );
    }
}

/// Run `query` and return its single output line (raw text), for checks of the printed form.
#[track_caller]
fn one_line(records: &[Record], query: &str) -> String {
    let lines = run_query(query, records).unwrap_or_else(|e| panic!("query failed: {query}\n{e}"));
    assert_eq!(
        lines.len(),
        1,
        "query: {query}\noutput:\n{}",
        lines.join("\n")
    );
    lines.into_iter().next().unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// §3.2 seed predicates
// ---------------------------------------------------------------------------------------------

/// Two nodes, six steps. Per step (a, b, c) of n1 / n2 and which seed predicates hold:
///   1000  (1,1,5)  / (2,2,6)   all five
///   2000  (1,1,5)  / (2,2,3)   SAME_NODE, free, pair-sum, NODE($1)=NODE($3); not EACH_NODE
///   3000  (1,1,0)  / (5,5,2)   free, pair-sum (a1+b1 <= c2) only
///   4000  (0,10,5) / (10,0,5)  free, NODE($1)=NODE($3) (a1+b2 <= c1) only
///   5000  (0,10,-1)/ (10,0,5)  free only (a1+b2 <= c2)
///   6000  (5,5,0)  / (5,5,0)   none
const SEED_TRACE: &str = r#"
{"node":"n1","hlc":[1000,0],"set":{"inv.a":1,"inv.b":1,"inv.c":5}}
{"node":"n2","hlc":[1000,0],"set":{"inv.a":2,"inv.b":2,"inv.c":6}}
{"node":"n2","hlc":[2000,0],"set":{"inv.c":3}}
{"node":"n1","hlc":[3000,0],"set":{"inv.a":1,"inv.b":1,"inv.c":0}}
{"node":"n2","hlc":[3000,0],"set":{"inv.a":5,"inv.b":5,"inv.c":2}}
{"node":"n1","hlc":[4000,0],"set":{"inv.a":0,"inv.b":10,"inv.c":5}}
{"node":"n2","hlc":[4000,0],"set":{"inv.a":10,"inv.b":0,"inv.c":5}}
{"node":"n1","hlc":[5000,0],"set":{"inv.c":-1}}
{"node":"n1","hlc":[6000,0],"set":{"inv.a":5,"inv.b":5,"inv.c":0}}
{"node":"n2","hlc":[6000,0],"set":{"inv.a":5,"inv.b":5,"inv.c":0}}
"#;

/// SPEC §3.2 (seed examples table) and §6 (witness = smallest binding): the five seed
/// predicates on one trace where each emits a different set of cuts.
#[test]
fn seed_predicates_of_3_2_give_five_different_answers() {
    let r = records_from_ndjson(SEED_TRACE);
    // ∃ i: a_i + b_i <= c_i
    check(
        &r,
        "SELECT inv.c FROM inv WHEN (inv.a + inv.b <= inv.c) LINK SAME_NODE",
        r#"
{"seq":1,"hlc":[1000,0],"values":{"inv.c":{"n1":5,"n2":6}},"witness":{"$1":"n1","$2":"n1","$3":"n1"}}
{"seq":2,"hlc":[2000,0],"values":{"inv.c":{"n1":5,"n2":3}},"witness":{"$1":"n1","$2":"n1","$3":"n1"}}
"#,
    );
    // ∃ i, j, k: a_i + b_j <= c_k
    check(
        &r,
        "SELECT inv.c FROM inv WHEN inv.a + inv.b <= inv.c",
        r#"
{"seq":1,"hlc":[1000,0],"values":{"inv.c":{"n1":5,"n2":6}},"witness":{"$1":"n1","$2":"n1","$3":"n1"}}
{"seq":2,"hlc":[2000,0],"values":{"inv.c":{"n1":5,"n2":3}},"witness":{"$1":"n1","$2":"n1","$3":"n1"}}
{"seq":3,"hlc":[3000,0],"values":{"inv.c":{"n1":0,"n2":2}},"witness":{"$1":"n1","$2":"n1","$3":"n2"}}
{"seq":4,"hlc":[4000,0],"values":{"inv.c":{"n1":5,"n2":5}},"witness":{"$1":"n1","$2":"n2","$3":"n1"}}
{"seq":5,"hlc":[5000,0],"values":{"inv.c":{"n1":-1,"n2":5}},"witness":{"$1":"n1","$2":"n2","$3":"n2"}}
"#,
    );
    // ∀ i ∈ P: a_i + b_i <= c_i (no outer placeholder: no witness)
    check(
        &r,
        "SELECT inv.c FROM inv WHEN (inv.a + inv.b <= inv.c) LINK EACH_NODE",
        r#"
{"seq":1,"hlc":[1000,0],"values":{"inv.c":{"n1":5,"n2":6}}}
"#,
    );
    // ∃ i, k: a_i + b_i <= c_k
    check(
        &r,
        "SELECT inv.c FROM inv WHEN (inv.a + inv.b) LINK SAME_NODE <= inv.c",
        r#"
{"seq":1,"hlc":[1000,0],"values":{"inv.c":{"n1":5,"n2":6}},"witness":{"$1":"n1","$2":"n1","$3":"n1"}}
{"seq":2,"hlc":[2000,0],"values":{"inv.c":{"n1":5,"n2":3}},"witness":{"$1":"n1","$2":"n1","$3":"n1"}}
{"seq":3,"hlc":[3000,0],"values":{"inv.c":{"n1":0,"n2":2}},"witness":{"$1":"n1","$2":"n1","$3":"n2"}}
"#,
    );
    // ∃ i, j: a_i + b_j <= c_i
    check(
        &r,
        "SELECT inv.c FROM inv WHEN (inv.a + inv.b <= inv.c) AND NODE($1) = NODE($3)",
        r#"
{"seq":1,"hlc":[1000,0],"values":{"inv.c":{"n1":5,"n2":6}},"witness":{"$1":"n1","$2":"n1","$3":"n1"}}
{"seq":2,"hlc":[2000,0],"values":{"inv.c":{"n1":5,"n2":3}},"witness":{"$1":"n1","$2":"n1","$3":"n1"}}
{"seq":4,"hlc":[4000,0],"values":{"inv.c":{"n1":5,"n2":5}},"witness":{"$1":"n1","$2":"n2","$3":"n1"}}
"#,
    );
}

// ---------------------------------------------------------------------------------------------
// §3.4 NULL and three-valued logic
// ---------------------------------------------------------------------------------------------

/// SPEC §3.4 (NULL: three-valued AND/OR/NOT, IS NULL never NULL, WHEN requires TRUE), §6 (`x IN
/// (e, ...)` is SQL IN), §1.1 (an absent variable is NULL). One node: one binding per cut.
#[test]
fn null_three_valued_logic_and_when_requires_true() {
    // inv.b is named (set to null = unset) but never present.
    let r = records_from_ndjson(r#"{"node":"n1","hlc":[1000,0],"set":{"inv.a":1,"inv.b":null}}"#);
    let w1 = r#"{"$1":"n1"}"#;
    let w2 = r#"{"$1":"n1","$2":"n1"}"#;
    // (WHEN, Some(witness) if the cut is emitted)
    let cases: &[(&str, Option<&str>)] = &[
        ("inv.b IS NULL", Some(w1)),
        ("inv.b IS NOT NULL", None),
        ("inv.b = 1", None),
        ("inv.b != 1", None),
        ("inv.b = NULL", None),
        ("NOT (inv.b = 1)", None),
        ("NOT inv.b = 1", None),
        // NULL OR TRUE = TRUE; NULL OR FALSE = NULL
        ("inv.b = 1 OR inv.a = 1", Some(w2)),
        ("inv.b = 1 OR inv.a = 2", None),
        ("NOT (inv.b = 1 OR inv.a = 2)", None),
        ("(inv.b = 1 OR inv.a = 2) IS NULL", Some(w2)),
        // NULL AND FALSE = FALSE; NULL AND TRUE = NULL
        ("inv.b = 1 AND inv.a = 2", None),
        ("NOT (inv.b = 1 AND inv.a = 2)", Some(w2)),
        ("(inv.b = 1 AND inv.a = 2) IS NOT NULL", Some(w2)),
        ("NOT (inv.b = 1 AND inv.a = 1)", None),
        ("(inv.b = 1) IS NULL", Some(w1)),
        ("inv.b + 1 IS NULL", Some(w1)),
        // IN with NULL items: a match is TRUE, no match with a NULL item is NULL
        ("inv.a IN (1, NULL)", Some(w1)),
        ("inv.a IN (inv.b, 1)", Some(w2)),
        ("inv.a IN (2, NULL)", None),
        ("NOT (inv.a IN (2, NULL))", None),
        ("inv.a NOT IN (2, NULL)", None),
        ("inv.a NOT IN (2, 3)", Some(w1)),
        ("(inv.a IN (2, NULL)) IS NULL", Some(w1)),
        ("inv.b IN (1, 2)", None),
        ("(inv.b IN (1, 2)) IS NULL", Some(w1)),
        ("COALESCE(inv.b, 7) = 7", Some(w1)),
        // constant WHEN (no placeholders: no witness key)
        ("NULL", None),
        ("NULL IS NULL", Some("")),
        ("NOT NULL", None),
    ];
    for (when, witness) in cases {
        let query = format!("SELECT inv.a, inv.b FROM inv WHEN {when}");
        let expected = match witness {
            None => String::new(),
            Some("") => r#"{"seq":1,"hlc":[1000,0],"values":{"inv.a":{"n1":1},"inv.b":{}}}"#.into(),
            Some(w) => format!(
                r#"{{"seq":1,"hlc":[1000,0],"values":{{"inv.a":{{"n1":1}},"inv.b":{{}}}},"witness":{w}}}"#
            ),
        };
        check(&r, &query, &expected);
    }

    // An occurrence bound to a node where the variable is absent is NULL: IS NULL finds n2.
    let r = records_from_ndjson(
        r#"
{"node":"n1","hlc":[1000,0],"set":{"inv.a":1}}
{"node":"n2","hlc":[1000,0],"set":{"inv.b":2}}
"#,
    );
    check(
        &r,
        "SELECT inv.a FROM inv WHEN inv.a IS NULL",
        r#"{"seq":1,"hlc":[1000,0],"values":{"inv.a":{"n1":1}},"witness":{"$1":"n2"}}"#,
    );
    // On one node, 1 + NULL and NULL + 2 are NULL; across nodes a_1 + b_2 = 3.
    check(
        &r,
        "SELECT inv.a FROM inv WHEN (inv.a + inv.b = 3) LINK SAME_NODE",
        "",
    );
    check(
        &r,
        "SELECT inv.a FROM inv WHEN inv.a + inv.b = 3",
        r#"{"seq":1,"hlc":[1000,0],"values":{"inv.a":{"n1":1}},"witness":{"$1":"n1","$2":"n2"}}"#,
    );
    // (n1, n1, n1) gives NULL OR FALSE; the next binding (n1, n1, n2) gives NULL OR TRUE.
    check(
        &r,
        "SELECT inv.a FROM inv WHEN inv.a + inv.b = 3 OR inv.a IS NULL",
        r#"{"seq":1,"hlc":[1000,0],"values":{"inv.a":{"n1":1}},"witness":{"$1":"n1","$2":"n1","$3":"n2"}}"#,
    );
}

// ---------------------------------------------------------------------------------------------
// §3.4 / §6 arithmetic
// ---------------------------------------------------------------------------------------------

/// SPEC §3.4 (division or modulo by zero → NULL + warning; `/` always float; checked int
/// overflow → NULL + warning; warnings never abort) and §6 (`%` truncated, fmod for floats,
/// `i64::MIN % -1 = 0`, a NULL operand gives NULL without a warning).
#[test]
fn division_by_zero_and_overflow_are_null_with_warnings_and_slash_is_float() {
    let r = records_from_ndjson(
        r#"{"node":"n1","hlc":[1000,0],"set":{"inv.a":7,"inv.z":0,"inv.m":-7,"inv.f":0.0,"inv.max":9223372036854775807,"inv.min":-9223372036854775808,"inv.n":null}}"#,
    );
    // Values of expressions through single-node aggregates (SUM of one value is that value,
    // SUM/COUNT of no value are 0).
    let q = "SELECT SUM(inv.a / 2) AS half, SUM(inv.a / 7) AS one, SUM(inv.m % 3) AS r1, \
             SUM(inv.a % -3) AS r2, SUM(inv.min % -1) AS r3, SUM(inv.a % 2.5) AS r4, \
             COUNT(inv.a / inv.z) AS d0, COUNT(inv.a % inv.z) AS m0, COUNT(inv.a / inv.f) AS df, \
             COUNT(inv.max + 1) AS o1, COUNT(inv.min - 1) AS o2, COUNT(inv.max * 2) AS o3, \
             COUNT(-inv.min) AS o4, SUM(inv.max + 1) AS s FROM inv";
    let (lines, stats) = run_query_with(q, &r, ExecOptions::default()).expect(q);
    same_output(
        r#"{"seq":1,"hlc":[1000,0],"values":{"half":3.5,"one":1.0,"r1":-1,"r2":1,"r3":0,"r4":2.0,"d0":0,"m0":0,"df":0,"o1":0,"o2":0,"o3":0,"o4":0,"s":0}}"#,
        &lines,
    )
    .unwrap_or_else(|d| panic!("{q}\n{d}"));
    assert!(
        stats.warnings.get(WarningKind::DivisionByZero) >= 2,
        "division by zero not counted: {:?}",
        stats.warnings
    );
    assert!(
        stats.warnings.get(WarningKind::IntegerOverflow) >= 4,
        "integer overflow not counted: {:?}",
        stats.warnings
    );

    // The query does not abort: NULL OR TRUE holds, and `/` yields a float that compares
    // numerically with ints.
    let q = "SELECT inv.a FROM inv WHEN inv.a / inv.z > 0 OR inv.a % inv.z IS NULL";
    let (lines, stats) = run_query_with(q, &r, ExecOptions::default()).expect(q);
    same_output(
        r#"{"seq":1,"hlc":[1000,0],"values":{"inv.a":{"n1":7}},"witness":{"$1":"n1","$2":"n1","$3":"n1","$4":"n1"}}"#,
        &lines,
    )
    .unwrap_or_else(|d| panic!("{q}\n{d}"));
    assert!(stats.warnings.get(WarningKind::DivisionByZero) >= 1);
    check(
        &r,
        "SELECT inv.a FROM inv WHEN inv.a / 2 = 3.5 AND inv.a / 7 = 1 AND 7 / 2 = 3.5",
        r#"{"seq":1,"hlc":[1000,0],"values":{"inv.a":{"n1":7}},"witness":{"$1":"n1","$2":"n1"}}"#,
    );
    check(&r, "SELECT inv.a FROM inv WHEN inv.max + 1 > 0", "");
    check(&r, "SELECT inv.a FROM inv WHEN inv.max + 1 <= 0", "");

    // A NULL operand gives NULL without a warning, even divided by zero.
    let q = "SELECT COUNT(inv.n / inv.z) AS c, COUNT(inv.n + 1) AS d FROM inv";
    let (lines, stats) = run_query_with(q, &r, ExecOptions::default()).expect(q);
    same_output(r#"{"seq":1,"hlc":[1000,0],"values":{"c":0,"d":0}}"#, &lines)
        .unwrap_or_else(|d| panic!("{q}\n{d}"));
    assert!(
        stats.warnings.is_empty(),
        "NULL operands must not warn: {:?}",
        stats.warnings
    );
}

// ---------------------------------------------------------------------------------------------
// §1.4 steps
// ---------------------------------------------------------------------------------------------

/// SPEC §1.4: the steps are the distinct HLCs; step k applies all records stamped with that HLC
/// from every node atomically (one candidate, one seq); same-node records with one HLC apply
/// in file order; the file is sorted stably by HLC; `hlc` may be packed (§1.3).
#[test]
fn equal_hlc_records_of_several_nodes_are_one_atomic_step() {
    // Out of file order on purpose; n2's second record uses the packed form 2000 << 16.
    let r = records_from_ndjson(
        r#"
{"node":"n1","hlc":[2000,1],"set":{"inv.a":11}}
{"node":"n1","hlc":[1000,0],"set":{"inv.a":1}}
{"node":"n2","hlc":[1000,0],"set":{"inv.a":2}}
{"node":"n3","hlc":[1000,0],"set":{"inv.a":3}}
{"node":"n1","hlc":[2000,0],"set":{"inv.a":10}}
{"node":"n2","hlc":131072000,"set":{"inv.a":20}}
{"node":"n3","hlc":[3000,0],"set":{"inv.a":5}}
{"node":"n3","hlc":[3000,0],"set":{"inv.a":6}}
"#,
    );
    let q = "SELECT inv.a, COUNT(*) AS n FROM inv";
    let (lines, stats) = run_query_with(q, &r, ExecOptions::default()).expect(q);
    same_output(
        r#"
{"seq":1,"hlc":[1000,0],"values":{"inv.a":{"n1":1,"n2":2,"n3":3},"n":3}}
{"seq":2,"hlc":[2000,0],"values":{"inv.a":{"n1":10,"n2":20,"n3":3},"n":3}}
{"seq":3,"hlc":[2000,1],"values":{"inv.a":{"n1":11,"n2":20,"n3":3},"n":3}}
{"seq":4,"hlc":[3000,0],"values":{"inv.a":{"n1":11,"n2":20,"n3":6},"n":3}}
"#,
        &lines,
    )
    .unwrap_or_else(|d| panic!("{q}\n{d}"));
    assert_eq!(stats.steps, 4, "{stats:?}");
    assert_eq!(stats.candidates, 4, "{stats:?}");
    assert_eq!(stats.emitted, 4, "{stats:?}");
    // n1 = 10 with n2 still 2 is never a cut.
    check(
        &r,
        "SELECT inv.a FROM inv WHEN (inv.a = 10) LINK SAME_NODE AND (inv.a = 2) LINK SAME_NODE",
        "",
    );
    check(
        &r,
        "SELECT SUM(inv.a) AS s FROM inv WHEN SUM(inv.a) = 33",
        r#"{"seq":2,"hlc":[2000,0],"values":{"s":33}}"#,
    );
}

// ---------------------------------------------------------------------------------------------
// §1.3 / §1.4 unset, set null, leave, heartbeats
// ---------------------------------------------------------------------------------------------

const LEAVE_TRACE: &str = r#"
{"node":"n1","hlc":[1000,0],"set":{"inv.a":1,"inv.b":2}}
{"node":"n2","hlc":[1000,0],"set":{"inv.a":5}}
{"node":"n1","hlc":[2000,0],"unset":["inv.a"]}
{"node":"n1","hlc":[3000,0],"set":{"inv.b":null}}
{"node":"n2","hlc":[4000,0],"leave":true}
{"node":"n2","hlc":[5000,0]}
{"node":"n3","hlc":[5500,0]}
{"node":"n2","hlc":[6000,0],"set":{"inv.b":7}}
{"node":"n1","hlc":[7000,0],"set":{"inv.a":3}}
"#;

/// SPEC §1.3 (`unset`; `set` to null means unset; `leave` clears the state and a later record
/// brings the node back empty; a heartbeat changes nothing), §1.4 (heartbeats make no step),
/// §3.1 (P(t): nodes holding a present FROM-log variable), §5.1 (a heartbeat never makes a node
/// join P).
#[test]
fn unset_set_null_leave_rejoin_and_heartbeats() {
    let r = records_from_ndjson(LEAVE_TRACE);
    let q = "SELECT inv.a, inv.b, COUNT(*) AS p FROM inv";
    let (lines, stats) = run_query_with(q, &r, ExecOptions::default()).expect(q);
    same_output(
        r#"
{"seq":1,"hlc":[1000,0],"values":{"inv.a":{"n1":1,"n2":5},"inv.b":{"n1":2},"p":2}}
{"seq":2,"hlc":[2000,0],"values":{"inv.a":{"n2":5},"inv.b":{"n1":2},"p":2}}
{"seq":3,"hlc":[3000,0],"values":{"inv.a":{"n2":5},"inv.b":{},"p":1}}
{"seq":4,"hlc":[4000,0],"values":{"inv.a":{},"inv.b":{},"p":0}}
{"seq":5,"hlc":[6000,0],"values":{"inv.a":{},"inv.b":{"n2":7},"p":1}}
{"seq":6,"hlc":[7000,0],"values":{"inv.a":{"n1":3},"inv.b":{"n2":7},"p":2}}
"#,
        &lines,
    )
    .unwrap_or_else(|d| panic!("{q}\n{d}"));
    assert_eq!(stats.steps, 6, "heartbeats make no step: {stats:?}");

    // No variable referenced: candidates only where P changes (2000 keeps P = {n1, n2}).
    check(
        &r,
        "SELECT COUNT(*) AS p FROM inv",
        r#"
{"seq":1,"hlc":[1000,0],"values":{"p":2}}
{"seq":2,"hlc":[3000,0],"values":{"p":1}}
{"seq":3,"hlc":[4000,0],"values":{"p":0}}
{"seq":4,"hlc":[6000,0],"values":{"p":1}}
{"seq":5,"hlc":[7000,0],"values":{"p":2}}
"#,
    );
    // After the heartbeats of n2 (rejoined, empty) and n3 (new) nobody is in P.
    check(
        &r,
        "SELECT COUNT(*) AS p, inv.a, inv.b FROM inv ON TIME 5500",
        r#"{"seq":1,"hlc":[5500,65535],"values":{"p":0,"inv.a":{},"inv.b":{}}}"#,
    );
}

// ---------------------------------------------------------------------------------------------
// §4.1 late joins
// ---------------------------------------------------------------------------------------------

/// SPEC §4.1 / §6: a node that first appears later changes P, so that step is a candidate
/// even if it touches no referenced variable; a node that only holds a non-FROM log is in the
/// cut but not in P.
#[test]
fn late_joining_node_changes_p_and_makes_a_candidate() {
    let r = records_from_ndjson(
        r#"
{"node":"n1","hlc":[1000,0],"set":{"inv.a":1}}
{"node":"n1","hlc":[2000,0],"set":{"inv.x":1}}
{"node":"n2","hlc":[3000,0],"set":{"inv.b":9}}
{"node":"n1","hlc":[4000,0],"set":{"inv.b":1}}
{"node":"n3","hlc":[5000,0],"set":{"other.y":1}}
{"node":"n3","hlc":[6000,0],"set":{"inv.c":1}}
"#,
    );
    check(
        &r,
        "SELECT inv.a FROM inv",
        r#"
{"seq":1,"hlc":[1000,0],"values":{"inv.a":{"n1":1}}}
{"seq":2,"hlc":[3000,0],"values":{"inv.a":{"n1":1}}}
{"seq":3,"hlc":[6000,0],"values":{"inv.a":{"n1":1}}}
"#,
    );
    check(
        &r,
        "SELECT inv.a FROM inv WHEN COUNT(*) = 2",
        r#"{"seq":2,"hlc":[3000,0],"values":{"inv.a":{"n1":1}}}"#,
    );
    // With `other` in FROM, n3 joins P at 5000 already and 6000 changes nothing in P.
    check(
        &r,
        "SELECT COUNT(*) AS p FROM inv, other",
        r#"
{"seq":1,"hlc":[1000,0],"values":{"p":1}}
{"seq":2,"hlc":[3000,0],"values":{"p":2}}
{"seq":3,"hlc":[5000,0],"values":{"p":3}}
"#,
    );
}

// ---------------------------------------------------------------------------------------------
// §4.2 snapshots
// ---------------------------------------------------------------------------------------------

/// SPEC §4.2 and §6: `ON TIME t` is one cut C(T), evaluated even with no step at T (or before
/// any record), seq 1, hlc = T = [t, 65535] for an integer t; `HLC(l, c)` is exact; RFC 3339
/// strings convert to ms; NOW on a trace file is the physical part of its greatest HLC.
#[test]
fn snapshot_on_time_is_one_cut_at_t() {
    let r = records_from_ndjson(
        r#"
{"node":"n1","hlc":[1000,0],"set":{"inv.a":1}}
{"node":"n2","hlc":[2000,3],"set":{"inv.a":2}}
{"node":"n1","hlc":[3000,0],"set":{"inv.a":3}}
"#,
    );
    let cases: &[(&str, &str)] = &[
        (
            "ON TIME 2500",
            r#"{"seq":1,"hlc":[2500,65535],"values":{"inv.a":{"n1":1,"n2":2}}}"#,
        ),
        (
            "ON TIME 2000",
            r#"{"seq":1,"hlc":[2000,65535],"values":{"inv.a":{"n1":1,"n2":2}}}"#,
        ),
        (
            "ON TIME HLC(2000, 2)",
            r#"{"seq":1,"hlc":[2000,2],"values":{"inv.a":{"n1":1}}}"#,
        ),
        (
            "ON TIME HLC(2000, 3)",
            r#"{"seq":1,"hlc":[2000,3],"values":{"inv.a":{"n1":1,"n2":2}}}"#,
        ),
        (
            "ON TIME 500",
            r#"{"seq":1,"hlc":[500,65535],"values":{"inv.a":{}}}"#,
        ),
        (
            "ON TIME 9000",
            r#"{"seq":1,"hlc":[9000,65535],"values":{"inv.a":{"n1":3,"n2":2}}}"#,
        ),
        (
            "ON TIME '1970-01-01T00:00:02.5Z'",
            r#"{"seq":1,"hlc":[2500,65535],"values":{"inv.a":{"n1":1,"n2":2}}}"#,
        ),
        (
            "ON TIME NOW",
            r#"{"seq":1,"hlc":[3000,65535],"values":{"inv.a":{"n1":3,"n2":2}}}"#,
        ),
        (
            "ON TIME NOW - 1000",
            r#"{"seq":1,"hlc":[2000,65535],"values":{"inv.a":{"n1":1,"n2":2}}}"#,
        ),
    ];
    for (time, expected) in cases {
        check(&r, &format!("SELECT inv.a FROM inv {time}"), expected);
    }
    check(&r, "SELECT inv.a FROM inv WHEN inv.a > 5 ON TIME 2500", "");
    check(
        &r,
        "SELECT inv.a FROM inv WHEN inv.a = 2 ON TIME 2500",
        r#"{"seq":1,"hlc":[2500,65535],"values":{"inv.a":{"n1":1,"n2":2}},"witness":{"$1":"n2"}}"#,
    );
    check(
        &r,
        "SELECT COUNT(*) AS p FROM inv ON TIME 500",
        r#"{"seq":1,"hlc":[500,65535],"values":{"p":0}}"#,
    );
}

// ---------------------------------------------------------------------------------------------
// §4.2 ranges
// ---------------------------------------------------------------------------------------------

/// SPEC §4.2 and §6: `ON TIME t1 TO t2` evaluates candidates with T1 <= hlc <= T2 over the
/// full state; seq counts from the first in-range candidate; candidacy of the first in-range
/// step compares P with the step before it; T1 > T2 is empty; bounds `(t,0)`..`(t,65535)`.
#[test]
fn on_time_range_seq_and_candidacy_at_the_range_start() {
    // P: 1000 {n1}, 2000 {n1,n2}, 3000 same (x not referenced), 4000 {n1,n2,n3}.
    let r = records_from_ndjson(
        r#"
{"node":"n1","hlc":[1000,0],"set":{"inv.a":1}}
{"node":"n2","hlc":[2000,0],"set":{"inv.a":2}}
{"node":"n1","hlc":[3000,0],"set":{"inv.x":1}}
{"node":"n3","hlc":[4000,0],"set":{"inv.x":1}}
{"node":"n1","hlc":[5000,0],"set":{"inv.a":5}}
{"node":"n2","hlc":[6000,0],"set":{"inv.a":6}}
"#,
    );
    check(
        &r,
        "SELECT inv.a FROM inv ON TIME 3000 TO 5000",
        r#"
{"seq":1,"hlc":[4000,0],"values":{"inv.a":{"n1":1,"n2":2}}}
{"seq":2,"hlc":[5000,0],"values":{"inv.a":{"n1":5,"n2":2}}}
"#,
    );
    check(
        &r,
        "SELECT inv.a FROM inv ON TIME 2000 TO 4000",
        r#"
{"seq":1,"hlc":[2000,0],"values":{"inv.a":{"n1":1,"n2":2}}}
{"seq":2,"hlc":[4000,0],"values":{"inv.a":{"n1":1,"n2":2}}}
"#,
    );
    check(
        &r,
        "SELECT COUNT(*) AS p FROM inv ON TIME 4000 TO 6000",
        r#"{"seq":1,"hlc":[4000,0],"values":{"p":3}}"#,
    );
    // The only in-range step (3000) leaves P as the step before it left it: no candidate.
    check(&r, "SELECT COUNT(*) AS p FROM inv ON TIME 2500 TO 3500", "");
    check(&r, "SELECT inv.a FROM inv ON TIME 5000 TO 3000", "");
    check(
        &r,
        "SELECT inv.a FROM inv ON TIME HLC(4000, 1) TO HLC(6000, 0)",
        r#"
{"seq":1,"hlc":[5000,0],"values":{"inv.a":{"n1":5,"n2":2}}}
{"seq":2,"hlc":[6000,0],"values":{"inv.a":{"n1":5,"n2":6}}}
"#,
    );
    check(&r, "SELECT inv.a FROM inv ON TIME HLC(6000, 1) TO 9000", "");
    check(
        &r,
        "SELECT inv.a FROM inv ON TIME 5000 TO 5000",
        r#"{"seq":1,"hlc":[5000,0],"values":{"inv.a":{"n1":5,"n2":2}}}"#,
    );
    check(
        &r,
        "SELECT inv.a FROM inv WHEN inv.a = 6 ON TIME 1000 TO 9000",
        r#"{"seq":5,"hlc":[6000,0],"values":{"inv.a":{"n1":5,"n2":6}},"witness":{"$1":"n2"}}"#,
    );
}

// ---------------------------------------------------------------------------------------------
// §4.3 EMIT CHANGES and LIMIT
// ---------------------------------------------------------------------------------------------

/// inv.a of n1 per step: 1, 5, 6, 7, (4500: inv.b only), 0, 1, 9, 10.
const CHANGES_TRACE: &str = r#"
{"node":"n1","hlc":[1000,0],"set":{"inv.a":1}}
{"node":"n1","hlc":[2000,7],"set":{"inv.a":5}}
{"node":"n1","hlc":[3000,0],"set":{"inv.a":6}}
{"node":"n1","hlc":[4000,0],"set":{"inv.a":7}}
{"node":"n1","hlc":[4500,0],"set":{"inv.b":0}}
{"node":"n1","hlc":[5500,2],"set":{"inv.a":0}}
{"node":"n1","hlc":[6000,0],"set":{"inv.a":1}}
{"node":"n1","hlc":[7000,0],"set":{"inv.a":9}}
{"node":"n1","hlc":[8000,0],"set":{"inv.a":10}}
"#;

/// SPEC §4.3 and §6: `begin` at the first satisfying candidate after a non-satisfying one (or
/// the start), `end` at the first non-satisfying one after a run, with duration_ms (physical
/// ms) and cuts (satisfying candidates of the run); no `end` at the end of input; LIMIT counts
/// begin and end records.
#[test]
fn emit_changes_begin_end_duration_cuts_and_limit() {
    let r = records_from_ndjson(CHANGES_TRACE);
    let all = r#"
{"event":"begin","seq":2,"hlc":[2000,7],"values":{"inv.a":{"n1":5}},"witness":{"$1":"n1"}}
{"event":"end","seq":5,"hlc":[5500,2],"duration_ms":3500,"cuts":3}
{"event":"begin","seq":7,"hlc":[7000,0],"values":{"inv.a":{"n1":9}},"witness":{"$1":"n1"}}
"#;
    check(
        &r,
        "SELECT inv.a FROM inv WHEN inv.a >= 5 EMIT CHANGES",
        all,
    );
    let first_two: String = all
        .lines()
        .filter(|l| !l.is_empty())
        .take(2)
        .collect::<Vec<_>>()
        .join("\n");
    check(
        &r,
        "SELECT inv.a FROM inv WHEN inv.a >= 5 EMIT CHANGES LIMIT 2",
        &first_two,
    );
    check(
        &r,
        "SELECT inv.a FROM inv WHEN inv.a >= 5 EMIT CHANGES LIMIT 1",
        r#"{"event":"begin","seq":2,"hlc":[2000,7],"values":{"inv.a":{"n1":5}},"witness":{"$1":"n1"}}"#,
    );
    // Satisfied from the start and never ends: one begin, no end.
    check(
        &r,
        "SELECT COUNT(*) AS p FROM inv WHEN inv.a >= 0 EMIT CHANGES",
        r#"{"event":"begin","seq":1,"hlc":[1000,0],"values":{"p":1},"witness":{"$1":"n1"}}"#,
    );
    check(
        &r,
        "SELECT inv.a FROM inv WHEN inv.a >= 100 EMIT CHANGES",
        "",
    );
    // EMIT CUTS is the default.
    check(
        &r,
        "SELECT inv.a FROM inv WHEN inv.a >= 9 EMIT CUTS",
        r#"
{"seq":7,"hlc":[7000,0],"values":{"inv.a":{"n1":9}},"witness":{"$1":"n1"}}
{"seq":8,"hlc":[8000,0],"values":{"inv.a":{"n1":10}},"witness":{"$1":"n1"}}
"#,
    );
}

/// SPEC §4.3: `LIMIT n` stops after n records (emitted records, not candidates).
#[test]
fn limit_stops_after_n_emitted_records() {
    let r = records_from_ndjson(CHANGES_TRACE);
    check(
        &r,
        "SELECT inv.a FROM inv LIMIT 2",
        r#"
{"seq":1,"hlc":[1000,0],"values":{"inv.a":{"n1":1}}}
{"seq":2,"hlc":[2000,7],"values":{"inv.a":{"n1":5}}}
"#,
    );
    check(
        &r,
        "SELECT inv.a FROM inv WHEN inv.a >= 5 LIMIT 3",
        r#"
{"seq":2,"hlc":[2000,7],"values":{"inv.a":{"n1":5}},"witness":{"$1":"n1"}}
{"seq":3,"hlc":[3000,0],"values":{"inv.a":{"n1":6}},"witness":{"$1":"n1"}}
{"seq":4,"hlc":[4000,0],"values":{"inv.a":{"n1":7}},"witness":{"$1":"n1"}}
"#,
    );
    check(
        &r,
        "SELECT inv.a FROM inv WHEN inv.a >= 9 LIMIT 100",
        r#"
{"seq":7,"hlc":[7000,0],"values":{"inv.a":{"n1":9}},"witness":{"$1":"n1"}}
{"seq":8,"hlc":[8000,0],"values":{"inv.a":{"n1":10}},"witness":{"$1":"n1"}}
"#,
    );
}

// ---------------------------------------------------------------------------------------------
// §3.1 / §4.1 / §6 AT NODES
// ---------------------------------------------------------------------------------------------

/// SPEC §3.1 (P restricted to AT NODES), §4.1 and §6 (candidacy counts only records of AT NODES
/// nodes, even if a selector `inv.a['n9']` reads the changed node; a selector reads n9 whether or
/// not it is in AT NODES, stays on n9 inside an aggregate, prints `{}` when n9 is not in the
/// cut; AT NODES may name nodes that never appear).
#[test]
fn at_nodes_restricts_p_and_candidacy_but_not_selectors() {
    let r = records_from_ndjson(
        r#"
{"node":"n1","hlc":[1000,0],"set":{"inv.a":1}}
{"node":"n2","hlc":[1000,0],"set":{"inv.a":2}}
{"node":"n9","hlc":[1000,0],"set":{"inv.a":9}}
{"node":"n9","hlc":[2000,0],"set":{"inv.a":90}}
{"node":"n2","hlc":[3000,0],"set":{"inv.a":20}}
{"node":"n9","hlc":[4000,0],"leave":true}
{"node":"n1","hlc":[5000,0],"set":{"inv.a":10}}
"#,
    );
    check(
        &r,
        "SELECT inv.a, inv.a['n9'], COUNT(*) AS p, COUNT(inv.a['n9']) AS c9 FROM inv AT NODES n1, n2, ghost",
        r#"
{"seq":1,"hlc":[1000,0],"values":{"inv.a":{"n1":1,"n2":2},"inv.a['n9']":{"n9":9},"p":2,"c9":2}}
{"seq":2,"hlc":[3000,0],"values":{"inv.a":{"n1":1,"n2":20},"inv.a['n9']":{"n9":90},"p":2,"c9":2}}
{"seq":3,"hlc":[5000,0],"values":{"inv.a":{"n1":10,"n2":20},"inv.a['n9']":{},"p":2,"c9":0}}
"#,
    );
    // n9 = 90 from 2000 on, but 2000 is not a candidate; 3000 is.
    check(
        &r,
        "SELECT inv.a FROM inv WHEN inv.a['n9'] > 50 AT NODES n1, n2",
        r#"{"seq":2,"hlc":[3000,0],"values":{"inv.a":{"n1":1,"n2":20}}}"#,
    );
    // Placeholders bind only nodes of P (with AT NODES): n9's 90 is not a witness.
    check(
        &r,
        "SELECT inv.a FROM inv WHEN inv.a >= 9 AT NODES n1, n2",
        r#"
{"seq":2,"hlc":[3000,0],"values":{"inv.a":{"n1":1,"n2":20}},"witness":{"$1":"n2"}}
{"seq":3,"hlc":[5000,0],"values":{"inv.a":{"n1":10,"n2":20}},"witness":{"$1":"n1"}}
"#,
    );
    // A string node id; n9 leaving at 4000 changes P (a candidate where WHEN is NULL).
    check(
        &r,
        "SELECT inv.a FROM inv WHEN inv.a > 5 AT NODES 'n9', ghost",
        r#"
{"seq":1,"hlc":[1000,0],"values":{"inv.a":{"n9":9}},"witness":{"$1":"n9"}}
{"seq":2,"hlc":[2000,0],"values":{"inv.a":{"n9":90}},"witness":{"$1":"n9"}}
"#,
    );
    check(
        &r,
        "SELECT inv.a FROM inv WHEN inv.a IS NULL AT NODES 'n9', ghost",
        r#"{"seq":3,"hlc":[4000,0],"values":{"inv.a":{}},"witness":{"$1":null}}"#,
    );
    // Only a node that never appears: P is always empty and never changes.
    check(&r, "SELECT COUNT(*) AS p FROM inv AT NODES ghost", "");
    check(&r, "SELECT inv.a FROM inv AT NODES ghost", "");
}

// ---------------------------------------------------------------------------------------------
// §4.1 / §6 candidacy
// ---------------------------------------------------------------------------------------------

/// SPEC §4.1 and §6: candidacy is syntactic — a record naming a referenced variable in
/// set/unset/add/remove counts even if the value is unchanged (or the variable was absent);
/// a change to an unreferenced variable makes no candidate unless P changes; references in
/// SELECT, WHEN, aggregates and selectors count; `log.*` references every variable of the log.
#[test]
fn candidacy_is_syntactic_on_referenced_variables_or_p_changes() {
    let r = records_from_ndjson(
        r#"
{"node":"n1","hlc":[1000,0],"set":{"inv.a":1,"inv.b":1}}
{"node":"n1","hlc":[2000,0],"set":{"inv.a":1}}
{"node":"n1","hlc":[3000,0],"set":{"inv.b":2}}
{"node":"n1","hlc":[4000,0],"unset":["inv.c"]}
{"node":"n2","hlc":[5000,0],"set":{"inv.b":5}}
{"node":"n1","hlc":[6000,0],"add":{"inv.s":[1]}}
{"node":"n1","hlc":[7000,0],"remove":{"inv.s":[5]}}
{"node":"n1","hlc":[8000,0],"set":{"other.x":1}}
"#,
    );
    check(
        &r,
        "SELECT inv.a FROM inv",
        r#"
{"seq":1,"hlc":[1000,0],"values":{"inv.a":{"n1":1}}}
{"seq":2,"hlc":[2000,0],"values":{"inv.a":{"n1":1}}}
{"seq":3,"hlc":[5000,0],"values":{"inv.a":{"n1":1}}}
"#,
    );
    check(
        &r,
        "SELECT inv.a FROM inv WHEN inv.c IS NULL",
        r#"
{"seq":1,"hlc":[1000,0],"values":{"inv.a":{"n1":1}},"witness":{"$1":"n1"}}
{"seq":2,"hlc":[2000,0],"values":{"inv.a":{"n1":1}},"witness":{"$1":"n1"}}
{"seq":3,"hlc":[4000,0],"values":{"inv.a":{"n1":1}},"witness":{"$1":"n1"}}
{"seq":4,"hlc":[5000,0],"values":{"inv.a":{"n1":1}},"witness":{"$1":"n1"}}
"#,
    );
    check(
        &r,
        "SELECT inv.* FROM inv",
        r#"
{"seq":1,"hlc":[1000,0],"values":{"inv.a":{"n1":1},"inv.b":{"n1":1}}}
{"seq":2,"hlc":[2000,0],"values":{"inv.a":{"n1":1},"inv.b":{"n1":1}}}
{"seq":3,"hlc":[3000,0],"values":{"inv.a":{"n1":1},"inv.b":{"n1":2}}}
{"seq":4,"hlc":[4000,0],"values":{"inv.a":{"n1":1},"inv.b":{"n1":2}}}
{"seq":5,"hlc":[5000,0],"values":{"inv.a":{"n1":1},"inv.b":{"n1":2,"n2":5}}}
{"seq":6,"hlc":[6000,0],"values":{"inv.a":{"n1":1},"inv.b":{"n1":2,"n2":5},"inv.s":{"n1":[1]}}}
{"seq":7,"hlc":[7000,0],"values":{"inv.a":{"n1":1},"inv.b":{"n1":2,"n2":5},"inv.s":{"n1":[1]}}}
"#,
    );
    // Referenced only inside an aggregate.
    check(
        &r,
        "SELECT COUNT(*) AS p FROM inv WHEN SUM(inv.b) > 0",
        r#"
{"seq":1,"hlc":[1000,0],"values":{"p":1}}
{"seq":2,"hlc":[3000,0],"values":{"p":1}}
{"seq":3,"hlc":[5000,0],"values":{"p":2}}
"#,
    );
    // add/remove count even when the remove changes nothing.
    check(
        &r,
        "SELECT inv.s FROM inv",
        r#"
{"seq":1,"hlc":[1000,0],"values":{"inv.s":{}}}
{"seq":2,"hlc":[5000,0],"values":{"inv.s":{}}}
{"seq":3,"hlc":[6000,0],"values":{"inv.s":{"n1":[1]}}}
{"seq":4,"hlc":[7000,0],"values":{"inv.s":{"n1":[1]}}}
"#,
    );
    // Referenced only through a selector.
    check(
        &r,
        "SELECT COUNT(*) AS p FROM inv WHEN inv.b['n2'] IS NULL",
        r#"
{"seq":1,"hlc":[1000,0],"values":{"p":1}}
{"seq":2,"hlc":[3000,0],"values":{"p":1}}
"#,
    );
}

// ---------------------------------------------------------------------------------------------
// §4.3 / §6 values
// ---------------------------------------------------------------------------------------------

const VALUES_TRACE: &str = r#"
{"node":"n2","hlc":[1000,0],"set":{"inv.a":2,"inv.f":1.0,"inv.s":["b","a",3,1.5,true,false,"a"],"inv.st":{"y":1,"x":"q"}}}
{"node":"n10","hlc":[1000,0],"set":{"inv.a":10,"inv.f":2.5,"inv.s":[]}}
{"node":"n1","hlc":[1000,0],"set":{"inv.a":1,"inv.n":null}}
{"node":"n1","hlc":[1000,0],"set":{"aux.z":"zz"}}
"#;

/// SPEC §4.3 and §6 (values): node maps over P(t) sorted by node id in byte order, absent/NULL
/// values omitted, `['n']` prints `{"n": v}` or `{}`, aggregates named by their source text
/// exactly as written (trimmed) or their alias, identical items printed once, floats printed
/// as floats, sets as sets (canonical order), structs and struct fields, `log.*` and `*`.
#[test]
fn values_output_names_maps_floats_sets_and_stars() {
    let r = records_from_ndjson(VALUES_TRACE);
    let q = "SELECT inv.a, inv.f, inv.s, inv.st, inv.st.x, inv.a['n10'], inv.a['zz'], inv.n, \
             COUNT( * ), sum(inv.a) AS total, MAX(inv.f), min( inv.a ), inv.a FROM inv";
    let expected = r#"{"seq":1,"hlc":[1000,0],"values":{"inv.a":{"n1":1,"n10":10,"n2":2},"inv.f":{"n10":2.5,"n2":1.0},"inv.s":{"n10":[],"n2":[false,true,1.5,3,"a","b"]},"inv.st":{"n2":{"x":"q","y":1}},"inv.st.x":{"n2":"q"},"inv.a['n10']":{"n10":10},"inv.a['zz']":{},"inv.n":{},"COUNT( * )":3,"total":13,"MAX(inv.f)":2.5,"min( inv.a )":1}}"#;
    check(&r, q, expected);
    // The printed form: canonical orders, floats with a '.', the repeated item once.
    let line = one_line(&r, q);
    for part in [
        r#""inv.a":{"n1":1,"n10":10,"n2":2}"#,
        r#""inv.f":{"n10":2.5,"n2":1.0}"#,
        r#"[false,true,1.5,3,"a","b"]"#,
        r#"{"x":"q","y":1}"#,
    ] {
        assert!(line.contains(part), "{part} not in {line}");
    }
    assert_eq!(
        line.matches(r#""inv.a":"#).count(),
        1,
        "identical items print once: {line}"
    );

    check(
        &r,
        "SELECT inv.* FROM inv",
        r#"{"seq":1,"hlc":[1000,0],"values":{"inv.a":{"n1":1,"n10":10,"n2":2},"inv.f":{"n10":2.5,"n2":1.0},"inv.s":{"n10":[],"n2":[false,true,1.5,3,"a","b"]},"inv.st":{"n2":{"x":"q","y":1}}}}"#,
    );
    check(
        &r,
        "SELECT * FROM inv, aux",
        r#"{"seq":1,"hlc":[1000,0],"values":{"aux.z":{"n1":"zz"},"inv.a":{"n1":1,"n10":10,"n2":2},"inv.f":{"n10":2.5,"n2":1.0},"inv.s":{"n10":[],"n2":[false,true,1.5,3,"a","b"]},"inv.st":{"n2":{"x":"q","y":1}}}}"#,
    );
    // aux.* over P(t) of FROM aux only: n1.
    check(
        &r,
        "SELECT aux.*, COUNT(*) AS p FROM aux",
        r#"{"seq":1,"hlc":[1000,0],"values":{"aux.z":{"n1":"zz"},"p":1}}"#,
    );
}

// ---------------------------------------------------------------------------------------------
// §4.3 / §6 witness
// ---------------------------------------------------------------------------------------------

/// SPEC §4.3 and §6 (witness): the smallest satisfying binding, lexicographic over $1, $2, ...
/// in node-id byte order ("n10" < "n2" < "n3"); SAME_NODE group placeholders are listed,
/// EACH_NODE ones are not; no witness key without outer placeholders; `null` for every listed
/// placeholder when P(t) is empty.
#[test]
fn witness_is_smallest_binding_in_byte_order() {
    let r = records_from_ndjson(
        r#"
{"node":"n2","hlc":[1000,0],"set":{"inv.a":5}}
{"node":"n10","hlc":[1000,0],"set":{"inv.a":5}}
{"node":"n3","hlc":[1000,0],"set":{"inv.a":1}}
"#,
    );
    let cases: &[(&str, Option<&str>)] = &[
        ("inv.a = 5", Some(r#"{"$1":"n10"}"#)),
        ("inv.a > inv.a", Some(r#"{"$1":"n10","$2":"n3"}"#)),
        (
            "inv.a = inv.a AND NODE($1) <> NODE($2)",
            Some(r#"{"$1":"n10","$2":"n2"}"#),
        ),
        ("NODE($1) = 'n2' AND inv.a = 5", Some(r#"{"$1":"n2"}"#)),
        (
            "(inv.a = 5 AND inv.a > 4) LINK SAME_NODE AND inv.a < 5",
            Some(r#"{"$1":"n10","$2":"n10","$3":"n3"}"#),
        ),
        (
            "(inv.a < inv.a) LINK SAME_NODE OR inv.a < 2",
            Some(r#"{"$1":"n10","$2":"n10","$3":"n3"}"#),
        ),
        (
            "(inv.a >= 1) LINK EACH_NODE AND inv.a = 1",
            Some(r#"{"$2":"n3"}"#),
        ),
        ("(inv.a >= 1) LINK EACH_NODE", None),
        ("COUNT(*) = 3", None),
        ("inv.a['n3'] = 1", None),
    ];
    for (when, witness) in cases {
        let query = format!("SELECT COUNT(*) AS p FROM inv WHEN {when}");
        let expected = match witness {
            None => r#"{"seq":1,"hlc":[1000,0],"values":{"p":3}}"#.to_string(),
            Some(w) => format!(r#"{{"seq":1,"hlc":[1000,0],"values":{{"p":3}},"witness":{w}}}"#),
        };
        check(&r, &query, &expected);
    }

    // P(t) empty: after the only node leaves, and in a snapshot before any record.
    let r = records_from_ndjson(
        r#"
{"node":"n1","hlc":[1000,0],"set":{"inv.a":1}}
{"node":"n1","hlc":[2000,0],"leave":true}
"#,
    );
    check(
        &r,
        "SELECT inv.a FROM inv WHEN inv.a IS NULL",
        r#"{"seq":2,"hlc":[2000,0],"values":{"inv.a":{}},"witness":{"$1":null}}"#,
    );
    check(
        &r,
        "SELECT inv.a FROM inv WHEN (inv.a IS NULL) LINK SAME_NODE AND inv.a IS NULL ON TIME 500",
        r#"{"seq":1,"hlc":[500,65535],"values":{"inv.a":{}},"witness":{"$1":null,"$2":null}}"#,
    );
    // EACH_NODE over an empty P is FALSE (never NULL).
    check(
        &r,
        "SELECT inv.a FROM inv WHEN NOT ((inv.a > 0) LINK EACH_NODE) ON TIME 500",
        r#"{"seq":1,"hlc":[500,65535],"values":{"inv.a":{}}}"#,
    );
    check(
        &r,
        "SELECT inv.a FROM inv WHEN (inv.a IS NULL) LINK EACH_NODE ON TIME 500",
        "",
    );
}

// ---------------------------------------------------------------------------------------------
// §3.3 / §6 aggregates
// ---------------------------------------------------------------------------------------------

/// SPEC §3.3 and §6 (aggregates): COUNT(*) = |P|, NULLs skipped, SUM of ints is an int (exact
/// total, overflow only if the total leaves i64 → NULL + warning), SUM with a float is the
/// exact sum, AVG the exact mean (float), MIN/MAX ties keep the first node by id and its kind,
/// mixed kinds → NULL + warning, COUNT_DISTINCT uses `=` (1 = 1.0).
#[test]
fn aggregates_exact_sums_ties_kinds_and_distinct() {
    // n4 holds only `other`: in the cut, not in P.
    let r = records_from_ndjson(
        r#"
{"node":"n1","hlc":[1000,0],"set":{"inv.i":1,"inv.e":1.0e16,"inv.m":3,"inv.t":3.0,"inv.u":2.0,"inv.s":"b","inv.d":1,"inv.k":1,"inv.big":9223372036854775807,"inv.big2":9223372036854775807}}
{"node":"n2","hlc":[1000,0],"set":{"inv.i":2,"inv.e":1.0,"inv.m":3.0,"inv.t":3,"inv.u":2,"inv.s":"a","inv.d":1.0,"inv.k":"x","inv.big":1,"inv.big2":1}}
{"node":"n3","hlc":[1000,0],"set":{"inv.i":4,"inv.e":-1.0e16,"inv.m":1,"inv.t":1,"inv.u":5,"inv.s":"a","inv.d":2,"inv.big":-5}}
{"node":"n4","hlc":[1000,0],"set":{"other.z":1}}
"#,
    );
    let q = "SELECT COUNT(*), COUNT(inv.k), SUM(inv.i), AVG(inv.i), SUM(inv.e), AVG(inv.e), \
             SUM(inv.d), MAX(inv.m), MIN(inv.m), MAX(inv.t), MIN(inv.u), MAX(inv.u), MIN(inv.s), \
             MAX(inv.s), COUNT_DISTINCT(inv.d), COUNT_DISTINCT(inv.s), MAX(inv.k), SUM(inv.k), \
             SUM(inv.big), SUM(inv.big2) FROM inv";
    let (lines, stats) = run_query_with(q, &r, ExecOptions::default()).expect(q);
    same_output(
        r#"{"seq":1,"hlc":[1000,0],"values":{"COUNT(*)":3,"COUNT(inv.k)":2,"SUM(inv.i)":7,"AVG(inv.i)":2.3333333333333335,"SUM(inv.e)":1.0,"AVG(inv.e)":0.3333333333333333,"SUM(inv.d)":4.0,"MAX(inv.m)":3,"MIN(inv.m)":1,"MAX(inv.t)":3.0,"MIN(inv.u)":2.0,"MAX(inv.u)":5,"MIN(inv.s)":"a","MAX(inv.s)":"b","COUNT_DISTINCT(inv.d)":2,"COUNT_DISTINCT(inv.s)":2,"MAX(inv.k)":null,"SUM(inv.k)":null,"SUM(inv.big)":9223372036854775803,"SUM(inv.big2)":null}}"#,
        &lines,
    )
    .unwrap_or_else(|d| panic!("{q}\n{d}"));
    assert!(
        stats.warnings.get(WarningKind::IntegerOverflow) >= 1,
        "SUM overflow not counted: {:?}",
        stats.warnings
    );
    assert!(
        stats.warnings.total() >= 3,
        "mixed-kind MAX/SUM and the overflow not counted: {:?}",
        stats.warnings
    );

    // NULL arguments are skipped (n2: "x" + 1 is NULL).
    check(
        &r,
        "SELECT SUM(inv.k + 1) AS s, COUNT(inv.k + 1) AS c, AVG(inv.k * 0) AS a FROM inv",
        r#"{"seq":1,"hlc":[1000,0],"values":{"s":2,"c":1,"a":0.0}}"#,
    );
    // In WHEN, with no placeholders: no witness.
    check(
        &r,
        "SELECT MAX(inv.i) AS hi FROM inv WHEN MAX(inv.i) - MIN(inv.i) >= 3",
        r#"{"seq":1,"hlc":[1000,0],"values":{"hi":4}}"#,
    );
    check(
        &r,
        "SELECT MAX(inv.i) AS hi FROM inv WHEN MAX(inv.i) - MIN(inv.i) >= 4",
        "",
    );
    // Ties keep the first node in byte order: "n10" < "n2", so MAX is n10's float 3.0 and
    // MIN n10's int 1 (numeric id order would pick n2).
    let ties = records_from_ndjson(
        r#"
{"node":"n2","hlc":[1000,0],"set":{"inv.v":3,"inv.w":1.0}}
{"node":"n10","hlc":[1000,0],"set":{"inv.v":3.0,"inv.w":1}}
"#,
    );
    check(
        &ties,
        "SELECT MAX(inv.v), MIN(inv.w) FROM inv",
        r#"{"seq":1,"hlc":[1000,0],"values":{"MAX(inv.v)":3.0,"MIN(inv.w)":1}}"#,
    );
    // Empty input (P empty before any record).
    check(
        &r,
        "SELECT COUNT(*), COUNT(inv.i), SUM(inv.i), MIN(inv.i), MAX(inv.i), AVG(inv.i), \
         COUNT_DISTINCT(inv.i) FROM inv ON TIME 500",
        r#"{"seq":1,"hlc":[500,65535],"values":{"COUNT(*)":0,"COUNT(inv.i)":0,"SUM(inv.i)":0,"MIN(inv.i)":null,"MAX(inv.i)":null,"AVG(inv.i)":null,"COUNT_DISTINCT(inv.i)":0}}"#,
    );
}

// ---------------------------------------------------------------------------------------------
// §4.4 enumeration bound
// ---------------------------------------------------------------------------------------------

/// SPEC §4.4: a cut whose enumeration would exceed the configured bound stops the query with an
/// error naming the bound and the cut. Three free placeholders over 4 nodes: 4^3 = 64 bindings
/// at the second step (1^3 at the first).
#[test]
fn enumeration_beyond_max_bindings_fails_naming_the_bound() {
    let r = records_from_ndjson(
        r#"
{"node":"n1","hlc":[1000,0],"set":{"inv.a":1}}
{"node":"n2","hlc":[2000,0],"set":{"inv.a":2}}
{"node":"n3","hlc":[2000,0],"set":{"inv.a":3}}
{"node":"n4","hlc":[2000,0],"set":{"inv.a":4}}
"#,
    );
    // Never TRUE, so no strategy can stop early.
    let q = "SELECT inv.a FROM inv WHEN LEN(STR(inv.a + inv.a + inv.a)) = 100";
    let err = run_query_with(q, &r, ExecOptions { max_bindings: 10 })
        .expect_err("the enumeration bound of 10 must stop the query");
    let numbers: Vec<&str> = err
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .collect();
    assert!(err.contains("bound"), "{err}");
    assert!(numbers.contains(&"10"), "the bound is not named: {err}");
    assert!(numbers.contains(&"2000"), "the cut is not named: {err}");
    // 64 bindings do not exceed a bound of 64.
    let (lines, _) = run_query_with(q, &r, ExecOptions { max_bindings: 64 }).expect(q);
    assert!(lines.is_empty(), "{lines:?}");
}
