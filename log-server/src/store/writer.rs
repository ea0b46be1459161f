//! The writer thread: the only code that appends to the log. It takes every batch waiting,
//! validates them in order against each node's last stored record (so concurrent batches are
//! serialized), writes the accepted ones with one write and one fsync (group commit), publishes
//! the new extent to readers and only then answers the callers.
//!
//! Validation changes the node table as it goes; a journal of those changes lets a rejected
//! batch, or a whole group whose write failed, be taken back exactly.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::Instant;

use crate::hlc::Hlc;
use crate::record::Record;
use crate::state::{KindUndo, NonSetKinds};

use super::segment::{self, SegmentMeta};
use super::{
    lock, sync_dir, wall_ms_now, wall_time, AppendError, AppendReceipt, Batch, LineRejection,
    NodeStatus, Published, RejectReason, StoreConfig, WriterMessage,
};

/// What the store keeps per node to validate its next records.
#[derive(Debug)]
pub(crate) struct NodeEntry {
    pub name: String,
    pub last_hlc: Hlc,
    pub records: u64,
    pub last_seen_ms: u64,
    /// The kinds of its non-set variables, which decide `add`/`remove` errors.
    pub kinds: NonSetKinds<String>,
    /// The batch that last touched it, so each batch journals its old fields once.
    batch: u64,
}

/// Every node ever seen, in order of first appearance.
#[derive(Debug, Default)]
pub(crate) struct NodeTable {
    pub entries: Vec<NodeEntry>,
    index: HashMap<String, usize>,
}

impl NodeTable {
    pub fn get_or_insert(&mut self, name: &str) -> usize {
        if let Some(&idx) = self.index.get(name) {
            return idx;
        }
        self.insert(name)
    }

    fn insert(&mut self, name: &str) -> usize {
        let idx = self.entries.len();
        self.entries.push(NodeEntry {
            name: name.to_string(),
            last_hlc: Hlc::MIN,
            records: 0,
            last_seen_ms: 0,
            kinds: NonSetKinds::default(),
            batch: 0,
        });
        self.index.insert(name.to_string(), idx);
        idx
    }

    pub fn statuses(&self) -> Vec<NodeStatus> {
        self.entries.iter().map(status_of).collect()
    }
}

fn status_of(entry: &NodeEntry) -> NodeStatus {
    NodeStatus {
        node: entry.name.clone(),
        last_hlc: entry.last_hlc,
        last_seen: wall_time(entry.last_seen_ms),
        records: entry.records,
    }
}

/// How to take back one validation step.
enum Undo {
    /// A node was added (the last entry).
    Added,
    Fields {
        idx: usize,
        last_hlc: Hlc,
        records: u64,
        last_seen_ms: u64,
    },
    Kind(usize, KindUndo<String>),
}

/// The segment being appended to.
pub(crate) struct ActiveSegment {
    pub file: File,
    pub path: PathBuf,
    pub first_seq: u64,
    /// Bytes committed (and the write position).
    pub len: u64,
}

pub(crate) struct Writer {
    published: Arc<Published>,
    dir: PathBuf,
    segment_bytes: u64,
    max_nodes: usize,
    nodes: NodeTable,
    active: ActiveSegment,
    next_seq: u64,
    last_wall_ms: u64,
    /// Set after a failed fsync: what the disk holds is then unknown, so nothing more is
    /// acknowledged until a restart has recovered the log.
    failed: Option<String>,
    batch_counter: u64,
    journal: Vec<Undo>,
    kind_scratch: Vec<KindUndo<String>>,
    buf: Vec<u8>,
    /// The data directory's lock: held while this thread may write, released when it stops
    /// (even if readers of the closed store are still around).
    _lock: File,
}

/// A validated batch and where its records go.
struct Accepted {
    batch: Batch,
    first_seq: u64,
}

impl Writer {
    pub fn new(
        config: &StoreConfig,
        published: Arc<Published>,
        nodes: NodeTable,
        active: ActiveSegment,
        next_seq: u64,
        lock: File,
    ) -> Writer {
        Writer {
            published,
            dir: config.dir.clone(),
            segment_bytes: config.segment_bytes,
            max_nodes: config.max_nodes,
            nodes,
            active,
            next_seq,
            last_wall_ms: 0,
            failed: None,
            batch_counter: 0,
            journal: Vec::new(),
            kind_scratch: Vec::new(),
            buf: Vec::new(),
            _lock: lock,
        }
    }

    pub fn run(mut self, receiver: mpsc::Receiver<WriterMessage>) {
        let mut group = Vec::new();
        while let Ok(message) = receiver.recv() {
            let mut close = false;
            match message {
                WriterMessage::Append(batch) => group.push(batch),
                WriterMessage::Close => close = true,
            }
            while !close {
                match receiver.try_recv() {
                    Ok(WriterMessage::Append(batch)) => group.push(batch),
                    Ok(WriterMessage::Close) => close = true,
                    Err(_) => break,
                }
            }
            if !group.is_empty() {
                self.commit_group(std::mem::take(&mut group));
            }
            if close {
                return;
            }
        }
    }

    fn commit_group(&mut self, group: Vec<Batch>) {
        if let Some(failed) = &self.failed {
            for batch in group {
                let _ = batch.reply.send(Err(AppendError::Io(failed.clone())));
            }
            return;
        }
        let now_ms = wall_ms_now().max(self.last_wall_ms);
        self.last_wall_ms = now_ms;
        self.journal.clear();
        let mut accepted = Vec::with_capacity(group.len());
        let mut next_seq = self.next_seq;
        let mut touched = Vec::new();
        for batch in group {
            let mark = self.journal.len();
            match self.validate(&batch, now_ms, &mut touched) {
                Ok(()) => {
                    accepted.push(Accepted {
                        first_seq: next_seq,
                        batch,
                    });
                    next_seq += accepted.last().map_or(0, |a| a.batch.records.len() as u64);
                }
                Err(rejections) => {
                    self.undo_to(mark);
                    let _ = batch.reply.send(Err(AppendError::Rejected(rejections)));
                }
            }
        }
        if accepted.is_empty() {
            return;
        }
        match self.write_group(&mut accepted, now_ms) {
            Ok(indexed) => {
                self.next_seq = next_seq;
                self.publish(indexed, &touched, next_seq - 1);
                metrics::counter!("rql_ingest_batches_total").increment(accepted.len() as u64);
                metrics::histogram!("rql_commit_group_batches").record(accepted.len() as f64);
                for Accepted { batch, first_seq } in accepted {
                    let stored = batch.records.len();
                    let receipt = AppendReceipt {
                        stored,
                        first_seq,
                        last_seq: first_seq + stored as u64 - 1,
                    };
                    let _ = batch.reply.send(Ok(receipt));
                }
            }
            Err(message) => {
                metrics::counter!("rql_store_io_errors_total").increment(1);
                tracing::error!("log write failed, batches not stored: {message}");
                self.undo_to(0);
                for Accepted { batch, .. } in accepted {
                    let _ = batch.reply.send(Err(AppendError::Io(message.clone())));
                }
            }
        }
    }

    /// Checks one batch against the node table, updating it as if the batch were stored.
    /// On error the caller undoes the journal back to where the batch started.
    fn validate(
        &mut self,
        batch: &Batch,
        now_ms: u64,
        touched: &mut Vec<usize>,
    ) -> Result<(), Vec<LineRejection>> {
        self.batch_counter += 1;
        let batch_id = self.batch_counter;
        let mut rejections = Vec::new();
        for (rec, &line) in batch.records.iter().zip(&batch.lines) {
            match self.validate_record(rec, now_ms, batch_id, touched) {
                Ok(()) => {}
                Err((reason, message)) => rejections.push(LineRejection {
                    line,
                    node: rec.node.clone(),
                    reason,
                    message,
                }),
            }
        }
        if rejections.is_empty() {
            Ok(())
        } else {
            Err(rejections)
        }
    }

    /// Checks and applies one record. A rejected record changes nothing, so the rest of the
    /// batch is checked as if it were not there (and every bad line gets reported).
    fn validate_record(
        &mut self,
        rec: &Record,
        now_ms: u64,
        batch_id: u64,
        touched: &mut Vec<usize>,
    ) -> Result<(), (RejectReason, String)> {
        let idx = match self.nodes.index.get(rec.node.as_str()) {
            Some(&idx) => idx,
            None => {
                if self.nodes.entries.len() >= self.max_nodes {
                    return Err((
                        RejectReason::TooManyNodes,
                        format!(
                            "node {:?} would be node number {}, but this server accepts at most \
                             {} nodes (raise the server's node limit)",
                            rec.node,
                            self.max_nodes + 1,
                            self.max_nodes
                        ),
                    ));
                }
                self.journal.push(Undo::Added);
                self.nodes.insert(&rec.node)
            }
        };
        let entry = &mut self.nodes.entries[idx];
        if rec.hlc < entry.last_hlc {
            return Err((
                RejectReason::OutOfOrder,
                format!(
                    "hlc {} of node {:?} is older than its last stored record at {}; a node's \
                     records must arrive in HLC order (SPEC §5.1)",
                    rec.hlc, rec.node, entry.last_hlc
                ),
            ));
        }
        self.kind_scratch.clear();
        if let Err(e) = entry
            .kinds
            .apply_journaled(rec, |_| true, Some(&mut self.kind_scratch))
        {
            return Err((RejectReason::NotASet, e.to_string()));
        }
        if entry.batch != batch_id {
            self.journal.push(Undo::Fields {
                idx,
                last_hlc: entry.last_hlc,
                records: entry.records,
                last_seen_ms: entry.last_seen_ms,
            });
            entry.batch = batch_id;
            touched.push(idx);
        }
        self.journal.extend(
            self.kind_scratch
                .drain(..)
                .map(|undo| Undo::Kind(idx, undo)),
        );
        entry.last_hlc = rec.hlc;
        entry.records += 1;
        entry.last_seen_ms = now_ms;
        Ok(())
    }

    fn undo_to(&mut self, mark: usize) {
        while self.journal.len() > mark {
            match self.journal.pop() {
                Some(Undo::Added) => {
                    if let Some(entry) = self.nodes.entries.pop() {
                        self.nodes.index.remove(&entry.name);
                    }
                }
                Some(Undo::Fields {
                    idx,
                    last_hlc,
                    records,
                    last_seen_ms,
                }) => {
                    if let Some(entry) = self.nodes.entries.get_mut(idx) {
                        entry.last_hlc = last_hlc;
                        entry.records = records;
                        entry.last_seen_ms = last_seen_ms;
                    }
                }
                Some(Undo::Kind(idx, undo)) => {
                    if let Some(entry) = self.nodes.entries.get_mut(idx) {
                        entry.kinds.undo(std::iter::once(undo));
                    }
                }
                None => break,
            }
        }
    }

    /// Seals the accepted batches' frames, writes them with one write and syncs. Returns the
    /// index entries (offset, frame length, hlc) of the written records. On error nothing new
    /// is left in the file (if it can be helped) and the message says what happened.
    fn write_group(
        &mut self,
        accepted: &mut [Accepted],
        now_ms: u64,
    ) -> Result<Vec<(u64, u64, Hlc)>, String> {
        if self.active.len >= self.segment_bytes {
            self.roll()?;
        }
        self.buf.clear();
        let mut indexed = Vec::with_capacity(accepted.iter().map(|a| a.batch.records.len()).sum());
        for Accepted { batch, first_seq } in accepted.iter_mut() {
            let mut at = 0;
            for (i, rec) in batch.records.iter().enumerate() {
                let len =
                    segment::seal_frame(&mut batch.frames[at..], *first_seq + i as u64, now_ms);
                indexed.push((
                    self.active.len + (self.buf.len() + at) as u64,
                    len as u64,
                    rec.hlc,
                ));
                at += len;
            }
            self.buf.extend_from_slice(&batch.frames[..at]);
        }
        let written = self.write_and_sync();
        if let Err(message) = written {
            return Err(self.take_back(message));
        }
        metrics::counter!("rql_ingest_records_total").increment(indexed.len() as u64);
        metrics::counter!("rql_ingest_bytes_total").increment(self.buf.len() as u64);
        Ok(indexed)
    }

    fn write_and_sync(&mut self) -> Result<(), (bool, String)> {
        let path = &self.active.path;
        self.active
            .file
            .write_all(&self.buf)
            .map_err(|e| (false, format!("cannot write {}: {e}", path.display())))?;
        let started = Instant::now();
        let synced = self.active.file.sync_data();
        metrics::histogram!("rql_fsync_seconds").record(started.elapsed().as_secs_f64());
        synced.map_err(|e| (true, format!("cannot fsync {}: {e}", path.display())))
    }

    /// After a failed write or fsync: cuts the file back to its committed length so the log
    /// stays clean, and says whether the store can go on.
    fn take_back(&mut self, (sync_failed, message): (bool, String)) -> String {
        let path = self.active.path.display().to_string();
        let len = self.active.len;
        let cut = self
            .active
            .file
            .set_len(len)
            .and_then(|()| self.active.file.seek(SeekFrom::Start(len)).map(|_| ()));
        match cut {
            Err(e) => {
                let message = format!(
                    "{message}; then cannot cut {path} back to {len} bytes ({e}); no further \
                     batches are accepted: restart the server so recovery checks the log"
                );
                self.failed = Some(message.clone());
                message
            }
            // After a failed fsync the kernel may have dropped dirty pages of data that was
            // acknowledged earlier yet still sits in the page cache; only recovery can tell.
            Ok(()) if sync_failed => {
                let message = format!(
                    "{message}; no further batches are accepted: restart the server so recovery \
                     checks the log"
                );
                self.failed = Some(message.clone());
                message
            }
            Ok(()) => format!("{message}; the store keeps accepting batches"),
        }
    }

    /// Starts a new segment named after the next seq. The old one is complete: every group is
    /// synced before it is acknowledged.
    fn roll(&mut self) -> Result<(), String> {
        let first_seq = self.next_seq;
        let path = self.dir.join(segment::segment_file_name(first_seq));
        // No committed record has this seq yet, so a file of this name can only be left over
        // from a roll that failed half way: starting it afresh loses nothing.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| format!("cannot create segment {}: {e}", path.display()))?;
        sync_dir(&self.dir).map_err(|e| e.to_string())?;
        self.active = ActiveSegment {
            file,
            path: path.clone(),
            first_seq,
            len: 0,
        };
        lock(&self.published.segments)
            .list
            .push(SegmentMeta::new(first_seq, path));
        publish_gauges(&self.published);
        Ok(())
    }

    /// Makes a synced group visible: segment index, node status, then the commit watch.
    fn publish(&mut self, indexed: Vec<(u64, u64, Hlc)>, touched: &[usize], last_seq: u64) {
        let wall_ms = self.last_wall_ms;
        {
            let mut segments = lock(&self.published.segments);
            if let Some(meta) = segments.list.last_mut() {
                debug_assert_eq!(meta.first_seq, self.active.first_seq);
                for (offset, len, hlc) in indexed {
                    meta.push(offset, len, hlc, wall_ms);
                }
                self.active.len = meta.len;
            }
        }
        {
            let mut statuses = lock(&self.published.nodes);
            for &idx in touched {
                let Some(entry) = self.nodes.entries.get(idx) else {
                    continue;
                };
                while statuses.len() <= idx {
                    let Some(new) = self.nodes.entries.get(statuses.len()) else {
                        break;
                    };
                    statuses.push(status_of(new));
                }
                if let Some(status) = statuses.get_mut(idx) {
                    status.last_hlc = entry.last_hlc;
                    status.last_seen = wall_time(entry.last_seen_ms);
                    status.records = entry.records;
                }
            }
        }
        self.published
            .group_commits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.published.commits.send_replace(last_seq);
        publish_gauges(&self.published);
    }
}

/// Size gauges of the log.
pub(crate) fn publish_gauges(published: &Published) {
    let (segments, bytes) = {
        let segments = lock(&published.segments);
        (
            segments.list.len(),
            segments.list.iter().map(|s| s.len).sum::<u64>(),
        )
    };
    let nodes = lock(&published.nodes).len();
    metrics::gauge!("rql_store_segments").set(segments as f64);
    metrics::gauge!("rql_store_bytes").set(bytes as f64);
    metrics::gauge!("rql_store_nodes").set(nodes as f64);
}
