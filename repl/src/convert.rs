//! `rql convert IN OUT`: traces between NDJSON (rql-trace/1) and Parquet (one row per change;
//! schema in `log_server::parquet`), the format chosen by each path's extension. Every record
//! survives exactly: NDJSON → Parquet → NDJSON gives the input's records sorted by HLC.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;

use bytesize::ByteSize;
use clap::Args;
use log_server::parquet::{parquet_files, read_parquet_records, write_parquet, ParquetOptions};
use log_server::{read_traces, ReadOptions, Record, TraceInput};

use crate::query::EXIT_FAILURE;

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// The trace to read: NDJSON (`.ndjson`, `.jsonl`, or `-` for standard input) or Parquet
    /// (`.parquet`, or a directory of `.parquet` files read as one trace).
    #[arg(value_name = "IN")]
    pub input: String,
    /// Where to write: `.parquet`, or `.ndjson`/`.jsonl` (`-`: NDJSON to standard output).
    #[arg(value_name = "OUT")]
    pub output: String,
    /// Memory DataFusion may use to sort a Parquet input by HLC before spilling to disk
    /// (e.g. 1GiB).
    #[arg(long, value_name = "SIZE")]
    pub memory_limit: Option<ByteSize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceFormat {
    Ndjson,
    Parquet,
}

/// A trace path's format by its extension (`-` is NDJSON; a directory holds Parquet files).
pub fn trace_format(path: &str) -> Result<TraceFormat, String> {
    let p = Path::new(path);
    let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
    if path == "-" || ext.eq_ignore_ascii_case("ndjson") || ext.eq_ignore_ascii_case("jsonl") {
        Ok(TraceFormat::Ndjson)
    } else if ext.eq_ignore_ascii_case("parquet") || p.is_dir() {
        Ok(TraceFormat::Parquet)
    } else {
        Err(format!(
            "cannot tell the format of {path} from its name\nhint: name NDJSON traces \
             *.ndjson or *.jsonl and Parquet traces *.parquet"
        ))
    }
}

/// Whether `rql replay` should read `paths` as Parquet: any `.parquet` file or directory.
pub fn any_parquet(paths: &[String]) -> bool {
    paths
        .iter()
        .any(|p| p != "-" && trace_format(p) == Ok(TraceFormat::Parquet))
}

pub fn parquet_options(memory_limit: Option<ByteSize>) -> Result<ParquetOptions, String> {
    let memory_limit = match memory_limit {
        None => None,
        Some(b) => Some(
            usize::try_from(b.as_u64())
                .map_err(|_| format!("--memory-limit {b} is more than this machine can address"))?,
        ),
    };
    Ok(ParquetOptions {
        memory_limit,
        temp_dir: None,
    })
}

pub fn run(args: &ConvertArgs) -> ExitCode {
    match convert(args) {
        Ok(n) => {
            eprintln!("converted {n} records: {} -> {}", args.input, args.output);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn convert(args: &ConvertArgs) -> Result<usize, String> {
    let from = trace_format(&args.input)?;
    let to = trace_format(&args.output)?;
    let records = match from {
        TraceFormat::Ndjson => read_ndjson(&args.input)?,
        TraceFormat::Parquet => {
            let files = parquet_files(std::slice::from_ref(&args.input))?;
            read_parquet_records(&files, &parquet_options(args.memory_limit)?)
                .map_err(|e| format!("trace {e}"))?
        }
    };
    write_trace(&records, &args.output, to)?;
    Ok(records.len())
}

/// Writes `records` (sorted by HLC) as a trace file in `format`: a file is written beside the
/// target, fsynced and renamed, so a failed run leaves no half file; NDJSON may go to `-`
/// (standard output).
pub(crate) fn write_trace(
    records: &[Record],
    output: &str,
    format: TraceFormat,
) -> Result<(), String> {
    let write_ndjson = |out: &mut dyn Write| -> std::io::Result<()> {
        let mut line = String::new();
        for r in records {
            line.clear();
            r.write_json(&mut line);
            line.push('\n');
            out.write_all(line.as_bytes())?;
        }
        out.flush()
    };
    if output == "-" {
        if format == TraceFormat::Parquet {
            return Err("Parquet is written to a file; give OUT.parquet".into());
        }
        let stdout = std::io::stdout();
        return match write_ndjson(&mut BufWriter::new(stdout.lock())) {
            // A closed pipe is the reader saying it has enough.
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                Err(format!("cannot write output: {e}"))
            }
            _ => Ok(()),
        };
    }
    if Path::new(output).is_dir() {
        return Err(format!(
            "{output} is a directory; give a file name ending in .parquet or .ndjson"
        ));
    }
    let tmp = format!("{output}.partial");
    let file = File::create(&tmp).map_err(|e| format!("cannot create {tmp}: {e}"))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    match format {
        TraceFormat::Parquet => {
            out = write_parquet(records.iter(), out).map_err(|e| format!("{output}: {e}"))?;
        }
        TraceFormat::Ndjson => {
            write_ndjson(&mut out).map_err(|e| format!("cannot write {tmp}: {e}"))?;
        }
    }
    let file = out
        .into_inner()
        .map_err(|e| format!("cannot write {tmp}: {}", e.error()))?;
    file.sync_all()
        .map_err(|e| format!("cannot write {tmp}: {e}"))?;
    std::fs::rename(&tmp, output).map_err(|e| format!("cannot rename {tmp} to {output}: {e}"))
}

/// An NDJSON trace's records sorted by HLC (equal HLCs in file order); any bad record stops the
/// conversion (a converted trace must hold every record).
fn read_ndjson(path: &str) -> Result<Vec<Record>, String> {
    let input = if path == "-" {
        TraceInput {
            name: "<stdin>".into(),
            reader: Box::new(std::io::stdin().lock()),
        }
    } else {
        let f = File::open(path).map_err(|e| format!("cannot open trace {path}: {e}"))?;
        TraceInput {
            name: path.to_string(),
            reader: Box::new(BufReader::with_capacity(1 << 20, f)),
        }
    };
    let trace =
        read_traces(vec![input], &ReadOptions::default()).map_err(|e| format!("trace {e}"))?;
    Ok(trace.records.into_iter().map(|(_, r)| r).collect())
}
