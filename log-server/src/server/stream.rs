//! `GET /v1/stream`: history from `since`, then the live tail (protocol in the module doc of
//! [`super`]).
//!
//! One task per subscriber reads the store only through its `StoreReader` (committed records in
//! log order, from disk) and waits on the store's commit signal when caught up. Since history and
//! live tail are the same cursor, there is no switch over at which a record could be lost or
//! repeated. The task hands whole chunks to the response body through a small bounded channel, so
//! a slow client makes the task wait (backpressure) instead of making the server buffer. A client
//! that reads nothing is cut off by its connection's stall timeout (`listener.rs`), which drops
//! the body and so ends the task.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::error::ApiError;
use super::listener::ConnectionInfo;
use super::App;
use crate::hlc::Hlc;
use crate::record::MAX_NODE_ID_BYTES;
use crate::store::{StoreError, StoreReader, StoredRecord};

/// Chunks queued between the subscriber task and the socket.
const CHANNEL_CHUNKS: usize = 4;
/// Aim for chunks of about this many bytes (fewer, larger writes; bounded memory).
const CHUNK_TARGET_BYTES: usize = 256 << 10;
const MAX_CHUNK_RECORDS: usize = 4096;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    since: Option<String>,
    nodes: Option<String>,
    follow: Option<String>,
}

struct StreamParams {
    since: Hlc,
    nodes: Option<BTreeSet<String>>,
    follow: bool,
}

fn bad_query(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_query", message)
}

fn parse_params(query: StreamQuery) -> Result<StreamParams, ApiError> {
    let since = match query.since.as_deref() {
        None => Hlc::MIN,
        Some(text) => text
            .trim()
            .parse::<u64>()
            .map(Hlc::from_packed)
            .map_err(|_| {
                bad_query(format!(
                    "since={text:?} is not a packed HLC: give the unsigned integer l << 16 | c \
                 (e.g. since=0 for everything retained)"
                ))
            })?,
    };
    let nodes = match query.nodes.as_deref() {
        None => None,
        Some(list) => {
            let mut nodes = BTreeSet::new();
            for node in list.split(',') {
                if node.is_empty() || node.len() > MAX_NODE_ID_BYTES {
                    return Err(bad_query(format!(
                        "nodes={list:?}: node ids are 1 to {MAX_NODE_ID_BYTES} bytes, separated \
                         by commas with nothing in between (e.g. nodes=n1,n2)"
                    )));
                }
                nodes.insert(node.to_string());
            }
            Some(nodes)
        }
    };
    let follow = match query.follow.as_deref() {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(bad_query(format!(
                "follow={other:?}: give follow=true (history, then live) or follow=false \
                 (end when caught up)"
            )))
        }
    };
    Ok(StreamParams {
        since,
        nodes,
        follow,
    })
}

pub async fn get_stream(
    State(app): State<App>,
    ConnectInfo(conn): ConnectInfo<ConnectionInfo>,
    query: Result<Query<StreamQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| {
        bad_query(format!(
            "{}; the parameters are since (packed HLC), nodes (comma-separated) and follow \
             (true|false)",
            e.body_text()
        ))
    })?;
    let params = parse_params(query)?;
    let permit = app.subscribers.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_subscribers",
            format!(
                "the server already serves {} subscribers (--max-subscribers); retry later",
                app.config.max_subscribers
            ),
        )
    })?;
    let reader = app
        .store
        .reader(params.since, params.nodes)
        .map_err(|e| reader_error(&e))?;
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    let subscription = Subscription {
        app,
        remote: conn.remote,
        follow: params.follow,
        tx,
        latest: BTreeMap::new(),
        progress_complete: false,
        last_progress: Instant::now(),
    };
    tokio::spawn(async move {
        let _permit = permit;
        metrics::gauge!("rql_subscribers").increment(1.0);
        subscription.run(reader).await;
        metrics::gauge!("rql_subscribers").decrement(1.0);
    });
    let mut response = Body::from_stream(body_stream(rx)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

fn reader_error(e: &StoreError) -> ApiError {
    match e {
        StoreError::SinceTooOld { earliest, .. } => ApiError::new(
            StatusCode::GONE,
            "since_too_old",
            format!(
                "since is older than the retained history, which starts at HLC {earliest} \
                 (packed {}); subscribe with since={} or later",
                earliest.packed(),
                earliest.packed()
            ),
        ),
        StoreError::ReaderBehind { earliest, .. } => ApiError::new(
            StatusCode::GONE,
            "reader_behind",
            format!(
                "this subscriber fell behind retention, which deleted records it had not read; \
                 the retained history now starts at HLC {earliest}: subscribe again with \
                 since={} (and expect a gap) or keep up",
                earliest.packed()
            ),
        ),
        other => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage_error",
            format!("reading the log failed: {other}"),
        ),
    }
}

enum Frame {
    Data(Bytes),
    /// The stream is complete; without it a closed channel means it was cut off.
    End,
}

/// The response body: the chunks, then either the clean end or an error that makes hyper abort
/// the response (so a client can tell a cut-off stream from a finished one).
fn body_stream(
    rx: mpsc::Receiver<Frame>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures_util::stream::unfold(Some(rx), |rx| async move {
        let mut rx = rx?;
        match rx.recv().await {
            Some(Frame::Data(bytes)) => Some((Ok(bytes), Some(rx))),
            Some(Frame::End) => None,
            None => Some((Err(std::io::Error::other("the stream was cut off")), None)),
        }
    })
}

#[derive(Serialize)]
struct Progress<'a> {
    progress: &'a BTreeMap<String, Hlc>,
}

struct Subscription {
    app: App,
    remote: SocketAddr,
    follow: bool,
    tx: mpsc::Sender<Frame>,
    /// Latest HLC delivered per node.
    latest: BTreeMap<String, Hlc>,
    /// The last line sent is a progress line naming every node in `latest`.
    progress_complete: bool,
    last_progress: Instant,
}

/// The client went away or stalled: nothing more can be sent.
struct Gone;

impl Subscription {
    async fn run(mut self, mut reader: StoreReader) {
        let mut commits = self.app.store.commits();
        let mut shutdown = self.app.shutdown.clone();
        let heartbeat = self.app.config.heartbeat_interval;
        let mut chunk_records = 256;
        loop {
            if *shutdown.borrow() {
                let _ = self.finish().await;
                return;
            }
            // Mark the current commit as seen *before* reading, so a commit that lands after the
            // read came back empty still wakes the wait below.
            commits.borrow_and_update();
            let max = chunk_records;
            let read = tokio::task::spawn_blocking(move || {
                let chunk = reader.next_chunk(max);
                (reader, chunk)
            })
            .await;
            let chunk = match read {
                Ok((back, Ok(chunk))) => {
                    reader = back;
                    chunk
                }
                Ok((_, Err(e))) => {
                    self.fail(reader_error(&e)).await;
                    return;
                }
                Err(e) => {
                    self.fail(ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        format!("the stream's reader failed: {e}"),
                    ))
                    .await;
                    return;
                }
            };
            if !chunk.is_empty() {
                let bytes = chunk.iter().map(|r| r.json.len() + 1).sum::<usize>();
                chunk_records =
                    (CHUNK_TARGET_BYTES / (bytes / chunk.len()).max(1)).clamp(1, MAX_CHUNK_RECORDS);
                if self.send_records(&chunk).await.is_err() {
                    return;
                }
                continue;
            }
            if !self.follow {
                let _ = self.finish().await;
                return;
            }
            let next_heartbeat = self.last_progress + heartbeat;
            tokio::select! {
                changed = commits.changed() => {
                    if changed.is_err() {
                        // The store closed: the server is stopping.
                        let _ = self.finish().await;
                        return;
                    }
                }
                _ = tokio::time::sleep_until(next_heartbeat) => {
                    if self.send_progress().await.is_err() {
                        return;
                    }
                }
                _ = shutdown.changed() => {}
            }
        }
    }

    async fn send_records(&mut self, chunk: &[StoredRecord]) -> Result<(), Gone> {
        let mut text =
            String::with_capacity(chunk.iter().map(|r| r.json.len() + 1).sum::<usize>() + 64);
        let mut touched = BTreeMap::new();
        for stored in chunk {
            text.push_str(&stored.json);
            text.push('\n');
            let hlc = stored.record.hlc;
            match self.latest.get_mut(&stored.record.node) {
                Some(latest) => *latest = (*latest).max(hlc),
                None => {
                    self.latest.insert(stored.record.node.clone(), hlc);
                }
            }
            touched.insert(stored.record.node.clone(), self.latest[&stored.record.node]);
        }
        push_progress(&mut text, &touched);
        self.progress_complete = touched.len() == self.latest.len();
        self.last_progress = Instant::now();
        self.send(Frame::Data(Bytes::from(text))).await
    }

    /// A progress line with every node seen so far.
    async fn send_progress(&mut self) -> Result<(), Gone> {
        let mut text = String::new();
        push_progress(&mut text, &self.latest);
        self.progress_complete = true;
        self.last_progress = Instant::now();
        self.send(Frame::Data(Bytes::from(text))).await
    }

    /// Caught up (follow=false) or shutting down: a progress line naming every node (unless
    /// the last line was one), then the clean end.
    async fn finish(&mut self) -> Result<(), Gone> {
        if !self.progress_complete {
            self.send_progress().await?;
        }
        self.send(Frame::End).await
    }

    /// The error as a last line, then the channel closes without `End`, aborting the response.
    async fn fail(&mut self, error: ApiError) {
        tracing::warn!("stream to {} failed: {}", self.remote, error.message);
        let _ = self
            .send(Frame::Data(Bytes::from(error.to_json_line())))
            .await;
    }

    /// Waits while the client is slow (backpressure). A client that reads nothing at all is
    /// disconnected by its connection's stall timeout, which drops the body and so ends this
    /// task; the timeout here is a backstop in case the body is not being polled otherwise.
    async fn send(&mut self, frame: Frame) -> Result<(), Gone> {
        let stall = self.app.config.stall_timeout * 2;
        match tokio::time::timeout(stall, self.tx.send(frame)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Gone),
            Err(_) => {
                metrics::counter!("rql_stalled_disconnects_total").increment(1);
                tracing::warn!(
                    "subscriber {} took nothing for {stall:?}; disconnecting it",
                    self.remote
                );
                Err(Gone)
            }
        }
    }
}

fn push_progress(text: &mut String, nodes: &BTreeMap<String, Hlc>) {
    match serde_json::to_string(&Progress { progress: nodes }) {
        Ok(line) => {
            text.push_str(&line);
            text.push('\n');
        }
        // Strings and integers always serialize; nothing sensible to add otherwise.
        Err(e) => tracing::error!("progress line could not be serialized: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(since: Option<&str>, nodes: Option<&str>, follow: Option<&str>) -> StreamQuery {
        StreamQuery {
            since: since.map(str::to_string),
            nodes: nodes.map(str::to_string),
            follow: follow.map(str::to_string),
        }
    }

    #[test]
    fn params_default_to_everything_live() {
        let p = parse_params(query(None, None, None)).unwrap();
        assert_eq!(p.since, Hlc::MIN);
        assert!(p.nodes.is_none());
        assert!(p.follow);
    }

    #[test]
    fn params_parse_and_reject() {
        let p = parse_params(query(Some("65537"), Some("n1,n2"), Some("false"))).unwrap();
        assert_eq!(p.since, Hlc::new(1, 1).unwrap());
        assert_eq!(p.nodes.unwrap().len(), 2);
        assert!(!p.follow);
        for (since, nodes, follow, needle) in [
            (Some("-1"), None, None, "since"),
            (Some("[1,2]"), None, None, "since"),
            (None, Some("n1,,n2"), None, "nodes"),
            (None, Some(""), None, "nodes"),
            (None, None, Some("yes"), "follow"),
        ] {
            let err = parse_params(query(since, nodes, follow)).err().unwrap();
            assert_eq!(err.code, "bad_query");
            assert!(err.message.contains(needle), "{}", err.message);
        }
    }
}
