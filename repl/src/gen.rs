//! `rql gen`: writes a synthetic trace (see `log_server::synth` for the scenarios) as NDJSON,
//! one `Record::to_json_line` per line.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use log_server::synth;

use crate::query::EXIT_FAILURE;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// inv.a, inv.b, inv.c per node; ~1% of cuts have a node with a + b <= c.
    Invariant,
    /// A leader n1 and followers replicating zk.version with lag and stalls.
    Staleness,
    /// Transfers between branches; SUM(balance) + SUM(sent) - SUM(recv) is constant.
    Bank,
}

#[derive(Args, Debug)]
pub struct GenArgs {
    /// What the trace models.
    #[arg(long, value_enum)]
    pub scenario: Scenario,
    /// Number of nodes, named n1..nN.
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub nodes: u32,
    /// Records after the initial one per node (each is one step of one node).
    #[arg(long, value_name = "M", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(0..=10_000_000_000))]
    pub steps: u64,
    /// Seed of the pseudo-random generator: the same arguments give the same bytes.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
    /// Write the trace to FILE instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub fn run(args: &GenArgs) -> ExitCode {
    let result = match &args.output {
        Some(path) => match File::create(path) {
            Ok(f) => generate(args, BufWriter::with_capacity(1 << 20, f)),
            Err(e) => {
                eprintln!("error: cannot create {}: {e}", path.display());
                return ExitCode::from(EXIT_FAILURE);
            }
        },
        None => generate(args, BufWriter::with_capacity(1 << 20, io::stdout().lock())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`| head`) is the reader saying it has enough.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write the trace: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Writes the whole trace of `args` to `out`.
pub fn generate<W: Write>(args: &GenArgs, mut out: W) -> io::Result<()> {
    let scenario = match args.scenario {
        Scenario::Invariant => synth::Scenario::Invariant,
        Scenario::Staleness => synth::Scenario::Staleness,
        Scenario::Bank => synth::Scenario::Bank,
    };
    synth::generate(
        scenario,
        args.nodes as usize,
        args.steps,
        args.seed,
        &mut |rec| {
            out.write_all(rec.to_json_line().as_bytes())?;
            out.write_all(b"\n")
        },
    )?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use log_server::synth::{BANK_START_BALANCE, START_MS};
    use log_server::{Hlc, Record, Value};

    fn gen(scenario: Scenario, nodes: u32, steps: u64, seed: u64) -> Vec<Record> {
        let args = GenArgs {
            scenario,
            nodes,
            steps,
            seed,
            output: None,
        };
        let mut out = Vec::new();
        generate(&args, &mut out).unwrap();
        out.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| log_server::parse_record(l).unwrap())
            .collect()
    }

    fn ints(r: &Record) -> Vec<(&str, i64)> {
        r.set
            .iter()
            .map(|(k, v)| match v {
                Some(Value::Int(x)) => (k.as_str(), *x),
                _ => panic!("not an int: {v:?}"),
            })
            .collect()
    }

    #[test]
    fn hlcs_are_distinct_increasing_and_about_one_ms_per_record() {
        let recs = gen(Scenario::Invariant, 3, 20_000, 7);
        assert_eq!(recs.len(), 20_003);
        let start = Hlc::new(START_MS, 0).unwrap();
        assert!(recs[..3].iter().all(|r| r.hlc == start));
        assert!(recs[2..].windows(2).all(|p| p[0].hlc < p[1].hlc));
        let span = recs.last().unwrap().hlc.physical() - START_MS;
        assert!((18_000..22_000).contains(&span), "{span}");
        assert!(recs.iter().any(|r| r.hlc.logical() > 0));
    }

    /// Simulates the cut states: the fraction of cuts where some node has a + b <= c.
    #[test]
    fn invariant_violations_are_about_one_percent_and_last_about_fifty_steps() {
        for nodes in [1, 5, 300] {
            let recs = gen(Scenario::Invariant, nodes, 50_000, 3);
            let mut state = std::collections::BTreeMap::new();
            let mut violating_cuts = 0;
            let n = nodes as usize;
            for (k, r) in recs.iter().enumerate() {
                let abc = state.entry(r.node.clone()).or_insert([0i64; 3]);
                for (k, v) in ints(r) {
                    abc[["inv.a", "inv.b", "inv.c"]
                        .iter()
                        .position(|&n| n == k)
                        .unwrap()] = v;
                }
                // The first n records are one step.
                if k + 1 >= n && state.values().any(|[a, b, c]| a + b <= *c) {
                    violating_cuts += 1;
                }
            }
            let frac = violating_cuts as f64 / (recs.len() - n + 1) as f64;
            assert!((0.008..0.012).contains(&frac), "{nodes} nodes: {frac}");
        }
    }

    #[test]
    fn bank_conserves_money_and_staleness_keeps_followers_behind_the_leader() {
        let recs = gen(Scenario::Bank, 3, 5_000, 9);
        let mut state = std::collections::BTreeMap::new();
        for r in &recs {
            let e = state.entry(r.node.clone()).or_insert([0i64; 3]);
            for (k, v) in ints(r) {
                let at = ["bank.balance", "bank.sent", "bank.recv"];
                e[at.iter().position(|&n| n == k).unwrap()] = v;
            }
            let total: i64 = state.values().map(|[b, s, r]| b + s - r).sum();
            if state.len() == 3 {
                assert_eq!(total, 3 * BANK_START_BALANCE);
            }
            assert!(state.values().all(|e| e[0] >= 0));
        }
        let recs = gen(Scenario::Staleness, 6, 5_000, 9);
        let mut version = std::collections::BTreeMap::new();
        let mut stale = 0;
        for r in &recs[6..] {
            let v = ints(r)[0].1;
            version.insert(r.node.clone(), v);
            let leader = version["n1"];
            assert!(version.values().all(|&x| x <= leader));
            if version.values().any(|&x| x <= leader - 2) {
                stale += 1;
            }
        }
        assert!(stale > 0 && stale < recs.len() / 2, "{stale}");
    }

    #[test]
    fn one_node_works_for_every_scenario() {
        for s in [Scenario::Invariant, Scenario::Staleness, Scenario::Bank] {
            assert_eq!(gen(s, 1, 500, 1).len(), 501);
        }
    }
}
