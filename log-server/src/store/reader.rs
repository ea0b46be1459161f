//! Readers: cursors over the committed log, read from the segment files (the page cache keeps
//! the newest part warm), so a slow reader holds a file handle and a small buffer and nothing
//! more. The sparse block index lets a reader starting at some HLC skip segments and blocks
//! whose records are all older.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, ErrorKind};
use std::path::PathBuf;
use std::sync::Arc;

use crate::hlc::Hlc;
use crate::ndjson::parse_record;

use super::segment::{decode_frame, read_range, Decoded};
use super::{lock, Published, StoreError, StoredRecord};

/// Bytes a reader reads at a time (more if one record is longer).
const READ_CHUNK: usize = 64 << 10;

/// A cursor over committed records with `hlc >= since` of some nodes, in log order. Obtained
/// from [`super::Store::reader`]. Reads are blocking file reads (usually from the page cache);
/// call it from a blocking-friendly context.
pub struct StoreReader {
    published: Arc<Published>,
    since: Hlc,
    nodes: Option<BTreeSet<String>>,
    /// Seq of the next record to look at.
    next_seq: u64,
    position: u64,
    cursor: Option<Cursor>,
}

/// An open segment and the bytes read from it that are not consumed yet.
struct Cursor {
    first_seq: u64,
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_offset: u64,
    /// Consumed bytes of `buf`.
    pos: usize,
    /// Seq of the frame at `buf[pos]`.
    next_seq: u64,
    scratch: Vec<u8>,
}

/// Where the next read goes, decided under the segments lock.
enum Plan {
    CaughtUp,
    /// Nothing with `hlc >= since` before this seq.
    SkipTo(u64),
    Read {
        first_seq: u64,
        path: PathBuf,
        /// Where to begin if the cursor is not already at `start_seq`: a block start at or
        /// before it.
        block_offset: u64,
        block_seq: u64,
        start_seq: u64,
        /// The run of blocks to read ends here (the segment's committed end, or a block of
        /// only older records).
        end_offset: u64,
        end_seq: u64,
    },
}

impl StoreReader {
    pub(crate) fn new(
        published: Arc<Published>,
        since: Hlc,
        nodes: Option<BTreeSet<String>>,
    ) -> Result<StoreReader, StoreError> {
        let (earliest, first_seq) = {
            let segments = lock(&published.segments);
            let first_seq = segments.list.first().map_or(1, |s| s.first_seq);
            (segments.earliest, first_seq)
        };
        if since < earliest {
            return Err(StoreError::SinceTooOld { since, earliest });
        }
        Ok(StoreReader {
            published,
            since,
            nodes,
            next_seq: first_seq,
            position: first_seq - 1,
            cursor: None,
        })
    }

    /// Seq of the last record the cursor has passed, returned or filtered out (0 before the
    /// first). Once it equals the last committed seq (see `Store::commits`) the reader is
    /// caught up.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Up to `max` further committed records that pass the filters; empty when caught up (then
    /// wait for `Store::commits` to change). Never returns uncommitted data.
    pub fn next_chunk(&mut self, max: usize) -> Result<Vec<StoredRecord>, StoreError> {
        let mut out = Vec::new();
        let mut reopened = false;
        while out.len() < max {
            match self.plan()? {
                Plan::CaughtUp => break,
                Plan::SkipTo(seq) => {
                    self.next_seq = seq;
                    self.position = self.position.max(seq - 1);
                }
                Plan::Read {
                    first_seq,
                    path,
                    block_offset,
                    block_seq,
                    start_seq,
                    end_offset,
                    end_seq,
                } => {
                    let at_start = self
                        .cursor
                        .as_ref()
                        .is_some_and(|c| c.first_seq == first_seq && c.next_seq == start_seq);
                    if !at_start {
                        match self.position_cursor(first_seq, path, block_offset, block_seq) {
                            Ok(()) => {}
                            // Retention deleted it since the plan: plan again, which sees that.
                            Err(StoreError::Io { source, .. })
                                if source.kind() == ErrorKind::NotFound && !reopened =>
                            {
                                reopened = true;
                                continue;
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    self.read_run(start_seq, end_offset, end_seq, max, &mut out)?;
                }
            }
        }
        Ok(out)
    }

    fn plan(&mut self) -> Result<Plan, StoreError> {
        let segments = lock(&self.published.segments);
        let list = &segments.list;
        if let Some(first) = list.first() {
            if self.next_seq < first.first_seq {
                // Retention deleted records this reader had not passed. If they were all older
                // than `since` (everything folded is below `earliest`) it needed none of them.
                if self.since < segments.earliest {
                    return Err(StoreError::ReaderBehind {
                        next_seq: self.next_seq,
                        earliest: segments.earliest,
                    });
                }
                self.next_seq = first.first_seq;
                self.position = self.position.max(first.first_seq - 1);
            }
        }
        let i = list.partition_point(|s| s.end_seq() <= self.next_seq);
        let Some(seg) = list.get(i) else {
            return Ok(Plan::CaughtUp);
        };
        let next_seq = self.next_seq.max(seg.first_seq);
        if seg.max_hlc < self.since {
            return Ok(Plan::SkipTo(seg.end_seq()));
        }
        let blocks = &seg.blocks;
        let mut b = blocks
            .partition_point(|block| block.first_seq <= next_seq)
            .saturating_sub(1);
        let mut start_seq = next_seq;
        if blocks
            .get(b)
            .is_some_and(|block| block.max_hlc < self.since)
        {
            while blocks
                .get(b)
                .is_some_and(|block| block.max_hlc < self.since)
            {
                b += 1;
            }
            match blocks.get(b) {
                Some(block) => start_seq = block.first_seq,
                None => return Ok(Plan::SkipTo(seg.end_seq())),
            }
        }
        let Some(block) = blocks.get(b) else {
            return Ok(Plan::CaughtUp);
        };
        let mut e = b + 1;
        while blocks
            .get(e)
            .is_some_and(|block| block.max_hlc >= self.since)
        {
            e += 1;
        }
        let (end_offset, end_seq) = match blocks.get(e) {
            Some(stop) => (stop.offset, stop.first_seq),
            None => (seg.len, seg.end_seq()),
        };
        Ok(Plan::Read {
            first_seq: seg.first_seq,
            path: seg.path.clone(),
            block_offset: block.offset,
            block_seq: block.first_seq,
            start_seq,
            end_offset,
            end_seq,
        })
    }

    fn position_cursor(
        &mut self,
        first_seq: u64,
        path: PathBuf,
        offset: u64,
        seq: u64,
    ) -> Result<(), StoreError> {
        match &mut self.cursor {
            Some(cursor) if cursor.first_seq == first_seq => {
                cursor.buf.clear();
                cursor.buf_offset = offset;
                cursor.pos = 0;
                cursor.next_seq = seq;
            }
            _ => {
                let file = File::open(&path).map_err(|e| StoreError::io("open", &path, e))?;
                self.cursor = Some(Cursor {
                    first_seq,
                    path,
                    file,
                    buf: Vec::new(),
                    buf_offset: offset,
                    pos: 0,
                    next_seq: seq,
                    scratch: Vec::new(),
                });
            }
        }
        Ok(())
    }

    /// Reads frames from the cursor until `end_seq` or until `out` holds `max` records;
    /// frames before `start_seq` are passed over.
    fn read_run(
        &mut self,
        start_seq: u64,
        end_offset: u64,
        end_seq: u64,
        max: usize,
        out: &mut Vec<StoredRecord>,
    ) -> Result<(), StoreError> {
        let Some(cursor) = self.cursor.as_mut() else {
            return Ok(());
        };
        while cursor.next_seq < end_seq && out.len() < max {
            let frame_offset = cursor.buf_offset + cursor.pos as u64;
            let path = &cursor.path;
            let corrupt = |reason: String| StoreError::Corrupt {
                path: path.clone(),
                offset: frame_offset,
                reason,
                fix: "the committed log is damaged on disk; restore the file from a backup"
                    .to_string(),
            };
            let needed = match decode_frame(&cursor.buf[cursor.pos..]) {
                Decoded::Incomplete(needed) => needed,
                Decoded::Bad(reason) => return Err(corrupt(reason)),
                Decoded::Frame(frame) => {
                    if frame.seq != cursor.next_seq {
                        return Err(corrupt(format!(
                            "record seq {} where {} was expected",
                            frame.seq, cursor.next_seq
                        )));
                    }
                    let (seq, len) = (frame.seq, frame.len);
                    if seq >= start_seq {
                        let rec = parse_record(frame.payload)
                            .map_err(|e| corrupt(format!("bad record: {e}")))?;
                        let wanted = rec.hlc >= self.since
                            && self.nodes.as_ref().is_none_or(|n| n.contains(&rec.node));
                        if wanted {
                            let json = std::str::from_utf8(frame.payload)
                                .map_err(|e| corrupt(e.to_string()))?
                                .to_string();
                            out.push(StoredRecord {
                                seq,
                                record: rec,
                                json,
                            });
                        }
                        self.position = self.position.max(seq);
                    }
                    cursor.pos += len;
                    cursor.next_seq += 1;
                    continue;
                }
            };
            let filled = cursor
                .fill(needed, end_offset)
                .map_err(|e| StoreError::io("read", &cursor.path, e))?;
            if !filled {
                return Err(StoreError::Corrupt {
                    path: cursor.path.clone(),
                    offset: frame_offset,
                    fix: "the committed log is damaged on disk; restore the file from a backup"
                        .to_string(),
                    reason: format!(
                        "a committed record needs {needed} bytes but the committed data ends at \
                     byte {end_offset}"
                    ),
                });
            }
        }
        self.next_seq = cursor.next_seq;
        Ok(())
    }
}

impl Cursor {
    /// Makes `buf[pos..]` hold at least `needed` bytes, reading no further than `end_offset`.
    /// False if the file (as committed) ends first.
    fn fill(&mut self, needed: usize, end_offset: u64) -> io::Result<bool> {
        let have = self.buf.len() - self.pos;
        if have >= needed {
            return Ok(true);
        }
        let read_from = self.buf_offset + self.buf.len() as u64;
        if read_from >= end_offset {
            return Ok(false);
        }
        let want = (needed - have).max(READ_CHUNK) as u64;
        let want = want.min(end_offset - read_from) as usize;
        read_range(&mut self.file, read_from, want, &mut self.scratch)?;
        self.buf.drain(..self.pos);
        self.buf_offset += self.pos as u64;
        self.pos = 0;
        self.buf.extend_from_slice(&self.scratch);
        Ok(self.buf.len() >= needed)
    }
}
