//! The log server's HTTP API (axum on tokio) over a [`Store`]: ingest, subscriptions, status and
//! metrics. `rql serve` runs it.
//!
//! # Endpoints
//!
//! - `POST /v1/records` — an NDJSON body of SPEC §1.3 records (`Content-Type:
//!   application/x-ndjson`; blank lines ignored). The batch is validated as a whole and stored
//!   entirely or not at all. `200 {"stored":N,"first_seq":S,"last_seq":T}` comes only once the
//!   batch is on disk (fsynced). Bad lines give `400` (`413` if one is longer than the line limit),
//!   per-node order violations (SPEC §5.1) `409`, a batch that would exceed the node limit `403`;
//!   every one of them lists each bad line with its 1-based line number and reason.
//! - `GET /v1/stream?since=HLC&nodes=n1,n2&follow=true` — stored records as NDJSON, see below.
//! - `GET /v1/nodes` — per node: last HLC, last-seen wall time (ms since the epoch), idle flag
//!   (nothing received for the idle timeout), record count; plus the store's size and retention.
//! - `GET /v1/health` — `{"status":"ok"}`; the only endpoint open without the token.
//! - `GET /metrics` — Prometheus text.
//!
//! Every error is `{"error":{"code":..,"message":..,"lines":[..]}}` (see [`error`]). With a token
//! configured every endpoint but health needs `Authorization: Bearer TOKEN`.
//!
//! # Stream protocol
//!
//! `since` is a packed HLC (`l << 16 | c`, default 0: everything retained); `nodes` a
//! comma-separated list of node ids (default: all nodes); `follow` is `true` (default: history,
//! then the live tail, until the client or the server goes away) or `false` (the response ends once
//! caught up). A `since` older than the retained history is `410 since_too_old`, naming the earliest
//! retained HLC.
//!
//! The body is NDJSON. A record line is exactly the stored canonical record
//! (`Record::to_json_line`), in log order: each node's records in its HLC order, every record with
//! `hlc >= since` exactly once, history and live tail with no gap or duplicate between them. A
//! progress line `{"progress":{"n1":[l,c],...}}` maps nodes to the latest HLC the stream has
//! delivered for them (a consumer keeps the maximum per node; this is `latest(n)` of SPEC §5.1
//! for the frontier). One follows every batch of record lines, listing the nodes in that batch;
//! while there is nothing new, one listing every node seen so far is sent each heartbeat interval,
//! and a stream that ends cleanly (`follow=false`, or the server stopping) ends with one.
//! If the stream fails after it started (e.g. retention deleted what it was about to read), a last
//! line `{"error":{...}}` is sent and the response ends abnormally. A client that reads nothing for
//! the stall timeout is disconnected (the response ends without its final chunk); the server never
//! buffers more than a few chunks per subscriber.

pub mod error;
mod ingest;
mod listener;
mod status;
mod stream;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::store::Store;
use error::ApiError;
use listener::{ConnectionInfo, LimitedListener};

/// Limits and timings of the HTTP side. Storage limits (node count, segment size, retention)
/// are in [`crate::store::StoreConfig`].
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Required as `Authorization: Bearer TOKEN` on every endpoint but `/v1/health`.
    pub token: Option<String>,
    /// Largest ingest request body.
    pub max_body_bytes: usize,
    /// Longest line in an ingest body.
    pub max_line_bytes: usize,
    /// Concurrent TCP connections; more are answered 503.
    pub max_connections: usize,
    /// Concurrent `/v1/stream` subscribers; more are answered 503.
    pub max_subscribers: usize,
    /// A node that has sent nothing for this long is listed as idle (SPEC §5.2).
    pub idle_timeout: Duration,
    /// Progress lines on an idle stream are at most this far apart.
    pub heartbeat_interval: Duration,
    /// A connection whose peer reads nothing for this long is closed.
    pub stall_timeout: Duration,
    /// A connection on which nothing is sent or received for this long is closed.
    pub connection_idle_timeout: Duration,
    /// An ingest body must arrive within this long.
    pub request_timeout: Duration,
    /// How often retention runs.
    pub retention_interval: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            token: None,
            max_body_bytes: 16 << 20,
            max_line_bytes: 1 << 20,
            max_connections: 1024,
            max_subscribers: 64,
            idle_timeout: Duration::from_secs(2),
            heartbeat_interval: Duration::from_millis(200),
            stall_timeout: Duration::from_secs(10),
            connection_idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            retention_interval: Duration::from_secs(30),
        }
    }
}

/// Fsync latencies are mostly well under 10 ms on an SSD; the tail matters.
const FSYNC_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Installs the process-wide Prometheus recorder every `metrics::` call in the server and the
/// store reports to. Call once, before [`serve`].
pub fn install_metrics() -> Result<PrometheusHandle, String> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), FSYNC_BUCKETS)
        .and_then(|b| b.install_recorder())
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))
}

/// What every handler shares.
#[derive(Clone)]
struct App {
    store: Store,
    config: Arc<ServerConfig>,
    metrics: PrometheusHandle,
    subscribers: Arc<Semaphore>,
    /// Batches being parsed at once: one per core. More would only share the cores between
    /// more threads, and starve the subscribers' readers (the OS shares CPU per thread).
    parsers: Arc<Semaphore>,
    /// Becomes `true` when the server starts shutting down, so endless streams end.
    shutdown: watch::Receiver<bool>,
}

/// Serves the API on `listener` until `shutdown` completes, then stops taking connections, ends
/// the live streams and waits for requests in flight (so every batch that gets a 200 is on disk).
/// The caller closes the store afterwards.
pub async fn serve(
    listener: TcpListener,
    store: Store,
    metrics: PrometheusHandle,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let app = App {
        store: store.clone(),
        subscribers: Arc::new(Semaphore::new(config.max_subscribers)),
        parsers: Arc::new(Semaphore::new(
            std::thread::available_parallelism().map_or(2, |n| n.get()),
        )),
        config: Arc::new(config.clone()),
        metrics: metrics.clone(),
        shutdown: shutdown_rx.clone(),
    };
    let background = [
        tokio::spawn(run_retention(
            store,
            config.retention_interval,
            shutdown_rx.clone(),
        )),
        tokio::spawn(run_metrics_upkeep(metrics, shutdown_rx)),
    ];
    let listener = LimitedListener::new(
        listener,
        config.max_connections,
        config.stall_timeout,
        config.connection_idle_timeout,
    );
    let router = router(app).into_make_service_with_connect_info::<ConnectionInfo>();
    let result = axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: finishing requests in flight");
            // Ends follow streams, which would otherwise keep the graceful shutdown waiting.
            shutdown_tx.send_replace(true);
        })
        .await;
    for task in background {
        task.abort();
    }
    result
}

fn router(app: App) -> Router {
    Router::new()
        .route("/v1/records", post(ingest::post_records))
        .route("/v1/stream", get(stream::get_stream))
        .route("/v1/nodes", get(status::get_nodes))
        .route("/v1/health", get(status::get_health))
        .route("/metrics", get(status::get_metrics))
        .fallback(no_such_endpoint)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(app.clone(), admit))
        .with_state(app)
}

/// Connection limit and token, before any route runs.
async fn admit(
    State(app): State<App>,
    ConnectInfo(conn): ConnectInfo<ConnectionInfo>,
    request: Request,
    next: Next,
) -> Result<Response, Response> {
    use axum::response::IntoResponse;
    if !conn.admitted {
        let mut response = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_connections",
            format!(
                "the server already has {} connections open (--max-connections); \
                 retry later or reuse a connection",
                app.config.max_connections
            ),
        )
        .into_response();
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        return Err(response);
    }
    if let Some(token) = &app.config.token {
        if request.uri().path() != "/v1/health" {
            check_token(token, &request).map_err(IntoResponse::into_response)?;
        }
    }
    Ok(next.run(request).await)
}

fn check_token(token: &str, request: &Request) -> Result<(), ApiError> {
    let unauthorized = |message: &str| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            message.to_string(),
        )
    };
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return Err(unauthorized(
            "this server requires a token: send the header `Authorization: Bearer TOKEN` \
             with the token given to `rql serve --token`",
        ));
    };
    let presented = value
        .as_bytes()
        .strip_prefix(b"Bearer ")
        .ok_or_else(|| unauthorized("the Authorization header must be `Bearer TOKEN`"))?;
    if bool::from(presented.ct_eq(token.as_bytes())) {
        Ok(())
    } else {
        Err(unauthorized(
            "wrong token: send the token given to `rql serve --token` as `Authorization: Bearer TOKEN`",
        ))
    }
}

const ENDPOINTS: &str =
    "POST /v1/records, GET /v1/stream, GET /v1/nodes, GET /v1/health, GET /metrics";

async fn no_such_endpoint(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no endpoint {method} {}; the endpoints are {ENDPOINTS}",
            uri.path()
        ),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} does not take {method}; the endpoints are {ENDPOINTS}",
            uri.path()
        ),
    )
}

/// Retention on a timer. The store does the work (blocking file IO, so off the async threads).
async fn run_retention(store: Store, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.changed() => return,
        }
        let store = store.clone();
        match tokio::task::spawn_blocking(move || store.enforce_retention()).await {
            Ok(Ok(report)) => tracing::debug!("retention: {report:?}"),
            Ok(Err(e)) => tracing::error!("retention failed: {e}"),
            Err(e) => tracing::error!("retention task failed: {e}"),
        }
    }
}

/// Histogram upkeep of the Prometheus recorder (it keeps bounded memory only if this runs).
async fn run_metrics_upkeep(metrics: PrometheusHandle, mut shutdown: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = ticks.tick() => metrics.run_upkeep(),
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(authorization: Option<&str>) -> Request {
        let mut builder = Request::builder().uri("/v1/nodes");
        if let Some(value) = authorization {
            builder = builder.header(header::AUTHORIZATION, value);
        }
        builder.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn tokens_must_match_exactly() {
        assert!(check_token("s3cret", &request(Some("Bearer s3cret"))).is_ok());
        for bad in [
            None,
            Some("Bearer s3cre"),
            Some("Bearer s3cret2"),
            Some("bearer s3cret"),
            Some("s3cret"),
            Some("Bearer "),
        ] {
            let err = check_token("s3cret", &request(bad)).err().unwrap();
            assert_eq!(err.status, StatusCode::UNAUTHORIZED, "{bad:?}");
            assert_eq!(err.code, "unauthorized");
        }
    }
}
