//! Reading the lines of whole traces in chunks, parsed on several threads.
//!
//! The calling thread reads each input in chunks of whole lines (about [`CHUNK_BYTES`]; a
//! longer line makes a longer chunk) and hands them to worker threads, which parse every line
//! into a [`ChunkParse`] (records for [`crate::read_traces`], columnar chunks for
//! [`crate::columnar::read_columnar`]). Results are taken back in input order, so records, line numbers,
//! skipped errors and the error that stops the read are exactly those of reading the lines one
//! by one with [`NdjsonReader`](crate::NdjsonReader): records in input and line order, record
//! errors in line order, a read error reported after every line before it, naming the line it
//! interrupted.

use std::collections::BTreeMap;
use std::io::{BufRead, ErrorKind};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Mutex;
use std::thread;

use crate::hlc::Hlc;
use crate::ndjson::{
    is_blank, parse_record_into, Origin, ReadOptions, TraceError, TraceErrorKind, TraceInput,
    MAX_REPORTED_ERRORS,
};
use crate::record::Record;

/// About how many bytes of whole lines go to a parsing thread at a time.
pub(crate) const CHUNK_BYTES: usize = 1 << 20;

/// Most parsing threads used.
const MAX_THREADS: usize = 8;

/// How many threads parse: one per available core, at most [`MAX_THREADS`]; 1 means the calling
/// thread parses everything itself.
pub(crate) fn parse_threads() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS))
}

/// Whole lines of one input, and where they start.
struct Chunk {
    /// Position in the order of all chunks of all inputs.
    seq: usize,
    source: usize,
    /// Line number of the first byte.
    first_line: usize,
    /// Newlines in `bytes`.
    newlines: usize,
    bytes: Vec<u8>,
}

/// What the lines of one chunk are parsed into, on a parsing thread.
pub(crate) trait ChunkParse: Send + Sized {
    /// An empty result for a chunk of `source` with about `lines` lines.
    fn new(source: usize, lines: usize) -> Self;
    /// Parses one non-blank line (its newline included) numbered `line`; on `Err` nothing of
    /// the line is kept.
    fn line(&mut self, text: &[u8], line: usize) -> Result<(), String>;
}

/// The reading thread's side: takes the parsed chunks in input order.
pub(crate) trait ChunkCollect {
    type Chunk: ChunkParse;
    fn add(&mut self, chunk: Self::Chunk);
}

/// A parsed chunk and its `seq`.
type Done<P> = (usize, Parsed<P>);

/// Starts the parsing threads, each sending to a clone of the sender it is given.
type SpawnWorkers<'a, P> = dyn FnMut(&Sender<Done<P>>) + 'a;

/// One chunk's lines, parsed.
struct Parsed<P> {
    source: usize,
    out: P,
    /// Record errors in line order (only the first one when bad records are not skipped: the
    /// read stops there).
    errors: Vec<TraceError>,
}

fn parse_chunk<P: ChunkParse>(chunk: &Chunk, skip_bad: bool) -> Parsed<P> {
    let mut parsed = Parsed {
        source: chunk.source,
        out: P::new(chunk.source, chunk.newlines + 1),
        errors: Vec::new(),
    };
    let bytes = chunk.bytes.as_slice();
    let mut line = chunk.first_line;
    let mut start = 0;
    while start < bytes.len() {
        let rest = bytes.get(start..).unwrap_or_default();
        let end = memchr::memchr(b'\n', rest).map_or(bytes.len(), |i| start + i + 1);
        let text = bytes.get(start..end).unwrap_or_default();
        if !is_blank(text) {
            if let Err(reason) = parsed.out.line(text, line) {
                parsed.errors.push(TraceError::new(line, reason));
                if !skip_bad {
                    break;
                }
            }
        }
        line += 1;
        start = end;
    }
    parsed
}

/// Records with their origins: what [`crate::read_traces`] reads.
pub(crate) struct RecordChunk {
    source: usize,
    records: Vec<(Origin, Record)>,
    /// Whether `records` are in HLC order.
    sorted: bool,
    /// Whether some record has an `add` or `remove`.
    set_changes: bool,
}

impl ChunkParse for RecordChunk {
    fn new(source: usize, lines: usize) -> Self {
        RecordChunk {
            source,
            records: Vec::with_capacity(lines),
            sorted: true,
            set_changes: false,
        }
    }

    fn line(&mut self, text: &[u8], line: usize) -> Result<(), String> {
        // Parsed in place: records are too big to move around cheaply.
        let origin = Origin {
            source: self.source,
            line,
        };
        self.records
            .push((origin, Record::heartbeat(String::new(), Hlc::MIN)));
        let parsed = self
            .records
            .last_mut()
            .map_or(Ok(()), |(_, rec)| parse_record_into(text, rec));
        if let Err(reason) = parsed {
            self.records.pop();
            return Err(reason);
        }
        if let [.., (_, before), (_, rec)] = self.records.as_slice() {
            self.sorted &= before.hlc <= rec.hlc;
        }
        if let Some((_, rec)) = self.records.last() {
            self.set_changes |= !rec.add.is_empty() || !rec.remove.is_empty();
        }
        Ok(())
    }
}

/// The records of every chunk, in input and line order.
#[derive(Debug)]
pub(crate) struct RecordLines {
    pub(crate) records: Vec<(Origin, Record)>,
    /// Whether the records are in HLC order.
    pub(crate) sorted: bool,
    /// Whether some record has an `add` or `remove`.
    pub(crate) set_changes: bool,
}

impl Default for RecordLines {
    fn default() -> Self {
        RecordLines {
            records: Vec::new(),
            sorted: true,
            set_changes: false,
        }
    }
}

impl ChunkCollect for RecordLines {
    type Chunk = RecordChunk;

    fn add(&mut self, chunk: RecordChunk) {
        if let (Some((_, last)), Some((_, first))) = (self.records.last(), chunk.records.first()) {
            self.sorted &= last.hlc <= first.hlc;
        }
        self.sorted &= chunk.sorted;
        self.set_changes |= chunk.set_changes;
        self.records.extend(chunk.records);
    }
}

/// Cuts one input into chunks of whole lines.
struct ChunkReader<R> {
    reader: R,
    chunk_bytes: usize,
    /// The start of a line read with the last chunk but not ended yet.
    carry: Vec<u8>,
    /// Lines handed out so far (the next chunk starts at line `lines + 1`).
    lines: usize,
    /// A read error, reported after the lines read before it.
    failed: Option<TraceError>,
    done: bool,
}

impl<R: BufRead> ChunkReader<R> {
    fn new(reader: R, chunk_bytes: usize) -> ChunkReader<R> {
        ChunkReader {
            reader,
            chunk_bytes: chunk_bytes.max(1),
            carry: Vec::new(),
            lines: 0,
            failed: None,
            done: false,
        }
    }

    /// The next chunk as `(first line number, newlines, bytes)`: whole lines, except that the last chunk
    /// of the input may end without a newline. `Ok(None)` at the end of the input; a read error
    /// comes after the chunk holding every complete line before it, and ends the input.
    fn next_chunk(&mut self) -> Result<Option<(usize, usize, Vec<u8>)>, TraceError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if self.done {
            return Ok(None);
        }
        let mut buf = std::mem::take(&mut self.carry);
        loop {
            if buf.len() >= self.chunk_bytes {
                if let Some(cut) = memchr::memrchr(b'\n', &buf) {
                    self.carry = buf.split_off(cut + 1);
                    break;
                }
            }
            match self.reader.fill_buf() {
                Ok([]) => {
                    self.done = true;
                    break;
                }
                Ok(available) => {
                    let n = available.len();
                    buf.extend_from_slice(available);
                    self.reader.consume(n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    // Like a line-by-line reader: the complete lines read are delivered, the
                    // interrupted line is lost and the error names it.
                    self.done = true;
                    buf.truncate(memchr::memrchr(b'\n', &buf).map_or(0, |cut| cut + 1));
                    let complete = memchr::memchr_iter(b'\n', &buf).count();
                    let e = TraceError::io(self.lines + complete + 1, format!("read error: {e}"));
                    if buf.is_empty() {
                        return Err(e);
                    }
                    self.failed = Some(e);
                    break;
                }
            }
        }
        if buf.is_empty() {
            return Ok(None);
        }
        let first_line = self.lines + 1;
        let newlines = memchr::memchr_iter(b'\n', &buf).count();
        self.lines += newlines;
        Ok(Some((first_line, newlines, buf)))
    }
}

/// What reading gives besides the parsed lines: the inputs' names and the skipped errors.
#[derive(Debug, Default)]
pub(crate) struct ReadSummary {
    pub(crate) sources: Vec<String>,
    /// Bad records skipped (only with `skip_bad`).
    pub(crate) skipped: usize,
    /// Up to `MAX_REPORTED_ERRORS` of the skipped records' errors, in input and line order.
    pub(crate) errors: Vec<TraceError>,
}

/// Takes parsed chunks in any order and adds them to `sink` in chunk order.
struct Collector<C: ChunkCollect> {
    sink: C,
    summary: ReadSummary,
    skip_bad: bool,
    /// The chunk to add next.
    next: usize,
    early: BTreeMap<usize, Parsed<C::Chunk>>,
}

impl<C: ChunkCollect> Collector<C> {
    fn add(&mut self, seq: usize, parsed: Parsed<C::Chunk>) -> Result<(), TraceError> {
        self.early.insert(seq, parsed);
        while let Some(parsed) = self.early.remove(&self.next) {
            self.next += 1;
            let summary = &mut self.summary;
            let name = summary
                .sources
                .get(parsed.source)
                .cloned()
                .unwrap_or_default();
            for e in parsed.errors {
                if !self.skip_bad || e.kind == TraceErrorKind::Io {
                    return Err(e.with_source(name));
                }
                summary.skipped += 1;
                if summary.errors.len() < MAX_REPORTED_ERRORS {
                    summary.errors.push(e.with_source(name.clone()));
                }
            }
            self.sink.add(parsed.out);
        }
        Ok(())
    }
}

/// Reads and parses every line of every input into `sink` (no sorting or replay), with
/// `threads` parsing threads (1: on the calling thread) and chunks of about `chunk_bytes`.
pub(crate) fn read_lines<C: ChunkCollect>(
    inputs: Vec<TraceInput<'_>>,
    opts: &ReadOptions,
    threads: usize,
    chunk_bytes: usize,
    sink: C,
) -> Result<(C, ReadSummary), TraceError> {
    let mut out = Collector {
        sink,
        summary: ReadSummary::default(),
        skip_bad: opts.skip_bad,
        next: 0,
        early: BTreeMap::new(),
    };
    let stop = AtomicBool::new(false);
    let (job_tx, job_rx) = mpsc::sync_channel::<Chunk>(threads * 2);
    let job_rx = Mutex::new(job_rx);
    let (done_tx, done_rx) = mpsc::channel::<Done<C::Chunk>>();
    let result = thread::scope(|scope| {
        let mut pool = Pool {
            jobs: job_tx,
            done: done_rx,
            done_tx: Some(done_tx),
            threads,
            started: false,
        };
        let (job_rx, stop, skip_bad) = (&job_rx, &stop, opts.skip_bad);
        let mut spawn = |done: &Sender<Done<C::Chunk>>| {
            for _ in 0..threads {
                let done = done.clone();
                scope.spawn(move || work(job_rx, done, stop, skip_bad));
            }
        };
        let result = drive(inputs, chunk_bytes, &mut out, &mut pool, &mut spawn);
        // Whatever happened, let the workers finish: no more jobs, and skip queued ones.
        stop.store(true, Ordering::Relaxed);
        drop(pool);
        result
    });
    result.map(|()| (out.sink, out.summary))
}

/// The calling thread's side of the worker threads.
struct Pool<P> {
    jobs: SyncSender<Chunk>,
    done: Receiver<Done<P>>,
    /// Cloned into each worker when they start, then dropped, so that `done` fails instead of
    /// waiting forever if every worker has died.
    done_tx: Option<Sender<Done<P>>>,
    threads: usize,
    started: bool,
}

fn work<P: ChunkParse>(
    jobs: &Mutex<Receiver<Chunk>>,
    done: Sender<Done<P>>,
    stop: &AtomicBool,
    skip_bad: bool,
) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else {
            return;
        };
        if stop.load(Ordering::Relaxed) {
            return;
        }
        // A panic here would be a bug; it must still not leave the reading thread waiting for
        // this chunk forever.
        let parsed = panic::catch_unwind(AssertUnwindSafe(|| parse_chunk(&job, skip_bad)))
            .unwrap_or_else(|_| Parsed {
                source: job.source,
                out: P::new(job.source, 0),
                errors: vec![TraceError::io(
                    job.first_line,
                    "internal error: parsing this part of the trace failed",
                )],
            });
        if done.send((job.seq, parsed)).is_err() {
            return;
        }
    }
}

fn drive<C: ChunkCollect>(
    inputs: Vec<TraceInput<'_>>,
    chunk_bytes: usize,
    out: &mut Collector<C>,
    pool: &mut Pool<C::Chunk>,
    spawn: &mut SpawnWorkers<'_, C::Chunk>,
) -> Result<(), TraceError> {
    let mut sent = 0;
    let skip_bad = out.skip_bad;
    for (source, input) in inputs.into_iter().enumerate() {
        out.summary.sources.push(input.name.clone());
        let mut chunks = ChunkReader::new(input.reader, chunk_bytes);
        loop {
            let (first_line, newlines, bytes) = match chunks.next_chunk() {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => {
                    // Every line before the read error comes first (a bad one among them is
                    // the error to report when bad records are not skipped).
                    collect_until(out, pool, sent)?;
                    return Err(e.with_source(input.name.clone()));
                }
            };
            let job = Chunk {
                seq: sent,
                source,
                first_line,
                newlines,
                bytes,
            };
            sent += 1;
            // Small inputs (one chunk, nothing else in progress) and single-core machines
            // parse right here.
            if pool.threads <= 1 || (!pool.started && chunks.done) {
                let parsed = parse_chunk::<C::Chunk>(&job, skip_bad);
                out.add(job.seq, parsed)?;
                continue;
            }
            if !pool.started {
                pool.started = true;
                if let Some(done_tx) = pool.done_tx.take() {
                    spawn(&done_tx);
                }
            }
            // Bound the chunks in flight (memory), taking finished ones meanwhile.
            let limit = pool.threads * 3;
            collect_until(out, pool, sent.saturating_sub(limit))?;
            if pool.jobs.send(job).is_err() {
                return Err(workers_failed());
            }
        }
    }
    collect_until(out, pool, sent)
}

/// Waits for parsed chunks until every chunk before `upto` has been added.
fn collect_until<C: ChunkCollect>(
    out: &mut Collector<C>,
    pool: &Pool<C::Chunk>,
    upto: usize,
) -> Result<(), TraceError> {
    while out.next < upto {
        match pool.done.recv() {
            Ok((seq, parsed)) => out.add(seq, parsed)?,
            Err(_) => return Err(workers_failed()),
        }
    }
    Ok(())
}

fn workers_failed() -> TraceError {
    TraceError {
        kind: TraceErrorKind::Io,
        ..TraceError::new(0, "internal error: the trace parsing threads stopped")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ndjson::NdjsonReader;
    use proptest::prelude::*;

    /// What reading line by line gives: the records (`source:line: record`) and skipped errors
    /// (`source:line: reason`) in order, and the error that stopped the read, if any.
    type Outcome = (Vec<String>, Vec<String>, Option<String>);

    fn reference(inputs: &[Vec<u8>], skip_bad: bool) -> Outcome {
        let (mut records, mut skipped) = (Vec::new(), Vec::new());
        for (source, bytes) in inputs.iter().enumerate() {
            for item in NdjsonReader::new(bytes.as_slice()) {
                match item {
                    Ok((line, rec)) => records.push(format!("{source}:{line}: {rec:?}")),
                    Err(e) if skip_bad && e.kind == TraceErrorKind::Record => {
                        skipped.push(e.with_source(source.to_string()).to_string())
                    }
                    Err(e) => {
                        let e = e.with_source(source.to_string()).to_string();
                        return (records, skipped, Some(e));
                    }
                }
            }
        }
        (records, skipped, None)
    }

    fn chunked(inputs: &[Vec<u8>], skip_bad: bool, threads: usize, chunk_bytes: usize) -> Outcome {
        let inputs = inputs
            .iter()
            .enumerate()
            .map(|(i, bytes)| TraceInput {
                name: i.to_string(),
                reader: Box::new(bytes.as_slice()),
            })
            .collect();
        let opts = ReadOptions { skip_bad };
        match read_lines(inputs, &opts, threads, chunk_bytes, RecordLines::default()) {
            Ok((lines, trace)) => {
                let sorted = lines.records.is_sorted_by_key(|(_, rec)| rec.hlc);
                assert_eq!(lines.sorted, sorted);
                let set_changes = lines
                    .records
                    .iter()
                    .any(|(_, r)| !r.add.is_empty() || !r.remove.is_empty());
                assert_eq!(lines.set_changes, set_changes);
                let records = lines
                    .records
                    .iter()
                    .map(|(o, rec)| format!("{}:{}: {rec:?}", o.source, o.line))
                    .collect();
                let errors: Vec<String> = trace.errors.iter().map(|e| e.to_string()).collect();
                assert!(errors.len() <= MAX_REPORTED_ERRORS);
                assert!(trace.skipped >= errors.len());
                // Stand-ins for the skipped errors that are only counted.
                let mut skipped = errors;
                skipped.resize(trace.skipped, String::new());
                (records, skipped, None)
            }
            Err(e) => (Vec::new(), Vec::new(), Some(e.to_string())),
        }
    }

    fn check(inputs: &[Vec<u8>], skip_bad: bool, threads: usize, chunk_bytes: usize) {
        let (records, mut skipped, error) = reference(inputs, skip_bad);
        let got = chunked(inputs, skip_bad, threads, chunk_bytes);
        if error.is_some() {
            assert_eq!(got.2, error);
        } else {
            for (i, e) in skipped.iter_mut().enumerate() {
                if i >= MAX_REPORTED_ERRORS {
                    e.clear();
                }
            }
            assert_eq!(got, (records, skipped, None));
        }
    }

    const GOOD: &str = "{\"node\":\"n\",\"hlc\":[1,0],\"set\":{\"a.b\":1}}";

    fn lines() -> impl Strategy<Value = Vec<u8>> {
        let line = prop_oneof![
            4 => Just(GOOD.to_string()),
            1 => Just(String::new()),
            1 => Just("  \r".to_string()),
            1 => Just("{\"node\":\"n\"}".to_string()),
            1 => Just("garbage".to_string()),
            1 => Just(format!("{{\"node\":\"{}\",\"hlc\":5}}", "x".repeat(40))),
        ];
        (prop::collection::vec(line, 0..30), any::<bool>()).prop_map(|(lines, newline_at_end)| {
            let mut text = lines.join("\n");
            if newline_at_end {
                text.push('\n');
            }
            text.into_bytes()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn chunked_reading_is_reading_line_by_line(
            inputs in prop::collection::vec(lines(), 1..4),
            skip_bad in any::<bool>(),
            threads in 1usize..4,
            chunk_bytes in 1usize..200,
        ) {
            check(&inputs, skip_bad, threads, chunk_bytes);
        }
    }

    #[test]
    fn big_chunks_and_many_threads() {
        let mut text = String::new();
        for i in 0..5000 {
            text.push_str(&format!(
                "{{\"node\":\"n{}\",\"hlc\":[{i},0],\"set\":{{\"a.b\":{i}}}}}\n",
                i % 7
            ));
        }
        let inputs = vec![text.clone().into_bytes(), text.into_bytes()];
        for threads in [1, 2, 5] {
            for chunk in [1, 100, 4096, CHUNK_BYTES] {
                check(&inputs, false, threads, chunk);
            }
        }
        let mut bad = inputs[0].clone();
        bad.extend_from_slice(b"oops\n");
        bad.extend_from_slice(&inputs[0]);
        check(&[bad.clone(), bad.clone()], false, 3, 333);
        check(&[bad.clone(), bad], true, 3, 333);
    }

    /// A reader that gives `data` in pieces of `step` bytes, then fails.
    struct Failing {
        data: Vec<u8>,
        at: usize,
        step: usize,
    }

    impl std::io::Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.at >= self.data.len() {
                return Err(std::io::Error::other("disk on fire"));
            }
            let n = self.step.min(buf.len()).min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    #[test]
    fn read_errors_come_after_the_lines_before_them() {
        let data = format!("{GOOD}\n\n{GOOD}\n{{\"node\"").into_bytes();
        for step in [1, 3, 50, 1000] {
            for (threads, chunk) in [(1, 1), (2, 1), (2, 7), (3, 1 << 20)] {
                for skip_bad in [false, true] {
                    let want = NdjsonReader::new(std::io::BufReader::with_capacity(
                        16,
                        Failing {
                            data: data.clone(),
                            at: 0,
                            step,
                        },
                    ))
                    .last();
                    let input = TraceInput {
                        name: "t".into(),
                        reader: Box::new(std::io::BufReader::with_capacity(
                            16,
                            Failing {
                                data: data.clone(),
                                at: 0,
                                step,
                            },
                        )),
                    };
                    let opts = ReadOptions { skip_bad };
                    let e = read_lines(vec![input], &opts, threads, chunk, RecordLines::default())
                        .unwrap_err();
                    let want = want.and_then(Result::err).map(|e| (e.line, e.kind));
                    assert_eq!(Some((e.line, e.kind)), want, "step {step}");
                    assert_eq!(e.line, 4);
                    assert_eq!(e.kind, TraceErrorKind::Io);
                }
            }
        }
    }
}
