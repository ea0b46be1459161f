//! What the shell queries: trace files read into memory once (`\open`), or the retained
//! history of log servers (`\connect`), in the engine's columnar form — fed to a query
//! [`BATCH_STEPS`] steps at a time, so that it can be cancelled between two batches — together
//! with what `\logs`, `\nodes` and completion show of it.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use log_server::client::{subscribe, StreamItem, SubscribeOptions};
use log_server::columnar::Op;
use log_server::{Hlc, Record};
use rql_exec::{catalog_of_names, Columnar, Names, Steps};
use rql_planner::Catalog;

use crate::replay::read_inputs;
use crate::watch::fetch_status;

/// Steps fed to a query at a time: small enough that even a query spending milliseconds per cut notices a
/// Ctrl-C within about a tenth of a second, large enough that the loop costs nothing.
pub(crate) const BATCH_STEPS: usize = 32;

/// A trace in memory, ready to be queried any number of times.
pub(crate) struct TraceData {
    pub names: Names,
    /// The steps (HLC groups) in order.
    pub trace: Steps,
    pub steps: usize,
    /// Records, heartbeats included.
    pub records: usize,
    pub first_hlc: Option<Hlc>,
    pub last_hlc: Option<Hlc>,
    /// Per variable (indexed like `names.vars`).
    pub vars: Vec<VarSummary>,
    /// Per node (indexed like `names.nodes`).
    pub nodes: Vec<NodeSummary>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct VarSummary {
    /// Kinds of the values assigned (`int`, `string`, ...; `set` for add/remove too).
    pub kinds: BTreeSet<&'static str>,
    /// Records that set, unset, add to or remove from it.
    pub records: u64,
    /// Nodes that ever changed it.
    pub nodes: u64,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct NodeSummary {
    pub first: Hlc,
    pub last: Hlc,
    pub records: u64,
}

impl TraceData {
    /// Summarizes `cols` (per variable and node) and keeps it.
    pub(crate) fn new(cols: Columnar) -> TraceData {
        let Columnar { names, steps } = cols;
        let mut vars = vec![VarSummary::default(); names.vars.len()];
        let mut var_nodes: HashSet<(u32, u32)> = HashSet::new();
        // The last record that counted for each variable, so a record counts once per variable.
        let mut counted_in: Vec<usize> = vec![usize::MAX; names.vars.len()];
        let mut nodes: Vec<Option<NodeSummary>> = vec![None; names.nodes.len()];
        for g in &steps.groups {
            for (i, r) in steps.records[g.start as usize..g.end as usize]
                .iter()
                .enumerate()
            {
                let index = g.start as usize + i;
                let node = &mut nodes[r.node as usize];
                match node {
                    Some(n) => {
                        n.last = g.hlc;
                        n.records += 1;
                    }
                    None => {
                        *node = Some(NodeSummary {
                            first: g.hlc,
                            last: g.hlc,
                            records: 1,
                        })
                    }
                }
                for op in &steps.ops[r.first_op as usize..r.end_op as usize] {
                    let v = op.var() as usize;
                    if let Some(kind) = match op {
                        Op::Set(_, value) => Some(value.kind_name()),
                        Op::Add(..) | Op::Remove(..) => Some("set"),
                        Op::Unset(_) => None,
                    } {
                        vars[v].kinds.insert(kind);
                    }
                    if counted_in[v] != index {
                        counted_in[v] = index;
                        vars[v].records += 1;
                    }
                    if var_nodes.insert((v as u32, r.node)) {
                        vars[v].nodes += 1;
                    }
                }
            }
        }
        let nodes = nodes
            .into_iter()
            .map(|n| {
                n.unwrap_or(NodeSummary {
                    first: Hlc::MIN,
                    last: Hlc::MIN,
                    records: 0,
                })
            })
            .collect();
        TraceData {
            names,
            steps: steps.groups.len(),
            records: steps.records.len(),
            first_hlc: steps.groups.first().map(|g| g.hlc),
            last_hlc: steps.groups.last().map(|g| g.hlc),
            trace: steps,
            vars,
            nodes,
        }
    }

    /// What the planner should know: the variables, and NOW (the last HLC for a trace file,
    /// the clock for a live source).
    pub(crate) fn catalog(&self, live: bool) -> Catalog {
        if live {
            let mut c = catalog_of_names(&self.names, log_server::hlc::system_time_ms());
            c.live = true;
            c
        } else {
            catalog_of_names(&self.names, self.last_hlc.map_or(0, |h| h.physical()))
        }
    }

    /// Variables grouped by log (sorted), each with its index.
    pub(crate) fn logs(&self) -> BTreeMap<&str, Vec<(&str, usize)>> {
        let mut logs: BTreeMap<&str, Vec<(&str, usize)>> = BTreeMap::new();
        for v in 0..self.names.vars.len() {
            let name = self.names.vars.name(v as u32);
            logs.entry(name.log()).or_default().push((name.key(), v));
        }
        for keys in logs.values_mut() {
            keys.sort_unstable();
        }
        logs
    }

    /// One line about the trace: nodes, variables, records, HLC range.
    pub(crate) fn describe(&self) -> String {
        let range = match (self.first_hlc, self.last_hlc) {
            (Some(a), Some(b)) => format!(", HLC {a} to {b}"),
            _ => String::new(),
        };
        format!(
            "{} {}, {} {}, {} {}{range}",
            self.nodes.len(),
            plural(self.nodes.len(), "node", "nodes"),
            self.names.vars.len(),
            plural(self.names.vars.len(), "variable", "variables"),
            self.records,
            plural(self.records, "record", "records"),
        )
    }
}

pub(crate) fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// Reads trace files (all merged into one trace). Warnings about skipped records come back
/// with the data.
pub(crate) fn load_files(
    paths: &[String],
    skip_bad: bool,
) -> Result<(TraceData, Vec<String>), String> {
    if paths.iter().any(|p| p == "-") {
        return Err(
            "the shell reads its input from standard input, so a trace cannot come \
                    from there\nhint: save the trace to a file and \\open it"
                .to_string(),
        );
    }
    let trace = read_inputs(paths, skip_bad)?;
    let mut warnings: Vec<String> = trace
        .errors
        .iter()
        .map(|e| format!("skipped bad record: {e}"))
        .collect();
    if trace.skipped > trace.errors.len() {
        warnings.push(format!(
            "... and {} more bad records skipped",
            trace.skipped - trace.errors.len()
        ));
    }
    Ok((TraceData::new(trace.cols), warnings))
}

/// The retained history of log servers, read with one `follow=false` subscription each.
pub(crate) struct History {
    pub data: TraceData,
    /// What the user should know (history cut by retention).
    pub notes: Vec<String>,
}

/// Reads everything `servers` retain, merged into one trace in HLC order.
pub(crate) async fn fetch_history(
    servers: &[String],
    token: Option<&str>,
) -> Result<History, String> {
    let mut records: Vec<Record> = Vec::new();
    let mut owner: BTreeMap<String, usize> = BTreeMap::new();
    let mut notes = Vec::new();
    for (server, url) in servers.iter().enumerate() {
        let status = fetch_status(url, token)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if status.earliest > Hlc::MIN {
            notes.push(format!(
                "log server {url} keeps history from HLC {} on (retention); values set before \
                 it and not changed since are not seen",
                status.earliest
            ));
        }
        let options = SubscribeOptions {
            since: status.earliest,
            follow: false,
            token: token.map(str::to_string),
            read_timeout: Some(Duration::from_secs(30)),
            ..SubscribeOptions::default()
        };
        let mut sub = subscribe(url, &options)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        while let Some(item) = sub.next().await {
            match item.map_err(|e| format!("{url}: {e}"))? {
                StreamItem::Record(rec) => {
                    // One order between two logs does not exist: a node must be on one server.
                    match owner.get(rec.node.as_str()) {
                        Some(&s) if s != server => {
                            return Err(format!(
                                "node {:?} appears on two log servers, {} and {url}; each \
                                 node must send to one server",
                                rec.node, servers[s]
                            ))
                        }
                        Some(_) => {}
                        None => {
                            owner.insert(rec.node.clone(), server);
                        }
                    }
                    records.push(rec);
                }
                StreamItem::Progress(_) => {}
            }
        }
    }
    // Each node's records come in HLC order, but nodes interleave in arrival order: sort
    // (stably, so equal HLCs keep the order they were stored in).
    records.sort_by_key(|r| r.hlc);
    let refs: Vec<&Record> = records.iter().collect();
    Ok(History {
        data: TraceData::new(Columnar::from_records(&refs)),
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(line: &str) -> Record {
        log_server::ndjson::parse_record(line.as_bytes()).expect("a valid record")
    }

    #[test]
    fn summaries_count_records() {
        let mut lines = vec![
            r#"{"node":"n2","hlc":[1,0],"set":{"a.x":1,"a.y":"s"}}"#.to_string(),
            r#"{"node":"n1","hlc":[2,0],"add":{"a.z":[1]},"set":{"a.x":1.5}}"#.to_string(),
        ];
        for l in 3..200 {
            lines.push(format!(
                r#"{{"node":"n1","hlc":[{l},0],"set":{{"a.x":{l}}}}}"#
            ));
        }
        let records: Vec<Record> = lines.iter().map(|l| record(l)).collect();
        let refs: Vec<&Record> = records.iter().collect();
        let whole = Columnar::from_records(&refs);
        let data = TraceData::new(whole.clone());
        assert_eq!(data.steps, 199);
        assert_eq!(data.trace.groups, whole.steps.groups);
        let x = data.names.vars.get("a.x").expect("a.x") as usize;
        assert_eq!(data.vars[x].records, 199);
        assert_eq!(data.vars[x].nodes, 2);
        assert_eq!(
            data.vars[x].kinds.iter().copied().collect::<Vec<_>>(),
            ["float", "int"]
        );
        let n1 = &data.nodes[0];
        assert_eq!(
            (n1.records, n1.first.physical(), n1.last.physical()),
            (198, 2, 199)
        );
    }
}
