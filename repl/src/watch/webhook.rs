//! Alert delivery: each emitted record is POSTed as JSON to a webhook, in order, with retries
//! and exponential backoff. Evaluation never waits for it: records go through a bounded queue,
//! and when the queue is full a record is dropped and counted instead.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

/// Delivery counters, shared with the watch loop (reported in its statistics).
#[derive(Debug, Default)]
pub struct Counters {
    pub delivered: AtomicU64,
    /// Given up after every retry.
    pub failed: AtomicU64,
    /// Not queued: the queue was full.
    pub dropped: AtomicU64,
    /// Attempts that failed and were retried.
    pub retries: AtomicU64,
}

#[derive(Clone, Debug)]
pub struct WebhookConfig {
    pub url: String,
    pub queue: usize,
    /// Attempts per record, the first included.
    pub attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    pub timeout: Duration,
}

impl WebhookConfig {
    pub fn new(url: String) -> WebhookConfig {
        WebhookConfig {
            url,
            queue: 1024,
            attempts: 8,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
        }
    }
}

/// The watch loop's handle: `send` never blocks.
pub struct Webhook {
    queue: mpsc::Sender<String>,
    pub counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl Webhook {
    /// Starts the delivery task on the current tokio runtime; `Err` for a URL reqwest rejects.
    pub fn start(config: WebhookConfig) -> Result<Webhook, String> {
        let url = reqwest::Url::parse(&config.url)
            .map_err(|e| format!("bad --webhook URL {:?}: {e}", config.url))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(format!(
                "bad --webhook URL {:?}: expected http://HOST:PORT/PATH",
                config.url
            ));
        }
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| format!("cannot set up the webhook client: {e}"))?;
        let (queue, rx) = mpsc::channel(config.queue.max(1));
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(deliver(client, url, config, rx, Arc::clone(&counters)));
        Ok(Webhook {
            queue,
            counters,
            task,
        })
    }

    /// Queues one record (its JSON text).
    pub fn send(&self, json: String) {
        if self.queue.try_send(json).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits up to `grace` for the queued records to be delivered (on exit).
    pub async fn finish(self, grace: Duration) {
        drop(self.queue);
        let _ = tokio::time::timeout(grace, self.task).await;
    }
}

async fn deliver(
    client: reqwest::Client,
    url: reqwest::Url,
    config: WebhookConfig,
    mut rx: mpsc::Receiver<String>,
    counters: Arc<Counters>,
) {
    while let Some(body) = rx.recv().await {
        let mut backoff = config.first_backoff;
        let mut attempt = 1;
        loop {
            let sent = client
                .post(url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            let error = match sent {
                Ok(r) if r.status().is_success() => None,
                Ok(r) => Some(format!("HTTP {}", r.status())),
                Err(e) => Some(e.to_string()),
            };
            let Some(error) = error else {
                counters.delivered.fetch_add(1, Ordering::Relaxed);
                break;
            };
            if attempt >= config.attempts {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "webhook {url}: giving up on an alert after {attempt} attempts: {error}"
                );
                break;
            }
            counters.retries.fetch_add(1, Ordering::Relaxed);
            attempt += 1;
            let jitter = Duration::from_millis(fastrand::u64(0..=backoff.as_millis() as u64 / 4));
            tokio::time::sleep(backoff + jitter).await;
            backoff = (backoff * 2).min(config.max_backoff);
        }
    }
}
