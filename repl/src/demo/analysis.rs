//! The bookkeeping of `rql demo`: the alert queries, runs of alerts matched against the
//! injected bugs, and the "naive" reordering of a trace by each node's physical clock that the
//! consistent-cut answer is compared with. Pure functions over records, so they are tested here
//! without a cluster.

use std::collections::HashMap;

use log_server::{Hlc, Record, Value};
use rql_exec::output::OutValue;
use rql_exec::OutputRecord;

/// Money is conserved: on every consistent cut the balances plus the money in flight (sent and
/// not yet received) equal what the accounts opened with, and no more money has arrived than
/// was sent. The second part is not redundant: every record of a transfer keeps the first part
/// true on its own (a debit moves money from `balance` to `sent`, a credit from `recv` to
/// `balance`), so only the second part sees a credit ordered before its debit — which is
/// exactly what ordering records by skewed physical clocks does.
pub const CONSERVATION: &str = "\
SELECT SUM(bank.balance) AS balance, SUM(bank.sent) AS sent,
       SUM(bank.recv) AS received, SUM(bank.opening) AS opening
FROM bank
WHEN SUM(bank.balance) + SUM(bank.sent) - SUM(bank.recv) != SUM(bank.opening)
  OR SUM(bank.sent) < SUM(bank.recv)
EMIT CHANGES";

/// A replica two or more versions behind the leader.
pub const STALENESS: &str = "\
SELECT MAX(zk.version) AS leader, MIN(zk.version) AS follower
FROM zk
WHEN MAX(zk.version) - MIN(zk.version) >= 2
EMIT CHANGES";

/// One run of an `EMIT CHANGES` query: from its `begin` cut to its `end` cut (exclusive);
/// `end` is `None` if the input ended inside the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub begin: Hlc,
    pub end: Option<Hlc>,
}

impl Run {
    /// Whether the run and the half-open window `[from, to)` (`to` `None`: open-ended) share
    /// a cut.
    fn overlaps(&self, from: Hlc, to: Option<Hlc>) -> bool {
        self.end.is_none_or(|end| from < end) && to.is_none_or(|to| self.begin < to)
    }
}

/// Folds one emitted record into `runs`: a `begin` opens a run, an `end` closes the last one.
pub fn note_run(runs: &mut Vec<Run>, rec: &OutputRecord) {
    match rec {
        OutputRecord::Cut(cut) if cut.begin => runs.push(Run {
            begin: cut.hlc,
            end: None,
        }),
        OutputRecord::Cut(_) => {}
        OutputRecord::End(end) => {
            if let Some(run) = runs.last_mut().filter(|r| r.end.is_none()) {
                run.end = Some(end.hlc);
            }
        }
    }
}

/// How a query's alerts compare with the injected bugs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Score {
    /// Runs (begin events).
    pub alerts: usize,
    /// Bugs that some run overlaps.
    pub detected: usize,
    /// Runs that overlap no bug: false alarms.
    pub false_alarms: usize,
}

/// Matches `runs` against the bugs' windows `[begin, end)` (in the same order as the runs:
/// HLC for the consistent-cut query, physical-time order for the naive one).
pub fn score(runs: &[Run], bugs: &[(Hlc, Option<Hlc>)]) -> Score {
    Score {
        alerts: runs.len(),
        detected: bugs
            .iter()
            .filter(|(from, to)| runs.iter().any(|r| r.overlaps(*from, *to)))
            .count(),
        false_alarms: false_alarms(runs, bugs).count(),
    }
}

/// The indices of the runs that overlap no bug.
pub fn false_alarms<'a>(
    runs: &'a [Run],
    bugs: &'a [(Hlc, Option<Hlc>)],
) -> impl Iterator<Item = usize> + 'a {
    runs.iter()
        .enumerate()
        .filter(|(_, r)| !bugs.iter().any(|(from, to)| r.overlaps(*from, *to)))
        .map(|(i, _)| i)
}

/// A trace reordered by physical time, as a monitor that trusts the nodes' clocks would see it.
pub struct PhysicalOrder {
    /// The change records that carry `pt`, sorted by it, each re-stamped `[pt, k]` (`k`
    /// numbers the records that share a millisecond), so a replay steps through them in that
    /// order.
    pub records: Vec<Record>,
    /// (node, original HLC) → the new stamp.
    pub restamped: HashMap<(String, Hlc), Hlc>,
}

/// Orders the change records of `trace` by their `pt` (ties: by HLC, which keeps each node's
/// own records in order) and re-stamps them. Heartbeats and records without `pt` are left out:
/// they change nothing a query sees.
pub fn physical_order(trace: &[Record]) -> Result<PhysicalOrder, String> {
    let mut records: Vec<(u64, Record)> = trace
        .iter()
        .filter(|r| !r.is_heartbeat())
        .filter_map(|r| r.pt.map(|pt| (pt, r.clone())))
        .collect();
    records.sort_by_key(|(pt, r)| (*pt, r.hlc));
    let mut restamped = HashMap::with_capacity(records.len());
    let mut out = Vec::with_capacity(records.len());
    let mut previous: Option<(u64, u64)> = None;
    for (pt, mut rec) in records {
        let k = match previous {
            Some((p, k)) if p == pt => k + 1,
            _ => 0,
        };
        previous = Some((pt, k));
        let hlc = Hlc::new(pt, k).map_err(|e| {
            format!(
                "cannot order the trace by physical time at {pt} ms (node {}): {e}",
                rec.node
            )
        })?;
        restamped.insert((rec.node.clone(), rec.hlc), hlc);
        rec.hlc = hlc;
        out.push(rec);
    }
    Ok(PhysicalOrder {
        records: out,
        restamped,
    })
}

/// An integer aggregate of an emitted cut, by output name.
pub fn int_value(values: &[(String, OutValue)], name: &str) -> Option<i64> {
    values.iter().find_map(|(n, v)| match v {
        OutValue::One(Some(Value::Int(i))) if n == name => Some(*i),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use log_server::VarName;
    use rql_exec::output::{CutRecord, EndRecord};

    fn hlc(l: u64) -> Hlc {
        Hlc::new(l, 0).unwrap()
    }

    fn run(b: u64, e: Option<u64>) -> Run {
        Run {
            begin: hlc(b),
            end: e.map(hlc),
        }
    }

    #[test]
    fn runs_are_matched_to_overlapping_bug_windows() {
        let bugs = [(hlc(100), Some(hlc(200))), (hlc(500), None)];
        let runs = [
            run(100, Some(200)), // exactly the first bug
            run(50, Some(100)),  // ends where the bug begins: no shared cut
            run(200, Some(300)), // begins where the bug ended
            run(150, Some(160)), // inside the first bug
            run(600, None),      // inside the open-ended second bug
        ];
        assert_eq!(
            score(&runs, &bugs),
            Score {
                alerts: 5,
                detected: 2,
                false_alarms: 2
            }
        );
        assert_eq!(false_alarms(&runs, &bugs).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(score(&[], &bugs).detected, 0);
        assert_eq!(score(&runs[1..3], &[]).false_alarms, 2);
    }

    #[test]
    fn begin_and_end_records_make_runs() {
        let cut = |begin, l| {
            OutputRecord::Cut(CutRecord {
                begin,
                seq: 1,
                hlc: hlc(l),
                values: vec![("balance".into(), OutValue::One(Some(Value::Int(7))))],
                witness: None,
                stale: vec![],
                late: false,
            })
        };
        let end = |l| {
            OutputRecord::End(EndRecord {
                seq: 2,
                hlc: hlc(l),
                duration_ms: 1,
                cuts: 1,
                stale: vec![],
                late: false,
            })
        };
        let mut runs = Vec::new();
        for rec in [cut(true, 1), end(3), cut(true, 5), cut(false, 6)] {
            note_run(&mut runs, &rec);
        }
        assert_eq!(runs, vec![run(1, Some(3)), run(5, None)]);
        if let OutputRecord::Cut(c) = cut(true, 1) {
            assert_eq!(int_value(&c.values, "balance"), Some(7));
            assert_eq!(int_value(&c.values, "sent"), None);
        }
    }

    fn change(node: &str, l: u64, c: u64, pt: Option<u64>) -> Record {
        let mut r = Record::heartbeat(node, Hlc::new(l, c).unwrap());
        r.set
            .push((VarName::parse("bank.balance").unwrap(), Some(Value::Int(1))));
        r.pt = pt;
        r
    }

    #[test]
    fn physical_order_sorts_by_pt_and_restamps() {
        // b's clock runs ahead: its record at HLC 10 was read at pt 30, after a's at pt 20,
        // whose HLC 25 was pushed ahead of its clock by a received message.
        let trace = vec![
            change("b", 10, 0, Some(30)),
            change("a", 25, 0, Some(20)),
            change("a", 25, 1, Some(20)),
            Record::heartbeat("a", hlc(40)),
            change("c", 5, 0, None),
        ];
        let order = physical_order(&trace).unwrap();
        let got: Vec<(&str, Hlc)> = order
            .records
            .iter()
            .map(|r| (r.node.as_str(), r.hlc))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", Hlc::new(20, 0).unwrap()),
                ("a", Hlc::new(20, 1).unwrap()),
                ("b", Hlc::new(30, 0).unwrap()),
            ]
        );
        assert_eq!(
            order.restamped.get(&("b".to_string(), hlc(10))),
            Some(&Hlc::new(30, 0).unwrap())
        );
    }
}
