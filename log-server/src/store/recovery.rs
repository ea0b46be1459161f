//! Opening a data directory: take its lock, load the base state, check every segment frame by
//! frame and rebuild the index and the node table from them.
//!
//! A bad frame in the last segment is a torn or corrupt tail: the last group commit may have
//! reached the disk only in part (and pages of one write can land in any order), so everything
//! from the first bad frame on is cut off. The cut bytes are saved under `damaged/` and logged,
//! so even if the damage was not a torn write nothing disappears without a trace. A bad frame in
//! any other segment cannot be a torn write (a segment is complete before the next one starts):
//! that is an error naming the file and offset, and the store does not open.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::ndjson::parse_record;
use crate::record::Record;

use super::base::{BaseState, BASE_TEMP_FILE};
use super::segment::{self, SegmentMeta};
use super::writer::{ActiveSegment, NodeTable};
use super::{sync_dir, wall_ms_now, RecoveryReport, StoreConfig, StoreError};

pub(crate) const LOCK_FILE: &str = "LOCK";
pub(crate) const DAMAGED_DIR: &str = "damaged";

pub(crate) struct Recovered {
    pub report: RecoveryReport,
    pub segments: Vec<SegmentMeta>,
    pub nodes: NodeTable,
    pub base: BaseState,
    pub active: ActiveSegment,
    pub lock: File,
}

pub(crate) fn recover(config: &StoreConfig) -> Result<Recovered, StoreError> {
    let dir = &config.dir;
    fs::create_dir_all(dir).map_err(|e| StoreError::io("create data directory", dir, e))?;
    let lock = lock_dir(dir)?;
    let base = BaseState::load(dir)?;
    remove_if_present(&dir.join(BASE_TEMP_FILE))?;

    let mut nodes = node_table_from_base(&base);
    let mut report = RecoveryReport::default();
    let files = list_segments(dir)?;
    let mut segments: Vec<SegmentMeta> = Vec::with_capacity(files.len());
    let folded = base.folded_through_seq;
    for (i, (first_seq, path)) in files.iter().enumerate() {
        let last = i + 1 == files.len();
        if !last && files[i + 1].0 <= folded + 1 {
            // Folded by a retention run that stopped before deleting it.
            fs::remove_file(path).map_err(|e| StoreError::io("delete folded segment", path, e))?;
            report.removed_folded_segments += 1;
            continue;
        }
        if *first_seq <= folded {
            return Err(StoreError::Corrupt {
                path: path.clone(),
                offset: 0,
                reason: format!(
                    "the segment starts at seq {first_seq}, but the base state already holds \
                     the records through seq {folded}"
                ),
                fix: "the segment and base.json do not belong together; restore the data \
                      directory from a backup"
                    .to_string(),
            });
        }
        if let Some(prev) = segments.last() {
            if *first_seq < prev.end_seq() {
                return Err(StoreError::Corrupt {
                    path: path.clone(),
                    offset: 0,
                    reason: format!(
                        "the segment starts at seq {first_seq}, but {} already holds records \
                         through seq {}",
                        prev.path.display(),
                        prev.end_seq() - 1
                    ),
                    fix: "remove the segment that does not belong to this log".to_string(),
                });
            }
            if *first_seq > prev.end_seq() {
                tracing::warn!(
                    "records {}..{} are missing: {} ends before {} starts",
                    prev.end_seq(),
                    first_seq - 1,
                    prev.path.display(),
                    path.display()
                );
            }
        }
        let meta = scan(path, *first_seq, last, &mut nodes, &mut report)?;
        segments.push(meta);
    }
    if report.removed_folded_segments > 0 {
        sync_dir(dir)?;
    }

    let active = match segments.last() {
        Some(meta) => open_active(meta)?,
        None => {
            let first_seq = folded + 1;
            let path = dir.join(segment::segment_file_name(first_seq));
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| StoreError::io("create segment", &path, e))?;
            sync_dir(dir)?;
            segments.push(SegmentMeta::new(first_seq, path.clone()));
            ActiveSegment {
                file,
                path,
                first_seq,
                len: 0,
            }
        }
    };
    report.segments = segments.len();
    report.records = segments.iter().map(|s| s.records).sum();
    report.nodes = nodes.entries.len();
    report.last_seq = active.first_seq + segments.last().map_or(0, |s| s.records) - 1;
    Ok(Recovered {
        report,
        segments,
        nodes,
        base,
        active,
        lock,
    })
}

/// Takes an exclusive lock on `dir/LOCK`, so two servers never append to the same log.
fn lock_dir(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StoreError::io("open lock file", &path, e))?;
    #[cfg(unix)]
    {
        use rustix::fs::{flock, FlockOperation};
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => return Err(StoreError::Locked(path)),
            Err(e) => return Err(StoreError::io("lock", &path, e.into())),
        }
    }
    Ok(file)
}

fn remove_if_present(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io("delete", path, e)),
    }
}

/// Segment files of `dir` by first seq.
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let entries = fs::read_dir(dir).map_err(|e| StoreError::io("list", dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io("list", dir, e))?;
        let name = entry.file_name();
        if let Some(first_seq) = name.to_str().and_then(segment::parse_segment_file_name) {
            files.push((first_seq, entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

/// The node table as the base state leaves it.
fn node_table_from_base(base: &BaseState) -> NodeTable {
    let mut nodes = NodeTable::default();
    for (name, entry) in &base.nodes {
        let idx = nodes.get_or_insert(name);
        let node = &mut nodes.entries[idx];
        node.last_hlc = entry.last_hlc;
        node.records = entry.records;
        node.last_seen_ms = entry.last_seen_ms;
        // Setting every variable on an empty state cannot fail.
        let _ = node
            .kinds
            .apply(&BaseState::state_record(name, entry), |_| true);
    }
    nodes
}

/// Checks every frame of a segment, indexes it and applies its whole batches to the node
/// table. The tail of the last segment from its first bad frame or unfinished batch on is cut.
fn scan(
    path: &Path,
    first_seq: u64,
    last: bool,
    nodes: &mut NodeTable,
    report: &mut RecoveryReport,
) -> Result<SegmentMeta, StoreError> {
    let mut meta = SegmentMeta::new(first_seq, path.to_path_buf());
    let mut misordered = 0u64;
    let mut not_a_set = 0u64;
    // Records of the batch being read: they count only once its last record is seen.
    let mut batch: Vec<(u64, u64, Record, u64)> = Vec::new();
    let mut next_seq = first_seq;
    let end = segment::scan_segment(path, None, |offset, frame| {
        if frame.seq != next_seq {
            return Err(format!(
                "record seq {} where {next_seq} was expected",
                frame.seq
            ));
        }
        let rec = parse_record(frame.payload).map_err(|e| format!("bad record: {e}"))?;
        next_seq += 1;
        batch.push((offset, frame.len as u64, rec, frame.wall_ms));
        if !frame.batch_end {
            return Ok(());
        }
        for (offset, len, rec, wall_ms) in batch.drain(..) {
            meta.push(offset, len, rec.hlc, wall_ms);
            // The writer checked both rules before storing; a violation here means the log
            // was written by something else. The record is kept: it is what was acknowledged.
            let idx = nodes.get_or_insert(&rec.node);
            let node = &mut nodes.entries[idx];
            if rec.hlc < node.last_hlc {
                misordered += 1;
            }
            if node.kinds.apply(&rec, |_| true).is_err() {
                not_a_set += 1;
            }
            node.last_hlc = node.last_hlc.max(rec.hlc);
            node.records += 1;
            node.last_seen_ms = node.last_seen_ms.max(wall_ms);
        }
        Ok(())
    })
    .map_err(|e| StoreError::io("read", path, e))?;
    if misordered > 0 || not_a_set > 0 {
        tracing::warn!(
            "{}: {misordered} records out of HLC order and {not_a_set} add/remove on non-set \
             values; kept as stored",
            path.display()
        );
    }
    // Whole batches end at `meta.len`.
    let problem = match (end.problem, batch.len()) {
        (Some(problem), _) => problem,
        (None, 0) => return Ok(meta),
        (None, n) => format!(
            "the last batch is incomplete: {n} records of it are there but not its last one"
        ),
    };
    if !last {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            offset: end.valid_len,
            reason: problem,
            fix: format!(
                "restore the file from a backup, or truncate it to {} bytes to keep its {} \
                 records before the damage (its records from seq {} on are then lost) and start \
                 again",
                meta.len,
                meta.records,
                meta.end_seq()
            ),
        });
    }
    let cut_at = meta.len;
    let dropped = end.file_len - cut_at;
    let saved = save_tail(path, cut_at)?;
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| StoreError::io("open", path, e))?;
    file.set_len(cut_at)
        .and_then(|()| file.sync_all())
        .map_err(|e| StoreError::io("truncate", path, e))?;
    tracing::warn!(
        "cut {dropped} bytes off the tail of {} at byte {cut_at} (damage at byte {}: \
         {problem}); kept the {} records before it; the cut bytes are saved in {}",
        path.display(),
        end.valid_len,
        meta.records,
        saved.display()
    );
    report.truncated_bytes = dropped;
    report.truncated_segment = Some(path.to_path_buf());
    report.saved_tail = Some(saved);
    report.truncation_reason = Some(problem);
    Ok(meta)
}

/// Copies the bytes of `path` from `offset` on to `damaged/` (synced) and returns the copy.
fn save_tail(path: &Path, offset: u64) -> Result<PathBuf, StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let damaged = dir.join(DAMAGED_DIR);
    fs::create_dir_all(&damaged).map_err(|e| StoreError::io("create", &damaged, e))?;
    let name = path
        .file_name()
        .map_or_else(|| "segment".into(), |n| n.to_string_lossy().into_owned());
    let saved = damaged.join(format!("{name}.at-{offset}.{}.tail", wall_ms_now()));
    let mut tail = Vec::new();
    File::open(path)
        .and_then(|mut f| {
            f.seek(SeekFrom::Start(offset))?;
            f.read_to_end(&mut tail)
        })
        .map_err(|e| StoreError::io("read", path, e))?;
    File::create(&saved)
        .and_then(|mut f| {
            f.write_all(&tail)?;
            f.sync_all()
        })
        .map_err(|e| StoreError::io("write", &saved, e))?;
    sync_dir(&damaged)?;
    sync_dir(dir)?;
    Ok(saved)
}

fn open_active(meta: &SegmentMeta) -> Result<ActiveSegment, StoreError> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&meta.path)
        .map_err(|e| StoreError::io("open", &meta.path, e))?;
    file.seek(SeekFrom::Start(meta.len))
        .map_err(|e| StoreError::io("seek", &meta.path, e))?;
    Ok(ActiveSegment {
        file,
        path: meta.path.clone(),
        first_seq: meta.first_seq,
        len: meta.len,
    })
}
