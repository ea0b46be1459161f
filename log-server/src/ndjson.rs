//! Reading `rql-trace/1` NDJSON (SPEC §1.3, §6): one record per line, every rule checked, errors
//! naming the line; and reading a whole trace into HLC order (lines parsed on several threads,
//! see `chunked`), replaying per node what decides `add`/`remove` on non-set values.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use crate::chunked::{self, CHUNK_BYTES};
use crate::fast;
use crate::hlc::Hlc;
use crate::json::{self, Json};
use crate::record::{Record, VarName, MAX_NODE_ID_BYTES};
use crate::state::NonSetKinds;
use crate::value::{NotScalar, SetValue, Value};

/// What went wrong, for deciding whether a bad record may be skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceErrorKind {
    /// A bad record: skippable with `ReadOptions::skip_bad`.
    Record,
    /// The source itself failed (could not be opened or read): never skipped.
    Io,
    /// A reader that needs its input in HLC order found it is not ([`crate::SortedMerge`]):
    /// never skipped; sorting in memory reads such a trace.
    Unsorted,
}

/// A trace error naming the line; `line {line}: {reason}`, or `{source}:{line}: {reason}` once
/// the caller has attached the file name with `with_source`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceError {
    pub source: Option<String>,
    /// 1-based line number; 0 when the error is not about a line (e.g. the file cannot be opened).
    pub line: usize,
    pub reason: String,
    pub kind: TraceErrorKind,
}

impl TraceError {
    pub fn new(line: usize, reason: impl Into<String>) -> TraceError {
        TraceError {
            source: None,
            line,
            reason: reason.into(),
            kind: TraceErrorKind::Record,
        }
    }

    pub fn io(line: usize, reason: impl Into<String>) -> TraceError {
        TraceError {
            kind: TraceErrorKind::Io,
            ..TraceError::new(line, reason)
        }
    }

    pub fn with_source(mut self, source: impl Into<String>) -> TraceError {
        self.source = Some(source.into());
        self
    }
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.source, self.line) {
            (Some(src), 0) => write!(f, "{src}: {}", self.reason),
            (Some(src), line) => write!(f, "{src}:{line}: {}", self.reason),
            (None, 0) => f.write_str(&self.reason),
            (None, line) => write!(f, "line {line}: {}", self.reason),
        }
    }
}

impl std::error::Error for TraceError {}

/// Streams the records of an NDJSON source: one `(line number, Record)` per non-blank line, or
/// the error for that line. Lines are read as bytes, so a line of invalid UTF-8 is one record
/// error rather than the end of the stream. A read error ends the stream after being reported.
#[derive(Debug)]
pub struct NdjsonReader<R> {
    reader: R,
    line: usize,
    buf: Vec<u8>,
    done: bool,
}

impl<R: BufRead> NdjsonReader<R> {
    pub fn new(reader: R) -> NdjsonReader<R> {
        NdjsonReader {
            reader,
            line: 0,
            buf: Vec::new(),
            done: false,
        }
    }

    /// The number of the last line read.
    pub fn line(&self) -> usize {
        self.line
    }
}

impl<R: BufRead> Iterator for NdjsonReader<R> {
    type Item = Result<(usize, Record), TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            self.buf.clear();
            match self.reader.read_until(b'\n', &mut self.buf) {
                Ok(0) => self.done = true,
                Ok(_) => {
                    self.line += 1;
                    if is_blank(&self.buf) {
                        continue;
                    }
                    let line = self.line;
                    return Some(
                        parse_record(&self.buf)
                            .map(|rec| (line, rec))
                            .map_err(|reason| TraceError::new(line, reason)),
                    );
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.done = true;
                    return Some(Err(TraceError::io(
                        self.line + 1,
                        format!("read error: {e}"),
                    )));
                }
            }
        }
        None
    }
}

pub(crate) fn is_blank(line: &[u8]) -> bool {
    line.iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// Parses one trace line (trailing newline allowed) into a record, checking every per-record
/// rule. The error is the reason only; the caller knows the line.
///
/// Good lines take the typed fast path (`fast::fill`, serde visitors straight into the
/// record); a line it does not accept, which includes every bad line, is read again by the
/// reference reader (`parse_record_reference`), which decides and gives the reason.
pub fn parse_record(line: &[u8]) -> Result<Record, String> {
    let mut rec = Record::heartbeat(String::new(), Hlc::MIN);
    parse_record_into(line, &mut rec)?;
    Ok(rec)
}

/// [`parse_record`] into `rec`, which must be a fresh heartbeat; after an error it holds
/// garbage.
pub(crate) fn parse_record_into(line: &[u8], rec: &mut Record) -> Result<(), String> {
    let text = utf8_line(line)?;
    if !fast::fill(text, rec) {
        *rec = parse_record_reference(text)?;
    }
    Ok(())
}

/// A line as text, or the error that names where its UTF-8 breaks.
pub(crate) fn utf8_line(line: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(line)
        .map_err(|e| format!("invalid UTF-8 at byte {} of the line", e.valid_up_to() + 1))
}

/// The reference reader: JSON to a `Json` tree (duplicate keys and exact integer literals
/// kept), then checked and converted rule by rule.
pub(crate) fn parse_record_reference(text: &str) -> Result<Record, String> {
    let members = match json::parse(text)? {
        Json::Obj(members) => members,
        other => {
            return Err(format!(
                "a record must be a JSON object, found {}",
                other.type_name()
            ))
        }
    };
    let mut node = None;
    let mut hlc = None;
    let mut rec = Record::heartbeat(String::new(), Hlc::MIN);
    for (field, value) in members {
        match field.as_str() {
            "node" => node = Some(node_id(value)?),
            "hlc" => hlc = Some(hlc_of(value)?),
            "set" => {
                for (var, value) in object_of("set", value)? {
                    let var = var_name("set", &var)?;
                    let value = match value {
                        Json::Null => None,
                        v => Some(value_of(v).map_err(|e| format!("\"set\": {var}: {e}"))?),
                    };
                    rec.set.push((var, value));
                }
            }
            "unset" => {
                let Json::Arr(items) = value else {
                    return Err(format!(
                        "\"unset\" must be an array of variable names, found {}",
                        value.type_name()
                    ));
                };
                for item in items {
                    let Json::Str(name) = item else {
                        return Err(format!(
                            "\"unset\" must be an array of variable names, found {} in it",
                            item.type_name()
                        ));
                    };
                    rec.unset.push(var_name("unset", &name)?);
                }
            }
            "add" | "remove" => {
                let op = if field == "add" { "add" } else { "remove" };
                let mut changes = Vec::new();
                for (var, value) in object_of(op, value)? {
                    let var = var_name(op, &var)?;
                    let Json::Arr(items) = value else {
                        return Err(format!(
                            "\"{op}\": {var}: the elements must be an array, found {}",
                            value.type_name()
                        ));
                    };
                    let elems = set_of(items).map_err(|e| format!("\"{op}\": {var}: {e}"))?;
                    changes.push((var, elems));
                }
                if op == "add" {
                    rec.add = changes;
                } else {
                    rec.remove = changes;
                }
            }
            "leave" => match value {
                Json::Bool(b) => rec.leave = b,
                other => {
                    return Err(format!(
                        "\"leave\" must be a boolean, found {}",
                        other.type_name()
                    ))
                }
            },
            "pt" => match value {
                Json::Int(i) if i >= 0 => {
                    rec.pt = Some(
                        u64::try_from(i)
                            .map_err(|_| format!("\"pt\" {i} out of range 0..{}", u64::MAX))?,
                    )
                }
                other => {
                    return Err(format!(
                        "\"pt\" must be a non-negative integer (ms), found {}",
                        describe(&other)
                    ))
                }
            },
            unknown => return Err(format!("unknown field {}", json::quote(unknown))),
        }
    }
    rec.node = node.ok_or("missing field \"node\"")?;
    rec.hlc = hlc.ok_or("missing field \"hlc\"")?;
    Ok(rec)
}

/// Parses one value in trace syntax (JSON; arrays are sets, objects structs; `null` is not a
/// value).
pub fn parse_value(text: &str) -> Result<Value, String> {
    match json::parse(text)? {
        Json::Null => Err("null is not a value".to_string()),
        j => value_of(j),
    }
}

/// A JSON value's type, and the number itself for a negative integer (the usual mistake).
fn describe(j: &Json) -> String {
    match j {
        Json::Int(i) => format!("{i}"),
        other => other.type_name().to_string(),
    }
}

fn node_id(value: Json) -> Result<String, String> {
    match value {
        Json::Str(s) if s.is_empty() => Err("\"node\" must not be empty".to_string()),
        Json::Str(s) if s.len() > MAX_NODE_ID_BYTES => Err(format!(
            "\"node\" is {} bytes long (at most {MAX_NODE_ID_BYTES})",
            s.len()
        )),
        Json::Str(s) => Ok(s),
        other => Err(format!(
            "\"node\" must be a string, found {}",
            other.type_name()
        )),
    }
}

const HLC_SHAPE: &str =
    "\"hlc\" must be [l, c] with non-negative integers, or a packed unsigned integer";

fn hlc_of(value: Json) -> Result<Hlc, String> {
    match value {
        Json::Arr(parts) => match parts.as_slice() {
            [Json::Int(l), Json::Int(c)] if *l >= 0 && *c >= 0 => {
                if *l > i128::from(Hlc::MAX_PHYSICAL) {
                    return Err(format!(
                        "hlc physical time {l} out of range 0..{}",
                        Hlc::MAX_PHYSICAL
                    ));
                }
                if *c > i128::from(Hlc::MAX_LOGICAL) {
                    return Err(format!(
                        "hlc counter {c} out of range 0..{}",
                        Hlc::MAX_LOGICAL
                    ));
                }
                // Both in range, so neither the casts nor `new` can fail.
                Hlc::new(*l as u64, *c as u64).map_err(|e| e.to_string())
            }
            _ => Err(HLC_SHAPE.to_string()),
        },
        Json::Int(packed) => u64::try_from(packed)
            .map(Hlc::from_packed)
            .map_err(|_| format!("packed hlc {packed} out of range 0..{}", u64::MAX)),
        _ => Err(HLC_SHAPE.to_string()),
    }
}

fn object_of(field: &str, value: Json) -> Result<Vec<(String, Json)>, String> {
    match value {
        Json::Obj(members) => Ok(members),
        other => Err(format!(
            "\"{field}\" must be an object of \"log.key\" members, found {}",
            other.type_name()
        )),
    }
}

fn var_name(field: &str, name: &str) -> Result<VarName, String> {
    VarName::parse(name).map_err(|e| format!("\"{field}\": {e}"))
}

/// A non-null JSON value as a `Value`: arrays become sets, objects structs.
fn value_of(j: Json) -> Result<Value, String> {
    match j {
        Json::Null => Err("null is not a value".to_string()),
        Json::Bool(b) => Ok(Value::Bool(b)),
        Json::Int(i) => i64::try_from(i)
            .map(Value::Int)
            .map_err(|_| format!("integer {i} out of range of i64")),
        Json::Float(f) => Value::float(f).ok_or_else(|| format!("non-finite number {f}")),
        Json::Str(s) => Ok(Value::Str(s)),
        Json::Arr(items) => set_of(items).map(Value::Set),
        Json::Obj(members) => {
            let mut fields = std::collections::BTreeMap::new();
            for (name, value) in members {
                if value == Json::Null {
                    return Err(format!(
                        "null is not allowed inside a struct (field {})",
                        json::quote(&name)
                    ));
                }
                fields.insert(name, value_of(value)?);
            }
            Ok(Value::Struct(fields))
        }
    }
}

fn set_of(items: Vec<Json>) -> Result<SetValue, String> {
    let mut elems = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Json::Null => return Err("null is not allowed inside a set".to_string()),
            Json::Arr(_) | Json::Obj(_) => {
                return Err(format!(
                    "set elements must be scalars (int, float, string, bool), found {}",
                    item.type_name()
                ))
            }
            scalar => elems.push(value_of(scalar)?),
        }
    }
    SetValue::from_values(elems).map_err(|e: NotScalar| e.to_string())
}

/// How to treat bad records when reading a whole trace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Skip bad records (counting them) instead of failing on the first one.
    pub skip_bad: bool,
}

/// At most this many errors of skipped records are kept in `Trace::errors`.
pub const MAX_REPORTED_ERRORS: usize = 10;

/// A whole trace, ready for the engine.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Trace {
    /// `(original line number, record)`, sorted stably by HLC (equal HLCs keep file order).
    pub records: Vec<(usize, Record)>,
    /// Bad records skipped (only with `skip_bad`).
    pub skipped: usize,
    /// Up to `MAX_REPORTED_ERRORS` of the skipped records' errors, by line.
    pub errors: Vec<TraceError>,
}

/// Where a record came from: which input (index into `MergedTrace::sources`) and which line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin {
    pub source: usize,
    pub line: usize,
}

/// One input of a merged trace: a name for error messages (a path, `<stdin>`) and its bytes.
pub struct TraceInput<'a> {
    pub name: String,
    pub reader: Box<dyn BufRead + 'a>,
}

/// Several inputs read as one trace (e.g. one file per node).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MergedTrace {
    pub sources: Vec<String>,
    /// Sorted stably by HLC: equal HLCs keep input order, then line order.
    pub records: Vec<(Origin, Record)>,
    /// Bad records skipped (only with `skip_bad`).
    pub skipped: usize,
    /// Up to `MAX_REPORTED_ERRORS` of the skipped records' errors, in input and line order.
    pub errors: Vec<TraceError>,
}

/// Reads a whole trace: parses every line, sorts the records stably by HLC, then replays each
/// node's state in that order to find `add`/`remove` on non-set values (which depend on what
/// came before in HLC order, not in the file). Errors name the original line. With `skip_bad`,
/// bad records are dropped and counted instead; read errors always fail.
pub fn read_trace(reader: impl BufRead, opts: &ReadOptions) -> Result<Trace, TraceError> {
    let input = TraceInput {
        name: String::new(),
        reader: Box::new(reader),
    };
    let merged = read_traces(vec![input], opts).map_err(|mut e| {
        e.source = None;
        e
    })?;
    Ok(Trace {
        records: merged
            .records
            .into_iter()
            .map(|(origin, rec)| (origin.line, rec))
            .collect(),
        skipped: merged.skipped,
        errors: merged
            .errors
            .into_iter()
            .map(|mut e| {
                e.source = None;
                e
            })
            .collect(),
    })
}

/// `read_trace` over several inputs merged into one trace: records of all inputs are sorted
/// together (a node's records may be spread over inputs) and errors name input and line.
///
/// The inputs are read on the calling thread; lines are parsed on up to one thread per core
/// (a trace under a megabyte on the calling thread alone), with the same result as parsing
/// them one by one.
pub fn read_traces(
    inputs: Vec<TraceInput<'_>>,
    opts: &ReadOptions,
) -> Result<MergedTrace, TraceError> {
    let (lines, summary) = chunked::read_lines(
        inputs,
        opts,
        chunked::parse_threads(),
        CHUNK_BYTES,
        chunked::RecordLines::default(),
    )?;
    let mut trace = MergedTrace {
        sources: summary.sources,
        records: lines.records,
        skipped: summary.skipped,
        errors: summary.errors,
    };
    // Traces are usually written in HLC order already.
    if !lines.sorted {
        trace.records.sort_by_key(|(_, rec)| rec.hlc);
    }

    // Replay, per node and in HLC order, what decides `add`/`remove` errors: the kinds of the
    // variables that some record adds to or removes from (none: nothing can fail).
    let mut bad = Vec::new();
    let mut apply_errors = Vec::new();
    if lines.set_changes {
        let targets: HashSet<&str> = trace
            .records
            .iter()
            .flat_map(|(_, rec)| rec.add.iter().chain(&rec.remove))
            .map(|(var, _)| var.as_str())
            .collect();
        let mut states: HashMap<&str, NonSetKinds<&str>> = HashMap::new();
        for (i, (origin, rec)) in trace.records.iter().enumerate() {
            let state = states.entry(rec.node.as_str()).or_default();
            if let Err(e) = state.apply(rec, |var| targets.contains(var)) {
                let err = TraceError::new(origin.line, e.to_string())
                    .with_source(trace.sources[origin.source].clone());
                if !opts.skip_bad {
                    return Err(err);
                }
                // `apply` changed nothing, so the node's state is as if the record never was.
                bad.push(i);
                apply_errors.push((*origin, err));
            }
        }
    }
    if !apply_errors.is_empty() {
        let mut index = 0;
        let mut bad = bad.iter().peekable();
        trace.records.retain(|_| {
            let drop = bad.next_if_eq(&&index).is_some();
            index += 1;
            !drop
        });
        trace.skipped += apply_errors.len();
        merge_errors(&mut trace.errors, &trace.sources, apply_errors);
    }
    Ok(trace)
}

/// Adds the `add`/`remove` errors `extra` (with their origins) to the parse errors already in
/// `errors` (which name their input), keeping the earliest `MAX_REPORTED_ERRORS` by input and
/// line.
pub(crate) fn merge_errors(
    errors: &mut Vec<TraceError>,
    sources: &[String],
    extra: Vec<(Origin, TraceError)>,
) {
    let mut all: Vec<(Origin, TraceError)> = errors
        .drain(..)
        .map(|e| {
            let source = sources
                .iter()
                .position(|n| Some(n) == e.source.as_ref())
                .unwrap_or(0);
            (
                Origin {
                    source,
                    line: e.line,
                },
                e,
            )
        })
        .chain(extra)
        .collect();
    all.sort_by_key(|(o, _)| *o);
    all.truncate(MAX_REPORTED_ERRORS);
    *errors = all.into_iter().map(|(_, e)| e).collect();
}

/// `read_trace` on a file; errors carry the path as their source.
pub fn read_trace_file(path: impl AsRef<Path>, opts: &ReadOptions) -> Result<Trace, TraceError> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let file = File::open(path)
        .map_err(|e| TraceError::io(0, format!("cannot open: {e}")).with_source(name.clone()))?;
    let mut trace = read_trace(BufReader::new(file), opts).map_err(|e| e.with_source(&name))?;
    for e in &mut trace.errors {
        e.source = Some(name.clone());
    }
    Ok(trace)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Record, String> {
        parse_record(line.as_bytes())
    }

    fn err(line: &str) -> String {
        match parse(line) {
            Ok(r) => panic!("{line} was accepted as {r:?}"),
            Err(e) => e,
        }
    }

    fn var(s: &str) -> VarName {
        VarName::parse(s).unwrap()
    }

    fn hlc(l: u64, c: u64) -> Hlc {
        Hlc::new(l, c).unwrap()
    }

    fn s(x: &str) -> Value {
        Value::Str(x.to_string())
    }

    /// The fast path may only accept what the reference reader accepts, and must read it into
    /// the same record (compared by `Debug`, so `-0.0` and `0.0` differ).
    fn fast_agrees(text: &str) {
        if let Some(rec) = fast::record(text) {
            let reference = parse_record_reference(text).map(|r| format!("{r:?}"));
            assert_eq!(reference, Ok(format!("{rec:?}")), "{text}");
        }
    }

    const TRICKY_VALUES: &[&str] = &[
        "0",
        "-0",
        "-0.0",
        "0.0",
        "1",
        "-1",
        "1.5",
        "1E2",
        "1e-2",
        "2.5e+3",
        "1e400",
        "-1e400",
        "1e-400",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "-9223372036854775809",
        "18446744073709551615",
        "18446744073709551616",
        "99999999999999999999999",
        "6.934698245112694e276",
        "8.383658838626809e-78",
        "1.7976931348623157e308",
        "1.7976931348623159e308",
        "4.9e-324",
        "0.1",
        "1.00",
        "123456789012345678901234567890.5",
        r#""x""#,
        r#""""#,
        r#""\u00e9\n""#,
        r#""\ud800""#,
        r#""\ud83d\ude00""#,
        "true",
        "false",
        "null",
        "NaN",
        "[]",
        "[1,1.0,\"a\",true]",
        "[-0,0.0]",
        "[null]",
        "[[1]]",
        "[{}]",
        "[1e400]",
        "[9223372036854775808]",
        "{}",
        r#"{"f":1}"#,
        r#"{"f":null}"#,
        r#"{"f":1,"f":2}"#,
        r#"{"g":{"h":[1]},"f":1.5}"#,
        r#"{"\u0066":1,"f":2}"#,
        "[1,]",
        "01",
        "1.",
        ".5",
        "+1",
        "-",
        "1e",
    ];

    const TRICKY_HLCS: &[&str] = &[
        "[1,0]",
        "[0,0]",
        "[-0,0]",
        "[1,-0]",
        "[1.0,0]",
        "[1,0.0]",
        "[1e0,0]",
        "[281474976710655,65535]",
        "[281474976710656,0]",
        "[1,65536]",
        "[1,2,3]",
        "[1]",
        "[]",
        "0",
        "-0",
        "-1",
        "18446744073709551615",
        "18446744073709551616",
        "1.5",
        "\"1\"",
        "null",
        "[18446744073709551616,0]",
        "[1, 0 ]",
    ];

    #[test]
    fn fast_path_agrees_with_the_reference_on_tricky_lines() {
        for v in TRICKY_VALUES {
            for field in ["set", "add", "remove"] {
                fast_agrees(&format!(
                    r#"{{"node":"n","hlc":[1,0],"{field}":{{"a.b":{v}}}}}"#
                ));
                fast_agrees(&format!(
                    r#"{{"node":"n","hlc":[1,0],"{field}":{{"a.b":[{v}]}}}}"#
                ));
            }
            fast_agrees(&format!(
                r#"{{"node":"n","hlc":[1,0],"set":{{"a.b":{{"f":{v}}}}}}}"#
            ));
            fast_agrees(&format!(r#"{{"node":"n","hlc":[1,0],"pt":{v}}}"#));
            fast_agrees(&format!(r#"{{"node":"n","hlc":[1,0],"leave":{v}}}"#));
            fast_agrees(&format!(r#"{{"node":{v},"hlc":[1,0]}}"#));
            fast_agrees(&format!(r#"{{"node":"n","hlc":[1,0],"unset":[{v}]}}"#));
            fast_agrees(v);
        }
        for h in TRICKY_HLCS {
            fast_agrees(&format!(r#"{{"node":"n","hlc":{h}}}"#));
            fast_agrees(&format!(" {{\"hlc\":{h},\"node\":\"n\"}}\r\n"));
        }
        // Every valid value of the spec examples is read the same way.
        fast_agrees(
            r#"{"node":"n","hlc":[1,0],"set":{"a.i":-9223372036854775808,"a.f":2.0,"a.e":1e2,"a.s":"x","a.b":false,"a.set":[3,1,1.0,"z",true],"a.st":{"g":{"h":[1]},"f":1.5},"a.n":null}}"#,
        );
    }

    #[test]
    fn fast_path_agrees_on_the_example_traces() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/examples");
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut files: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .flat_map(|p| [p.join("trace.ndjson"), p])
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "ndjson"))
            .collect();
        if let Ok(errors) = std::fs::read_dir(format!("{dir}/errors")) {
            files.extend(errors.filter_map(|e| e.ok().map(|e| e.path())));
        }
        let mut fast_lines = 0;
        for path in files {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            for line in text.lines() {
                fast_agrees(line);
                fast_lines += usize::from(fast::record(line).is_some());
            }
        }
        assert!(fast_lines > 0 || std::fs::metadata(dir).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config { cases: 2000, ..Default::default() })]

        #[test]
        fn fast_path_agrees_on_json_like_text(
            text in r#"\{"node":"n","hlc":[\[\]0-9,.\-e]{0,12},"(set|add|unset|pt)":[\[\]{}",:0-9a-f.eE+\-\\ ]{0,40}\}"#
        ) {
            fast_agrees(&text);
        }

        #[test]
        fn fast_path_agrees_on_random_floats(bits in proptest::prelude::any::<u64>(), exp in 0usize..3) {
            let f = f64::from_bits(bits);
            let text = match exp {
                0 => format!("{f:?}"),
                1 => format!("{f:e}"),
                _ => format!("{f}"),
            };
            fast_agrees(&format!(r#"{{"node":"n","hlc":[1,0],"set":{{"a.b":{text},"a.c":[{text}]}}}}"#));
        }

        #[test]
        fn fast_path_agrees_on_mutated_lines(
            edits in proptest::collection::vec(
                (proptest::prelude::any::<proptest::sample::Index>(), 0u8..128, 0u8..3),
                1..4,
            )
        ) {
            let mut bytes = br#"{"node":"n1","hlc":[1700000000123,0],"set":{"inv.a":5,"zk.m":["n1",2.5,true],"inv.st":{"f":1,"g":[-3]}},"unset":["inv.b"],"add":{"zk.s":["x"]},"remove":{"zk.t":[1e2]},"leave":false,"pt":1700000000124}"#.to_vec();
            for (at, byte, op) in edits {
                let i = at.index(bytes.len() + 1);
                match op {
                    0 => bytes.insert(i, byte),
                    1 if i < bytes.len() => {
                        bytes.remove(i);
                    }
                    _ if i < bytes.len() => bytes[i] = byte,
                    _ => {}
                }
            }
            if let Ok(text) = std::str::from_utf8(&bytes) {
                fast_agrees(text);
            }
        }
    }

    #[test]
    fn spec_example_records() {
        let r =
            parse(r#"{"node":"n1","hlc":[1700000000123,0],"set":{"inv.a":5,"inv.b":3,"inv.c":9}}"#)
                .unwrap();
        assert_eq!(r.node, "n1");
        assert_eq!(r.hlc, hlc(1_700_000_000_123, 0));
        assert_eq!(
            r.set,
            vec![
                (var("inv.a"), Some(Value::Int(5))),
                (var("inv.b"), Some(Value::Int(3))),
                (var("inv.c"), Some(Value::Int(9))),
            ]
        );
        let r = parse(r#"{"node":"n2","hlc":[1700000000125,2],"set":{"inv.a":1.5,"zk.members":["n1","n2"]},"unset":["inv.b"]}"#).unwrap();
        assert_eq!(
            r.set[1],
            (
                var("zk.members"),
                Some(Value::Set(
                    SetValue::from_values([s("n2"), s("n1")]).unwrap()
                ))
            )
        );
        assert_eq!(r.unset, vec![var("inv.b")]);
        let r = parse(r#"{"node":"n2","hlc":[1700000000130,0],"add":{"zk.members":["n3"]},"remove":{"zk.members":["n1"]}}"#).unwrap();
        assert_eq!(r.add.len(), 1);
        assert_eq!(r.remove.len(), 1);
        let r = parse(r#"{"node":"n3","hlc":[1700000000131,0]}"#).unwrap();
        assert!(r.is_heartbeat());
        let r = parse(r#"{"node":"n3","hlc":[1700000000140,0],"leave":true}"#).unwrap();
        assert!(r.leave && !r.is_heartbeat());
    }

    #[test]
    fn packed_hlc_and_pt() {
        let r = parse(r#"{"node":"n5","hlc":111411204653580288,"pt":1700000071001}"#).unwrap();
        assert_eq!(r.hlc.packed(), 111_411_204_653_580_288);
        assert_eq!(r.pt, Some(1_700_000_071_001));
        let r = parse(r#"{"node":"n","hlc":18446744073709551615}"#).unwrap();
        assert_eq!(r.hlc, Hlc::MAX);
        let r = parse(r#"{"node":"n","hlc":[281474976710655,65535],"pt":18446744073709551615}"#)
            .unwrap();
        assert_eq!(r.hlc, Hlc::MAX);
        assert_eq!(r.pt, Some(u64::MAX));
    }

    #[test]
    fn values_of_every_kind() {
        let r = parse(
            r#"{"node":"n","hlc":[1,0],"set":{"a.i":-9223372036854775808,"a.f":2.0,"a.e":1e2,"a.s":"x","a.b":false,"a.set":[3,1,1.0,"z",true],"a.st":{"g":{"h":[1]},"f":1.5},"a.n":null}}"#,
        )
        .unwrap();
        let values: Vec<_> = r.set.iter().map(|(_, v)| v.clone()).collect();
        assert_eq!(values[0], Some(Value::Int(i64::MIN)));
        assert_eq!(values[1], Some(Value::Float(2.0)));
        assert_eq!(values[2], Some(Value::Float(100.0)));
        assert_eq!(values[3], Some(s("x")));
        assert_eq!(values[4], Some(Value::Bool(false)));
        assert_eq!(
            values[5].as_ref().map(Value::to_json).as_deref(),
            Some(r#"[true,1,3,"z"]"#)
        );
        assert_eq!(
            values[6].as_ref().map(Value::to_json).as_deref(),
            Some(r#"{"f":1.5,"g":{"h":[1]}}"#)
        );
        assert_eq!(values[7], None);
    }

    #[test]
    fn set_duplicates_collapse_keeping_the_first() {
        let r = parse(r#"{"node":"n","hlc":[1,0],"add":{"a.s":[1.0,1,"x","x"]}}"#).unwrap();
        assert_eq!(r.add[0].1.as_slice(), &[Value::Float(1.0), s("x")]);
    }

    #[test]
    fn blank_and_crlf_lines() {
        let r = parse("{\"node\":\"n\",\"hlc\":[1,0]}\r\n").unwrap();
        assert_eq!(r.node, "n");
        let recs: Vec<_> = NdjsonReader::new(
            "\n  \n{\"node\":\"n\",\"hlc\":[1,0]}\n\t\r\n{\"node\":\"m\",\"hlc\":[2,0]}".as_bytes(),
        )
        .collect();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].as_ref().map(|(l, _)| *l), Ok(3));
        assert_eq!(recs[1].as_ref().map(|(l, _)| *l), Ok(5));
    }

    #[test]
    fn invalid_json() {
        assert!(err(r#"{"node":"n1","hlc":[1,0]"#).starts_with("invalid JSON: "));
        assert!(err("not json").starts_with("invalid JSON: "));
        assert_eq!(
            err(r#"{"node":"n1","hlc":[1,0],"set":{"inv.a":NaN}}"#),
            "invalid JSON: non-finite number NaN"
        );
        assert_eq!(
            err(r#"{"node":"n1","hlc":[1,0],"set":{"inv.a":-Infinity}}"#),
            "invalid JSON: non-finite number -Infinity"
        );
    }

    #[test]
    fn not_an_object() {
        assert_eq!(
            err(r#"[{"node":"n1"}]"#),
            "a record must be a JSON object, found an array"
        );
        assert_eq!(err("null"), "a record must be a JSON object, found null");
        assert_eq!(err("5"), "a record must be a JSON object, found an integer");
    }

    #[test]
    fn unknown_fields() {
        assert_eq!(
            err(r#"{"node":"n2","hlc":[1700000000105,0],"sett":{"inv.a":2}}"#),
            "unknown field \"sett\""
        );
        assert_eq!(
            err(r#"{"node":"n2","hlc":[1,0],"Node":"x"}"#),
            "unknown field \"Node\""
        );
    }

    #[test]
    fn missing_node_or_hlc() {
        assert_eq!(err(r#"{"hlc":[1,0]}"#), "missing field \"node\"");
        assert_eq!(err(r#"{"node":"n1"}"#), "missing field \"hlc\"");
        assert_eq!(err("{}"), "missing field \"node\"");
    }

    #[test]
    fn node_ids() {
        assert_eq!(
            err(r#"{"node":"","hlc":[1,0]}"#),
            "\"node\" must not be empty"
        );
        assert_eq!(
            err(r#"{"node":7,"hlc":[1,0]}"#),
            "\"node\" must be a string, found an integer"
        );
        assert_eq!(
            err(r#"{"node":null,"hlc":[1,0]}"#),
            "\"node\" must be a string, found null"
        );
        let long = "é".repeat(128);
        assert_eq!(
            err(&format!(r#"{{"node":"{long}","hlc":[1,0]}}"#)),
            "\"node\" is 256 bytes long (at most 255)"
        );
        let ok = "x".repeat(255);
        assert_eq!(
            parse(&format!(r#"{{"node":"{ok}","hlc":[1,0]}}"#)).map(|r| r.node),
            Ok(ok)
        );
        assert_eq!(
            parse(r#"{"node":"10.0.0.7:2181","hlc":[1,0]}"#).map(|r| r.node),
            Ok("10.0.0.7:2181".to_string())
        );
    }

    #[test]
    fn hlc_shapes_and_ranges() {
        assert_eq!(
            err(r#"{"node":"n1","hlc":[1700000000110,70000],"set":{"inv.a":2}}"#),
            "hlc counter 70000 out of range 0..65535"
        );
        assert_eq!(
            err(r#"{"node":"n1","hlc":[281474976710656,0]}"#),
            "hlc physical time 281474976710656 out of range 0..281474976710655"
        );
        assert_eq!(
            err(r#"{"node":"n1","hlc":18446744073709551616}"#),
            "packed hlc 18446744073709551616 out of range 0..18446744073709551615"
        );
        assert!(err(r#"{"node":"n1","hlc":-1}"#).starts_with("packed hlc -1 out of range"));
        for bad in [
            r#"[1]"#,
            r#"[1,2,3]"#,
            r#"[-1,0]"#,
            r#"[1,-1]"#,
            r#"[1.0,0]"#,
            r#"[1,0.5]"#,
            r#"["1",0]"#,
            r#"1.5"#,
            r#""[1,0]""#,
            r#"{"l":1,"c":0}"#,
            r#"null"#,
        ] {
            assert_eq!(
                err(&format!(r#"{{"node":"n1","hlc":{bad}}}"#)),
                HLC_SHAPE,
                "{bad}"
            );
        }
    }

    #[test]
    fn duplicate_keys_anywhere() {
        assert_eq!(
            err(r#"{"node":"n1","node":"n2","hlc":[1,0]}"#),
            "duplicate key \"node\" in a JSON object"
        );
        assert_eq!(
            err(r#"{"node":"n1","hlc":[1,0],"set":{"inv.a":1,"inv.a":2}}"#),
            "duplicate key \"inv.a\" in a JSON object"
        );
        assert_eq!(
            err(r#"{"node":"n1","hlc":[1,0],"set":{"inv.st":{"f":1,"f":2}}}"#),
            "duplicate key \"f\" in a JSON object"
        );
        assert_eq!(
            err(r#"{"node":"n1","hlc":[1,0],"set":{"inv.a":1},"set":{"inv.b":2}}"#),
            "duplicate key \"set\" in a JSON object"
        );
    }

    #[test]
    fn null_inside_sets_and_structs() {
        assert_eq!(
            err(r#"{"node":"n1","hlc":[1,0],"set":{"inv.s":[1,null]}}"#),
            "\"set\": inv.s: null is not allowed inside a set"
        );
        assert_eq!(
            err(r#"{"node":"n1","hlc":[1,0],"set":{"inv.st":{"f":null}}}"#),
            "\"set\": inv.st: null is not allowed inside a struct (field \"f\")"
        );
        assert_eq!(
            err(r#"{"node":"n1","hlc":[1,0],"set":{"inv.st":{"g":{"h":[null]}}}}"#),
            "\"set\": inv.st: null is not allowed inside a set"
        );
        assert_eq!(
            err(r#"{"node":"n1","hlc":[1,0],"add":{"inv.s":[null]}}"#),
            "\"add\": inv.s: null is not allowed inside a set"
        );
    }

    #[test]
    fn integers_outside_i64() {
        assert_eq!(
            err(r#"{"node":"n1","hlc":[1,0],"set":{"inv.a":9223372036854775808}}"#),
            "\"set\": inv.a: integer 9223372036854775808 out of range of i64"
        );
        assert_eq!(
            err(r#"{"node":"n1","hlc":[1,0],"set":{"inv.a":18446744073709551615}}"#),
            "\"set\": inv.a: integer 18446744073709551615 out of range of i64"
        );
        assert_eq!(
            err(r#"{"node":"n1","hlc":[1,0],"set":{"inv.a":-9223372036854775809}}"#),
            "\"set\": inv.a: integer -9223372036854775809 out of range of i64"
        );
        assert_eq!(
            err(r#"{"node":"n1","hlc":[1,0],"remove":{"inv.s":[1e0,99999999999999999999999]}}"#),
            "\"remove\": inv.s: integer 99999999999999999999999 out of range of i64"
        );
        let e = err(&format!(
            r#"{{"node":"n1","hlc":[1,0],"set":{{"inv.a":{}}}}}"#,
            "9".repeat(100)
        ));
        assert!(e.contains("out of range of i64") && e.len() < 100, "{e}");
        assert_eq!(
            parse(r#"{"node":"n1","hlc":[1,0],"set":{"inv.a":9223372036854775807}}"#)
                .map(|r| r.set[0].1.clone()),
            Ok(Some(Value::Int(i64::MAX)))
        );
    }

    #[test]
    fn floats_that_overflow() {
        assert_eq!(
            err(r#"{"node":"n1","hlc":[1,0],"set":{"inv.a":1e400}}"#),
            "non-finite number 1e400 (out of the range of f64)"
        );
        assert!(err(r#"{"node":"n1","hlc":[1,0],"pt":-1.8e308e}"#).starts_with("invalid JSON"));
        assert!(err(r#"{"node":"n1","hlc":[1,0],"set":{"inv.a":-2e308}}"#)
            .starts_with("non-finite number -2e308"));
    }

    #[test]
    fn invalid_utf8_and_lone_surrogates() {
        let mut line = br#"{"node":"n"#.to_vec();
        line.push(0xFF);
        line.extend_from_slice(br#"","hlc":[1,0]}"#);
        assert_eq!(
            parse_record(&line),
            Err("invalid UTF-8 at byte 11 of the line".to_string())
        );
        let e = err(r#"{"node":"n\ud800","hlc":[1,0]}"#);
        assert!(e.starts_with("invalid JSON:"), "{e}");
        let e = err(r#"{"node":"n\ud800\u0041","hlc":[1,0]}"#);
        assert!(
            e.starts_with("invalid JSON:") && e.contains("surrogate"),
            "{e}"
        );
        let e = err(r#"{"node":"n","hlc":[1,0],"set":{"inv.a":"\udc00"}}"#);
        assert!(e.starts_with("invalid JSON:"), "{e}");
        // A proper pair is fine.
        assert_eq!(
            parse(r#"{"node":"\ud83d\ude00","hlc":[1,0]}"#).map(|r| r.node),
            Ok("😀".to_string())
        );
    }

    #[test]
    fn invalid_utf8_line_does_not_end_the_stream() {
        let mut input = b"{\"node\":\"n\",\"hlc\":[1,0]}\n\xC3\x28\n".to_vec();
        input.extend_from_slice(b"{\"node\":\"m\",\"hlc\":[2,0]}\n");
        let items: Vec<_> = NdjsonReader::new(input.as_slice()).collect();
        assert_eq!(items.len(), 3);
        assert!(items[0].is_ok() && items[2].is_ok());
        let e = items[1].as_ref().unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.reason.starts_with("invalid UTF-8"), "{e}");
    }

    #[test]
    fn field_types() {
        assert_eq!(
            err(r#"{"node":"n","hlc":[1,0],"set":[1]}"#),
            "\"set\" must be an object of \"log.key\" members, found an array"
        );
        assert_eq!(
            err(r#"{"node":"n","hlc":[1,0],"add":"x"}"#),
            "\"add\" must be an object of \"log.key\" members, found a string"
        );
        assert_eq!(
            err(r#"{"node":"n","hlc":[1,0],"remove":null}"#),
            "\"remove\" must be an object of \"log.key\" members, found null"
        );
        assert_eq!(
            err(r#"{"node":"n","hlc":[1,0],"unset":"inv.a"}"#),
            "\"unset\" must be an array of variable names, found a string"
        );
        assert_eq!(
            err(r#"{"node":"n","hlc":[1,0],"unset":["inv.a",3]}"#),
            "\"unset\" must be an array of variable names, found an integer in it"
        );
        assert_eq!(
            err(r#"{"node":"n","hlc":[1,0],"add":{"inv.s":3}}"#),
            "\"add\": inv.s: the elements must be an array, found an integer"
        );
        assert_eq!(
            err(r#"{"node":"n","hlc":[1,0],"remove":{"inv.s":{"a":1}}}"#),
            "\"remove\": inv.s: the elements must be an array, found an object"
        );
        assert_eq!(
            err(r#"{"node":"n","hlc":[1,0],"add":{"inv.s":[[1]]}}"#),
            "\"add\": inv.s: set elements must be scalars (int, float, string, bool), found an array"
        );
        assert_eq!(
            err(r#"{"node":"n","hlc":[1,0],"set":{"inv.s":[1,{"a":1}]}}"#),
            "\"set\": inv.s: set elements must be scalars (int, float, string, bool), found an object"
        );
        assert_eq!(
            err(r#"{"node":"n","hlc":[1,0],"leave":1}"#),
            "\"leave\" must be a boolean, found an integer"
        );
        assert_eq!(
            err(r#"{"node":"n","hlc":[1,0],"leave":"true"}"#),
            "\"leave\" must be a boolean, found a string"
        );
        assert_eq!(
            err(r#"{"node":"n","hlc":[1,0],"pt":-5}"#),
            "\"pt\" must be a non-negative integer (ms), found -5"
        );
        assert_eq!(
            err(r#"{"node":"n","hlc":[1,0],"pt":1.5}"#),
            "\"pt\" must be a non-negative integer (ms), found a float"
        );
        assert_eq!(
            err(r#"{"node":"n","hlc":[1,0],"pt":18446744073709551616}"#),
            "\"pt\" 18446744073709551616 out of range 0..18446744073709551615"
        );
        let r = parse(r#"{"node":"n","hlc":[1,0],"leave":false,"set":{},"unset":[]}"#).unwrap();
        assert!(r.is_heartbeat());
    }

    #[test]
    fn bad_variable_names() {
        assert_eq!(
            err(r#"{"node":"n1","hlc":[1700000000110,0],"set":{"inv":2}}"#),
            r#""set": bad variable name "inv" (expected log.key with identifiers [A-Za-z_][A-Za-z0-9_]*)"#
        );
        for (field, body) in [
            ("unset", r#"["inv.a.b"]"#),
            ("add", r#"{"1inv.a":[1]}"#),
            ("remove", r#"{"inv.":[1]}"#),
            ("set", r#"{"inv.a b":1}"#),
        ] {
            let e = err(&format!(r#"{{"node":"n","hlc":[1,0],"{field}":{body}}}"#));
            assert!(
                e.starts_with(&format!("\"{field}\": bad variable name")),
                "{e}"
            );
        }
    }

    #[test]
    fn parse_value_reads_trace_values() {
        assert_eq!(
            parse_value("[2, 1, 2.0]").map(|v| v.to_json()),
            Ok("[1,2]".into())
        );
        assert_eq!(parse_value("3.0"), Ok(Value::Float(3.0)));
        assert!(parse_value("null").is_err());
        assert!(parse_value("[[1]]").is_err());
    }

    #[test]
    fn trace_error_display() {
        let e = TraceError::new(2, "unknown field \"sett\"");
        assert_eq!(e.to_string(), "line 2: unknown field \"sett\"");
        assert_eq!(
            e.with_source("t.ndjson").to_string(),
            "t.ndjson:2: unknown field \"sett\""
        );
        assert_eq!(
            TraceError::io(0, "cannot open: x")
                .with_source("t.ndjson")
                .to_string(),
            "t.ndjson: cannot open: x"
        );
    }

    fn read(text: &str, skip_bad: bool) -> Result<Trace, TraceError> {
        read_trace(text.as_bytes(), &ReadOptions { skip_bad })
    }

    #[test]
    fn read_trace_sorts_stably_by_hlc() {
        let t = read(
            concat!(
                "{\"node\":\"n2\",\"hlc\":[5,0],\"set\":{\"a.x\":1}}\n",
                "{\"node\":\"n1\",\"hlc\":[3,0]}\n",
                "\n",
                "{\"node\":\"n3\",\"hlc\":[5,0]}\n",
                "{\"node\":\"n1\",\"hlc\":327680}\n",
            ),
            false,
        )
        .unwrap();
        let order: Vec<_> = t
            .records
            .iter()
            .map(|(l, r)| (*l, r.node.as_str()))
            .collect();
        assert_eq!(order, [(2, "n1"), (1, "n2"), (4, "n3"), (5, "n1")]);
        assert_eq!(t.skipped, 0);
    }

    #[test]
    fn read_trace_checks_add_in_hlc_order() {
        // In file order the add comes first and would be fine; in HLC order inv.a is an int.
        let text = concat!(
            "{\"node\":\"n1\",\"hlc\":[9,0],\"add\":{\"inv.a\":[2]}}\n",
            "{\"node\":\"n1\",\"hlc\":[1,0],\"set\":{\"inv.a\":1}}\n",
        );
        let e = read(text, false).unwrap_err();
        assert_eq!(e.line, 1);
        assert_eq!(e.reason, "\"add\" on a non-set value of inv.a (int)");
        // Another node's int does not matter; a leave clears the state.
        let ok = concat!(
            "{\"node\":\"n2\",\"hlc\":[1,0],\"set\":{\"inv.a\":1}}\n",
            "{\"node\":\"n1\",\"hlc\":[2,0],\"add\":{\"inv.a\":[2]}}\n",
            "{\"node\":\"n2\",\"hlc\":[3,0],\"leave\":true}\n",
            "{\"node\":\"n2\",\"hlc\":[4,0],\"add\":{\"inv.a\":[2]}}\n",
        );
        assert_eq!(read(ok, false).unwrap().records.len(), 4);
    }

    #[test]
    fn read_trace_fails_on_the_first_bad_line() {
        let text = "{\"node\":\"n1\",\"hlc\":[1,0]}\n{\"node\":\"n1\"}\n{}\n";
        let e = read(text, false).unwrap_err();
        assert_eq!((e.line, e.reason.as_str()), (2, "missing field \"hlc\""));
        assert_eq!(e.kind, TraceErrorKind::Record);
    }

    #[test]
    fn read_trace_skips_bad_records_when_asked() {
        let mut text = String::new();
        text.push_str("{\"node\":\"n1\",\"hlc\":[1,0],\"set\":{\"inv.a\":1}}\n");
        text.push_str(
            "{\"node\":\"n1\",\"hlc\":[2,0],\"add\":{\"inv.a\":[2]},\"set\":{\"inv.b\":1}}\n",
        );
        for _ in 0..12 {
            text.push_str("garbage\n");
        }
        text.push_str("{\"node\":\"n1\",\"hlc\":[3,0],\"set\":{\"inv.c\":1}}\n");
        let t = read(&text, true).unwrap();
        assert_eq!(t.skipped, 13);
        assert_eq!(t.errors.len(), MAX_REPORTED_ERRORS);
        assert_eq!(t.errors[0].line, 2);
        assert!(t.errors[0].reason.contains("non-set"));
        assert_eq!(t.errors[1].line, 3);
        let lines: Vec<_> = t.records.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, [1, 15]);
    }

    /// A reader that fails after its first line.
    struct Failing(usize);

    impl std::io::Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let line = b"{\"node\":\"n\",\"hlc\":[1,0]}\n";
            if self.0 == 0 && buf.len() >= line.len() {
                self.0 += 1;
                buf[..line.len()].copy_from_slice(line);
                Ok(line.len())
            } else {
                Err(std::io::Error::other("disk on fire"))
            }
        }
    }

    #[test]
    fn read_errors_are_never_skipped() {
        let reader = BufReader::new(Failing(0));
        let e = read_trace(reader, &ReadOptions { skip_bad: true }).unwrap_err();
        assert_eq!(e.kind, TraceErrorKind::Io);
        assert_eq!(e.line, 2);
        assert!(e.reason.contains("disk on fire"));
        let mut it = NdjsonReader::new(BufReader::new(Failing(0)));
        assert!(it.next().is_some_and(|r| r.is_ok()));
        assert!(it.next().is_some_and(|r| r.is_err()));
        assert!(it.next().is_none());
    }

    #[test]
    fn read_trace_file_names_the_file() {
        let e = read_trace_file("/nonexistent/t.ndjson", &ReadOptions::default()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/t.ndjson: cannot open"),
            "{e}"
        );
    }
}
