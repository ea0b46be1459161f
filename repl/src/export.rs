//! `rql export --server URL [--since T] [--until T] OUT`: a log server's retained records (one
//! history read, `follow=false`) written as a trace file, Parquet or NDJSON by OUT's extension,
//! sorted by HLC (equal HLCs in the server's log order).

use std::process::ExitCode;

use clap::Args;
use log_server::client::{subscribe, StreamItem, SubscribeOptions};
use log_server::{Hlc, Record};

use crate::convert::{trace_format, write_trace};
use crate::query::EXIT_FAILURE;

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The log server (e.g. http://127.0.0.1:7400).
    #[arg(long = "server", value_name = "URL")]
    pub server: String,
    /// Only records with HLC >= this: `L` (ms, counter 0) or `L,C`.
    #[arg(long, value_name = "HLC", value_parser = parse_hlc)]
    pub since: Option<Hlc>,
    /// Only records with HLC <= this: `L` (ms: every counter of that ms) or `L,C`.
    #[arg(long, value_name = "HLC", value_parser = parse_until)]
    pub until: Option<Hlc>,
    /// Bearer token of the log server.
    #[arg(long, value_name = "TOKEN", env = "RQL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Output trace: `.parquet`, or `.ndjson`/`.jsonl`.
    #[arg(value_name = "OUT")]
    pub output: String,
}

fn parse_hlc_parts(s: &str, counter_default: u64) -> Result<Hlc, String> {
    let (l, c) = match s.split_once(',') {
        Some((l, c)) => (l.trim(), Some(c.trim())),
        None => (s.trim(), None),
    };
    let l: u64 = l
        .parse()
        .map_err(|_| format!("{s:?} is not an HLC: expected L (ms) or L,C"))?;
    let c: u64 = match c {
        Some(c) => c
            .parse()
            .map_err(|_| format!("{s:?} is not an HLC: expected L (ms) or L,C"))?,
        None => counter_default,
    };
    Hlc::new(l, c).map_err(|e| format!("{s:?}: {e}"))
}

fn parse_hlc(s: &str) -> Result<Hlc, String> {
    parse_hlc_parts(s, 0)
}

fn parse_until(s: &str) -> Result<Hlc, String> {
    parse_hlc_parts(s, 65535)
}

pub fn run(args: &ExportArgs) -> ExitCode {
    match export(args) {
        Ok(n) => {
            eprintln!(
                "exported {n} records from {} to {}",
                args.server, args.output
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn export(args: &ExportArgs) -> Result<usize, String> {
    let format = trace_format(&args.output)?;
    if args.output == "-" {
        return Err("export writes a file; give OUT.parquet or OUT.ndjson".into());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the HTTP client: {e}"))?;
    let mut records: Vec<Record> = rt.block_on(async {
        let options = SubscribeOptions {
            since: args.since.unwrap_or(Hlc::MIN),
            follow: false,
            token: args.token.clone(),
            ..SubscribeOptions::default()
        };
        let mut sub = subscribe(&args.server, &options)
            .await
            .map_err(|e| format!("{}: {e}", args.server))?;
        let mut out = Vec::new();
        while let Some(item) = sub.next().await {
            match item.map_err(|e| format!("{}: {e}", args.server))? {
                StreamItem::Record(r) => {
                    if args.until.is_none_or(|u| r.hlc <= u) {
                        out.push(r);
                    }
                }
                StreamItem::Progress(_) => {}
            }
        }
        Ok::<_, String>(out)
    })?;
    // The stream is in log order (each node's records in HLC order); a trace file is sorted by
    // HLC, stably, so records of equal HLC keep the server's order.
    records.sort_by_key(|r| r.hlc);
    write_trace(&records, &args.output, format)?;
    Ok(records.len())
}
