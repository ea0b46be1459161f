//! `GET /v1/stream` from the client side: [`subscribe`] opens a subscription and
//! [`Subscription`] yields the stream's lines parsed — records (read with the trace reader, so
//! every SPEC §1.3 rule is checked again) and progress lines — with the server's `{"error":..}`
//! lines and HTTP failures as typed errors. It does not reconnect: what to do after an error
//! (resubscribe from the last HLC seen, or stop) is the caller's choice.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::error_body::ErrorBody;
use super::{endpoint, error_chain};
use crate::hlc::Hlc;
use crate::ndjson::parse_record;
use crate::record::{Record, MAX_NODE_ID_BYTES};

/// What to subscribe to. `Default`: everything retained, all nodes, following the live tail.
#[derive(Clone)]
pub struct SubscribeOptions {
    /// Records with `hlc >= since` (`Hlc::MIN`: everything retained).
    pub since: Hlc,
    /// Only these nodes (`None`: all). Node ids cannot contain `,` (the list separator).
    pub nodes: Option<Vec<String>>,
    /// `true`: history, then the live tail until either side stops. `false`: end once caught
    /// up.
    pub follow: bool,
    /// Sent as `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
    pub connect_timeout: Duration,
    /// The stream is declared broken ([`SubscribeError::Interrupted`]) when nothing arrives for
    /// this long. A live server sends a progress line every `--heartbeat` (200 ms by default)
    /// while idle, so this only fires on a dead connection; keep it well above the server's
    /// heartbeat. `None`: wait forever.
    pub read_timeout: Option<Duration>,
    /// Longest line accepted (a record is at most 64 MiB on the server).
    pub max_line_bytes: usize,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            since: Hlc::MIN,
            nodes: None,
            follow: true,
            token: None,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Some(Duration::from_secs(30)),
            max_line_bytes: (64 << 20) + 1024,
        }
    }
}

impl fmt::Debug for SubscribeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscribeOptions")
            .field("since", &self.since)
            .field("nodes", &self.nodes)
            .field("follow", &self.follow)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("max_line_bytes", &self.max_line_bytes)
            .finish()
    }
}

/// One line of the stream.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamItem {
    /// A stored record, in log order (each node's records in HLC order).
    Record(Record),
    /// The latest HLC the stream has delivered per node (keep the maximum per node: this is
    /// `latest(n)` of SPEC §5.1, from which the frontier follows).
    Progress(BTreeMap<String, Hlc>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscribeError {
    /// The request could not be made: a bad URL or option.
    Request(String),
    /// No answer: connection refused, timed out, ...
    Connect(String),
    /// The server answered with an error status; `code` and `message` are the server's
    /// (`code` is empty if the body was not the server's JSON). E.g. `410 since_too_old`,
    /// whose message names the earliest retained HLC.
    Http {
        status: u16,
        code: String,
        message: String,
    },
    /// The server ended the stream with an `{"error":..}` line (e.g. retention deleted records
    /// the subscription had not read yet: `reader_behind`).
    Server { code: String, message: String },
    /// The response broke off: the connection failed, the server cut it, or nothing arrived
    /// for the read timeout.
    Interrupted(String),
    /// A line that is not a valid record, progress or error line.
    BadLine(String),
}

impl SubscribeError {
    /// The HTTP status, for [`SubscribeError::Http`].
    pub fn status(&self) -> Option<u16> {
        match self {
            SubscribeError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's error code (`since_too_old`, `unauthorized`, `reader_behind`, ...).
    pub fn code(&self) -> Option<&str> {
        match self {
            SubscribeError::Http { code, .. } | SubscribeError::Server { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether subscribing again as before may work: the server was unreachable, busy
    /// (5xx, 408, 429) or the connection broke. Resubscribe from just after the last HLC
    /// received, and expect records at that HLC again (several records may share an HLC).
    pub fn is_retryable(&self) -> bool {
        match self {
            SubscribeError::Connect(_) | SubscribeError::Interrupted(_) => true,
            SubscribeError::Http { status, .. } => {
                *status >= 500 || *status == 408 || *status == 429
            }
            _ => false,
        }
    }
}

impl fmt::Display for SubscribeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubscribeError::Request(m) => write!(f, "cannot subscribe: {m}"),
            SubscribeError::Connect(m) => write!(f, "cannot reach the log server: {m}"),
            SubscribeError::Http {
                status,
                code,
                message,
            } => {
                if code.is_empty() {
                    write!(f, "the log server answered {status}: {message}")
                } else {
                    write!(f, "the log server answered {status} {code}: {message}")
                }
            }
            SubscribeError::Server { code, message } => {
                write!(f, "the log server ended the stream: {code}: {message}")
            }
            SubscribeError::Interrupted(m) => write!(f, "the stream broke off: {m}"),
            SubscribeError::BadLine(m) => write!(f, "bad line in the stream: {m}"),
        }
    }
}

impl std::error::Error for SubscribeError {}

/// Opens `GET {url}/v1/stream` (e.g. `url` = `http://127.0.0.1:7400`). Returns once the server
/// has answered: an error status is an [`SubscribeError::Http`] here, not an item later.
pub async fn subscribe(
    url: &str,
    options: &SubscribeOptions,
) -> Result<Subscription, SubscribeError> {
    let endpoint = endpoint(url, "/v1/stream").map_err(SubscribeError::Request)?;
    let mut query = vec![
        ("since", options.since.packed().to_string()),
        ("follow", options.follow.to_string()),
    ];
    if let Some(nodes) = &options.nodes {
        if nodes.is_empty() {
            return Err(SubscribeError::Request(
                "the node list is empty; give at least one node id, or none to get all nodes"
                    .into(),
            ));
        }
        if let Some(bad) = nodes
            .iter()
            .find(|n| n.is_empty() || n.len() > MAX_NODE_ID_BYTES || n.contains(','))
        {
            return Err(SubscribeError::Request(format!(
                "node id {bad:?} cannot be subscribed to: node ids are 1 to {MAX_NODE_ID_BYTES} \
                 bytes, and the stream's node list cannot carry a ','"
            )));
        }
        query.push(("nodes", nodes.join(",")));
    }
    let mut client = reqwest::Client::builder().connect_timeout(options.connect_timeout);
    if let Some(timeout) = options.read_timeout {
        client = client.read_timeout(timeout);
    }
    let client = client
        .build()
        .map_err(|e| SubscribeError::Request(error_chain(&e)))?;
    let mut request = client.get(endpoint).query(&query);
    if let Some(token) = &options.token {
        request = request.bearer_auth(token);
    }
    let mut response = request
        .send()
        .await
        .map_err(|e| SubscribeError::Connect(error_chain(&e)))?;
    let status = response.status();
    if !status.is_success() {
        // Error bodies are small; read at most this much of whatever comes.
        const MAX_ERROR_BODY: usize = 64 << 10;
        let mut body = Vec::new();
        while body.len() < MAX_ERROR_BODY {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        let error = ErrorBody::parse(&body);
        return Err(SubscribeError::Http {
            status: status.as_u16(),
            message: if error.message.is_empty() {
                status.canonical_reason().unwrap_or("error").to_string()
            } else {
                error.message
            },
            code: error.code,
        });
    }
    Ok(Subscription {
        response,
        buf: Vec::new(),
        start: 0,
        scanned: 0,
        done: false,
        max_line_bytes: options.max_line_bytes,
    })
}

/// An open stream. Read it with [`Subscription::next`], or as a `futures` `Stream` with
/// [`Subscription::into_stream`]. Dropping it closes the connection.
pub struct Subscription {
    response: reqwest::Response,
    /// Bytes received and not yet returned: `buf[start..]`, of which `buf[start..scanned]`
    /// is known to hold no line end.
    buf: Vec<u8>,
    start: usize,
    scanned: usize,
    /// After the end, a server error line, or a broken response, nothing more is read.
    done: bool,
    max_line_bytes: usize,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("url", &self.response.url().as_str())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// The next item; `None` once the stream ended cleanly (`follow=false` caught up, or the
    /// server stopped). After an error only `None` follows, except after a
    /// [`SubscribeError::BadLine`], which skips that line.
    pub async fn next(&mut self) -> Option<Result<StreamItem, SubscribeError>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(at) = memchr::memchr(b'\n', &self.buf[self.scanned..]) {
                let end = self.scanned + at;
                let line = &self.buf[self.start..end];
                self.start = end + 1;
                self.scanned = self.start;
                match parse_line(line) {
                    Ok(None) => continue,
                    Ok(Some(item)) => return Some(Ok(item)),
                    Err(e) => {
                        if !matches!(e, SubscribeError::BadLine(_)) {
                            self.done = true;
                        }
                        return Some(Err(e));
                    }
                }
            }
            self.scanned = self.buf.len();
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.scanned -= self.start;
                self.start = 0;
            }
            if self.buf.len() > self.max_line_bytes {
                self.done = true;
                return Some(Err(SubscribeError::BadLine(format!(
                    "a line longer than {} bytes",
                    self.max_line_bytes
                ))));
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk),
                Ok(None) => {
                    self.done = true;
                    if self.buf.iter().all(u8::is_ascii_whitespace) {
                        return None;
                    }
                    return Some(Err(SubscribeError::Interrupted(
                        "the stream ended in the middle of a line".into(),
                    )));
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(SubscribeError::Interrupted(error_chain(&e))));
                }
            }
        }
    }

    /// The subscription as a `futures` stream (ends where [`Subscription::next`] gives `None`).
    pub fn into_stream(
        self,
    ) -> impl futures_util::Stream<Item = Result<StreamItem, SubscribeError>> + Send + 'static {
        futures_util::stream::unfold(self, |mut sub| async move {
            sub.next().await.map(|item| (item, sub))
        })
    }
}

/// The non-record lines; anything else in them is ignored, so the server may add fields.
#[derive(Deserialize)]
struct Control {
    progress: Option<BTreeMap<String, WireHlc>>,
    error: Option<IgnoredAny>,
}

/// An HLC as the server writes it (`[l, c]`), or packed.
#[derive(Deserialize)]
#[serde(untagged)]
enum WireHlc {
    Pair(u64, u64),
    Packed(u64),
}

/// One line of the stream: `Ok(None)` for a blank one.
pub(crate) fn parse_line(line: &[u8]) -> Result<Option<StreamItem>, SubscribeError> {
    let text = line.trim_ascii();
    if text.is_empty() {
        return Ok(None);
    }
    // Record lines are canonical, so they start with the node; they are most of the stream.
    if !text.starts_with(br#"{"node""#) {
        if let Ok(control) = serde_json::from_slice::<Control>(text) {
            if control.error.is_some() {
                let error = ErrorBody::parse(text);
                return Err(SubscribeError::Server {
                    code: error.code,
                    message: error.message,
                });
            }
            if let Some(progress) = control.progress {
                let mut latest = BTreeMap::new();
                for (node, hlc) in progress {
                    let hlc = match hlc {
                        WireHlc::Pair(l, c) => Hlc::new(l, c).map_err(|e| {
                            SubscribeError::BadLine(format!("progress of node {node:?}: {e}"))
                        })?,
                        WireHlc::Packed(p) => Hlc::from_packed(p),
                    };
                    latest.insert(node, hlc);
                }
                return Ok(Some(StreamItem::Progress(latest)));
            }
        }
    }
    parse_record(text)
        .map(|record| Some(StreamItem::Record(record)))
        .map_err(SubscribeError::BadLine)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hlc(l: u64, c: u64) -> Hlc {
        Hlc::new(l, c).unwrap()
    }

    #[test]
    fn record_progress_error_and_blank_lines() {
        let line = br#"{"node":"n1","hlc":[5,1],"set":{"inv.a":1}}"#;
        let Ok(Some(StreamItem::Record(rec))) = parse_line(line) else {
            panic!("not a record");
        };
        assert_eq!((rec.node.as_str(), rec.hlc), ("n1", hlc(5, 1)));
        assert_eq!(rec.to_json_line().as_bytes(), line);

        let progress = parse_line(br#"{"progress":{"n1":[5,1],"n 2":[7,0]}}"#).unwrap();
        assert_eq!(
            progress,
            Some(StreamItem::Progress(BTreeMap::from([
                ("n1".to_string(), hlc(5, 1)),
                ("n 2".to_string(), hlc(7, 0)),
            ])))
        );
        assert_eq!(
            parse_line(br#"{"progress":{}}"#).unwrap(),
            Some(StreamItem::Progress(BTreeMap::new()))
        );
        assert_eq!(
            parse_line(br#"{"progress":{"n1":65537}}"#).unwrap(),
            Some(StreamItem::Progress(BTreeMap::from([(
                "n1".to_string(),
                hlc(1, 1)
            )])))
        );

        let err = parse_line(
            br#"{"error":{"code":"reader_behind","message":"subscribe again with since=5"}}"#,
        )
        .unwrap_err();
        assert_eq!(
            err,
            SubscribeError::Server {
                code: "reader_behind".into(),
                message: "subscribe again with since=5".into()
            }
        );
        assert_eq!(err.code(), Some("reader_behind"));
        assert!(!err.is_retryable());

        assert_eq!(parse_line(b"  \r").unwrap(), None);
        // A record whose fields come in another order is still a record.
        let Ok(Some(StreamItem::Record(rec))) = parse_line(br#"{"hlc":[1,0],"node":"n"}"#) else {
            panic!("not a record");
        };
        assert_eq!(rec.node, "n");
    }

    #[test]
    fn bad_lines_name_the_reason() {
        for (line, reason) in [
            (&br#"{"node":"n1"}"#[..], "missing field \"hlc\""),
            (b"not json", "invalid JSON"),
            (
                br#"{"progress":{"n1":[1,70000]}}"#,
                "progress of node \"n1\"",
            ),
        ] {
            match parse_line(line) {
                Err(SubscribeError::BadLine(m)) => assert!(m.contains(reason), "{m}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn errors_classify() {
        let gone = SubscribeError::Http {
            status: 410,
            code: "since_too_old".into(),
            message: "starts at HLC [1,0]".into(),
        };
        assert_eq!(gone.status(), Some(410));
        assert_eq!(gone.code(), Some("since_too_old"));
        assert!(!gone.is_retryable());
        assert_eq!(
            gone.to_string(),
            "the log server answered 410 since_too_old: starts at HLC [1,0]"
        );
        let busy = SubscribeError::Http {
            status: 503,
            code: "too_many_subscribers".into(),
            message: String::new(),
        };
        assert!(busy.is_retryable());
        assert!(SubscribeError::Connect("refused".into()).is_retryable());
        assert!(SubscribeError::Interrupted("reset".into()).is_retryable());
        assert!(!SubscribeError::Request("bad".into()).is_retryable());
    }

    #[test]
    fn options_do_not_print_the_token() {
        let options = SubscribeOptions {
            token: Some("s3cret".into()),
            ..SubscribeOptions::default()
        };
        assert!(!format!("{options:?}").contains("s3cret"));
    }

    #[test]
    fn bad_requests_fail_before_sending() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for (url, nodes, expected) in [
            ("localhost:7400", None, "bad server URL"),
            ("http://127.0.0.1:9", Some(vec![]), "node list is empty"),
            (
                "http://127.0.0.1:9",
                Some(vec!["a,b".to_string()]),
                "cannot carry a ','",
            ),
            (
                "http://127.0.0.1:9",
                Some(vec![String::new()]),
                "1 to 255 bytes",
            ),
        ] {
            let options = SubscribeOptions {
                nodes,
                ..SubscribeOptions::default()
            };
            match runtime.block_on(subscribe(url, &options)) {
                Err(SubscribeError::Request(m)) => assert!(m.contains(expected), "{m}"),
                other => panic!("{url}: {other:?}"),
            }
        }
    }
}
