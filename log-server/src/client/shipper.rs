//! The recorder's background shipper: one std thread running its own current-thread tokio
//! runtime, so the recorder works the same from plain threads and from inside any async runtime
//! (it never runs on, or needs, the program's runtime).
//!
//! It takes batches off the queue (full ones at once, others after the flush interval), POSTs
//! them as NDJSON, and decides each record: shipped (200), failed (a 4xx: the server will never
//! take it), or — after connection errors, timeouts, 5xx, 408 and 429 — tries again with
//! exponential backoff and jitter. Only one batch is in flight, so records arrive in queue
//! (HLC) order. While the queue is empty it queues a heartbeat every heartbeat interval.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::CONTENT_TYPE;
use reqwest::StatusCode;
use serde::Deserialize;
use tokio::runtime::Runtime;

use super::error_body::ErrorBody;
use super::error_chain;
use super::recorder::{later, Queued, Shared, State};
use crate::hlc::Hlc;

pub(super) fn run(shared: Arc<Shared>, runtime: Runtime, http: reqwest::Client) {
    let mut shipper = Shipper {
        shared,
        http,
        failing: false,
    };
    runtime.block_on(shipper.run());
}

struct Shipper {
    shared: Arc<Shared>,
    http: reqwest::Client,
    /// Whether the last attempt failed, so an outage is logged once, not per retry.
    failing: bool,
}

enum Step {
    Send(Vec<Queued>),
    /// Until the instant (a flush or heartbeat deadline), or until woken.
    Sleep(Option<Instant>),
    Exit,
}

/// How one POST went.
enum Posted {
    Stored,
    /// Refused for good. `lines` are the 1-based lines of the body the server named as bad
    /// (empty: the whole batch).
    Refused {
        message: String,
        lines: Vec<usize>,
    },
    /// Worth trying again. `unsure`: the server may have stored the batch (the request was
    /// sent but no answer came), so ask it before sending again.
    Retry {
        message: String,
        unsure: bool,
    },
}

/// What the shipper reads of `GET /v1/nodes`.
#[derive(Deserialize)]
struct NodesAnswer {
    nodes: Vec<NodeLast>,
}

#[derive(Deserialize)]
struct NodeLast {
    node: String,
    last_hlc: (u64, u64),
}

impl Shipper {
    async fn run(&mut self) {
        loop {
            match self.next_step() {
                Step::Send(batch) => self.ship(batch).await,
                Step::Sleep(until) => {
                    // A wake-up between `next_step` and here is not lost: `Notify` keeps one
                    // permit for the next `notified()`.
                    let woken = self.shared.wake.notified();
                    match until {
                        Some(at) => {
                            tokio::select! {
                                _ = woken => {}
                                _ = tokio::time::sleep_until(at.into()) => {}
                            }
                        }
                        None => woken.await,
                    }
                }
                Step::Exit => return,
            }
        }
    }

    fn next_step(&self) -> Step {
        let settings = &self.shared.settings;
        let now = Instant::now();
        let mut state = self.shared.lock();
        if let Some(deadline) = state.closing {
            if state.queue.is_empty() {
                return Step::Exit;
            }
            if now >= deadline {
                self.abandon_queue(&mut state);
                return Step::Exit;
            }
            return Step::Send(
                state.take_batch(settings.max_batch_records, settings.max_batch_bytes),
            );
        }
        if let Some(first) = state.queue.front() {
            let due = later(first.at, settings.flush_interval);
            if now >= due
                || state.queue.len() >= settings.max_batch_records
                || state.queued_bytes >= settings.max_batch_bytes
                || state.flush_target > state.decided
            {
                return Step::Send(
                    state.take_batch(settings.max_batch_records, settings.max_batch_bytes),
                );
            }
            return Step::Sleep(Some(due));
        }
        let Some(every) = settings.heartbeat_interval else {
            return Step::Sleep(None);
        };
        let due = later(state.last_queued, every);
        if now < due {
            return Step::Sleep(Some(due));
        }
        match state.push_heartbeat(&settings.node) {
            Ok(()) => {
                Step::Send(state.take_batch(settings.max_batch_records, settings.max_batch_bytes))
            }
            Err(e) => {
                // Counter overflow clears within a millisecond; a broken physical clock does
                // not, so try again only an interval later.
                let message = format!("cannot stamp a heartbeat: {e}");
                tracing::warn!(node = settings.node, "{message}");
                state.stats.last_error = Some(message);
                state.last_queued = now;
                Step::Sleep(Some(later(now, every)))
            }
        }
    }

    /// Shutdown ran out of time: what is still queued is given up.
    fn abandon_queue(&self, state: &mut State) {
        let left = state.queue.len();
        state.queue.clear();
        state.queued_bytes = 0;
        state.stats.abandoned += left as u64;
        state.decided += left as u64;
        tracing::warn!(
            node = self.shared.settings.node,
            "shutdown: gave up on {left} records the server has not acknowledged"
        );
        self.shared.changed.notify_all();
    }

    /// Sends one batch until every record in it is decided, or shutdown's deadline passes.
    async fn ship(&mut self, mut batch: Vec<Queued>) {
        let shared = Arc::clone(&self.shared);
        let settings = &shared.settings;
        let taken = batch.len();
        let mut backoff = settings.retry_initial;
        let mut unsure = false;
        while !batch.is_empty() {
            if unsure {
                match self.stored_up_to().await {
                    Ok(last) => {
                        // The node's records have strictly increasing stamps and batches are
                        // stored whole, so those up to the node's last stored stamp are in.
                        let stored = batch
                            .iter()
                            .take_while(|q| last.is_some_and(|l| q.hlc <= l))
                            .count();
                        if stored > 0 {
                            batch.drain(..stored);
                            self.shared.lock().stats.shipped += stored as u64;
                            self.recovered();
                        }
                        unsure = false;
                    }
                    Err(message) => {
                        if !self.retry_wait(&mut backoff, message).await {
                            break;
                        }
                    }
                }
                continue;
            }
            match self.post(&batch).await {
                Posted::Stored => {
                    let mut state = self.shared.lock();
                    state.stats.shipped += batch.len() as u64;
                    state.stats.batches += 1;
                    drop(state);
                    batch.clear();
                    self.recovered();
                }
                Posted::Refused { message, lines } => {
                    let named: BTreeSet<usize> = lines
                        .into_iter()
                        .filter(|line| (1..=batch.len()).contains(line))
                        .collect();
                    let failed = if named.is_empty() || named.len() >= batch.len() {
                        std::mem::take(&mut batch).len()
                    } else {
                        // The server stores a batch whole or not at all, and names each bad
                        // line: the others are fine, so send them again without the bad ones.
                        batch = std::mem::take(&mut batch)
                            .into_iter()
                            .enumerate()
                            .filter(|(i, _)| !named.contains(&(i + 1)))
                            .map(|(_, q)| q)
                            .collect();
                        named.len()
                    };
                    let message = format!("the server refused {failed} records: {message}");
                    tracing::warn!(node = settings.node, "{message}");
                    let mut state = self.shared.lock();
                    state.stats.failed += failed as u64;
                    state.stats.last_error = Some(message);
                }
                Posted::Retry {
                    message,
                    unsure: maybe_stored,
                } => {
                    unsure |= maybe_stored;
                    if !self.retry_wait(&mut backoff, message).await {
                        break;
                    }
                }
            }
        }
        let mut state = self.shared.lock();
        if !batch.is_empty() {
            state.stats.abandoned += batch.len() as u64;
            tracing::warn!(
                node = settings.node,
                "shutdown: gave up on {} records the server has not acknowledged",
                batch.len()
            );
        }
        // The batch counts as decided only once all of it is, so a flush waiting for its
        // first records also waits for the rest.
        state.in_flight -= taken;
        state.decided += taken as u64;
        drop(state);
        self.shared.changed.notify_all();
    }

    async fn post(&self, batch: &[Queued]) -> Posted {
        let settings = &self.shared.settings;
        let mut body = String::with_capacity(batch.iter().map(|q| q.line.len() + 1).sum());
        for q in batch {
            body.push_str(&q.line);
            body.push('\n');
        }
        let mut request = self
            .http
            .post(settings.records_url.clone())
            .header(CONTENT_TYPE, "application/x-ndjson")
            .body(body);
        if let Some(token) = &settings.token {
            request = request.bearer_auth(token);
        }
        let response = match self.before_deadline(request.send()).await {
            Some(Ok(response)) => response,
            Some(Err(e)) if e.is_builder() => {
                return Posted::Refused {
                    message: error_chain(&e),
                    lines: Vec::new(),
                }
            }
            // Only a failed connect is sure to have sent nothing.
            Some(Err(e)) => {
                return Posted::Retry {
                    message: error_chain(&e),
                    unsure: !e.is_connect(),
                }
            }
            None => {
                return Posted::Retry {
                    message: "shutdown timeout reached while waiting for the server".into(),
                    unsure: true,
                }
            }
        };
        let status = response.status();
        // Read the answer in any case: only then can the connection be reused.
        let answer = self
            .before_deadline(response.bytes())
            .await
            .and_then(Result::ok)
            .unwrap_or_default();
        if status.is_success() {
            return Posted::Stored;
        }
        let error = ErrorBody::parse(&answer);
        let message = format!("HTTP {}: {}", status.as_u16(), error.describe());
        if is_retryable(status) {
            Posted::Retry {
                message,
                // A gateway's timeout or bad answer says nothing of what the server did.
                unsure: matches!(
                    status,
                    StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT
                ),
            }
        } else {
            Posted::Refused {
                message,
                lines: error.lines,
            }
        }
    }

    /// The node's last stored stamp according to the server (`None`: it has none). A server
    /// that refuses to say (a 4xx) counts as `None`: the batch is sent again and its answer
    /// decides.
    async fn stored_up_to(&self) -> Result<Option<Hlc>, String> {
        let settings = &self.shared.settings;
        let mut request = self.http.get(settings.nodes_url.clone());
        if let Some(token) = &settings.token {
            request = request.bearer_auth(token);
        }
        let deadline = || "shutdown timeout reached while waiting for the server".to_string();
        let response = self
            .before_deadline(request.send())
            .await
            .ok_or_else(deadline)?
            .map_err(|e| error_chain(&e))?;
        let status = response.status();
        let body = self
            .before_deadline(response.bytes())
            .await
            .ok_or_else(deadline)?
            .map_err(|e| error_chain(&e))?;
        if !status.is_success() {
            let message = format!(
                "HTTP {} from /v1/nodes: {}",
                status.as_u16(),
                ErrorBody::parse(&body).describe()
            );
            return if is_retryable(status) {
                Err(message)
            } else {
                Ok(None)
            };
        }
        let answer: NodesAnswer = serde_json::from_slice(&body)
            .map_err(|e| format!("unexpected answer from /v1/nodes: {e}"))?;
        match answer.nodes.into_iter().find(|n| n.node == settings.node) {
            None => Ok(None),
            Some(n) => Hlc::new(n.last_hlc.0, n.last_hlc.1)
                .map(Some)
                .map_err(|e| format!("unexpected answer from /v1/nodes: {e}")),
        }
    }

    /// Runs `fut` to completion, or until shutdown's deadline if shutdown starts meanwhile
    /// (`None`), so a shutdown never waits for a whole request timeout beyond its own.
    async fn before_deadline<F: Future>(&self, fut: F) -> Option<F::Output> {
        tokio::pin!(fut);
        loop {
            let closing = self.shared.lock().closing;
            match closing {
                Some(deadline) => {
                    return tokio::time::timeout_at(deadline.into(), fut.as_mut())
                        .await
                        .ok()
                }
                None => {
                    tokio::select! {
                        out = fut.as_mut() => return Some(out),
                        // Any wake-up may be shutdown; the main loop re-reads the state after
                        // this, so consuming one here loses nothing.
                        _ = self.shared.wake.notified() => {}
                    }
                }
            }
        }
    }

    /// Counts a failed attempt and waits before the next. `false`: shutdown's deadline passed,
    /// give up.
    async fn retry_wait(&mut self, backoff: &mut Duration, message: String) -> bool {
        let shared = Arc::clone(&self.shared);
        let settings = &shared.settings;
        if self.failing {
            tracing::debug!(node = settings.node, "retrying: {message}");
        } else {
            tracing::warn!(
                node = settings.node,
                "cannot ship to {}: {message}; retrying with backoff",
                settings.records_url
            );
            self.failing = true;
        }
        {
            let mut state = self.shared.lock();
            state.stats.retries += 1;
            state.stats.last_error = Some(message);
        }
        let until = later(Instant::now(), jittered(*backoff));
        *backoff = backoff.saturating_mul(2).min(settings.retry_max);
        let (mut was_closing, mut was_flushing) = self.urgency();
        loop {
            let closing = self.shared.lock().closing;
            let now = Instant::now();
            if closing.is_some_and(|deadline| now >= deadline) {
                return false;
            }
            if now >= until {
                return true;
            }
            let wake_at = closing.map_or(until, |deadline| deadline.min(until));
            tokio::select! {
                _ = tokio::time::sleep_until(wake_at.into()) => {}
                _ = self.shared.wake.notified() => {
                    // A new flush or the start of shutdown wants the records out now: one
                    // attempt at once. Other wake-ups (commits) do not shorten the backoff.
                    let (closing, flushing) = self.urgency();
                    if (closing && !was_closing) || (flushing && !was_flushing) {
                        return true;
                    }
                    (was_closing, was_flushing) = (closing, flushing);
                }
            }
        }
    }

    /// Whether shutdown has started, and whether a flush is waiting.
    fn urgency(&self) -> (bool, bool) {
        let state = self.shared.lock();
        (state.closing.is_some(), state.flush_target > state.decided)
    }

    fn recovered(&mut self) {
        if self.failing {
            tracing::info!(
                node = self.shared.settings.node,
                "shipping to {} again",
                self.shared.settings.records_url
            );
            self.failing = false;
        }
    }
}

/// 408 (the body came too slowly), 429 and 5xx: the server stored nothing and may take the
/// batch later. Other 4xx are about the request itself and would fail again.
fn is_retryable(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
}

/// Between half the backoff and all of it, so nodes that lost the same server do not all come
/// back at the same instant.
fn jittered(backoff: Duration) -> Duration {
    let half = u64::try_from(backoff.as_nanos() / 2).unwrap_or(u64::MAX / 2);
    backoff - Duration::from_nanos(fastrand::u64(0..=half))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_statuses() {
        for code in [500, 502, 503, 504, 408, 429] {
            assert!(is_retryable(StatusCode::from_u16(code).unwrap()), "{code}");
        }
        for code in [400, 401, 403, 404, 409, 413, 415] {
            assert!(!is_retryable(StatusCode::from_u16(code).unwrap()), "{code}");
        }
    }

    #[test]
    fn jitter_stays_in_the_upper_half() {
        for _ in 0..1000 {
            let d = jittered(Duration::from_millis(100));
            assert!(
                d >= Duration::from_millis(50) && d <= Duration::from_millis(100),
                "{d:?}"
            );
        }
        assert_eq!(jittered(Duration::ZERO), Duration::ZERO);
    }
}
