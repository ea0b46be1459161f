//! [`Recorder`]: one node's instrumentation. Changes are buffered into one pending record; each
//! [`Recorder::commit`] stamps it with one HLC tick and queues it for the background shipper
//! (`shipper.rs`), which owns the HTTP side.
//!
//! Everything the calling threads and the shipper share is in one mutex ([`State`]): the clock,
//! the pending changes and the queue. Stamping and queueing happen under the same lock, so the
//! queue is always in HLC order — the server rejects a node's record older than its previous one
//! (SPEC §5.1), so two threads committing at once must never queue out of order.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::endpoint;
use super::shipper;
use super::value::{self, set_of, IntoValue};
use crate::hlc::{Hlc, HlcClock, HlcError};
use crate::ndjson::parse_record;
use crate::record::{Record, VarName, VarNameError};
use crate::value::{SetValue, Value};

/// What [`Recorder::commit`] does when the buffer already holds
/// [`RecorderConfig::capacity`] records (the server is down or slower than the program).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufferPolicy {
    /// Wait for room. Nothing is lost, but a program whose server stays unreachable stops in
    /// `commit` (and in `on_send` with pending changes) until it comes back or the recorder
    /// shuts down. Never use it on a tokio worker thread you cannot afford to block.
    Block,
    /// Drop the new record and count it ([`RecorderStats::dropped`]); the program never waits.
    /// The node's state on the server then misses those changes until they are set again.
    Drop,
}

/// How a [`Recorder`] stamps and ships. Build it with [`RecorderConfig::new`] and change the
/// fields you need.
pub struct RecorderConfig {
    /// The node id every record carries (1 to 255 bytes).
    pub node: String,
    /// The log server, e.g. `http://127.0.0.1:7400` (a path prefix is kept).
    pub url: String,
    /// Sent as `Authorization: Bearer TOKEN` (`rql serve --token`).
    pub token: Option<String>,
    /// The node's clock: [`HlcClock::system`] by default; inject another physical clock or
    /// maximum drift with [`HlcClock::new`] and [`HlcClock::with_max_drift_ms`].
    pub clock: HlcClock,
    /// Stamp every change record with `pt`, the clock's physical reading at the commit
    /// (SPEC §1.3), for clock-skew analysis afterwards (`rql demo` replays its trace in
    /// physical-time order with it). Off by default: it makes every record longer.
    pub record_pt: bool,
    /// Records held at most: waiting to be sent or in flight.
    pub capacity: usize,
    /// What a commit does when the buffer is full.
    pub policy: BufferPolicy,
    /// Records per request at most.
    pub max_batch_records: usize,
    /// Bytes per request body at most (a single larger record is still sent, alone). Keep it
    /// under the server's `--max-body-bytes` (16 MiB by default).
    pub max_batch_bytes: usize,
    /// A committed record waits at most this long for others to share its request.
    pub flush_interval: Duration,
    /// When nothing was queued for this long, a heartbeat record (node and HLC only) is sent so
    /// the server's frontier can advance past an idle node (SPEC §5.1). Keep it well under the
    /// server's `--idle-timeout` (2 s by default). `None`: no heartbeats.
    pub heartbeat_interval: Option<Duration>,
    /// Longest record, as a JSON line, a commit accepts; keep it at most the server's
    /// `--max-line-bytes` (1 MiB by default).
    pub max_record_bytes: usize,
    /// One request (connect, send, answer) at most.
    pub request_timeout: Duration,
    /// First wait before a retry; it doubles (with jitter) up to `retry_max`.
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// How long [`Recorder::shutdown`] (and drop) keeps trying to ship what is buffered.
    pub shutdown_timeout: Duration,
}

impl RecorderConfig {
    /// Defaults: system clock with 500 ms maximum drift, a buffer of 100 000 records that
    /// blocks when full, batches of up to 1000 records / 1 MiB sent within 50 ms, heartbeats
    /// every 500 ms, 10 s requests, retries from 100 ms up to 5 s, 5 s to ship at shutdown.
    pub fn new(node: impl Into<String>, url: impl Into<String>) -> RecorderConfig {
        RecorderConfig {
            node: node.into(),
            url: url.into(),
            token: None,
            clock: HlcClock::system(),
            record_pt: false,
            capacity: 100_000,
            policy: BufferPolicy::Block,
            max_batch_records: 1000,
            max_batch_bytes: 1 << 20,
            flush_interval: Duration::from_millis(50),
            heartbeat_interval: Some(Duration::from_millis(500)),
            max_record_bytes: 1 << 20,
            request_timeout: Duration::from_secs(10),
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(5),
        }
    }
}

impl fmt::Debug for RecorderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecorderConfig")
            .field("node", &self.node)
            .field("url", &self.url)
            // Never print the secret itself.
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("clock", &self.clock)
            .field("record_pt", &self.record_pt)
            .field("capacity", &self.capacity)
            .field("policy", &self.policy)
            .field("max_batch_records", &self.max_batch_records)
            .field("max_batch_bytes", &self.max_batch_bytes)
            .field("flush_interval", &self.flush_interval)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("max_record_bytes", &self.max_record_bytes)
            .field("request_timeout", &self.request_timeout)
            .field("retry_initial", &self.retry_initial)
            .field("retry_max", &self.retry_max)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .finish()
    }
}

/// Counters of a recorder since it started. Every record queued (`committed + heartbeats`) ends
/// up in exactly one of `shipped`, `failed`, `abandoned`, or is still `buffered`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecorderStats {
    /// Change records committed (leave records included).
    pub committed: u64,
    /// Heartbeat records queued.
    pub heartbeats: u64,
    /// Records the server acknowledged (stored durably).
    pub shipped: u64,
    /// Requests that stored a batch.
    pub batches: u64,
    /// Records the server refused for good (4xx: bad record, out of order, node limit, token).
    pub failed: u64,
    /// Commits refused because the buffer was full ([`BufferPolicy::Drop`]); never queued.
    pub dropped: u64,
    /// Records still unacknowledged when shutdown gave up (server unreachable for
    /// [`RecorderConfig::shutdown_timeout`]). One whose request was cut short may be stored.
    pub abandoned: u64,
    /// Failed attempts that were tried again (connection errors, timeouts, 5xx, 408, 429).
    pub retries: u64,
    /// Records waiting or in flight now.
    pub buffered: u64,
    /// The last error the shipper met, as the server or the connection gave it.
    pub last_error: Option<String>,
}

#[derive(Debug)]
#[non_exhaustive]
pub enum RecorderError {
    /// The configuration cannot work (bad node id, URL, zero sizes); or the shipper thread or
    /// its runtime could not start.
    Config(String),
    /// A variable name that is not `log.key`.
    BadName(VarNameError),
    /// A value the trace format cannot carry (non-finite float, set of non-scalars, ...).
    BadValue { var: String, reason: String },
    /// `add`/`remove` on a variable that holds a non-set value (SPEC §1.3), as the node's
    /// committed and pending changes stand. Nothing changed.
    NotASet {
        op: &'static str,
        var: String,
        found: &'static str,
    },
    /// The clock refused: counter overflow (more than 65536 events in one millisecond), a
    /// physical clock out of range, or a received stamp beyond the maximum drift. Nothing was
    /// committed; pending changes are kept.
    Clock(HlcError),
    /// The record is longer than [`RecorderConfig::max_record_bytes`]; its changes are
    /// discarded.
    RecordTooLarge { bytes: usize, max: usize },
    /// The buffer was full ([`BufferPolicy::Drop`]): the record was not committed and its
    /// changes are discarded; counted in [`RecorderStats::dropped`].
    Dropped,
    /// The recorder was shut down.
    Closed,
    /// [`Recorder::flush`] ran out of time with this many records still undecided.
    FlushTimeout { unfinished: u64 },
}

impl fmt::Display for RecorderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecorderError::Config(message) => write!(f, "recorder configuration: {message}"),
            RecorderError::BadName(e) => e.fmt(f),
            RecorderError::BadValue { var, reason } => write!(f, "bad value for {var}: {reason}"),
            RecorderError::NotASet { op, var, found } => write!(
                f,
                "cannot {op} elements: {var} holds a {found}, not a set (set it to a set, or \
                 unset it, first)"
            ),
            RecorderError::Clock(e) => e.fmt(f),
            RecorderError::RecordTooLarge { bytes, max } => write!(
                f,
                "the record is {bytes} bytes as JSON, more than the limit of {max} bytes; \
                 commit its changes in several records"
            ),
            RecorderError::Dropped => {
                f.write_str("the recorder's buffer is full: the record was dropped")
            }
            RecorderError::Closed => f.write_str("the recorder is shut down"),
            RecorderError::FlushTimeout { unfinished } => write!(
                f,
                "flush timed out with {unfinished} records not yet acknowledged by the server"
            ),
        }
    }
}

impl std::error::Error for RecorderError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RecorderError::BadName(e) => Some(e),
            RecorderError::Clock(e) => Some(e),
            _ => None,
        }
    }
}

impl From<HlcError> for RecorderError {
    fn from(e: HlcError) -> Self {
        RecorderError::Clock(e)
    }
}

impl From<VarNameError> for RecorderError {
    fn from(e: VarNameError) -> Self {
        RecorderError::BadName(e)
    }
}

/// The net effect, so far, of the pending changes to one variable. Changes are folded as they
/// come, because a record applies `unset`, `set`, `remove`, `add` in that fixed order: `set(x, 1)`
/// then `unset(x)` must become an unset, not a record whose `set` wins.
#[derive(Clone, Debug)]
enum Change {
    /// The variable ends up with this value (`None`: absent).
    Assign(Option<Value>),
    /// Whatever it holds (absent or a set) becomes `(old \ remove) ∪ add`, which is what a record
    /// with both `remove` and `add` does.
    Delta { remove: SetValue, add: SetValue },
}

/// One record waiting to be shipped, already in its wire form.
#[derive(Debug)]
pub(super) struct Queued {
    pub hlc: Hlc,
    pub line: String,
    /// When it was queued: it waits at most the flush interval.
    pub at: Instant,
}

/// Fixed at start.
#[derive(Debug)]
pub(super) struct Settings {
    pub node: String,
    pub record_pt: bool,
    pub capacity: usize,
    pub policy: BufferPolicy,
    pub max_batch_records: usize,
    pub max_batch_bytes: usize,
    pub flush_interval: Duration,
    pub heartbeat_interval: Option<Duration>,
    pub max_record_bytes: usize,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub shutdown_timeout: Duration,
    pub records_url: reqwest::Url,
    pub nodes_url: reqwest::Url,
    pub token: Option<String>,
}

/// What the calling threads and the shipper share, under one lock.
pub(super) struct State {
    pub clock: HlcClock,
    pending: BTreeMap<VarName, Change>,
    /// Variables holding a non-set value after the committed records, with its kind: what
    /// `add`/`remove` are checked against, so the server never sees one it must reject.
    non_sets: HashMap<VarName, &'static str>,
    pub queue: VecDeque<Queued>,
    pub queued_bytes: usize,
    /// Records taken by the shipper and not yet decided.
    pub in_flight: usize,
    /// Records ever queued, and ever decided (shipped, failed or abandoned); a flush waits for
    /// `decided` to reach the `queued` it saw.
    pub queued: u64,
    pub decided: u64,
    /// The largest `queued` a flush is waiting for: the shipper sends at once while
    /// `decided` is below it.
    pub flush_target: u64,
    /// When the last record was queued: heartbeats are due an interval after it.
    pub last_queued: Instant,
    /// Set by shutdown: ship what is buffered until this instant, then give up.
    pub closing: Option<Instant>,
    pub stats: RecorderStats,
}

impl State {
    /// Records the buffer holds (waiting or in flight).
    pub fn held(&self) -> usize {
        self.queue.len() + self.in_flight
    }

    fn push(&mut self, hlc: Hlc, line: String) {
        let at = Instant::now();
        self.queued_bytes += line.len() + 1;
        self.queue.push_back(Queued { hlc, line, at });
        self.queued += 1;
        self.last_queued = at;
    }

    /// Queues a heartbeat (the shipper calls this when the node has been idle).
    pub fn push_heartbeat(&mut self, node: &str) -> Result<(), HlcError> {
        let hlc = self.clock.now()?;
        self.push(hlc, Record::heartbeat(node, hlc).to_json_line());
        self.stats.heartbeats += 1;
        Ok(())
    }

    /// Takes the next batch off the queue: at least one record, then as many as fit.
    pub fn take_batch(&mut self, max_records: usize, max_bytes: usize) -> Vec<Queued> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(next) = self.queue.front() {
            let size = next.line.len() + 1;
            if !batch.is_empty() && (batch.len() >= max_records || bytes + size > max_bytes) {
                break;
            }
            bytes += size;
            if let Some(q) = self.queue.pop_front() {
                batch.push(q);
            }
        }
        self.queued_bytes -= bytes;
        self.in_flight += batch.len();
        batch
    }

    /// Builds the record of the pending changes, taking them.
    fn take_record(&mut self, node: &str, hlc: Hlc, leave: bool) -> Record {
        let mut rec = Record::heartbeat(node, hlc);
        rec.leave = leave;
        for (var, change) in std::mem::take(&mut self.pending) {
            match change {
                Change::Assign(Some(value)) => rec.set.push((var, Some(value))),
                Change::Assign(None) => rec.unset.push(var),
                Change::Delta { remove, add } => {
                    let remove_empty = remove.is_empty();
                    if !remove_empty {
                        rec.remove.push((var.clone(), remove));
                    }
                    // `add: {x: []}` still matters: an absent variable becomes the empty set.
                    if !add.is_empty() || remove_empty {
                        rec.add.push((var, add));
                    }
                }
            }
        }
        rec
    }

    /// Follows `rec`, which is being queued, in `non_sets`: the server's state of the node as
    /// it will be once `rec` is applied.
    fn note_queued(&mut self, rec: &Record) {
        if rec.leave {
            self.non_sets.clear();
            return;
        }
        for (var, value) in &rec.set {
            match value {
                Some(Value::Set(_)) | None => self.non_sets.remove(var),
                Some(other) => self.non_sets.insert(var.clone(), other.kind_name()),
            };
        }
        for var in rec
            .unset
            .iter()
            .chain(rec.add.iter().map(|(v, _)| v))
            .chain(rec.remove.iter().map(|(v, _)| v))
        {
            self.non_sets.remove(var);
        }
    }
}

pub(super) struct Shared {
    pub settings: Settings,
    pub state: Mutex<State>,
    /// Signalled whenever a batch is decided (room in the buffer, flush progress) and on
    /// shutdown.
    pub changed: Condvar,
    /// Wakes the shipper: first record queued, a full batch, a flush, shutdown.
    pub wake: Notify,
}

impl Shared {
    /// The state, even if a thread panicked while holding it: every update leaves it valid.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Records one node's changes and ships them to a log server (see the [module](super) doc).
///
/// All methods take `&self`; share it between threads with an `Arc`. The changes of all threads
/// go into one pending record, and [`commit`](Recorder::commit) commits whatever is pending.
/// Calls are short and never do I/O, with two exceptions that may wait: `commit`, `leave` and
/// `on_send` (with pending changes) under [`BufferPolicy::Block`] while the buffer is full, and
/// [`flush`](Recorder::flush) / [`shutdown`](Recorder::shutdown) / drop, which wait for the
/// server. Inside async code, run those on a blocking thread (`tokio::task::spawn_blocking`) or
/// use [`BufferPolicy::Drop`].
///
/// Delivery: records reach the server in HLC order, one request at a time. After an unclear
/// failure (the request went out but no answer came back) the shipper asks the server
/// (`GET /v1/nodes`) how far the node's records got and sends only the rest, so a lost answer
/// does not store a batch twice. A restarted node starts a new clock; if it restarts within the
/// maximum drift of a previous run that received stamps from the future, or its wall clock
/// stepped back, the server refuses its first records as out of order (counted as failed)
/// until the clock catches up.
pub struct Recorder {
    shared: Arc<Shared>,
    shipper: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("node", &self.shared.settings.node)
            .field("url", &self.shared.settings.records_url.as_str())
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// Checks the configuration and starts the shipper thread. Does not contact the server:
    /// records are buffered until it answers.
    pub fn start(config: RecorderConfig) -> Result<Recorder, RecorderError> {
        let config_error = |m: String| RecorderError::Config(m);
        // The server's reader decides what a node id may be.
        parse_record(
            Record::heartbeat(config.node.as_str(), Hlc::MIN)
                .to_json_line()
                .as_bytes(),
        )
        .map_err(|e| config_error(format!("bad node id {:?}: {e}", config.node)))?;
        for (name, value) in [
            ("capacity", config.capacity),
            ("max_batch_records", config.max_batch_records),
            ("max_batch_bytes", config.max_batch_bytes),
            ("max_record_bytes", config.max_record_bytes),
        ] {
            if value == 0 {
                return Err(config_error(format!("{name} must be at least 1")));
            }
        }
        // Zero would make the shipper spin.
        for (name, value) in [
            ("heartbeat_interval", config.heartbeat_interval),
            ("retry_initial", Some(config.retry_initial)),
            ("request_timeout", Some(config.request_timeout)),
        ] {
            if value.is_some_and(|d| d.is_zero()) {
                return Err(config_error(format!("{name} must be more than 0")));
            }
        }
        let records_url = endpoint(&config.url, "/v1/records").map_err(config_error)?;
        let nodes_url = endpoint(&config.url, "/v1/nodes").map_err(config_error)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| config_error(format!("cannot start the shipper's runtime: {e}")))?;
        let http = {
            // Some of reqwest's parts look for the runtime they will run on when built.
            let _entered = runtime.enter();
            reqwest::Client::builder()
                .timeout(config.request_timeout)
                .connect_timeout(config.request_timeout)
                // Below the server's 60 s connection idle timeout, so a pooled connection is
                // dropped by the client before the server closes it under a request.
                .pool_idle_timeout(Duration::from_secs(20))
                // A redirected POST would turn into a GET and lose the batch.
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| config_error(format!("cannot build the HTTP client: {e}")))?
        };
        let now = Instant::now();
        let shared = Arc::new(Shared {
            settings: Settings {
                node: config.node,
                record_pt: config.record_pt,
                capacity: config.capacity,
                policy: config.policy,
                max_batch_records: config.max_batch_records,
                max_batch_bytes: config.max_batch_bytes,
                flush_interval: config.flush_interval,
                heartbeat_interval: config.heartbeat_interval,
                max_record_bytes: config.max_record_bytes,
                retry_initial: config.retry_initial,
                retry_max: config.retry_max.max(config.retry_initial),
                shutdown_timeout: config.shutdown_timeout,
                records_url,
                nodes_url,
                token: config.token,
            },
            state: Mutex::new(State {
                clock: config.clock,
                pending: BTreeMap::new(),
                non_sets: HashMap::new(),
                queue: VecDeque::new(),
                queued_bytes: 0,
                in_flight: 0,
                queued: 0,
                decided: 0,
                flush_target: 0,
                last_queued: now,
                closing: None,
                stats: RecorderStats::default(),
            }),
            changed: Condvar::new(),
            wake: Notify::new(),
        });
        let thread = std::thread::Builder::new()
            .name("rql-shipper".to_string())
            .spawn({
                let shared = Arc::clone(&shared);
                move || shipper::run(shared, runtime, http)
            })
            .map_err(|e| config_error(format!("cannot start the shipper thread: {e}")))?;
        Ok(Recorder {
            shared,
            shipper: Mutex::new(Some(thread)),
        })
    }

    /// The node id of every record.
    pub fn node(&self) -> &str {
        &self.shared.settings.node
    }

    /// Assigns `value` to `var` (`log.key`) in the pending record.
    pub fn set(&self, var: &str, value: impl IntoValue) -> Result<(), RecorderError> {
        let var = VarName::parse(var)?;
        let value = value
            .into_value()
            .and_then(|v| value::check(&v).map(|()| v))
            .map_err(|reason| bad_value(&var, reason))?;
        let mut state = self.open_state()?;
        state.pending.insert(var, Change::Assign(Some(value)));
        Ok(())
    }

    /// Removes `var` from the node (it reads as NULL).
    pub fn unset(&self, var: &str) -> Result<(), RecorderError> {
        let var = VarName::parse(var)?;
        let mut state = self.open_state()?;
        state.pending.insert(var, Change::Assign(None));
        Ok(())
    }

    /// Adds elements to the set variable `var` (an absent variable counts as the empty set).
    pub fn add<T: IntoValue>(
        &self,
        var: &str,
        elems: impl IntoIterator<Item = T>,
    ) -> Result<(), RecorderError> {
        self.change_set(var, "add", elems)
    }

    /// Removes elements from the set variable `var` (an absent variable becomes the empty set).
    pub fn remove<T: IntoValue>(
        &self,
        var: &str,
        elems: impl IntoIterator<Item = T>,
    ) -> Result<(), RecorderError> {
        self.change_set(var, "remove", elems)
    }

    fn change_set<T: IntoValue>(
        &self,
        var: &str,
        op: &'static str,
        elems: impl IntoIterator<Item = T>,
    ) -> Result<(), RecorderError> {
        let var = VarName::parse(var)?;
        let elems = set_of(elems)
            .and_then(|s| value::check_set(&s).map(|()| s))
            .map_err(|reason| bad_value(&var, reason))?;
        let adding = op == "add";
        let mut guard = self.open_state()?;
        let State {
            pending, non_sets, ..
        } = &mut *guard;
        let not_a_set = |var: &VarName, found| RecorderError::NotASet {
            op,
            var: var.to_string(),
            found,
        };
        match pending.entry(var) {
            Entry::Occupied(mut slot) => match slot.get_mut() {
                Change::Assign(Some(Value::Set(set))) if adding => set.union_with(&elems),
                Change::Assign(Some(Value::Set(set))) => set.difference_with(&elems),
                Change::Assign(Some(other)) => {
                    let found = other.kind_name();
                    return Err(not_a_set(slot.key(), found));
                }
                // Absent: `add` makes it the elements, `remove` the empty set (SPEC §1.3).
                Change::Assign(None) => {
                    let set = if adding { elems } else { SetValue::new() };
                    slot.insert(Change::Assign(Some(Value::Set(set))));
                }
                // (S \ R) ∪ A, then ∪ E: A grows. (S \ R) ∪ A, then \ E: both R and A change.
                Change::Delta { add, .. } if adding => add.union_with(&elems),
                Change::Delta { remove, add } => {
                    remove.union_with(&elems);
                    add.difference_with(&elems);
                }
            },
            Entry::Vacant(slot) => {
                if let Some(found) = non_sets.get(slot.key()) {
                    return Err(not_a_set(slot.key(), found));
                }
                let (remove, add) = if adding {
                    (SetValue::new(), elems)
                } else {
                    (elems, SetValue::new())
                };
                slot.insert(Change::Delta { remove, add });
            }
        }
        Ok(())
    }

    /// Commits the pending changes as one record with one HLC tick and queues it. `Ok(None)`
    /// if nothing was pending (another thread may have committed it). Under
    /// [`BufferPolicy::Block`] this waits while the buffer is full.
    pub fn commit(&self) -> Result<Option<Hlc>, RecorderError> {
        self.commit_record(false)
    }

    /// Commits the pending changes with `leave: true` (SPEC §1.3): from this record on the node
    /// is in no cut and its state is cleared; its next record brings it back with an empty
    /// state. For a node that stops for good (a restarted process sends again as new).
    pub fn leave(&self) -> Result<Hlc, RecorderError> {
        // With `leave` there is always a record, so there is always a stamp.
        self.commit_record(true)?.ok_or(RecorderError::Closed)
    }

    /// Stamps a send event: returns the timestamp the outgoing message must carry (e.g. as
    /// [`Hlc::packed`]). Pending changes are committed first and the send takes that record's
    /// stamp, so whatever the receiver does after the message is ordered after them. If that
    /// commit is dropped (full buffer under [`BufferPolicy::Drop`]) or the recorder is shut
    /// down, the clock still ticks and the stamp is still valid: message passing never fails
    /// because of the recorder, except on a clock error.
    pub fn on_send(&self) -> Result<Hlc, RecorderError> {
        match self.commit_record(false) {
            Ok(Some(hlc)) => return Ok(hlc),
            Ok(None) | Err(RecorderError::Dropped | RecorderError::Closed) => {}
            Err(e) => return Err(e),
        }
        Ok(self.shared.lock().clock.now()?)
    }

    /// Merges the timestamp a received message carried (SPEC §1.2 receive rule) and returns the
    /// receive event's stamp; changes committed afterwards are ordered after the send. A stamp
    /// more than the clock's maximum drift ahead of local physical time is refused
    /// ([`HlcError::DriftExceeded`]) and leaves the clock as it was.
    pub fn on_receive(&self, remote: Hlc) -> Result<Hlc, RecorderError> {
        Ok(self.shared.lock().clock.update(remote)?)
    }

    /// The last timestamp the node's clock issued.
    pub fn last_hlc(&self) -> Hlc {
        self.shared.lock().clock.last()
    }

    /// Waits until every record committed before the call is acknowledged or refused by the
    /// server, sending at once instead of waiting for the flush interval. Blocks the calling
    /// thread.
    pub fn flush(&self, timeout: Duration) -> Result<(), RecorderError> {
        let deadline = later(Instant::now(), timeout);
        let mut state = self.shared.lock();
        let target = state.queued;
        if state.decided >= target {
            return Ok(());
        }
        state.flush_target = state.flush_target.max(target);
        self.shared.wake.notify_one();
        loop {
            if state.decided >= target {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(RecorderError::FlushTimeout {
                    unfinished: target - state.decided,
                });
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> RecorderStats {
        let state = self.shared.lock();
        let mut stats = state.stats.clone();
        stats.buffered = state.held() as u64;
        stats
    }

    /// Stops taking changes (later calls give [`RecorderError::Closed`]; `on_send` and
    /// `on_receive` keep stamping), ships what is buffered — trying for at most
    /// [`RecorderConfig::shutdown_timeout`] — and stops the shipper. Uncommitted changes are
    /// discarded. Blocks the calling thread; idempotent; drop calls it.
    pub fn shutdown(&self) -> RecorderStats {
        {
            let mut state = self.shared.lock();
            if state.closing.is_none() {
                state.closing = Some(later(Instant::now(), self.shared.settings.shutdown_timeout));
            }
        }
        // Wake commits waiting for room (they now fail) and the shipper.
        self.shared.changed.notify_all();
        self.shared.wake.notify_one();
        let thread = self
            .shipper
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            if thread.join().is_err() {
                tracing::error!(
                    node = self.shared.settings.node,
                    "the recorder's shipper thread panicked"
                );
            }
        }
        self.stats()
    }

    /// The state, unless the recorder is shut down.
    fn open_state(&self) -> Result<MutexGuard<'_, State>, RecorderError> {
        let state = self.shared.lock();
        if state.closing.is_some() {
            return Err(RecorderError::Closed);
        }
        Ok(state)
    }

    fn commit_record(&self, leave: bool) -> Result<Option<Hlc>, RecorderError> {
        let settings = &self.shared.settings;
        let mut state = self.open_state()?;
        loop {
            if state.closing.is_some() {
                return Err(RecorderError::Closed);
            }
            if state.pending.is_empty() && !leave {
                return Ok(None);
            }
            if state.held() < settings.capacity {
                break;
            }
            match settings.policy {
                BufferPolicy::Drop => {
                    state.pending.clear();
                    state.stats.dropped += 1;
                    return Err(RecorderError::Dropped);
                }
                // Waiting before stamping (not after) keeps the queue in HLC order: whoever
                // stamps next queues in the same critical section.
                BufferPolicy::Block => {
                    state = self
                        .shared
                        .changed
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            }
        }
        // On a clock error nothing is taken: the changes stay pending for a later commit.
        let (hlc, pt) = state.clock.now_with_physical()?;
        let mut record = state.take_record(&settings.node, hlc, leave);
        if settings.record_pt {
            record.pt = Some(pt);
        }
        let line = record.to_json_line();
        if line.len() > settings.max_record_bytes {
            return Err(RecorderError::RecordTooLarge {
                bytes: line.len(),
                max: settings.max_record_bytes,
            });
        }
        // Every part was checked on the way in; this is the server's own reader on the whole
        // line, so a bad record can never reach (and get a whole batch refused by) the server.
        if let Err(reason) = parse_record(line.as_bytes()) {
            return Err(RecorderError::BadValue {
                var: "the record".to_string(),
                reason,
            });
        }
        state.note_queued(&record);
        state.push(hlc, line);
        state.stats.committed += 1;
        // The shipper needs to know when a flush deadline starts (first record) or a batch is
        // full; other commits need not wake it.
        if state.queue.len() == 1
            || state.queue.len() == settings.max_batch_records
            || state.queued_bytes >= settings.max_batch_bytes
        {
            self.shared.wake.notify_one();
        }
        Ok(Some(hlc))
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// `at + d`, saturating instead of panicking: durations come from the configuration, and
/// `Duration::MAX` is a natural way to say "forever".
pub(super) fn later(at: Instant, d: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(10 * 365 * 86_400);
    at.checked_add(d)
        .or_else(|| at.checked_add(FAR))
        .unwrap_or(at)
}

fn bad_value(var: &VarName, reason: String) -> RecorderError {
    RecorderError::BadValue {
        var: var.to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ndjson::parse_record;
    use crate::state::NodeState;

    /// A recorder pointed at a port nobody listens on, whose clock the test drives, that never
    /// sends anything during a test (long flush interval, no heartbeats).
    fn offline() -> Recorder {
        let mut config = RecorderConfig::new("n1", "http://127.0.0.1:9");
        config.clock = HlcClock::new(|| 1000);
        config.flush_interval = Duration::from_secs(3600);
        config.heartbeat_interval = None;
        config.shutdown_timeout = Duration::ZERO;
        Recorder::start(config).unwrap()
    }

    fn queued(r: &Recorder) -> Vec<Record> {
        let state = r.shared.lock();
        state
            .queue
            .iter()
            .map(|q| parse_record(q.line.as_bytes()).unwrap())
            .collect()
    }

    fn last_line(r: &Recorder) -> String {
        r.shared.lock().queue.back().unwrap().line.clone()
    }

    #[test]
    fn one_record_per_commit_with_one_tick() {
        let r = offline();
        assert_eq!(r.commit().unwrap(), None, "nothing pending");
        r.set("inv.a", 5).unwrap();
        r.set("inv.b", "x").unwrap();
        r.add("zk.m", ["n1", "n2"]).unwrap();
        let h = r.commit().unwrap().unwrap();
        assert_eq!(h, Hlc::new(1000, 0).unwrap());
        assert_eq!(
            last_line(&r),
            r#"{"node":"n1","hlc":[1000,0],"set":{"inv.a":5,"inv.b":"x"},"add":{"zk.m":["n1","n2"]}}"#
        );
        r.unset("inv.a").unwrap();
        r.remove("zk.m", ["n1"]).unwrap();
        assert_eq!(r.commit().unwrap(), Some(Hlc::new(1000, 1).unwrap()));
        assert_eq!(
            last_line(&r),
            r#"{"node":"n1","hlc":[1000,1],"unset":["inv.a"],"remove":{"zk.m":["n1"]}}"#
        );
        let stats = r.stats();
        assert_eq!((stats.committed, stats.buffered), (2, 2));
    }

    /// Folding changes into one record must give the state that applying them one by one
    /// gives.
    #[test]
    fn folded_changes_equal_sequential_application() {
        type Op<'a> = (&'a str, Option<Vec<i64>>);
        let scripts: Vec<Vec<Op>> = vec![
            vec![("set", Some(vec![1])), ("unset", None)],
            vec![("unset", None), ("set", Some(vec![1]))],
            vec![("add", Some(vec![1, 2])), ("remove", Some(vec![2, 3]))],
            vec![("remove", Some(vec![1])), ("add", Some(vec![1]))],
            vec![
                ("add", Some(vec![1])),
                ("remove", Some(vec![1])),
                ("add", Some(vec![])),
            ],
            vec![("unset", None), ("remove", Some(vec![5]))],
            vec![("unset", None), ("add", Some(vec![5]))],
            vec![
                ("set", Some(vec![1, 2])),
                ("remove", Some(vec![1])),
                ("add", Some(vec![3])),
            ],
            vec![("remove", Some(vec![]))],
        ];
        for initial in [None, Some(vec![1, 4]), Some(vec![])] {
            for script in &scripts {
                let r = offline();
                let mut expected = NodeState::new();
                let var = VarName::parse("s.x").unwrap();
                let set = |v: &[i64]| Value::Set(set_of(v.iter().copied()).unwrap());
                if let Some(init) = &initial {
                    r.set("s.x", set(init)).unwrap();
                    r.commit().unwrap();
                }
                for rec in queued(&r) {
                    expected.apply(&rec).unwrap();
                }
                let mut actual = expected.clone();
                for (op, arg) in script {
                    let arg = arg.clone().unwrap_or_default();
                    let mut one = Record::heartbeat("n1", Hlc::MIN);
                    match *op {
                        "set" => {
                            r.set("s.x", set(&arg)).unwrap();
                            one.set.push((var.clone(), Some(set(&arg))));
                        }
                        "unset" => {
                            r.unset("s.x").unwrap();
                            one.unset.push(var.clone());
                        }
                        "add" => {
                            r.add("s.x", arg.clone()).unwrap();
                            one.add.push((var.clone(), set_of(arg).unwrap()));
                        }
                        _ => {
                            r.remove("s.x", arg.clone()).unwrap();
                            one.remove.push((var.clone(), set_of(arg).unwrap()));
                        }
                    }
                    expected.apply(&one).unwrap();
                }
                r.commit().unwrap();
                let folded = queued(&r).pop().unwrap();
                actual.apply(&folded).unwrap();
                assert_eq!(
                    actual,
                    expected,
                    "initial {initial:?}, script {script:?}, record {}",
                    folded.to_json_line()
                );
            }
        }
    }

    #[test]
    fn add_on_a_non_set_is_refused_at_once() {
        let r = offline();
        r.set("inv.a", 5).unwrap();
        let err = r.add("inv.a", [1]).unwrap_err();
        assert!(
            matches!(
                err,
                RecorderError::NotASet {
                    op: "add",
                    found: "int",
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "cannot add elements: inv.a holds a int, not a set (set it to a set, or unset it, first)"
        );
        r.commit().unwrap();
        // Checked against what was committed, too.
        let err = r.remove("inv.a", [1]).unwrap_err();
        assert!(matches!(err, RecorderError::NotASet { op: "remove", .. }));
        // Unsetting makes it a fine target again; leaving clears everything.
        r.unset("inv.a").unwrap();
        r.add("inv.a", [1]).unwrap();
        r.set("inv.b", true).unwrap();
        r.commit().unwrap();
        r.set("inv.c", 1.5).unwrap();
        r.leave().unwrap();
        r.add("inv.c", [1]).unwrap();
        r.add("inv.b", [1]).unwrap();
    }

    #[test]
    fn bad_names_and_values_are_refused() {
        let r = offline();
        assert!(matches!(r.set("inva", 1), Err(RecorderError::BadName(_))));
        assert!(matches!(r.unset("a.b.c"), Err(RecorderError::BadName(_))));
        let err = r.set("inv.a", f64::NAN).unwrap_err();
        assert_eq!(err.to_string(), "bad value for inv.a: non-finite float NaN");
        assert!(r.set("inv.a", Value::Float(f64::INFINITY)).is_err());
        assert!(r.add("inv.s", [Value::Float(f64::NAN)]).is_err());
        assert!(r.add("inv.s", vec![vec![1]]).is_err());
        assert_eq!(r.commit().unwrap(), None, "nothing bad got in");
    }

    #[test]
    fn bad_configurations_are_refused() {
        let check = |edit: &dyn Fn(&mut RecorderConfig), expected: &str| {
            let mut config = RecorderConfig::new("n1", "http://127.0.0.1:9");
            edit(&mut config);
            let err = Recorder::start(config).unwrap_err();
            assert!(err.to_string().contains(expected), "{err}");
        };
        check(&|c| c.node = String::new(), "bad node id");
        check(&|c| c.node = "x".repeat(256), "bad node id");
        check(&|c| c.url = "localhost:7400".into(), "bad server URL");
        check(&|c| c.capacity = 0, "capacity must be at least 1");
        check(&|c| c.max_batch_records = 0, "max_batch_records");
        check(
            &|c| c.heartbeat_interval = Some(Duration::ZERO),
            "heartbeat_interval",
        );
        check(&|c| c.retry_initial = Duration::ZERO, "retry_initial");
        let mut config = RecorderConfig::new("n1", "http://h:1");
        config.token = Some("s3cret".into());
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn records_longer_than_the_limit_are_refused_and_discarded() {
        let mut config = RecorderConfig::new("n1", "http://127.0.0.1:9");
        config.max_record_bytes = 60;
        config.heartbeat_interval = None;
        config.shutdown_timeout = Duration::ZERO;
        let r = Recorder::start(config).unwrap();
        r.set("inv.a", "x".repeat(100)).unwrap();
        assert!(matches!(
            r.commit(),
            Err(RecorderError::RecordTooLarge { max: 60, .. })
        ));
        assert_eq!(r.commit().unwrap(), None);
    }

    #[test]
    fn clock_errors_keep_the_pending_changes() {
        let mut config = RecorderConfig::new("n1", "http://127.0.0.1:9");
        config.clock = HlcClock::new(|| 1 << 48);
        config.heartbeat_interval = None;
        config.shutdown_timeout = Duration::ZERO;
        let r = Recorder::start(config).unwrap();
        r.set("inv.a", 1).unwrap();
        assert!(matches!(
            r.commit(),
            Err(RecorderError::Clock(HlcError::PhysicalOutOfRange(_)))
        ));
        assert!(!r.shared.lock().pending.is_empty());
        assert!(matches!(r.on_send(), Err(RecorderError::Clock(_))));
    }

    #[test]
    fn drop_policy_counts_and_send_still_stamps() {
        let mut config = RecorderConfig::new("n1", "http://127.0.0.1:9");
        config.clock = HlcClock::new(|| 1000);
        config.capacity = 2;
        config.policy = BufferPolicy::Drop;
        config.heartbeat_interval = None;
        config.flush_interval = Duration::from_secs(3600);
        config.shutdown_timeout = Duration::ZERO;
        let r = Recorder::start(config).unwrap();
        for i in 0..2 {
            r.set("inv.a", i).unwrap();
            r.commit().unwrap();
        }
        r.set("inv.a", 9).unwrap();
        assert!(matches!(r.commit(), Err(RecorderError::Dropped)));
        assert_eq!(r.commit().unwrap(), None, "the dropped changes are gone");
        r.set("inv.a", 10).unwrap();
        let stamp = r.on_send().unwrap();
        assert!(stamp > Hlc::new(1000, 1).unwrap());
        let stats = r.stats();
        assert_eq!((stats.committed, stats.dropped), (2, 2));
    }

    #[test]
    fn after_shutdown_changes_are_refused_but_messages_are_stamped() {
        let r = offline();
        r.set("inv.a", 1).unwrap();
        r.commit().unwrap();
        let stats = r.shutdown();
        // Nobody listens and there was no time to try: abandoned.
        assert_eq!(
            (stats.committed, stats.abandoned, stats.buffered),
            (1, 1, 0)
        );
        assert!(matches!(r.set("inv.a", 2), Err(RecorderError::Closed)));
        assert!(matches!(r.commit(), Err(RecorderError::Closed)));
        let sent = r.on_send().unwrap();
        assert!(r.on_receive(sent).unwrap() > sent);
        assert_eq!(r.shutdown(), stats, "idempotent");
        assert!(r.flush(Duration::ZERO).is_ok(), "nothing left undecided");
    }

    #[test]
    fn pt_is_the_physical_reading_not_the_hlc() {
        let mut config = RecorderConfig::new("n1", "http://127.0.0.1:9");
        config.clock = HlcClock::new(|| 1000);
        config.record_pt = true;
        config.flush_interval = Duration::from_secs(3600);
        config.heartbeat_interval = None;
        config.shutdown_timeout = Duration::ZERO;
        let r = Recorder::start(config).unwrap();
        // A received stamp pushes the HLC ahead of the physical clock; pt stays the reading.
        r.on_receive(Hlc::new(1200, 0).unwrap()).unwrap();
        r.set("inv.a", 1).unwrap();
        assert_eq!(r.commit().unwrap(), Some(Hlc::new(1200, 2).unwrap()));
        assert_eq!(
            last_line(&r),
            r#"{"node":"n1","hlc":[1200,2],"set":{"inv.a":1},"pt":1000}"#
        );
        // Off by default (the other tests' exact lines have none).
        let r = offline();
        r.set("inv.a", 1).unwrap();
        r.commit().unwrap();
        assert!(!last_line(&r).contains("pt"));
    }

    #[test]
    fn receive_beyond_drift_is_refused() {
        let r = offline();
        let far = Hlc::new(1000 + 501, 0).unwrap();
        assert!(matches!(
            r.on_receive(far),
            Err(RecorderError::Clock(HlcError::DriftExceeded { .. }))
        ));
        assert_eq!(r.last_hlc(), Hlc::MIN);
        let near = Hlc::new(1400, 3).unwrap();
        assert_eq!(r.on_receive(near).unwrap(), Hlc::new(1400, 4).unwrap());
        r.set("inv.a", 1).unwrap();
        assert_eq!(r.commit().unwrap(), Some(Hlc::new(1400, 5).unwrap()));
    }
}
