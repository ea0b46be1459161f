//! The demo's running commentary on stdout: one line per event, stamped with the time since the
//! start, written and flushed whole so that lines from the nodes and from the alert loop never
//! mix and a reader at the other end of a pipe sees each one as it happens.

use std::io::Write;
use std::time::Instant;

use log_server::Hlc;

pub struct Console {
    start: Instant,
    /// The wall clock at `start` (ms since the epoch): HLCs are shown relative to it.
    start_ms: u64,
}

impl Console {
    pub fn new() -> Console {
        Console {
            start: Instant::now(),
            start_ms: log_server::hlc::system_time_ms(),
        }
    }

    /// Prints `text` after the time since the start. A closed stdout is ignored: the demo
    /// goes on (and still ends cleanly) when its reader stops reading.
    pub fn line(&self, text: &str) {
        let elapsed = self.start.elapsed().as_secs_f64();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{:>8}  {text}", format!("+{elapsed:.2}s"));
        let _ = out.flush();
    }

    /// Prints `text` as it is (the summary).
    pub fn raw(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    /// An HLC's physical time relative to the start, e.g. `+1.234s`.
    pub fn at(&self, hlc: Hlc) -> String {
        let ms = hlc.physical() as i128 - i128::from(self.start_ms);
        let sign = if ms < 0 { "-" } else { "+" };
        let ms = ms.unsigned_abs();
        format!("{sign}{}.{:03}s", ms / 1000, ms % 1000)
    }
}
