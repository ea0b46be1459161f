//! The log server's storage (SPEC §5): a durable, append-only log of trace records in
//! arrival order, with per-node HLC order enforced at ingest, group-committed fsyncs, recovery
//! of a torn tail, retention that folds what it deletes into a per-node base state, and readers
//! that stream committed records from disk.
//!
//! Layout of the data directory:
//!
//! - `<first seq>.seg`: segments of the log (format in [`segment`]); the last one is appended to.
//! - `base.json`: the per-node base state folded from deleted segments (see [`base`]).
//! - `damaged/`: bytes cut off a torn or corrupt tail at recovery, kept for inspection.
//! - `LOCK`: held (flock) while a store has the directory open.
//!
//! One writer thread owns the active segment. [`Store::append`] encodes the batch on the
//! caller's task and hands it to the writer, which takes every batch waiting, validates them in
//! order (so concurrent batches are serialized), writes the accepted ones with one write and one
//! fsync, and only then answers each caller. Readers see a record once it is fsynced.

mod base;
mod reader;
mod recovery;
mod segment;
mod writer;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use tokio::sync::{oneshot, watch};

use crate::hlc::Hlc;
use crate::record::Record;
use crate::state::NodeState;

pub use reader::StoreReader;

/// How a store is set up.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// The data directory (created if missing).
    pub dir: PathBuf,
    /// Roll to a new segment once the active one holds at least this many bytes.
    pub segment_bytes: u64,
    /// Delete whole segments whose newest record was appended longer ago than this.
    pub retention_age: Option<Duration>,
    /// Delete the oldest whole segments while the log is bigger than this.
    pub max_bytes: Option<u64>,
    /// Distinct nodes the store accepts over its lifetime; a batch bringing more is rejected.
    pub max_nodes: usize,
}

impl StoreConfig {
    pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
    pub const DEFAULT_MAX_NODES: usize = 10_000;

    /// Defaults: 64 MiB segments, no retention, at most 10 000 nodes.
    pub fn new(dir: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            dir: dir.into(),
            segment_bytes: Self::DEFAULT_SEGMENT_BYTES,
            retention_age: None,
            max_bytes: None,
            max_nodes: Self::DEFAULT_MAX_NODES,
        }
    }
}

/// What recovery found and did when the store was opened.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecoveryReport {
    pub segments: usize,
    pub records: u64,
    pub nodes: usize,
    /// Bytes cut off the tail of the last segment (0 if it was clean).
    pub truncated_bytes: u64,
    /// The segment that was cut, and where the cut-off bytes were saved.
    pub truncated_segment: Option<PathBuf>,
    pub saved_tail: Option<PathBuf>,
    /// Why the tail was cut.
    pub truncation_reason: Option<String>,
    /// Segments already folded into the base state by a retention run that was interrupted
    /// before it deleted them; deleted now.
    pub removed_folded_segments: usize,
    /// Seq of the last record (0: the log is empty).
    pub last_seq: u64,
}

/// A batch that [`Store::append`] stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendReceipt {
    pub stored: usize,
    /// Seqs of the batch's first and last record (both 0 for an empty batch).
    pub first_seq: u64,
    pub last_seq: u64,
}

/// Why [`Store::append`] stored nothing.
#[derive(Clone, Debug, PartialEq)]
pub enum AppendError {
    /// Some records break a rule; nothing of the batch is stored.
    Rejected(Vec<LineRejection>),
    /// Writing or syncing failed; nothing of the batch was acknowledged. The message says
    /// whether the store can take further batches.
    Io(String),
    /// The store is shut down.
    Closed,
}

impl fmt::Display for AppendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppendError::Rejected(lines) => {
                write!(f, "batch rejected, nothing stored:")?;
                for line in lines {
                    write!(f, " line {}: {};", line.line, line.message)?;
                }
                Ok(())
            }
            AppendError::Io(message) => write!(f, "storage error, nothing stored: {message}"),
            AppendError::Closed => write!(f, "the store is shut down"),
        }
    }
}

impl std::error::Error for AppendError {}

/// One record of a batch that cannot be stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineRejection {
    /// 1-based line of the record in the request body.
    pub line: usize,
    pub node: String,
    pub reason: RejectReason,
    /// What is wrong, for the sender.
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Older than the node's previous record (SPEC §5.1).
    OutOfOrder,
    /// The batch would bring the store past its node limit.
    TooManyNodes,
    /// `add`/`remove` on a variable holding a non-set value (SPEC §1.3).
    NotASet,
    /// The record's JSON line is longer than a frame can hold.
    TooLarge,
}

impl RejectReason {
    /// A stable label, for metrics and error bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::OutOfOrder => "out_of_order",
            RejectReason::TooManyNodes => "too_many_nodes",
            RejectReason::NotASet => "not_a_set",
            RejectReason::TooLarge => "too_large",
        }
    }
}

/// A committed record read back.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredRecord {
    pub seq: u64,
    pub record: Record,
    /// The canonical JSON line as stored (no newline).
    pub json: String,
}

/// What the store knows about a node.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeStatus {
    pub node: String,
    /// HLC of its last record (change or heartbeat).
    pub last_hlc: Hlc,
    /// When its last record was appended.
    pub last_seen: SystemTime,
    /// Records stored over the store's lifetime, those deleted by retention included.
    pub records: u64,
}

/// A node's state folded from the segments retention deleted (SPEC §5.3).
#[derive(Clone, Debug, PartialEq)]
pub struct BaseNode {
    pub node: String,
    /// HLC of its last folded record.
    pub last_hlc: Hlc,
    /// Its state after its folded records.
    pub state: NodeState,
    /// Whether its last folded record was a `leave` (then it is in no cut until it sends again).
    pub left: bool,
    /// How many of its records were folded.
    pub records: u64,
}

/// Size and extent of the log.
#[derive(Clone, Debug, PartialEq)]
pub struct StoreStats {
    pub segments: usize,
    /// Bytes of committed records on disk.
    pub bytes: u64,
    /// Seq of the first retained record (0: none).
    pub first_seq: u64,
    /// Seq of the last committed record (0: none).
    pub last_seq: u64,
    /// Retained records.
    pub records: u64,
    /// The smallest `since` a reader accepts: every record with an HLC at or above it is
    /// still in the log (0 until retention deletes something).
    pub earliest: Hlc,
    pub nodes: usize,
    /// Group commits (one fsync each) since the store was opened.
    pub group_commits: u64,
}

/// What one retention run did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RetentionReport {
    pub deleted_segments: usize,
    pub deleted_bytes: u64,
    pub deleted_records: u64,
    /// [`StoreStats::earliest`] after the run.
    pub earliest: Hlc,
}

/// Errors opening, reading or maintaining the store. Each names the file involved.
#[derive(Debug)]
pub enum StoreError {
    /// An I/O operation failed.
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// A file holds something that cannot be a valid log.
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
        /// How to get the store going again.
        fix: String,
    },
    /// The configuration cannot work.
    Config(String),
    /// Another process (or store) has the directory open.
    Locked(PathBuf),
    /// A reader asked for history older than retention kept.
    SinceTooOld { since: Hlc, earliest: Hlc },
    /// Retention deleted records a reader had not read yet.
    ReaderBehind { next_seq: u64, earliest: Hlc },
    /// The store is shut down or its writer stopped.
    Closed,
}

impl StoreError {
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> StoreError {
        StoreError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io { op, path, source } => {
                write!(f, "cannot {op} {}: {source}", path.display())
            }
            StoreError::Corrupt {
                path,
                offset,
                reason,
                fix,
            } => write!(
                f,
                "corrupt log file {} at byte {offset}: {reason}; {fix}",
                path.display()
            ),
            StoreError::Config(message) => write!(f, "bad store configuration: {message}"),
            StoreError::Locked(path) => write!(
                f,
                "data directory {} is in use by another log server (lock held on {}); stop it \
                 or choose another --data directory",
                path.parent().unwrap_or(path).display(),
                path.display()
            ),
            StoreError::SinceTooOld { since, earliest } => write!(
                f,
                "since {since} is older than the retained history, which starts at {earliest} \
                 (packed {})",
                earliest.packed()
            ),
            StoreError::ReaderBehind { next_seq, earliest } => write!(
                f,
                "retention deleted records this reader had not read yet (from seq {next_seq}); \
                 the retained history now starts at {earliest}"
            ),
            StoreError::Closed => write!(f, "the store is shut down"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The segments as readers and retention see them: committed extents only.
#[derive(Debug)]
pub(crate) struct Segments {
    /// In log order; the last one is the writer's active segment.
    pub list: Vec<SegmentMeta>,
    /// See [`StoreStats::earliest`].
    pub earliest: Hlc,
}

use segment::SegmentMeta;

/// State shared by the store handles, the writer thread and readers.
pub(crate) struct Published {
    pub dir: PathBuf,
    pub segments: Mutex<Segments>,
    /// Indexed like the writer's node table.
    pub nodes: Mutex<Vec<NodeStatus>>,
    /// Also serializes retention runs.
    pub base: Mutex<base::BaseState>,
    pub commits: watch::Sender<u64>,
    pub group_commits: AtomicU64,
}

/// A batch on its way to the writer thread.
pub(crate) struct Batch {
    pub records: Vec<Record>,
    pub lines: Vec<usize>,
    /// One unsealed frame per record (see `segment::push_unsealed_frame`).
    pub frames: Vec<u8>,
    pub reply: oneshot::Sender<Result<AppendReceipt, AppendError>>,
}

pub(crate) enum WriterMessage {
    Append(Batch),
    /// Finish what came before, then stop.
    Close,
}

struct Handle {
    config: StoreConfig,
    published: Arc<Published>,
    sender: mpsc::Sender<WriterMessage>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// The log store. Cheap to clone; all clones share one writer thread.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Handle>,
}

impl Store {
    /// Opens the store in `config.dir` (creating it if needed), recovers the log (a torn or
    /// corrupt tail of the last segment is cut off, saved under `damaged/` and logged; everything
    /// before it is kept) and starts the writer thread.
    pub fn open(config: StoreConfig) -> Result<(Store, RecoveryReport), StoreError> {
        if config.segment_bytes == 0 {
            return Err(StoreError::Config(
                "segment size must be at least 1 byte".to_string(),
            ));
        }
        if config.max_nodes == 0 {
            return Err(StoreError::Config(
                "the node limit must be at least 1".to_string(),
            ));
        }
        let recovered = recovery::recover(&config)?;
        let report = recovered.report.clone();
        let (commits, _) = watch::channel(report.last_seq);
        let published = Arc::new(Published {
            dir: config.dir.clone(),
            segments: Mutex::new(Segments {
                list: recovered.segments,
                earliest: recovered.base.earliest(),
            }),
            nodes: Mutex::new(recovered.nodes.statuses()),
            base: Mutex::new(recovered.base),
            commits,
            group_commits: AtomicU64::new(0),
        });
        let (sender, receiver) = mpsc::channel();
        let writer = writer::Writer::new(
            &config,
            Arc::clone(&published),
            recovered.nodes,
            recovered.active,
            report.last_seq + 1,
            recovered.lock,
        );
        let thread = std::thread::Builder::new()
            .name("rql-log-writer".to_string())
            .spawn(move || writer.run(receiver))
            .map_err(|e| StoreError::io("start the writer thread for", &config.dir, e))?;
        writer::publish_gauges(&published);
        let store = Store {
            inner: Arc::new(Handle {
                config,
                published,
                sender,
                writer: Mutex::new(Some(thread)),
            }),
        };
        Ok((store, report))
    }

    /// Stores the whole batch or nothing. Checks, against what is stored and in batch order:
    /// each node's records are in HLC order (an older record than the node's last is rejected,
    /// an equal one accepted, SPEC §5.1), `add`/`remove` target sets (SPEC §1.3), and the node
    /// limit. Resolves once the batch is fsynced; concurrent batches share one fsync.
    /// `lines[i]` is the 1-based line of `records[i]` in the request, so rejections name it.
    pub async fn append(
        &self,
        records: Vec<Record>,
        lines: Vec<usize>,
    ) -> Result<AppendReceipt, AppendError> {
        if records.is_empty() {
            return Ok(AppendReceipt {
                stored: 0,
                first_seq: 0,
                last_seq: 0,
            });
        }
        let lines = if lines.len() == records.len() {
            lines
        } else {
            (1..=records.len()).collect()
        };
        let mut frames = Vec::new();
        let mut too_large = Vec::new();
        let mut json = String::new();
        let last = records.len() - 1;
        for (i, (rec, line)) in records.iter().zip(&lines).enumerate() {
            json.clear();
            rec.write_json(&mut json);
            if json.len() > segment::MAX_PAYLOAD {
                too_large.push(LineRejection {
                    line: *line,
                    node: rec.node.clone(),
                    reason: RejectReason::TooLarge,
                    message: format!(
                        "record is {} bytes as JSON; the most a record may take is {} bytes",
                        json.len(),
                        segment::MAX_PAYLOAD
                    ),
                });
            }
            segment::push_unsealed_frame(&mut frames, json.as_bytes(), i == last);
        }
        if !too_large.is_empty() {
            return Err(AppendError::Rejected(too_large));
        }
        let (reply, answer) = oneshot::channel();
        let batch = Batch {
            records,
            lines,
            frames,
            reply,
        };
        self.inner
            .sender
            .send(WriterMessage::Append(batch))
            .map_err(|_| AppendError::Closed)?;
        answer.await.unwrap_or(Err(AppendError::Closed))
    }

    /// A cursor over committed records with `hlc >= since` of the `nodes` given (`None`: all),
    /// in log order (each node's records in HLC order). `since` older than the retained
    /// history is [`StoreError::SinceTooOld`].
    pub fn reader(
        &self,
        since: Hlc,
        nodes: Option<BTreeSet<String>>,
    ) -> Result<StoreReader, StoreError> {
        StoreReader::new(Arc::clone(&self.inner.published), since, nodes)
    }

    /// The seq of the last committed record; changes on every commit.
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.inner.published.commits.subscribe()
    }

    /// Every node that ever sent a record, by name.
    pub fn nodes(&self) -> Vec<NodeStatus> {
        let mut nodes = lock(&self.inner.published.nodes).clone();
        nodes.sort_by(|a, b| a.node.cmp(&b.node));
        nodes
    }

    pub fn stats(&self) -> StoreStats {
        let nodes = lock(&self.inner.published.nodes).len();
        let segments = lock(&self.inner.published.segments);
        let records: u64 = segments.list.iter().map(|s| s.records).sum();
        let first_seq = segments
            .list
            .iter()
            .find(|s| s.records > 0)
            .map_or(0, |s| s.first_seq);
        let last_seq = segments.list.last().map_or(0, |s| s.end_seq() - 1);
        StoreStats {
            segments: segments.list.len(),
            bytes: segments.list.iter().map(|s| s.len).sum(),
            first_seq,
            last_seq,
            records,
            earliest: segments.earliest,
            nodes,
            group_commits: self.inner.published.group_commits.load(Ordering::Relaxed),
        }
    }

    /// Runs retention once: deletes the oldest whole segments (never the active one) that are
    /// older than `retention_age` or push the log over `max_bytes`, after folding them into the
    /// base state and persisting it.
    pub fn enforce_retention(&self) -> Result<RetentionReport, StoreError> {
        base::enforce_retention(&self.inner.config, &self.inner.published)
    }

    /// Per-node state folded from deleted segments (SPEC §5.3), by node name.
    pub fn base_state(&self) -> Vec<BaseNode> {
        lock(&self.inner.published.base).nodes()
    }

    /// Lets the writer finish every batch sent before, then stops it. Appends after this (from
    /// other clones) fail with [`AppendError::Closed`].
    pub fn close(self) -> Result<(), StoreError> {
        // A send error means the writer is gone already; joining tells how it ended.
        let _ = self.inner.sender.send(WriterMessage::Close);
        let thread = lock(&self.inner.writer).take();
        match thread {
            Some(thread) => thread.join().map_err(|_| StoreError::Closed),
            None => Ok(()),
        }
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked (every holder updates
/// it in a way that leaves it valid at each step).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Milliseconds since the Unix epoch by the wall clock (0 if it is before 1970).
pub(crate) fn wall_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) fn wall_time(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

/// Makes a directory's entries (created, renamed, deleted files) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("sync directory", dir, e))
}
