//! Ingest bench of the log server (`bench/ingest.sh`): starts the release `rql serve` on an
//! ephemeral loopback port with a fresh data directory, runs WRITERS concurrent node writers each
//! POSTing batches of BATCH records back to back, and one subscriber following the live stream.
//!
//! Two phases of RQL_BENCH_SECS each: first the writers send as fast as the server acknowledges
//! (maximum durable throughput), then paced to RQL_BENCH_RATE records/s in total (default 330000,
//! a little above the 300k target), where the delivery latency is what a live query would see. Each phase
//! reports durable ingest throughput (records acknowledged per second: every 200 comes after the
//! fsync) and the delivery latency to the subscriber: for the last record of each batch, the time
//! from the writer receiving its ack to the subscriber receiving the record (0 when the record
//! arrived first). Settings come from the environment: RQL_BENCH_SECS (default 10),
//! RQL_BENCH_WRITERS (64), RQL_BENCH_BATCH (1000), RQL_BENCH_RATE (330000).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

const T0: u64 = 1_700_000_000_000;

fn setting(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// Ack and receipt times of the last record of each batch, keyed by (writer, batch).
#[derive(Default)]
struct Latencies {
    pending: HashMap<(u32, u64), Instant>,
    acked_first: HashMap<(u32, u64), Instant>,
    samples: Vec<Duration>,
}

impl Latencies {
    fn acked(&mut self, key: (u32, u64), at: Instant) {
        match self.pending.remove(&key) {
            // Delivered before the ack got back to the writer.
            Some(_) => self.samples.push(Duration::ZERO),
            None => {
                self.acked_first.insert(key, at);
            }
        }
    }

    fn received(&mut self, key: (u32, u64), at: Instant) {
        match self.acked_first.remove(&key) {
            Some(acked) => self.samples.push(at.saturating_duration_since(acked)),
            None => {
                self.pending.insert(key, at);
            }
        }
    }
}

/// Node and physical time of a canonical record line (`{"node":"n7","hlc":[l,c],...}`); `None`
/// for progress lines. Cheap on purpose: the subscriber must keep up with the writers.
fn head(line: &[u8]) -> Option<(&[u8], u64)> {
    let rest = line.strip_prefix(br#"{"node":""#)?;
    let quote = rest.iter().position(|&b| b == b'"')?;
    let (node, rest) = rest.split_at(quote);
    let digits = rest.strip_prefix(br#"","hlc":["#)?;
    let mut l = 0u64;
    for &d in digits.iter().take_while(|b| b.is_ascii_digit()) {
        l = l * 10 + u64::from(d - b'0');
    }
    Some((node, l))
}

struct Settings {
    secs: u64,
    writers: u32,
    batch: u64,
    rate: u64,
}

fn main() {
    let settings = Settings {
        secs: setting("RQL_BENCH_SECS", 10),
        writers: setting("RQL_BENCH_WRITERS", 64) as u32,
        batch: setting("RQL_BENCH_BATCH", 1000),
        rate: setting("RQL_BENCH_RATE", 330_000),
    };

    let data = tempfile::tempdir().expect("temp dir");
    let mut server = Command::new(env!("CARGO_BIN_EXE_rql"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start rql serve");
    let mut first = String::new();
    BufReader::new(server.stdout.take().expect("piped"))
        .read_line(&mut first)
        .expect("read the listening line");
    let base = first
        .strip_prefix("listening on ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_string();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(base, &settings));
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let _ = server.wait();
}

struct Phase {
    elapsed: Duration,
    records: u64,
    bytes: u64,
    acks: Vec<Duration>,
    delivery: Vec<Duration>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn percentile(samples: &[Duration], q: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn print_phase(name: &str, s: &Settings, p: &Phase) {
    println!(
        "{name}: {} writers x batches of {}, {:.1} s: {} records, {:.0} records/s durable \
         ({:.1} MB/s of NDJSON); ack latency p50 {:.1} ms, p99 {:.1} ms; delivery (ack -> \
         subscriber) p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} batches)",
        s.writers,
        s.batch,
        p.elapsed.as_secs_f64(),
        p.records,
        p.records as f64 / p.elapsed.as_secs_f64(),
        p.bytes as f64 / p.elapsed.as_secs_f64() / 1e6,
        ms(percentile(&p.acks, 0.50)),
        ms(percentile(&p.acks, 0.99)),
        ms(percentile(&p.delivery, 0.50)),
        ms(percentile(&p.delivery, 0.99)),
        ms(p.delivery.iter().max().copied().unwrap_or_default()),
        p.delivery.len(),
    );
}

async fn run(base: String, settings: &Settings) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(settings.writers as usize + 4)
        .build()
        .expect("client");
    let latencies = Arc::new(Mutex::new(Latencies::default()));
    let received = Arc::new(AtomicU64::new(0));
    let batch = settings.batch;

    let subscriber = {
        let (client, base, latencies, received) = (
            client.clone(),
            base.clone(),
            latencies.clone(),
            received.clone(),
        );
        tokio::spawn(async move {
            let response = client
                .get(format!("{base}/v1/stream?since=0&follow=true"))
                .send()
                .await
                .expect("subscribe");
            assert_eq!(response.status().as_u16(), 200);
            let mut body = response.bytes_stream();
            let mut pending: Vec<u8> = Vec::new();
            let mut ends = Vec::new();
            while let Some(chunk) = body.next().await {
                let Ok(chunk) = chunk else { return };
                let at = Instant::now();
                pending.extend_from_slice(&chunk);
                let mut start = 0;
                let mut records = 0;
                while let Some(i) = find_newline(&pending[start..]) {
                    let line = &pending[start..start + i];
                    start += i + 1;
                    let Some((node, l)) = head(line) else {
                        continue;
                    };
                    records += 1;
                    let k = l - T0;
                    if k % batch == batch - 1 {
                        let writer: u32 = std::str::from_utf8(&node[1..])
                            .ok()
                            .and_then(|n| n.parse().ok())
                            .expect("node n<i>");
                        ends.push((writer, k / batch));
                    }
                }
                received.fetch_add(records, Ordering::Relaxed);
                pending.drain(..start);
                let mut lat = latencies.lock().unwrap();
                for key in ends.drain(..) {
                    lat.received(key, at);
                }
            }
        })
    };
    // Let the subscriber connect before the clock starts.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let next_batch: Arc<Vec<AtomicU64>> =
        Arc::new((0..settings.writers).map(|_| AtomicU64::new(0)).collect());
    for (name, rate) in [("max throughput", None), ("paced", Some(settings.rate))] {
        let phase = run_phase(&client, &base, settings, rate, &next_batch, &latencies).await;
        // Wait for the subscriber to catch up, so the next phase starts clean.
        let total: u64 = next_batch
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .sum::<u64>()
            * batch;
        let deadline = Instant::now() + Duration::from_secs(60);
        while received.load(Ordering::Relaxed) < total && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut phase = phase;
        phase.delivery = std::mem::take(&mut latencies.lock().unwrap().samples);
        let label = match rate {
            None => name.to_string(),
            Some(r) => format!("{name} at {r} records/s"),
        };
        print_phase(&label, settings, &phase);
    }
    println!(
        "subscriber received {} of {} records",
        received.load(Ordering::Relaxed),
        next_batch
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .sum::<u64>()
            * batch
    );
    subscriber.abort();
}

fn find_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

async fn run_phase(
    client: &reqwest::Client,
    base: &str,
    settings: &Settings,
    rate: Option<u64>,
    next_batch: &Arc<Vec<AtomicU64>>,
    latencies: &Arc<Mutex<Latencies>>,
) -> Phase {
    let batch = settings.batch;
    // Each writer's share of the rate: one batch per `period`, writers spread over it.
    let period = rate
        .map(|r| Duration::from_secs_f64(settings.writers as f64 * batch as f64 / r.max(1) as f64));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let tasks: Vec<_> = (0..settings.writers)
        .map(|w| {
            let (client, base, stop, latencies, next_batch) = (
                client.clone(),
                base.to_string(),
                stop.clone(),
                latencies.clone(),
                next_batch.clone(),
            );
            let writers = settings.writers;
            tokio::spawn(async move {
                let node = format!("n{w}");
                let mut acks = Vec::new();
                let (mut records, mut bytes) = (0u64, 0u64);
                let mut ticks = period.map(|p| {
                    let first = tokio::time::Instant::now() + p.mul_f64(w as f64 / writers as f64);
                    let mut t = tokio::time::interval_at(first, p);
                    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    t
                });
                while !stop.load(Ordering::Relaxed) {
                    if let Some(t) = ticks.as_mut() {
                        t.tick().await;
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                    }
                    let b = next_batch[w as usize].load(Ordering::Relaxed);
                    let mut body = String::with_capacity(batch as usize * 80);
                    for i in 0..batch {
                        let k = b * batch + i;
                        body.push_str(&format!(
                            "{{\"node\":\"{node}\",\"hlc\":[{},0],\"set\":{{\"bench.x\":{k},\"bench.ok\":true}}}}\n",
                            T0 + k
                        ));
                    }
                    bytes += body.len() as u64;
                    let sent = Instant::now();
                    let response = client
                        .post(format!("{base}/v1/records"))
                        .header("content-type", "application/x-ndjson")
                        .body(body)
                        .send()
                        .await
                        .expect("POST");
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    assert!(status.is_success(), "{status}: {text}");
                    let at = Instant::now();
                    acks.push(at - sent);
                    latencies.lock().unwrap().acked((w, b), at);
                    next_batch[w as usize].store(b + 1, Ordering::Relaxed);
                    records += batch;
                }
                (records, bytes, acks, Instant::now())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(settings.secs)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut records, mut bytes, mut acks) = (0, 0, Vec::new());
    let mut end = start;
    for t in tasks {
        let (r, b, a, finished) = t.await.expect("writer");
        records += r;
        bytes += b;
        acks.extend(a);
        end = end.max(finished);
    }
    Phase {
        elapsed: end - start,
        records,
        bytes,
        acks,
        delivery: Vec::new(),
    }
}
