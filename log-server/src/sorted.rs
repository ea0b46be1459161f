//! Inputs that are already in HLC order, read one record at a time and merged into one
//! stream: what a replay uses when its memory must stay proportional to the cut state rather
//! than to the trace. The order is the one [`read_traces`](crate::read_traces) gives by sorting
//! (HLC, then input, then line), so both ways of reading a trace replay the same steps.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::BufRead;

use crate::hlc::Hlc;
use crate::ndjson::{NdjsonReader, Origin, TraceError, TraceErrorKind, TraceInput};
use crate::record::Record;

/// The merged records of sorted inputs. Yields `Err` for each bad line (a
/// [`TraceErrorKind::Record`] error; the stream goes on after it) and ends with an
/// [`TraceErrorKind::Io`] error when an input cannot be read, or an
/// [`TraceErrorKind::Unsorted`] one when it is not in HLC order (nothing comes after those).
pub struct SortedMerge<'a> {
    names: Vec<String>,
    readers: Vec<NdjsonReader<Box<dyn BufRead + 'a>>>,
    /// The next record of each input, by (HLC, input).
    heads: BinaryHeap<Reverse<(Hlc, usize)>>,
    pending: Vec<Option<(usize, Record)>>,
    last: Vec<Hlc>,
    /// Per input: the reader needs to be advanced before its head is known.
    to_fill: Vec<usize>,
    failed: bool,
}

impl<'a> SortedMerge<'a> {
    pub fn new(inputs: Vec<TraceInput<'a>>) -> SortedMerge<'a> {
        let n = inputs.len();
        let (names, readers) = inputs
            .into_iter()
            .map(|i| (i.name, NdjsonReader::new(i.reader)))
            .unzip();
        SortedMerge {
            names,
            readers,
            heads: BinaryHeap::with_capacity(n),
            pending: (0..n).map(|_| None).collect(),
            last: vec![Hlc::MIN; n],
            to_fill: (0..n).rev().collect(),
            failed: false,
        }
    }

    /// The input names, indexed by [`Origin::source`].
    pub fn sources(&self) -> &[String] {
        &self.names
    }

    /// Reads input i's next good record into `pending`; a bad line is returned as an error
    /// (to be reported before the input is read further).
    fn fill(&mut self, i: usize) -> Result<(), TraceError> {
        match self.readers[i].next() {
            None => Ok(()),
            Some(Err(e)) => {
                // A bad record: this input is read on at the next call.
                self.to_fill.push(i);
                Err(e.with_source(self.names[i].clone()))
            }
            Some(Ok((line, rec))) => {
                if rec.hlc < self.last[i] {
                    return Err(TraceError {
                        kind: TraceErrorKind::Unsorted,
                        ..TraceError::new(
                            line,
                            format!(
                                "not in HLC order: {} comes after {}; streaming needs each input \
                             sorted by HLC (replay without --stream to sort in memory)",
                                rec.hlc, self.last[i]
                            ),
                        )
                    }
                    .with_source(self.names[i].clone()));
                }
                self.last[i] = rec.hlc;
                self.heads.push(Reverse((rec.hlc, i)));
                self.pending[i] = Some((line, rec));
                Ok(())
            }
        }
    }
}

impl Iterator for SortedMerge<'_> {
    type Item = Result<(Origin, Record), TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        while let Some(i) = self.to_fill.pop() {
            if let Err(e) = self.fill(i) {
                if e.kind != TraceErrorKind::Record {
                    self.failed = true;
                }
                return Some(Err(e));
            }
        }
        let Reverse((_, i)) = self.heads.pop()?;
        let (line, rec) = self.pending[i].take()?;
        self.to_fill.push(i);
        Some(Ok((Origin { source: i, line }, rec)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ndjson::{read_traces, ReadOptions};

    fn input(name: &str, text: &'static str) -> TraceInput<'static> {
        TraceInput {
            name: name.to_string(),
            reader: Box::new(text.as_bytes()),
        }
    }

    const A: &str = "{\"node\":\"n1\",\"hlc\":[1,0],\"set\":{\"x.a\":1}}\n\
                     {\"node\":\"n1\",\"hlc\":[3,0],\"set\":{\"x.a\":2}}\n\
                     {\"node\":\"n1\",\"hlc\":[5,0],\"set\":{\"x.a\":3}}\n";
    const B: &str = "{\"node\":\"n2\",\"hlc\":[1,0],\"set\":{\"x.a\":7}}\n\
                     \n\
                     {\"node\":\"n2\",\"hlc\":[3,0],\"set\":{\"x.a\":8}}\n\
                     {\"node\":\"n2\",\"hlc\":[4,0]}\n";

    #[test]
    fn merges_like_the_in_memory_sort() {
        let merged: Vec<(Origin, Record)> = SortedMerge::new(vec![input("a", A), input("b", B)])
            .collect::<Result<_, _>>()
            .unwrap();
        let sorted =
            read_traces(vec![input("a", A), input("b", B)], &ReadOptions::default()).unwrap();
        assert_eq!(merged, sorted.records);
        assert_eq!(merged.len(), 6);
    }

    #[test]
    fn bad_lines_are_reported_and_skipped_over() {
        const BAD: &str = "{\"node\":\"n1\",\"hlc\":[1,0]}\n{\"node\":\"n1\",\"hlc\":[2,0],\"bogus\":1}\n{\"node\":\"n1\",\"hlc\":[3,0]}\n";
        let items: Vec<_> = SortedMerge::new(vec![input("bad", BAD)]).collect();
        assert_eq!(items.len(), 3);
        let e = items[1].as_ref().unwrap_err();
        assert_eq!((e.line, e.kind), (2, TraceErrorKind::Record));
        assert!(e.to_string().starts_with("bad:2:"), "{e}");
        assert!(items[2].is_ok());
    }

    #[test]
    fn an_unsorted_input_ends_the_stream_with_an_error_naming_the_line() {
        const UNSORTED: &str = "{\"node\":\"n1\",\"hlc\":[5,0]}\n{\"node\":\"n1\",\"hlc\":[2,0]}\n{\"node\":\"n1\",\"hlc\":[9,0]}\n";
        let items: Vec<_> = SortedMerge::new(vec![input("u", UNSORTED)]).collect();
        assert_eq!(items.len(), 2);
        let e = items[1].as_ref().unwrap_err();
        assert_eq!((e.line, e.kind), (2, TraceErrorKind::Unsorted));
        assert!(e.reason.contains("not in HLC order"), "{e}");
    }
}
