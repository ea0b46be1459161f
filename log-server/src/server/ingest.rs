//! `POST /v1/records`: read the NDJSON body within the limits, parse every line (off the async
//! threads), and hand the whole batch to the store, answering only once it is durable.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use futures_util::StreamExt;
use serde::Serialize;

use super::error::{ApiError, LineError};
use super::App;
use crate::ndjson::{is_blank, parse_record};
use crate::record::Record;
use crate::store::{AppendError, LineRejection, RejectReason};

#[derive(Serialize)]
pub struct Receipt {
    stored: usize,
    first_seq: u64,
    last_seq: u64,
}

pub async fn post_records(
    State(app): State<App>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Receipt>, ApiError> {
    check_content_type(&headers)?;
    let max_body = app.config.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max_body as u64) {
        return Err(reject(body_too_large(max_body)));
    }
    let bytes = tokio::time::timeout(
        app.config.request_timeout,
        read_body(body, max_body, declared),
    )
    .await
    .map_err(|_| {
        reject(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request body did not arrive within {:?}; send smaller batches",
                app.config.request_timeout
            ),
        ))
    })??;
    let max_line = app.config.max_line_bytes;
    let permit = app
        .parsers
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| internal(format!("parsing the batch failed: {e}")))?;
    let batch = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        parse_batch(&bytes, max_line)
    })
    .await
    .map_err(|e| internal(format!("parsing the batch failed: {e}")))??;
    match app.store.append(batch.records, batch.lines).await {
        Ok(receipt) => Ok(Json(Receipt {
            stored: receipt.stored,
            first_seq: receipt.first_seq,
            last_seq: receipt.last_seq,
        })),
        Err(AppendError::Rejected(rejections)) => Err(reject(store_rejection(rejections))),
        Err(AppendError::Io(message)) => Err(reject(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage_error",
            format!(
                "the batch was not stored: {message}; nothing of it was acknowledged, retry it"
            ),
        ))),
        Err(AppendError::Closed) => Err(reject(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down; the batch was not stored, retry it elsewhere or later",
        ))),
    }
}

/// Counts a rejected batch by its code (the bad lines are counted by reason where found).
fn reject(error: ApiError) -> ApiError {
    metrics::counter!("rql_rejected_batches_total", "code" => error.code).increment(1);
    error
}

fn internal(message: String) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
}

fn body_too_large(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!(
            "the request body is larger than {max} bytes (--max-body-bytes); split the batch \
             into smaller ones"
        ),
    )
}

/// NDJSON under any of its usual names, or plain JSON/text; anything else (notably the form
/// encoding `curl --data` sends by default) is a mistake worth naming.
fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let essence = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    const ACCEPTED: [&str; 5] = [
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonl",
        "application/json",
        "text/plain",
    ];
    if ACCEPTED.contains(&essence.as_str()) {
        return Ok(());
    }
    Err(reject(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_content_type",
        format!(
            "Content-Type {:?} is not NDJSON; send the records one JSON object per line with \
             `Content-Type: application/x-ndjson`",
            String::from_utf8_lossy(value.as_bytes())
        ),
    )))
}

async fn read_body(body: Body, max: usize, declared: Option<u64>) -> Result<Vec<u8>, ApiError> {
    let mut buf = Vec::with_capacity(declared.map_or(64 << 10, |n| n as usize).min(max));
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| {
            reject(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                format!("reading the request body failed: {e}"),
            ))
        })?;
        if buf.len() + chunk.len() > max {
            return Err(reject(body_too_large(max)));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

struct Batch {
    records: Vec<Record>,
    /// 1-based line number in the body of each record.
    lines: Vec<usize>,
}

/// Every line is checked, so one response lists every bad line, not just the first.
fn parse_batch(body: &[u8], max_line: usize) -> Result<Batch, ApiError> {
    let mut records = Vec::new();
    let mut lines = Vec::new();
    let mut bad = Vec::new();
    let mut bad_count = 0usize;
    let mut too_long = false;
    for (index, line) in body.split(|&b| b == b'\n').enumerate() {
        let number = index + 1;
        if is_blank(line) {
            continue;
        }
        let result = if line.len() > max_line {
            too_long = true;
            Err((
                "line_too_long",
                format!(
                    "the line is {} bytes, longer than the limit of {max_line} bytes \
                     (--max-line-bytes); split the record's changes over several records",
                    line.len()
                ),
            ))
        } else {
            parse_record(line).map_err(|reason| ("invalid_record", reason))
        };
        match result {
            Ok(record) => {
                records.push(record);
                lines.push(number);
            }
            Err((reason, message)) => {
                metrics::counter!("rql_rejected_records_total", "reason" => reason).increment(1);
                bad_count += 1;
                if bad.len() < super::error::MAX_LISTED_LINES {
                    bad.push(LineError {
                        line: number,
                        node: None,
                        reason,
                        message,
                    });
                }
            }
        }
    }
    if bad_count > 0 {
        let (status, code) = if too_long {
            (StatusCode::PAYLOAD_TOO_LARGE, "line_too_long")
        } else {
            (StatusCode::BAD_REQUEST, "invalid_records")
        };
        let first = &bad[0];
        let message = format!(
            "{bad_count} bad line{} (the first is line {}: {}); nothing of the batch was stored, \
             fix {} and send the whole batch again",
            if bad_count == 1 { "" } else { "s" },
            first.line,
            first.message,
            if bad_count == 1 { "it" } else { "them" },
        );
        return Err(reject(ApiError::new(status, code, message).with_lines(bad)));
    }
    if records.is_empty() {
        return Err(reject(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty_batch",
            "the body has no records; send one JSON record per line (SPEC rql-trace/1)",
        )));
    }
    Ok(Batch { records, lines })
}

/// The status and code of a store rejection: order violations are 409 (the sender is behind what
/// is stored), the node limit 403, an oversized record 413, `add`/`remove` on a non-set 400. A
/// batch with several kinds is reported under the first of those, with every line listed.
fn store_rejection(rejections: Vec<LineRejection>) -> ApiError {
    let kind = |reason: RejectReason| match reason {
        RejectReason::OutOfOrder => (0, StatusCode::CONFLICT, "out_of_order"),
        RejectReason::TooManyNodes => (1, StatusCode::FORBIDDEN, "too_many_nodes"),
        RejectReason::TooLarge => (2, StatusCode::PAYLOAD_TOO_LARGE, "line_too_long"),
        RejectReason::NotASet => (3, StatusCode::BAD_REQUEST, "invalid_records"),
    };
    let (_, status, code) = rejections
        .iter()
        .map(|r| kind(r.reason))
        .min_by_key(|k| k.0)
        .unwrap_or((3, StatusCode::BAD_REQUEST, "invalid_records"));
    let count = rejections.len();
    let lines: Vec<LineError> = rejections
        .into_iter()
        .map(|r| {
            let reason = r.reason.as_str();
            metrics::counter!("rql_rejected_records_total", "reason" => reason).increment(1);
            LineError {
                line: r.line,
                node: Some(r.node),
                reason,
                message: r.message,
            }
        })
        .collect();
    let message = match lines.first() {
        Some(first) => format!(
            "{count} line{} rejected (the first is line {}, node {:?}: {}); nothing of the \
             batch was stored",
            if count == 1 { "" } else { "s" },
            first.line,
            first.node.as_deref().unwrap_or(""),
            first.message,
        ),
        None => "the batch was rejected; nothing of it was stored".to_string(),
    };
    ApiError::new(status, code, message).with_lines(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_lines_are_numbered_in_the_body_and_blank_lines_skipped() {
        let body = b"\n{\"node\":\"a\",\"hlc\":[1,0]}\r\n  \n{\"node\":\"b\",\"hlc\":7}";
        let batch = parse_batch(body, 1024).unwrap();
        assert_eq!(batch.lines, vec![2, 4]);
        assert_eq!(batch.records[1].node, "b");
    }

    #[test]
    fn every_bad_line_is_listed_and_a_long_line_makes_it_413() {
        let body = b"{\"node\":\"a\",\"hlc\":[1,0]}\nnope\n{\"node\":\"a\"}\n";
        let err = parse_batch(body, 1024).err().unwrap();
        assert_eq!(
            (err.status, err.code),
            (StatusCode::BAD_REQUEST, "invalid_records")
        );
        let lines: Vec<usize> = err.lines.iter().map(|l| l.line).collect();
        assert_eq!(lines, vec![2, 3]);
        assert!(err.message.starts_with("2 bad lines (the first is line 2"));

        let err = parse_batch(b"nope\n{\"node\":\"a\",\"hlc\":[1,0]}", 10)
            .err()
            .unwrap();
        assert_eq!(
            (err.status, err.code),
            (StatusCode::PAYLOAD_TOO_LARGE, "line_too_long")
        );
        assert_eq!(err.lines[1].reason, "line_too_long");
        assert_eq!(err.lines[1].line, 2);
    }

    #[test]
    fn an_empty_batch_and_a_huge_bad_batch_get_bounded_answers() {
        let err = parse_batch(b" \n\n", 1024).err().unwrap();
        assert_eq!(err.code, "empty_batch");
        let body = "x\n".repeat(1000);
        let err = parse_batch(body.as_bytes(), 1024).err().unwrap();
        assert_eq!(err.lines.len(), crate::server::error::MAX_LISTED_LINES);
        assert!(err.message.starts_with("1000 bad lines"));
    }

    #[test]
    fn content_types() {
        let mut headers = HeaderMap::new();
        assert!(check_content_type(&headers).is_ok());
        for ok in [
            "application/x-ndjson",
            "application/json; charset=utf-8",
            "TEXT/PLAIN",
        ] {
            headers.insert(header::CONTENT_TYPE, ok.parse().unwrap());
            assert!(check_content_type(&headers).is_ok(), "{ok}");
        }
        headers.insert(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        let err = check_content_type(&headers).err().unwrap();
        assert_eq!(err.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}
