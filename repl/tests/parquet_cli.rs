//! Parquet traces end to end: `rql convert` round trips, `rql replay` of a Parquet trace printing
//! exactly what the same trace as NDJSON prints (every shared example, random traces, several
//! files, a spilling sort), precise errors for bad files, and other tools (DuckDB, pandas)
//! reading the files.

mod cli_support;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Output;

use cli_support::{rql, text};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/examples")
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn convert(from: &Path, to: &Path) {
    let out = rql(&["convert", &s(from), &s(to)], None);
    assert!(
        out.status.success(),
        "convert {} {}: {}",
        from.display(),
        to.display(),
        text(&out.stderr)
    );
}

/// `rql replay TRACES -e QUERY --format json`.
fn replay(traces: &[String], query: &str, extra: &[&str]) -> Output {
    let mut args = vec!["replay"];
    args.extend(traces.iter().map(String::as_str));
    args.extend(["-e", query, "--format", "json"]);
    args.extend(extra);
    rql(&args, None)
}

/// The NDJSON and Parquet replays agree: same stdout bytes, same exit status.
fn assert_same(ndjson: &[String], parquet: &[String], query: &str, extra: &[&str]) {
    assert_same_status(ndjson, parquet, query, extra);
}

/// [`assert_same`], returning the (shared) exit status.
fn assert_same_status(
    ndjson: &[String],
    parquet: &[String],
    query: &str,
    extra: &[&str],
) -> Option<i32> {
    let a = replay(ndjson, query, &[]);
    let b = replay(parquet, query, extra);
    if (&a.stdout, a.status.code()) != (&b.stdout, b.status.code()) {
        let (ta, tb) = (text(&a.stdout), text(&b.stdout));
        let first = ta
            .lines()
            .zip(tb.lines())
            .position(|(x, y)| x != y)
            .unwrap_or(ta.lines().count().min(tb.lines().count()));
        panic!(
            "query {query:?} over {ndjson:?} vs {parquet:?}: status {:?} vs {:?}, {} vs {} \
             lines, first difference at line {}:\n{:?}\n{:?}\nndjson stderr: {}\nparquet \
             stderr: {}",
            a.status.code(),
            b.status.code(),
            ta.lines().count(),
            tb.lines().count(),
            first + 1,
            ta.lines().nth(first),
            tb.lines().nth(first),
            text(&a.stderr),
            text(&b.stderr)
        );
    }
    a.status.code()
}

#[test]
fn every_example_replays_the_same_from_parquet() {
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    let mut folders: Vec<_> = std::fs::read_dir(examples())
        .expect("../shared/examples beside the checkout")
        .flatten()
        .map(|e| e.path())
        .collect();
    folders.sort();
    for dir in folders {
        let trace = dir.join("trace.ndjson");
        let Ok(queries) = std::fs::read_to_string(dir.join("queries.rql")) else {
            continue;
        };
        if !trace.exists() {
            continue;
        }
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let pq = tmp.path().join(format!("{name}.parquet"));
        convert(&trace, &pq);
        // Round trip: NDJSON → Parquet → NDJSON is the original sorted by HLC.
        let back = tmp.path().join(format!("{name}.back.ndjson"));
        let canon = tmp.path().join(format!("{name}.canon.ndjson"));
        convert(&pq, &back);
        convert(&trace, &canon);
        assert_eq!(
            std::fs::read(&back).unwrap(),
            std::fs::read(&canon).unwrap(),
            "round trip of {name}"
        );
        for q in queries.lines().filter(|l| !l.trim().is_empty()) {
            assert_same(&[s(&trace)], &[s(&pq)], q, &[]);
            // Streamed: a checking pass, then batches of steps (errors before any output).
            assert_same(&[s(&trace)], &[s(&pq)], q, &["--stream"]);
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} example queries ran");
}

/// A deterministic random trace: several logs, every value kind, null sets, unsets, set
/// changes, leaves, heartbeats, `pt`, equal HLCs across nodes, records out of HLC order.
fn random_trace(seed: u64, records: usize) -> String {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = String::new();
    for _ in 0..records {
        let node = format!("n{}", rng.u32(1..=5));
        let (l, c) = (1000 + rng.u64(0..60), rng.u64(0..3));
        let mut fields = Vec::new();
        let mut set = Vec::new();
        for key in [
            "inv.a", "inv.b", "inv.c", "inv.st", "aux.x", "aux.y", "zz.q",
        ] {
            if rng.u8(0..4) != 0 {
                continue;
            }
            let v = match rng.u8(0..8) {
                0 => "null".to_string(),
                1 => format!("{:.3}", rng.f64() * 20.0 - 5.0),
                2 => format!("\"s{}\"", rng.u8(0..3)),
                3 => (rng.bool()).to_string(),
                4 if key == "inv.st" => format!("{{\"f\":{},\"g\":[1,\"x\"]}}", rng.i64(-3..9)),
                _ => rng.i64(-5..15).to_string(),
            };
            set.push(format!("\"{key}\":{v}"));
        }
        if !set.is_empty() {
            fields.push(format!("\"set\":{{{}}}", set.join(",")));
        }
        if rng.u8(0..6) == 0 {
            fields.push("\"unset\":[\"inv.b\"]".to_string());
        }
        // inv.s only ever holds sets, so add/remove on it are valid.
        match rng.u8(0..8) {
            0 => fields.push("\"set\":{\"inv.s\":[\"x\",1]}".to_string()),
            1 => fields.push(format!("\"add\":{{\"inv.s\":[\"x\",{}]}}", rng.u8(0..4))),
            2 => fields.push("\"remove\":{\"inv.s\":[\"x\"]}".to_string()),
            _ => {}
        }
        // A record has at most one "set": keep the first.
        let mut seen_set = false;
        fields.retain(|f| {
            let is_set = f.starts_with("\"set\"");
            let keep = !(is_set && seen_set);
            seen_set |= is_set;
            keep
        });
        if rng.u8(0..25) == 0 {
            fields.push("\"leave\":true".to_string());
        }
        if rng.bool() {
            fields.push(format!("\"pt\":{}", l + rng.u64(0..3)));
        }
        let mut line = format!("{{\"node\":\"{node}\",\"hlc\":[{l},{c}]");
        for f in fields {
            let _ = write!(line, ",{f}");
        }
        line.push_str("}\n");
        out.push_str(&line);
    }
    out
}

const RANDOM_QUERIES: [&str; 10] = [
    "SELECT inv.a, inv.b FROM inv WHEN inv.a > inv.b",
    "SELECT COUNT(*), SUM(inv.a) AS s FROM inv WHEN COUNT(*) >= 2",
    "SELECT aux.x FROM aux WHEN aux.x > 3 AT NODES n1, n3",
    "SELECT inv.a, aux.x FROM inv, aux WHEN inv.a > aux.x ON TIME 1010 TO 1030",
    "SELECT inv.* FROM inv WHEN 'x' IN inv.s EMIT CHANGES",
    "SELECT inv.st, MIN(inv.c) AS m FROM inv WHEN inv.st.f > 2 ON TIME 1040",
    "SELECT * FROM aux WHEN MAX(aux.y) >= 3 AT NODES n2 ON TIME 1005 TO 1050 EMIT CHANGES",
    "SELECT inv.a, inv.b, inv.c FROM inv WHEN (inv.a + inv.b <= inv.c) LINK SAME_NODE",
    "SELECT COUNT(*) FROM inv, aux WHEN (inv.a >= aux.y) LINK EACH_NODE LIMIT 3",
    "SELECT zz.q FROM zz WHEN zz.q > 2",
];

#[test]
fn random_traces_replay_the_same_from_parquet() {
    let tmp = tempfile::tempdir().unwrap();
    for seed in 0..12 {
        let nd = tmp.path().join(format!("r{seed}.ndjson"));
        let pq = tmp.path().join(format!("r{seed}.parquet"));
        std::fs::write(&nd, random_trace(seed, 60 + seed as usize * 20)).unwrap();
        convert(&nd, &pq);
        let back = tmp.path().join(format!("r{seed}.back.ndjson"));
        let canon = tmp.path().join(format!("r{seed}.canon.ndjson"));
        convert(&pq, &back);
        convert(&nd, &canon);
        assert_eq!(
            std::fs::read(&back).unwrap(),
            std::fs::read(&canon).unwrap(),
            "round trip of seed {seed}"
        );
        for q in RANDOM_QUERIES {
            // The queries themselves are valid: a parse error on both sides proves nothing.
            let status = assert_same_status(&[s(&nd)], &[s(&pq)], q, &[]);
            assert_eq!(status, Some(0), "{q}");
            // Streamed (a memory limit implies it); the directory test below streams rows
            // DataFusion sorts.
            assert_same(&[s(&nd)], &[s(&pq)], q, &["--memory-limit", "16MiB"]);
        }
        // Several statements at once: the pushed-down filters cover all of them.
        let both = format!("{}; {}", RANDOM_QUERIES[2], RANDOM_QUERIES[3]);
        assert_same(&[s(&nd)], &[s(&pq)], &both, &[]);
    }
}

/// One file per node in a directory: DataFusion sorts the rows (equal HLCs in file-name
/// order, as NDJSON files given in that order), here under a memory limit small enough to
/// spill.
#[test]
fn a_directory_of_files_replays_like_the_files_merged() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("whole.ndjson");
    let gen = rql(
        &[
            "gen",
            "--scenario",
            "invariant",
            "--nodes",
            "6",
            "--steps",
            "200000",
            "--seed",
            "3",
            "-o",
            &s(&whole),
        ],
        None,
    );
    assert!(gen.status.success(), "{}", text(&gen.stderr));
    let all = std::fs::read_to_string(&whole).unwrap();
    let dir = tmp.path().join("parts");
    std::fs::create_dir(&dir).unwrap();
    let mut parts: Vec<String> = Vec::new();
    for n in 1..=6 {
        let tag = format!("\"node\":\"n{n}\"");
        let lines: String = all
            .lines()
            .filter(|l| l.contains(&tag))
            .map(|l| format!("{l}\n"))
            .collect();
        let nd = tmp.path().join(format!("part{n}.ndjson"));
        std::fs::write(&nd, lines).unwrap();
        convert(&nd, &dir.join(format!("part{n}.parquet")));
        parts.push(s(&nd));
    }
    let q = RANDOM_QUERIES[7];
    assert_same(&parts, &[s(&dir)], q, &["--memory-limit", "32MiB"]);
    assert_same(
        &parts,
        &[s(&dir)],
        "SELECT COUNT(*) FROM inv WHEN SUM(inv.a) > 2000",
        &[],
    );
    // Parquet back to one NDJSON file: the merged trace.
    let back = tmp.path().join("back.ndjson");
    let out = rql(
        &["convert", &s(&dir), &s(&back), "--memory-limit", "32MiB"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let canon = tmp.path().join("canon.ndjson");
    convert(&whole, &canon);
    // Records with equal HLCs of different nodes come in file order, so compare as sets of
    // lines per HLC: sorting both is enough.
    let sorted = |p: &Path| {
        let mut v: Vec<String> = std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    };
    assert_eq!(sorted(&back), sorted(&canon));
}

/// Bad inputs at the command line (bad rows inside a file: see the tests of
/// `log_server::parquet`).
#[test]
fn bad_files_give_precise_errors() {
    let tmp = tempfile::tempdir().unwrap();
    // Not Parquet at all.
    let junk = tmp.path().join("junk.parquet");
    std::fs::write(&junk, "not parquet\n").unwrap();
    let out = replay(&[s(&junk)], "SELECT inv.a FROM inv", &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("junk.parquet") && err.contains("Parquet"),
        "{err}"
    );
    // A missing file and an empty directory.
    let out = replay(
        &[s(&tmp.path().join("none.parquet"))],
        "SELECT inv.a FROM inv",
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no such file"),
        "{}",
        text(&out.stderr)
    );
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = replay(&[s(&empty)], "SELECT inv.a FROM inv", &[]);
    assert!(text(&out.stderr).contains("holds no .parquet files"));
    // Unknown extensions are refused by convert.
    let out = rql(&["convert", "a.txt", "b.parquet"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot tell the format"));
    // --skip-bad is NDJSON only.
    let nd = tmp.path().join("t.ndjson");
    std::fs::write(&nd, random_trace(1, 10)).unwrap();
    let pq = tmp.path().join("t.parquet");
    convert(&nd, &pq);
    let out = replay(&[s(&pq)], "SELECT inv.a FROM inv", &["--skip-bad"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--skip-bad is not supported"));
}

/// Python with DuckDB, pandas and pyarrow in a venv under the test's temp dir, or `None` (with
/// a message) when Python or the package index is not reachable.
fn python_with_readers(dir: &Path) -> Option<PathBuf> {
    let venv = dir.join("venv");
    let made = std::process::Command::new("python3")
        .args(["-m", "venv", &s(&venv)])
        .output();
    if !made.is_ok_and(|o| o.status.success()) {
        println!("skipped: python3 -m venv is not available");
        return None;
    }
    let py = venv.join("bin/python");
    let pip = std::process::Command::new(&py)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "duckdb",
            "pandas",
            "pyarrow",
        ])
        .output();
    match pip {
        Ok(o) if o.status.success() => Some(py),
        Ok(o) => {
            println!(
                "skipped: pip install duckdb pandas pyarrow failed (offline?): {}",
                text(&o.stderr).lines().last().unwrap_or("")
            );
            None
        }
        Err(e) => {
            println!("skipped: cannot run pip: {e}");
            None
        }
    }
}

#[test]
fn duckdb_and_pandas_read_parquet_traces() {
    let tmp = tempfile::tempdir().unwrap();
    let trace = examples().join("bank/trace.ndjson");
    let pq = tmp.path().join("bank.parquet");
    convert(&trace, &pq);
    let Some(py) = python_with_readers(tmp.path()) else {
        return;
    };
    let script = r#"
import sys, json, duckdb, pandas as pd
path = sys.argv[1]
con = duckdb.connect()
rows = con.execute(f"SELECT count(*), count(DISTINCT rec), min(hlc), max(hlc) FROM read_parquet('{path}')").fetchone()
types = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet('{path}'))").fetchall())
df = pd.read_parquet(path)
print(json.dumps({"duckdb": list(rows), "types": types, "pandas_rows": len(df),
                  "pandas_cols": list(df.columns), "hlc_dtype": str(df["hlc"].dtype),
                  "ops": sorted(df["op"].unique().tolist())}))
"#;
    let out = std::process::Command::new(&py)
        .args(["-c", script, &s(&pq)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let records = std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count() as u64;
    assert_eq!(got["duckdb"][1], records, "{got}");
    assert_eq!(got["duckdb"][0], got["pandas_rows"], "{got}");
    assert_eq!(got["types"]["hlc"], "UBIGINT", "{got}");
    assert_eq!(got["types"]["node"], "VARCHAR", "{got}");
    assert_eq!(got["hlc_dtype"], "uint64", "{got}");
    assert_eq!(
        got["pandas_cols"],
        serde_json::json!([
            "rec", "idx", "node", "hlc", "op", "key", "v_int", "v_float", "v_str", "v_bool",
            "v_json", "pt"
        ])
    );
    // DuckDB writes a file back (filtered and unsorted): rql reads it, sorting it itself.
    let script = r#"
import sys, duckdb
src, dst = sys.argv[1], sys.argv[2]
duckdb.execute(f"COPY (SELECT * FROM read_parquet('{src}') ORDER BY hlc DESC, rec, idx) TO '{dst}' (FORMAT parquet)")
"#;
    let dst = tmp.path().join("duck.parquet");
    let out = std::process::Command::new(&py)
        .args(["-c", script, &s(&pq), &s(&dst)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    for q in std::fs::read_to_string(examples().join("bank/queries.rql"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        assert_same(&[s(&trace)], &[s(&dst)], q, &[]);
    }
}

#[test]
fn sql_over_a_trace_and_a_query_s_results() {
    let tmp = tempfile::tempdir().unwrap();
    let nd = examples().join("bank/trace.ndjson");
    let pq = tmp.path().join("bank.parquet");
    convert(&nd, &pq);
    let count = "SELECT op, count(*) AS n FROM trace GROUP BY op ORDER BY op";
    // The same table whatever the trace's format.
    let a = rql(&["sql", count, &s(&nd), "--format", "csv"], None);
    let b = rql(&["sql", count, &s(&pq), "--format", "csv"], None);
    assert!(a.status.success(), "{}", text(&a.stderr));
    assert_eq!(text(&a.stdout), text(&b.stdout));
    assert!(text(&a.stdout).starts_with("op,n\n"), "{}", text(&a.stdout));
    // `results`: the query's output, one row per value (here three aggregates per cut).
    let q = std::fs::read_to_string(examples().join("bank/queries.rql")).unwrap();
    let q = q.lines().find(|l| !l.trim().is_empty()).unwrap();
    let expected = replay(&[s(&nd)], q, &[]);
    let lines = text(&expected.stdout).lines().count();
    let out = rql(
        &[
            "sql",
            "SELECT count(DISTINCT seq) AS n, count(*) AS rows, count(node) AS nodes, \
             count(DISTINCT variable) AS vars FROM results",
            &s(&pq),
            "-q",
            q,
            "--format",
            "json",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        format!(
            "{{\"n\":{lines},\"rows\":{},\"nodes\":0,\"vars\":3}}",
            lines * 3
        )
    );
    // A per-node variable: one row per node, values as canonical JSON.
    let out = rql(
        &[
            "sql",
            "SELECT node, variable, value FROM results WHERE seq = 1 ORDER BY node",
            &s(&pq),
            "-q",
            "SELECT bank.balance FROM bank LIMIT 1",
            "--format",
            "csv",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let csv = text(&out.stdout);
    assert!(csv.starts_with("node,variable,value\n"), "{csv}");
    assert!(
        csv.lines().skip(1).all(|l| l.contains(",bank.balance,")),
        "{csv}"
    );
    // Bad SQL and a bad RQL query.
    let out = rql(&["sql", "SELEC x", &s(&pq)], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("SQL"), "{}", text(&out.stderr));
    let out = rql(&["sql", "SELECT 1", &s(&pq), "-q", "SELECT FROM"], None);
    assert_eq!(out.status.code(), Some(2));
}
