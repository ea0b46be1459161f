//! One log server as a source of a live query: its node list at the start (what "caught up"
//! means), then its stream, resubscribed with backoff whenever it breaks, resuming after the
//! last record received per node so that nothing is lost or repeated.

use std::collections::BTreeMap;
use std::time::Duration;

use log_server::client::{subscribe, StreamItem, SubscribeError, SubscribeOptions};
use log_server::{Hlc, Record};
use serde::Deserialize;
use tokio::sync::mpsc;

/// What a source task tells the watch loop.
#[derive(Debug)]
pub enum Event {
    /// The server's nodes when the watch started: node → (last HLC, ms since its last record).
    Nodes {
        server: usize,
        nodes: BTreeMap<String, (Hlc, u64)>,
    },
    Record {
        server: usize,
        record: Record,
    },
    /// The latest HLC delivered per node.
    Progress {
        latest: BTreeMap<String, Hlc>,
    },
    /// The stream broke; the task is reconnecting.
    Lost {
        server: usize,
        error: String,
    },
    /// Something the user should know that does not stop the watch.
    Note {
        message: String,
    },
    /// Subscribed again after a loss.
    Resumed {
        server: usize,
    },
    /// An error retrying cannot fix (bad token, history gone): the watch stops.
    Fatal {
        error: String,
    },
}

#[derive(Clone, Debug)]
pub struct SourceConfig {
    pub server: usize,
    pub url: String,
    pub token: Option<String>,
    /// Longest wait between reconnection attempts.
    pub max_backoff: Duration,
    /// The stream is declared broken when nothing arrives for this long (the server sends a
    /// progress line every heartbeat while idle).
    pub read_timeout: Duration,
}

/// Per node: the last HLC received and how many records at that HLC were received, so that a
/// resubscription from that HLC can skip exactly the ones already seen.
#[derive(Default)]
struct Resume {
    nodes: BTreeMap<String, (Hlc, u64)>,
}

/// What a (re)subscription must skip: per node, the HLC and the records at it seen before.
type Seen = BTreeMap<String, (Hlc, u64)>;

impl Resume {
    /// Where to subscribe from: the earliest last HLC over the nodes seen (records of the
    /// others at or after it are all new or skipped by [`Resume::is_new`]).
    fn since(&self) -> Hlc {
        self.nodes
            .values()
            .map(|(h, _)| *h)
            .min()
            .unwrap_or(Hlc::MIN)
    }

    /// Taken when a subscription begins.
    fn seen(&self) -> Seen {
        self.nodes.clone()
    }

    /// Whether a record of a subscription that began with `seen` is new (a record before a
    /// node's last HLC, or one of those already counted at it, was delivered before).
    fn is_new(&mut self, rec: &Record, seen: &mut Seen) -> bool {
        if let Some((last, count)) = seen.get_mut(rec.node.as_str()) {
            if rec.hlc < *last {
                return false;
            }
            if rec.hlc == *last && *count > 0 {
                *count -= 1;
                return false;
            }
        }
        match self.nodes.get_mut(rec.node.as_str()) {
            Some((last, count)) if *last == rec.hlc => *count += 1,
            Some(entry) => *entry = (rec.hlc, 1),
            None => {
                self.nodes.insert(rec.node.clone(), (rec.hlc, 1));
            }
        }
        true
    }
}

#[derive(Deserialize)]
struct NodesResponse {
    nodes: Vec<NodeEntry>,
    store: StoreEntry,
}

#[derive(Deserialize)]
struct StoreEntry {
    earliest_retained_hlc: (u64, u64),
}

#[derive(Deserialize)]
struct NodeEntry {
    node: String,
    last_hlc: (u64, u64),
    last_seen_ms: u64,
    #[serde(default)]
    idle: bool,
    #[serde(default)]
    records: u64,
}

/// One node as `GET /v1/nodes` describes it.
#[derive(Clone, Debug)]
pub(crate) struct NodeStatus {
    pub node: String,
    pub last_hlc: Hlc,
    /// Wall time of its last record, ms since the Unix epoch (the server's clock).
    pub last_seen_ms: u64,
    /// Nothing received for the server's idle timeout.
    pub idle: bool,
    pub records: u64,
}

/// What `GET /v1/nodes` says: the nodes and where the retained history starts.
#[derive(Clone, Debug)]
pub(crate) struct ServerStatus {
    pub nodes: Vec<NodeStatus>,
    pub earliest: Hlc,
}

/// `GET {url}/v1/nodes`.
pub(crate) async fn fetch_status(
    url: &str,
    token: Option<&str>,
) -> Result<ServerStatus, SubscribeError> {
    let url = format!("{}/v1/nodes", url.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| SubscribeError::Request(e.to_string()))?;
    let mut request = client.get(&url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .map_err(|e| SubscribeError::Connect(format!("{url}: {e}")))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(SubscribeError::Http {
            status: status.as_u16(),
            code: String::new(),
            message: body.chars().take(500).collect(),
        });
    }
    let body: NodesResponse = response
        .json()
        .await
        .map_err(|e| SubscribeError::BadLine(format!("{url}: not a node list: {e}")))?;
    let mut nodes = Vec::with_capacity(body.nodes.len());
    for n in body.nodes {
        let last_hlc = Hlc::new(n.last_hlc.0, n.last_hlc.1).map_err(|e| {
            SubscribeError::BadLine(format!("{url}: node {}: bad last_hlc: {e}", n.node))
        })?;
        nodes.push(NodeStatus {
            node: n.node,
            last_hlc,
            last_seen_ms: n.last_seen_ms,
            idle: n.idle,
            records: n.records,
        });
    }
    let (l, c) = body.store.earliest_retained_hlc;
    let earliest = Hlc::new(l, c)
        .map_err(|e| SubscribeError::BadLine(format!("{url}: bad earliest_retained_hlc: {e}")))?;
    Ok(ServerStatus { nodes, earliest })
}

/// What a watch needs of `GET /v1/nodes`: node → (last HLC, ms since its last record by the
/// server's clock), and where the retained history starts.
type NodeList = (BTreeMap<String, (Hlc, u64)>, Hlc);

async fn fetch_nodes(config: &SourceConfig) -> Result<NodeList, SubscribeError> {
    let status = fetch_status(&config.url, config.token.as_deref()).await?;
    let now = log_server::hlc::system_time_ms();
    let nodes = status
        .nodes
        .into_iter()
        .map(|n| (n.node, (n.last_hlc, now.saturating_sub(n.last_seen_ms))))
        .collect();
    Ok((nodes, status.earliest))
}

/// Runs until the watch loop goes away or a fatal error: sends the node list once, then every
/// new record, reconnecting with exponential backoff when the stream breaks.
pub async fn run(config: SourceConfig, events: mpsc::Sender<Event>) {
    let server = config.server;
    let mut backoff = Duration::from_millis(100);
    let (nodes, earliest) = loop {
        match fetch_nodes(&config).await {
            Ok(list) => break list,
            Err(e) if e.is_retryable() => {
                let error = format!("{}: {e}", config.url);
                if events.send(Event::Lost { server, error }).await.is_err() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(config.max_backoff);
            }
            Err(e) => {
                let error = format!("{}: {e}", config.url);
                let _ = events.send(Event::Fatal { error }).await;
                return;
            }
        }
    };
    // A node whose every record retention folded away sends nothing from `earliest` on: it
    // cannot be waited for at the start.
    let nodes = nodes
        .into_iter()
        .filter(|(_, (last, _))| *last >= earliest)
        .collect();
    if events.send(Event::Nodes { server, nodes }).await.is_err() {
        return;
    }
    if earliest > Hlc::MIN {
        // The stream cannot start before what retention kept.
        let note = format!(
            "log server {} keeps history from HLC {earliest} on (retention); values set before \
             it and not changed since are not seen",
            config.url
        );
        if events.send(Event::Note { message: note }).await.is_err() {
            return;
        }
    }
    let mut resume = Resume::default();
    let mut lost = false;
    backoff = Duration::from_millis(100);
    loop {
        let options = SubscribeOptions {
            since: resume.since().max(earliest),
            token: config.token.clone(),
            read_timeout: Some(config.read_timeout),
            ..SubscribeOptions::default()
        };
        let error = match subscribe(&config.url, &options).await {
            Ok(mut sub) => {
                if std::mem::take(&mut lost)
                    && events.send(Event::Resumed { server }).await.is_err()
                {
                    return;
                }
                backoff = Duration::from_millis(100);
                let mut seen = resume.seen();
                loop {
                    match sub.next().await {
                        Some(Ok(StreamItem::Record(record))) => {
                            if !resume.is_new(&record, &mut seen) {
                                continue;
                            }
                            if events.send(Event::Record { server, record }).await.is_err() {
                                return;
                            }
                        }
                        Some(Ok(StreamItem::Progress(latest))) => {
                            if events.send(Event::Progress { latest }).await.is_err() {
                                return;
                            }
                        }
                        Some(Err(e)) => break e,
                        None => {
                            break SubscribeError::Interrupted("the server ended the stream".into())
                        }
                    }
                }
            }
            Err(e) => e,
        };
        let message = format!("{}: {error}", config.url);
        if !error.is_retryable() {
            let _ = events.send(Event::Fatal { error: message }).await;
            return;
        }
        lost = true;
        if events
            .send(Event::Lost {
                server,
                error: message,
            })
            .await
            .is_err()
        {
            return;
        }
        // Jitter keeps many watchers from reconnecting in lockstep after a server restart.
        let jitter = Duration::from_millis(fastrand::u64(0..=backoff.as_millis() as u64 / 4));
        tokio::time::sleep(backoff + jitter).await;
        backoff = (backoff * 2).min(config.max_backoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(node: &str, l: u64) -> Record {
        Record::heartbeat(node.to_string(), Hlc::new(l, 0).unwrap())
    }

    #[test]
    fn a_resubscription_skips_exactly_what_was_seen() {
        let mut resume = Resume::default();
        let mut seen = resume.seen();
        for (n, l) in [("a", 1), ("a", 2), ("a", 2), ("b", 5)] {
            assert!(resume.is_new(&rec(n, l), &mut seen));
        }
        assert_eq!(resume.since(), Hlc::new(2, 0).unwrap());
        // The server sends again from HLC 2: a's two records at 2 are old, the third is new.
        let mut seen = resume.seen();
        let got: Vec<bool> = [("a", 2), ("a", 2), ("b", 5), ("a", 2), ("b", 6), ("a", 3)]
            .iter()
            .map(|(n, l)| resume.is_new(&rec(n, *l), &mut seen))
            .collect();
        assert_eq!(got, vec![false, false, false, true, true, true]);
    }
}
