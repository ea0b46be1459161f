//! The one error shape of every endpoint: `{"error":{"code":..,"message":..,"lines":[..]}}` with
//! an HTTP status. `code` is stable (clients branch on it), `message` is for people and says how
//! to fix the request, `lines` names each bad line of an ingest batch.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// At most this many bad lines are listed in one response, so a huge bad batch gets a bounded
/// answer; the message still gives the total.
pub const MAX_LISTED_LINES: usize = 100;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub lines: Vec<LineError>,
}

/// One bad line of a batch: its 1-based line number in the request body, the node when known,
/// a stable reason code and the message.
#[derive(Debug, Clone, Serialize)]
pub struct LineError {
    pub line: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub reason: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            lines: Vec::new(),
        }
    }

    pub fn with_lines(mut self, mut lines: Vec<LineError>) -> ApiError {
        lines.truncate(MAX_LISTED_LINES);
        self.lines = lines;
        self
    }

    /// The JSON body alone, e.g. as the last line of a stream that fails after it started.
    pub fn to_json_line(&self) -> String {
        let mut line = serde_json::to_string(&self.body()).unwrap_or_else(|_| {
            // Serializing plain strings and numbers cannot fail; keep a valid line regardless.
            r#"{"error":{"code":"internal","message":"error could not be serialized"}}"#.into()
        });
        line.push('\n');
        line
    }

    fn body(&self) -> ErrorBody<'_> {
        ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
                lines: &self.lines,
            },
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "<[LineError]>::is_empty")]
    lines: &'a [LineError],
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}
