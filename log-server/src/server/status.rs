//! `GET /v1/nodes`, `GET /v1/health` and `GET /metrics`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::App;
use crate::hlc::Hlc;

#[derive(Serialize)]
pub struct NodesResponse {
    nodes: Vec<NodeEntry>,
    store: StoreEntry,
}

#[derive(Serialize)]
struct NodeEntry {
    node: String,
    last_hlc: Hlc,
    /// Wall time of the node's last accepted record, ms since the Unix epoch.
    last_seen_ms: u64,
    /// Nothing received for the idle timeout (SPEC §5.2).
    idle: bool,
    records: u64,
}

#[derive(Serialize)]
struct StoreEntry {
    segments: usize,
    bytes: u64,
    first_seq: u64,
    last_seq: u64,
    /// Subscriptions must start at or after this HLC (SPEC §5.3).
    earliest_retained_hlc: Hlc,
}

pub async fn get_nodes(State(app): State<App>) -> Json<NodesResponse> {
    let now = SystemTime::now();
    let idle_timeout = app.config.idle_timeout;
    let nodes = app
        .store
        .nodes()
        .into_iter()
        .map(|n| NodeEntry {
            idle: now.duration_since(n.last_seen).unwrap_or(Duration::ZERO) >= idle_timeout,
            last_seen_ms: n
                .last_seen
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            node: n.node,
            last_hlc: n.last_hlc,
            records: n.records,
        })
        .collect();
    let stats = app.store.stats();
    Json(NodesResponse {
        nodes,
        store: StoreEntry {
            segments: stats.segments,
            bytes: stats.bytes,
            first_seq: stats.first_seq,
            last_seq: stats.last_seq,
            earliest_retained_hlc: stats.earliest,
        },
    })
}

#[derive(Serialize)]
pub struct Health {
    status: &'static str,
}

pub async fn get_health() -> Json<Health> {
    Json(Health { status: "ok" })
}

pub async fn get_metrics(State(app): State<App>) -> Response {
    let mut response = app.metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}
