//! The per-node base state (SPEC §5.3) and retention. Retention deletes the oldest whole
//! segments, but first folds their records into each node's base state and persists it, so the
//! cut `C(t)` stays exact for every retained `t`: base state plus retained records.
//!
//! `base.json` is written atomically (temp file, fsync, rename, directory fsync) before any
//! segment is deleted; it records the last folded seq, so recovery finishes an interrupted run
//! by deleting segments that are already folded.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::hlc::Hlc;
use crate::ndjson::parse_record;
use crate::record::Record;
use crate::state::NodeState;

use super::segment::{scan_segment, SegmentMeta};
use super::{
    lock, sync_dir, wall_ms_now, BaseNode, Published, RetentionReport, StoreConfig, StoreError,
};

pub(crate) const BASE_FILE: &str = "base.json";
pub(crate) const BASE_TEMP_FILE: &str = "base.json.tmp";
const BASE_FORMAT: &str = "rql-base/1";

/// A node's folded records, summed up.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct BaseEntry {
    pub last_hlc: Hlc,
    pub state: NodeState,
    pub left: bool,
    pub records: u64,
    pub last_seen_ms: u64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct BaseState {
    /// Seq of the last folded record (0: nothing folded).
    pub folded_through_seq: u64,
    pub nodes: BTreeMap<String, BaseEntry>,
}

/// `base.json`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BaseFile {
    format: String,
    folded_through_seq: u64,
    nodes: Vec<BaseFileNode>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BaseFileNode {
    /// Packed HLC of the node's last folded record.
    last_hlc: u64,
    left: bool,
    records: u64,
    last_seen_ms: u64,
    /// The state as a canonical record line that sets every variable, stamped `last_hlc`.
    state: String,
}

impl BaseState {
    /// The smallest `since` for which every record with `hlc >= since` is still in the log:
    /// just above the newest folded record (of any node).
    pub fn earliest(&self) -> Hlc {
        self.nodes
            .values()
            .map(|entry| Hlc::from_packed(entry.last_hlc.packed().saturating_add(1)))
            .max()
            .unwrap_or(Hlc::MIN)
    }

    pub fn nodes(&self) -> Vec<BaseNode> {
        self.nodes
            .iter()
            .map(|(node, entry)| BaseNode {
                node: node.clone(),
                last_hlc: entry.last_hlc,
                state: entry.state.clone(),
                left: entry.left,
                records: entry.records,
            })
            .collect()
    }

    /// A record that, applied to an empty state, gives the node's base state.
    pub fn state_record(node: &str, entry: &BaseEntry) -> Record {
        let mut rec = Record::heartbeat(node, entry.last_hlc);
        rec.set = entry
            .state
            .vars
            .iter()
            .map(|(var, value)| (var.clone(), Some(value.clone())))
            .collect();
        rec
    }

    /// Applies one record that retention deletes.
    pub fn fold(&mut self, rec: &Record, wall_ms: u64) -> Result<(), String> {
        let entry = self
            .nodes
            .entry(rec.node.clone())
            .or_insert_with(|| BaseEntry {
                last_hlc: Hlc::MIN,
                state: NodeState::new(),
                left: false,
                records: 0,
                last_seen_ms: 0,
            });
        entry.state.apply(rec).map_err(|e| e.to_string())?;
        entry.last_hlc = entry.last_hlc.max(rec.hlc);
        entry.left = rec.leave;
        entry.records += 1;
        entry.last_seen_ms = entry.last_seen_ms.max(wall_ms);
        Ok(())
    }

    /// Reads `base.json` from `dir` (an empty base state if there is none).
    pub fn load(dir: &Path) -> Result<BaseState, StoreError> {
        let path = dir.join(BASE_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(BaseState::default()),
            Err(e) => return Err(StoreError::io("read", &path, e)),
        };
        let corrupt = |reason: String| StoreError::Corrupt {
            path: path.clone(),
            offset: 0,
            reason,
            fix: "restore it from a backup: it holds the state of records retention deleted"
                .to_string(),
        };
        let file: BaseFile = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        if file.format != BASE_FORMAT {
            return Err(corrupt(format!(
                "format {:?}, expected {BASE_FORMAT:?}",
                file.format
            )));
        }
        let mut nodes = BTreeMap::new();
        for node in file.nodes {
            let rec = parse_record(node.state.as_bytes())
                .map_err(|e| corrupt(format!("bad state record: {e}")))?;
            let mut state = NodeState::new();
            state
                .apply(&rec)
                .map_err(|e| corrupt(format!("bad state of node {:?}: {e}", rec.node)))?;
            nodes.insert(
                rec.node,
                BaseEntry {
                    last_hlc: Hlc::from_packed(node.last_hlc),
                    state,
                    left: node.left,
                    records: node.records,
                    last_seen_ms: node.last_seen_ms,
                },
            );
        }
        Ok(BaseState {
            folded_through_seq: file.folded_through_seq,
            nodes,
        })
    }

    /// Replaces `base.json` in `dir` atomically.
    pub fn save(&self, dir: &Path) -> Result<(), StoreError> {
        let file = BaseFile {
            format: BASE_FORMAT.to_string(),
            folded_through_seq: self.folded_through_seq,
            nodes: self
                .nodes
                .iter()
                .map(|(node, entry)| BaseFileNode {
                    last_hlc: entry.last_hlc.packed(),
                    left: entry.left,
                    records: entry.records,
                    last_seen_ms: entry.last_seen_ms,
                    state: BaseState::state_record(node, entry).to_json_line(),
                })
                .collect(),
        };
        let text = serde_json::to_string(&file).map_err(|e| {
            StoreError::io("encode", &dir.join(BASE_FILE), std::io::Error::other(e))
        })?;
        let temp = dir.join(BASE_TEMP_FILE);
        let mut out = File::create(&temp).map_err(|e| StoreError::io("create", &temp, e))?;
        out.write_all(text.as_bytes())
            .and_then(|()| out.sync_all())
            .map_err(|e| StoreError::io("write", &temp, e))?;
        drop(out);
        let path = dir.join(BASE_FILE);
        fs::rename(&temp, &path).map_err(|e| StoreError::io("replace", &path, e))?;
        sync_dir(dir)
    }
}

/// Deletes the oldest whole segments (never the active one) that are older than the age limit
/// or keep the log above the size limit, after folding them into the base state.
pub(crate) fn enforce_retention(
    config: &StoreConfig,
    published: &Published,
) -> Result<RetentionReport, StoreError> {
    // Held for the whole run: runs never overlap, and `base_state()` never sees a half fold.
    let mut base = lock(&published.base);
    let now_ms = wall_ms_now();
    let victims: Vec<SegmentMeta> = {
        let segments = lock(&published.segments);
        let mut total: u64 = segments.list.iter().map(|s| s.len).sum();
        let sealed = segments.list.len().saturating_sub(1);
        let mut victims = Vec::new();
        for seg in &segments.list[..sealed] {
            let too_old = config.retention_age.is_some_and(|age| {
                let age_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
                seg.max_wall_ms.saturating_add(age_ms) < now_ms
            });
            let too_big = config.max_bytes.is_some_and(|max| total > max);
            if !too_old && !too_big {
                break;
            }
            total -= seg.len;
            let mut victim = seg.clone();
            victim.blocks = Vec::new();
            victims.push(victim);
        }
        victims
    };
    let mut report = RetentionReport {
        earliest: base.earliest(),
        ..RetentionReport::default()
    };
    if victims.is_empty() {
        return Ok(report);
    }

    let mut folded = base.clone();
    for seg in &victims {
        fold_segment(&mut folded, seg)?;
        folded.folded_through_seq = seg.end_seq() - 1;
        report.deleted_records += seg.records;
        report.deleted_bytes += seg.len;
    }
    folded.save(&published.dir)?;
    *base = folded;
    report.earliest = base.earliest();
    report.deleted_segments = victims.len();

    {
        let mut segments = lock(&published.segments);
        // Only retention removes segments, and it holds the base lock: the victims are still
        // the first ones.
        let gone = segments
            .list
            .iter()
            .zip(&victims)
            .take_while(|(seg, victim)| seg.first_seq == victim.first_seq)
            .count();
        segments.list.drain(..gone);
        segments.earliest = report.earliest;
    }
    for seg in &victims {
        // A segment that cannot be deleted now is already folded: recovery deletes it.
        if let Err(e) = fs::remove_file(&seg.path) {
            tracing::warn!(
                "retention could not delete {} ({e}); it is folded into the base state and \
                 will be deleted at the next start",
                seg.path.display()
            );
        }
    }
    sync_dir(&published.dir)?;
    metrics::counter!("rql_retention_deleted_segments_total").increment(victims.len() as u64);
    metrics::counter!("rql_retention_deleted_bytes_total").increment(report.deleted_bytes);
    metrics::counter!("rql_retention_deleted_records_total").increment(report.deleted_records);
    super::writer::publish_gauges(published);
    tracing::info!(
        "retention deleted {} segments ({} records, {} bytes); history now starts at {}",
        report.deleted_segments,
        report.deleted_records,
        report.deleted_bytes,
        report.earliest
    );
    Ok(report)
}

/// Folds the committed records of `seg` into `base`.
fn fold_segment(base: &mut BaseState, seg: &SegmentMeta) -> Result<(), StoreError> {
    let mut expected = seg.first_seq;
    let end = scan_segment(&seg.path, Some(seg.len), |_, frame| {
        if frame.seq != expected {
            return Err(format!("seq {} where {expected} was expected", frame.seq));
        }
        let rec = parse_record(frame.payload)?;
        base.fold(&rec, frame.wall_ms)?;
        expected += 1;
        Ok(())
    })
    .map_err(|e| StoreError::io("read", &seg.path, e))?;
    if end.valid_len < seg.len || expected != seg.end_seq() {
        return Err(StoreError::Corrupt {
            path: seg.path.clone(),
            offset: end.valid_len,
            reason: end
                .problem
                .unwrap_or_else(|| "the file is shorter than what was committed".to_string()),
            fix: "retention stopped and deleted nothing; restore the file from a backup"
                .to_string(),
        });
    }
    Ok(())
}
