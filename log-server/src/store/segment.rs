//! The on-disk format of the log: segment file names, record frames, reading a segment frame by
//! frame, and the in-memory index of a segment (sequence range, HLC range, sparse blocks).
//!
//! A segment is a file `<first seq, 20 digits>.seg` holding frames back to back:
//!
//! ```text
//! [u32 length][u32 crc32][u64 seq][u64 append wall time, ms][payload]
//! ```
//!
//! all little-endian. The payload is the record's canonical JSON line without the newline. The
//! length field holds the payload length in its low 31 bits and in its top bit whether the
//! record is the last of its batch: batches are atomic, so recovery keeps only whole batches.
//! The checksum covers the length field, seq, wall time and payload. Sequence numbers are
//! consecutive within a segment; a segment that is no longer the last holds whole batches only,
//! so it can be compacted or deleted as a unit.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use crate::hlc::Hlc;

/// Bytes before the payload.
pub(crate) const HEADER_LEN: usize = 24;
/// Largest payload (one record line) a frame may hold. Far above any sane record; bounds what a
/// damaged length field can make recovery or a reader allocate.
pub(crate) const MAX_PAYLOAD: usize = 64 << 20;
/// Records per block of the sparse index.
pub(crate) const BLOCK_RECORDS: u64 = 1024;
/// Top bit of the length field: the last record of its batch.
const BATCH_END: u32 = 1 << 31;
/// How much a scan reads at a time.
const SCAN_CHUNK: usize = 1 << 20;

/// `00000000000000000001.seg` for first seq 1: names sort in log order.
pub(crate) fn segment_file_name(first_seq: u64) -> String {
    format!("{first_seq:020}.seg")
}

/// The first seq of a segment file name, or `None` if `name` is not one.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn frame_crc(len_field: u32, seq: u64, wall_ms: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len_field.to_le_bytes());
    hasher.update(&seq.to_le_bytes());
    hasher.update(&wall_ms.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// Appends a frame for `payload` whose seq, wall time and checksum are still to be filled in
/// by [`seal_frame`] (the writer thread knows them only when it commits). `payload` must be at
/// most [`MAX_PAYLOAD`] bytes; `batch_end` marks the last record of a batch.
pub(crate) fn push_unsealed_frame(out: &mut Vec<u8>, payload: &[u8], batch_end: bool) {
    let len = u32::try_from(payload.len().min(MAX_PAYLOAD)).unwrap_or(0);
    let len_field = if batch_end { len | BATCH_END } else { len };
    out.extend_from_slice(&len_field.to_le_bytes());
    out.extend_from_slice(&[0; HEADER_LEN - 4]);
    out.extend_from_slice(payload);
}

/// Fills in seq, wall time and checksum of the frame at the start of `frame` (as written by
/// [`push_unsealed_frame`]) and returns the frame's total length.
pub(crate) fn seal_frame(frame: &mut [u8], seq: u64, wall_ms: u64) -> usize {
    let len_field = read_u32(frame, 0);
    let total = HEADER_LEN + (len_field & !BATCH_END) as usize;
    frame[8..16].copy_from_slice(&seq.to_le_bytes());
    frame[16..24].copy_from_slice(&wall_ms.to_le_bytes());
    let crc = frame_crc(len_field, seq, wall_ms, &frame[HEADER_LEN..total]);
    frame[4..8].copy_from_slice(&crc.to_le_bytes());
    total
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

/// One frame read back.
#[derive(Debug)]
pub(crate) struct Frame<'a> {
    pub seq: u64,
    pub wall_ms: u64,
    pub payload: &'a [u8],
    /// Header plus payload.
    pub len: usize,
    /// The last record of its batch.
    pub batch_end: bool,
}

/// What the bytes at the start of a buffer hold.
#[derive(Debug)]
pub(crate) enum Decoded<'a> {
    Frame(Frame<'a>),
    /// The buffer ends inside the frame, which needs this many bytes in all.
    Incomplete(usize),
    /// Not a valid frame (the reason).
    Bad(String),
}

pub(crate) fn decode_frame(buf: &[u8]) -> Decoded<'_> {
    if buf.len() < HEADER_LEN {
        return Decoded::Incomplete(HEADER_LEN);
    }
    let len_field = read_u32(buf, 0);
    let len = (len_field & !BATCH_END) as usize;
    if len > MAX_PAYLOAD {
        return Decoded::Bad(format!(
            "record length {len} exceeds the maximum {MAX_PAYLOAD}"
        ));
    }
    let total = HEADER_LEN + len;
    if buf.len() < total {
        return Decoded::Incomplete(total);
    }
    let seq = read_u64(buf, 8);
    let wall_ms = read_u64(buf, 16);
    let payload = &buf[HEADER_LEN..total];
    let stored = read_u32(buf, 4);
    let computed = frame_crc(len_field, seq, wall_ms, payload);
    if stored != computed {
        return Decoded::Bad(format!(
            "checksum mismatch (stored {stored:08x}, computed {computed:08x})"
        ));
    }
    Decoded::Frame(Frame {
        seq,
        wall_ms,
        payload,
        len: total,
        batch_end: len_field & BATCH_END != 0,
    })
}

/// Where the valid frames of a scanned file end, and why the scan stopped there if not at
/// the end of the file.
#[derive(Debug)]
pub(crate) struct ScanEnd {
    /// Offset just past the last valid frame.
    pub valid_len: u64,
    pub file_len: u64,
    /// Why the bytes from `valid_len` on are not a valid frame (`None`: the file ends there).
    pub problem: Option<String>,
}

/// Reads `path` frame by frame from the start, up to `limit` bytes (`None`: the whole file),
/// calling `visit(offset, frame)` for each valid frame. Stops at the first frame that is
/// damaged, incomplete, or that `visit` refuses (`Err(reason)`).
pub(crate) fn scan_segment(
    path: &Path,
    limit: Option<u64>,
    mut visit: impl FnMut(u64, &Frame<'_>) -> Result<(), String>,
) -> io::Result<ScanEnd> {
    let mut file = File::open(path)?;
    let file_len = file.metadata()?.len();
    let end = limit.map_or(file_len, |limit| limit.min(file_len));
    let mut buf: Vec<u8> = Vec::with_capacity(SCAN_CHUNK);
    // buf[start..] are the unconsumed bytes, beginning at file offset `offset`.
    let mut start = 0;
    let mut offset = 0u64;
    let mut read_to = 0u64;
    loop {
        match decode_frame(&buf[start..]) {
            Decoded::Frame(frame) => {
                if let Err(reason) = visit(offset, &frame) {
                    return Ok(ScanEnd {
                        valid_len: offset,
                        file_len,
                        problem: Some(reason),
                    });
                }
                start += frame.len;
                offset += frame.len as u64;
            }
            Decoded::Incomplete(needed) => {
                let have = buf.len() - start;
                if read_to >= end {
                    let problem = (have > 0).then(|| {
                        format!("incomplete record: {have} bytes where the record needs {needed}")
                    });
                    return Ok(ScanEnd {
                        valid_len: offset,
                        file_len,
                        problem,
                    });
                }
                buf.drain(..start);
                start = 0;
                let want = (needed - have).max(SCAN_CHUNK) as u64;
                let want = want.min(end - read_to);
                let got = (&mut file).take(want).read_to_end(&mut buf)?;
                if got == 0 {
                    // The file shrank under us; treat what we have as the end.
                    read_to = end;
                } else {
                    read_to += got as u64;
                }
            }
            Decoded::Bad(reason) => {
                return Ok(ScanEnd {
                    valid_len: offset,
                    file_len,
                    problem: Some(reason),
                })
            }
        }
    }
}

/// Reads `len` bytes of `file` from `offset` on into `out` (replacing its contents).
pub(crate) fn read_range(
    file: &mut File,
    offset: u64,
    len: usize,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    out.clear();
    out.resize(len, 0);
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(out)
}

/// One block of the sparse index: `BLOCK_RECORDS` consecutive records (fewer in the last).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Block {
    /// File offset of the block's first frame.
    pub offset: u64,
    pub first_seq: u64,
    /// Greatest HLC in the block, so a reader starting at some HLC skips whole blocks.
    pub max_hlc: Hlc,
}

/// What the store knows about a segment: its committed extent and its index. Rebuilt by
/// recovery, extended by the writer after each commit.
#[derive(Clone, Debug)]
pub(crate) struct SegmentMeta {
    pub first_seq: u64,
    pub path: std::path::PathBuf,
    /// Committed records; they hold seqs `first_seq .. first_seq + records`.
    pub records: u64,
    /// Committed bytes: readers never look past this.
    pub len: u64,
    pub min_hlc: Hlc,
    pub max_hlc: Hlc,
    /// Newest append wall time (ms) of its records, for retention by age.
    pub max_wall_ms: u64,
    pub blocks: Vec<Block>,
}

impl SegmentMeta {
    pub fn new(first_seq: u64, path: std::path::PathBuf) -> SegmentMeta {
        SegmentMeta {
            first_seq,
            path,
            records: 0,
            len: 0,
            min_hlc: Hlc::MAX,
            max_hlc: Hlc::MIN,
            max_wall_ms: 0,
            blocks: Vec::new(),
        }
    }

    /// Seq after the last committed record.
    pub fn end_seq(&self) -> u64 {
        self.first_seq + self.records
    }

    /// Indexes the next record (seq `end_seq()`), whose frame starts at `offset` and is
    /// `frame_len` bytes long.
    pub fn push(&mut self, offset: u64, frame_len: u64, hlc: Hlc, wall_ms: u64) {
        if self.records == self.blocks.len() as u64 * BLOCK_RECORDS {
            self.blocks.push(Block {
                offset,
                first_seq: self.end_seq(),
                max_hlc: hlc,
            });
        } else if let Some(block) = self.blocks.last_mut() {
            block.max_hlc = block.max_hlc.max(hlc);
        }
        self.records += 1;
        self.len = offset + frame_len;
        self.min_hlc = self.min_hlc.min(hlc);
        self.max_hlc = self.max_hlc.max(hlc);
        self.max_wall_ms = self.max_wall_ms.max(wall_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip_and_sort() {
        assert_eq!(segment_file_name(1), "00000000000000000001.seg");
        assert_eq!(parse_segment_file_name(&segment_file_name(42)), Some(42));
        assert_eq!(parse_segment_file_name("1.seg"), None);
        assert_eq!(parse_segment_file_name("0000000000000000000x.seg"), None);
        assert_eq!(parse_segment_file_name("00000000000000000001.tmp"), None);
        assert!(segment_file_name(9) < segment_file_name(10));
    }

    #[test]
    fn frames_round_trip_and_detect_damage() {
        let mut buf = Vec::new();
        push_unsealed_frame(&mut buf, b"{\"node\":\"n1\",\"hlc\":[1,0]}", true);
        let len = seal_frame(&mut buf, 7, 1234);
        assert_eq!(len, buf.len());
        match decode_frame(&buf) {
            Decoded::Frame(f) => {
                assert_eq!((f.seq, f.wall_ms, f.len), (7, 1234, buf.len()));
                assert!(f.batch_end);
                assert_eq!(f.payload, b"{\"node\":\"n1\",\"hlc\":[1,0]}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(decode_frame(&buf[..10]), Decoded::Incomplete(24)));
        assert!(matches!(decode_frame(&buf[..30]), Decoded::Incomplete(n) if n == buf.len()));
        for i in 0..buf.len() {
            let mut damaged = buf.clone();
            damaged[i] ^= 0x10;
            // A damaged length may also make the frame look longer than the buffer.
            assert!(
                !matches!(decode_frame(&damaged), Decoded::Frame(_)),
                "byte {i}"
            );
        }
        let mut huge = buf.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode_frame(&huge), Decoded::Bad(_)));
    }

    #[test]
    fn index_blocks() {
        let mut meta = SegmentMeta::new(10, "x".into());
        for i in 0..(BLOCK_RECORDS * 2 + 1) {
            meta.push(i * 100, 100, Hlc::from_packed(1000 - i % 7), 5 + i);
        }
        assert_eq!(meta.blocks.len(), 3);
        assert_eq!(meta.blocks[1].first_seq, 10 + BLOCK_RECORDS);
        assert_eq!(meta.blocks[1].offset, BLOCK_RECORDS * 100);
        assert_eq!(
            meta.blocks[2].max_hlc,
            Hlc::from_packed(1000 - (2 * BLOCK_RECORDS) % 7)
        );
        assert_eq!(meta.end_seq(), 10 + 2 * BLOCK_RECORDS + 1);
        assert_eq!(meta.len, (2 * BLOCK_RECORDS + 1) * 100);
        assert_eq!(meta.max_hlc, Hlc::from_packed(1000));
        assert_eq!(meta.min_hlc, Hlc::from_packed(994));
    }
}
