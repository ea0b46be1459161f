//! The meta-commands (`\open`, `\logs`, ...): their names for help and completion, how their
//! arguments are split, and the tables `\logs` and `\nodes` print.

use comfy_table::{presets, CellAlignment, Table};
use log_server::Hlc;

use super::exec::MAX_RESULT_ROWS;
use super::source::{plural, TraceData};
use crate::watch::ServerStatus;

pub(crate) struct Command {
    pub name: &'static str,
    /// What it takes, as the help and the hint show it.
    pub args: &'static str,
    pub about: &'static str,
}

/// Every meta-command, in the order `\help` lists them. (`\?` and `\quit` are accepted as
/// `\help` and `\q` but not offered.)
pub(crate) const COMMANDS: &[Command] = &[
    Command {
        name: "\\open",
        args: "FILE...",
        about: "read trace files (NDJSON, merged into one trace) and query them",
    },
    Command {
        name: "\\connect",
        args: "URL...",
        about: "query log servers: plain queries read their retained history",
    },
    Command {
        name: "\\logs",
        args: "",
        about: "the logs and keys of the source: value kinds, records, nodes",
    },
    Command {
        name: "\\nodes",
        args: "",
        about: "the nodes: first/last HLC and records (live: frontier, lag, idle)",
    },
    Command {
        name: "\\explain",
        args: "QUERY",
        about: "print the plan of a query without running it",
    },
    Command {
        name: "\\watch",
        args: "[QUERY]",
        about: "run a query live until Ctrl-C (after \\connect; no QUERY: the last one)",
    },
    Command {
        name: "\\sql",
        args: "SQL;",
        about: "DataFusion SQL over tables trace and results (below); ends at ';'",
    },
    Command {
        name: "\\timing",
        args: "[on|off]",
        about: "print the time and throughput after each query",
    },
    Command {
        name: "\\format",
        args: "[table|json|csv]",
        about: "how results are printed (no argument: the current format)",
    },
    Command {
        name: "\\help",
        args: "",
        about: "this list",
    },
    Command {
        name: "\\q",
        args: "",
        about: "quit (Ctrl-D too)",
    },
];

/// The `\help` text.
pub(crate) fn help() -> String {
    let mut out = String::from(
        "Queries end with ';' and may span lines, e.g.\n  \
         SELECT inv.a, inv.b FROM inv WHEN (inv.a > inv.b) LINK SAME_NODE LIMIT 5;\n\
         EXPLAIN before a query prints its plan. Tab completes keywords, functions, commands \
         and the\nnames of the open source; Ctrl-C cancels a running query or clears the \
         input; Ctrl-D quits.\n\n",
    );
    for c in COMMANDS {
        let usage = format!("{} {}", c.name, c.args);
        out.push_str(&format!("  {usage:<26}{}\n", c.about));
    }
    out.push_str(&SQL_HELP.replace("{MAX}", &MAX_RESULT_ROWS.to_string()));
    out
}

/// What `\help` says of `\sql`'s tables.
const SQL_HELP: &str = "
\\sql SQL; may span lines, e.g.
  \\sql SELECT node, count(DISTINCT seq) AS cuts FROM results GROUP BY node;
  trace    the source, one row per change (the Parquet trace schema of `rql sql`): rec (the
           record's position in HLC order), idx, node, hlc (packed), op, key, v_int, v_float,
           v_str, v_bool, v_json, pt (always NULL here; a set to null is an unset row)
  results  the output of the last query run (seq, hlc, node, variable, value as JSON: a row per
           value); empty before the first query; after Ctrl-C, what was found before it;
           at most {MAX} rows (all of them: rql sql -q); \\watch does not change it
The result is printed in the \\format; Ctrl-C stops a statement.
";

/// `\name rest` → (`\name`, `rest`), with the aliases resolved.
pub(crate) fn split_command(text: &str) -> (&str, &str) {
    let text = text.trim();
    let (name, rest) = match text.find(char::is_whitespace) {
        Some(i) => (&text[..i], text[i..].trim()),
        None => (text, ""),
    };
    // `\q;` and `\sql;`: what someone used to ending everything with `;` types.
    let name = match name.trim_end_matches(';') {
        "\\?" => "\\help",
        "\\quit" => "\\q",
        other => other,
    };
    (name, rest)
}

/// Where `rest` starts within the meta-command line (for carets under a `\explain` query).
pub(crate) fn rest_offset(line: &str, rest: &str) -> usize {
    if rest.is_empty() {
        return line.len();
    }
    line.rfind(rest).unwrap_or(0)
}

/// The closest command to a mistyped one, if any is close.
pub(crate) fn closest(name: &str) -> Option<&'static str> {
    COMMANDS
        .iter()
        .map(|c| (edit_distance(name, c.name), c.name))
        .filter(|(d, c)| *d <= 2 && *d < c.len() - 1)
        .min()
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(row[j + 1])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// File names (or URLs) separated by spaces; quotes ('…' or "…") keep spaces in a name, and
/// a leading `~/` is the home directory.
pub(crate) fn split_args(rest: &str) -> Result<Vec<String>, String> {
    let mut args = Vec::new();
    let mut chars = rest.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut arg = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                break;
            }
            chars.next();
            if c == '\'' || c == '"' {
                let mut closed = false;
                for q in chars.by_ref() {
                    if q == c {
                        closed = true;
                        break;
                    }
                    arg.push(q);
                }
                if !closed {
                    return Err(format!("unterminated {c} in {rest}"));
                }
            } else {
                arg.push(c);
            }
        }
        if let (Some(tail), Some(home)) = (arg.strip_prefix("~/"), dirs::home_dir()) {
            arg = home.join(tail).to_string_lossy().into_owned();
        }
        args.push(arg);
    }
    Ok(args)
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED);
    t.set_header(header.to_vec());
    t
}

fn right_align(t: &mut Table, columns: &[usize]) {
    for &i in columns {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
}

/// `\logs`: per log, its keys with the kinds of value seen and how many records and nodes
/// changed them.
pub(crate) fn logs_table(data: &TraceData) -> String {
    let mut t = table(&["log", "key", "kinds", "records", "nodes"]);
    for (log, keys) in data.logs() {
        for (key, v) in keys {
            let s = &data.vars[v];
            let kinds = if s.kinds.is_empty() {
                "(unset only)".to_string()
            } else {
                s.kinds.iter().copied().collect::<Vec<_>>().join(", ")
            };
            t.add_row(vec![
                log.to_string(),
                key.to_string(),
                kinds,
                s.records.to_string(),
                s.nodes.to_string(),
            ]);
        }
    }
    right_align(&mut t, &[3, 4]);
    let logs = data.logs().len();
    format!(
        "{t}\n({logs} {}; {})\n",
        plural(logs, "log", "logs"),
        data.describe()
    )
}

/// `\nodes` of a trace: per node its first and last HLC and its records.
pub(crate) fn nodes_table(data: &TraceData) -> String {
    let mut t = table(&["node", "first hlc", "last hlc", "records"]);
    for (i, n) in data.nodes.iter().enumerate() {
        t.add_row(vec![
            data.names.nodes[i].clone(),
            n.first.to_string(),
            n.last.to_string(),
            n.records.to_string(),
        ]);
    }
    right_align(&mut t, &[3]);
    let count = data.nodes.len();
    format!("{t}\n({count} {})\n", plural(count, "node", "nodes"))
}

/// `\nodes` of log servers (`GET /v1/nodes`): per node its last HLC, records, when it was last
/// heard of, how far its clock is behind the newest node's (lag) and whether it is idle; then
/// the frontier a live query would have now (SPEC §5.1: the least last HLC of the active nodes).
pub(crate) fn live_nodes_table(servers: &[String], status: &[ServerStatus], now_ms: u64) -> String {
    let several = servers.len() > 1;
    let mut header = vec!["node", "last hlc", "records", "last seen", "lag", "idle"];
    if several {
        header.push("server");
    }
    let mut t = table(&header);
    let all = || status.iter().flat_map(|s| s.nodes.iter());
    let newest = all().map(|n| n.last_hlc).max().unwrap_or(Hlc::MIN);
    let mut rows: Vec<(&str, Vec<String>)> = Vec::new();
    for (server, s) in status.iter().enumerate() {
        for n in &s.nodes {
            let mut row = vec![
                n.node.clone(),
                n.last_hlc.to_string(),
                n.records.to_string(),
                format!("{} ago", ms(now_ms.saturating_sub(n.last_seen_ms))),
                ms(newest.physical().saturating_sub(n.last_hlc.physical())),
                if n.idle { "yes" } else { "no" }.to_string(),
            ];
            if several {
                row.push(servers.get(server).cloned().unwrap_or_default());
            }
            rows.push((&n.node, row));
        }
    }
    rows.sort_by(|a, b| a.0.cmp(b.0));
    let count = rows.len();
    for (_, row) in rows {
        t.add_row(row);
    }
    right_align(&mut t, &[2, 3, 4]);
    let active = all().filter(|n| !n.idle).min_by_key(|n| n.last_hlc);
    let frontier = match active {
        Some(n) => format!("frontier {} (held by {})", n.last_hlc, n.node),
        None if count > 0 => format!("frontier {newest} (every node is idle)"),
        None => "no nodes yet".to_string(),
    };
    format!(
        "{t}\n({count} {}; {frontier})\n",
        plural(count, "node", "nodes")
    )
}

/// A duration in ms, readable: `850 ms`, `3.2 s`, `4 min`.
fn ms(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        1_000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..=7_199_999 => format!("{} min", ms / 60_000),
        _ => format!("{} h", ms / 3_600_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_arguments() {
        assert_eq!(split_command("\\format  json "), ("\\format", "json"));
        assert_eq!(split_command("\\?"), ("\\help", ""));
        assert_eq!(closest("\\fromat"), Some("\\format"));
        assert_eq!(closest("\\zzzzzz"), None);
        assert_eq!(
            split_args(r#"a.ndjson "my trace.ndjson" 'b c'"#).expect("quoted"),
            ["a.ndjson", "my trace.ndjson", "b c"]
        );
        assert!(split_args("'open").is_err());
        let line = "\\explain SELECT 1";
        assert_eq!(rest_offset(line, "SELECT 1"), 9);
        assert_eq!(ms(1500), "1.5 s");
    }
}
