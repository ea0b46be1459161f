//! The recorder against a real log server in this process: batching, heartbeats, both buffer
//! policies with the server down, retries until it comes up, flush on shutdown and drop, HLC
//! causality through `on_send`/`on_receive`, refused records, tokens, and a lost answer.

mod client_support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use client_support::{free_addr, wait_for, TestServer};
use log_server::client::{
    BufferPolicy, Hlc, HlcClock, HlcError, Recorder, RecorderConfig, RecorderError, Value,
};
use log_server::server::ServerConfig;
use log_server::Record;

/// Quick timings for tests: short flush interval and retries, no heartbeats unless asked.
fn config(node: &str, url: &str) -> RecorderConfig {
    let mut config = RecorderConfig::new(node, url);
    config.flush_interval = Duration::from_millis(20);
    config.heartbeat_interval = None;
    config.retry_initial = Duration::from_millis(20);
    config.retry_max = Duration::from_millis(200);
    config.shutdown_timeout = Duration::from_secs(10);
    config
}

/// A physical clock the test sets by hand.
fn manual_clock(start: u64) -> (HlcClock, Arc<AtomicU64>) {
    let time = Arc::new(AtomicU64::new(start));
    let t = Arc::clone(&time);
    (HlcClock::new(move || t.load(Ordering::SeqCst)), time)
}

fn int(rec: &Record, var: &str) -> Option<i64> {
    rec.set
        .iter()
        .find(|(v, _)| v.as_str() == var)
        .and_then(|(_, value)| match value {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        })
}

fn of_node<'a>(records: &'a [Record], node: &str) -> Vec<&'a Record> {
    records.iter().filter(|r| r.node == node).collect()
}

#[test]
fn many_commits_go_out_in_few_requests_in_order() {
    let server = TestServer::start();
    let mut config = config("n1", &server.url);
    config.flush_interval = Duration::from_millis(500);
    config.max_batch_records = 100;
    let recorder = Recorder::start(config).unwrap();
    for i in 0..1000 {
        recorder.set("inv.a", i).unwrap();
        recorder.set("inv.b", i * 2).unwrap();
        assert!(recorder.commit().unwrap().is_some());
    }
    recorder.flush(Duration::from_secs(20)).unwrap();
    let stats = recorder.stats();
    assert_eq!(
        (stats.committed, stats.shipped, stats.failed, stats.buffered),
        (1000, 1000, 0, 0),
        "{stats:?}"
    );
    // Full batches go at once; the flush interval never had to pass.
    assert!(
        (10..=20).contains(&stats.batches),
        "{} requests for 1000 records in batches of 100",
        stats.batches
    );
    let records = server.records();
    assert_eq!(records.len(), 1000);
    for (i, rec) in records.iter().enumerate() {
        assert_eq!(rec.node, "n1");
        assert_eq!(int(rec, "inv.a"), Some(i as i64));
        assert_eq!(int(rec, "inv.b"), Some(2 * i as i64));
    }
    assert!(records.windows(2).all(|w| w[0].hlc < w[1].hlc));
}

#[test]
fn batches_keep_under_the_byte_limit() {
    let server = TestServer::start();
    let mut config = config("n1", &server.url);
    config.flush_interval = Duration::from_secs(3600);
    config.max_batch_bytes = 1000;
    let recorder = Recorder::start(config).unwrap();
    for i in 0..100 {
        recorder.set("inv.a", i).unwrap();
        recorder.commit().unwrap();
    }
    recorder.flush(Duration::from_secs(20)).unwrap();
    let stats = recorder.stats();
    // Each line is about 50 bytes: about 20 per request.
    assert!(stats.batches >= 5, "{stats:?}");
    assert_eq!(stats.shipped, 100);
    assert_eq!(server.records().len(), 100);
}

#[test]
fn heartbeats_while_idle_and_not_while_busy() {
    let server = TestServer::start();
    let mut config = config("n1", &server.url);
    config.heartbeat_interval = Some(Duration::from_millis(100));
    let recorder = Recorder::start(config).unwrap();
    recorder.set("inv.a", 1).unwrap();
    recorder.commit().unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || recorder.stats().heartbeats >= 3),
        "{:?}",
        recorder.stats()
    );

    // Busy: every commit resets the heartbeat timer.
    let before = recorder.stats().heartbeats;
    for i in 0..30 {
        recorder.set("inv.a", i).unwrap();
        recorder.commit().unwrap();
        thread::sleep(Duration::from_millis(10));
    }
    let during = recorder.stats().heartbeats - before;
    // Scheduling on a loaded machine may stretch a 10 ms sleep past 50 ms now and then.
    assert!(
        during <= 3,
        "{during} heartbeats while committing every 10 ms"
    );

    let stats = recorder.shutdown();
    assert_eq!(
        stats.shipped,
        stats.committed + stats.heartbeats,
        "{stats:?}"
    );
    let records = server.records();
    let heartbeats: Vec<&Record> = records.iter().filter(|r| r.is_heartbeat()).collect();
    assert_eq!(heartbeats.len() as u64, stats.heartbeats);
    assert!(heartbeats
        .iter()
        .all(|r| r.node == "n1" && r.to_json_line().starts_with(r#"{"node":"n1","hlc":["#)));
    assert!(records.windows(2).all(|w| w[0].hlc < w[1].hlc));
    assert!(!records[0].is_heartbeat());
}

#[test]
fn drop_policy_counts_drops_while_the_server_is_unreachable() {
    let addr = free_addr();
    let mut config = config("n1", &format!("http://{addr}"));
    config.capacity = 10;
    config.policy = BufferPolicy::Drop;
    config.shutdown_timeout = Duration::from_millis(300);
    let recorder = Recorder::start(config).unwrap();
    let (mut committed, mut dropped) = (0, 0);
    for i in 0..25 {
        recorder.set("inv.a", i).unwrap();
        match recorder.commit() {
            Ok(Some(_)) => committed += 1,
            Err(RecorderError::Dropped) => dropped += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((committed, dropped), (10, 15));
    assert!(wait_for(Duration::from_secs(10), || recorder
        .stats()
        .retries
        >= 2));
    let stats = recorder.stats();
    assert_eq!(
        (stats.committed, stats.dropped, stats.buffered),
        (10, 15, 10)
    );
    let error = stats.last_error.unwrap_or_default();
    assert!(error.contains("refused"), "{error}");

    let start = Instant::now();
    let stats = recorder.shutdown();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!((stats.abandoned, stats.shipped, stats.buffered), (10, 0, 0));
}

#[test]
fn block_policy_waits_for_room_until_a_late_server_comes_up() {
    let addr = free_addr();
    let mut config = config("n1", &format!("http://{addr}"));
    config.capacity = 5;
    config.policy = BufferPolicy::Block;
    let recorder = Arc::new(Recorder::start(config).unwrap());
    let writer = thread::spawn({
        let recorder = Arc::clone(&recorder);
        move || {
            for i in 0..20 {
                recorder.set("inv.a", i).unwrap();
                recorder.commit().unwrap();
            }
        }
    });
    assert!(wait_for(Duration::from_secs(10), || recorder
        .stats()
        .committed
        == 5));
    thread::sleep(Duration::from_millis(200));
    assert_eq!(
        recorder.stats().committed,
        5,
        "commits went past a full buffer"
    );
    assert!(!writer.is_finished());

    let server = TestServer::start_with(addr, ServerConfig::default(), |_| {});
    assert!(
        wait_for(Duration::from_secs(20), || writer.is_finished()),
        "{:?}",
        recorder.stats()
    );
    writer.join().unwrap();
    recorder.flush(Duration::from_secs(20)).unwrap();
    let stats = recorder.stats();
    assert_eq!((stats.committed, stats.shipped, stats.dropped), (20, 20, 0));
    assert!(stats.retries >= 1, "{stats:?}");
    let records = server.records();
    let values: Vec<_> = records.iter().map(|r| int(r, "inv.a").unwrap()).collect();
    assert_eq!(values, (0..20).collect::<Vec<_>>());
}

#[test]
fn block_policy_gives_up_at_shutdown() {
    let addr = free_addr();
    let mut config = config("n1", &format!("http://{addr}"));
    config.capacity = 1;
    config.shutdown_timeout = Duration::from_millis(100);
    let recorder = Arc::new(Recorder::start(config).unwrap());
    recorder.set("inv.a", 1).unwrap();
    recorder.commit().unwrap();
    let blocked = thread::spawn({
        let recorder = Arc::clone(&recorder);
        move || {
            recorder.set("inv.a", 2).unwrap();
            recorder.commit()
        }
    });
    thread::sleep(Duration::from_millis(100));
    assert!(!blocked.is_finished());
    let stats = recorder.shutdown();
    assert!(matches!(
        blocked.join().unwrap(),
        Err(RecorderError::Closed)
    ));
    assert_eq!((stats.committed, stats.abandoned), (1, 1));
}

#[test]
fn shutdown_and_drop_ship_what_is_buffered_at_once() {
    let server = TestServer::start();
    let mut first = config("n1", &server.url);
    first.flush_interval = Duration::from_secs(3600);
    let recorder = Recorder::start(first).unwrap();
    for i in 0..50 {
        recorder.set("inv.a", i).unwrap();
        recorder.commit().unwrap();
    }
    recorder.set("inv.a", 999).unwrap(); // never committed: discarded
    let start = Instant::now();
    let stats = recorder.shutdown();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!((stats.committed, stats.shipped), (50, 50));

    let mut second = config("n2", &server.url);
    second.flush_interval = Duration::from_secs(3600);
    let recorder = Recorder::start(second).unwrap();
    for i in 0..5 {
        recorder.set("inv.a", i).unwrap();
        recorder.commit().unwrap();
    }
    drop(recorder);

    let records = server.records();
    assert_eq!(of_node(&records, "n1").len(), 50);
    assert_eq!(of_node(&records, "n2").len(), 5);
    assert!(records.iter().all(|r| int(r, "inv.a") != Some(999)));
}

#[test]
fn send_and_receive_order_causally_related_records() {
    let server = TestServer::start();
    // n2's physical clock is 300 ms behind n1's: without the HLC its records would sort
    // before the messages that caused them.
    let (clock1, _t1) = manual_clock(1_700_000_010_000);
    let (clock2, t2) = manual_clock(1_700_000_009_700);
    let mut c1 = config("n1", &server.url);
    c1.clock = clock1;
    let mut c2 = config("n2", &server.url);
    c2.clock = clock2;
    let n1 = Recorder::start(c1).unwrap();
    let n2 = Recorder::start(c2).unwrap();

    n1.set("bank.balance", 90).unwrap();
    let sent = n1.on_send().unwrap(); // commits the pending change and stamps the message
    assert_eq!(n1.stats().committed, 1);
    let received = n2.on_receive(sent).unwrap();
    assert!(received > sent);
    n2.set("bank.balance", 110).unwrap();
    let credited = n2.commit().unwrap().unwrap();
    assert!(credited > received);
    let reply = n2.on_send().unwrap(); // nothing pending: a tick only
    assert!(reply > credited);
    assert_eq!(n2.stats().committed, 1);
    n1.on_receive(reply).unwrap();
    n1.set("bank.acked", true).unwrap();
    let acked = n1.commit().unwrap().unwrap();
    assert!(acked > reply);

    // A stamp more than 500 ms ahead of n2's physical clock is refused, the clock unchanged.
    let before = n2.last_hlc();
    let future = Hlc::new(1_700_000_009_700 + 501, 0).unwrap();
    assert!(matches!(
        n2.on_receive(future),
        Err(RecorderError::Clock(HlcError::DriftExceeded { .. }))
    ));
    assert_eq!(n2.last_hlc(), before);
    t2.store(1_700_000_009_702, Ordering::SeqCst);
    assert!(
        n2.on_receive(future).is_ok(),
        "within 500 ms of the new time"
    );

    n1.shutdown();
    n2.shutdown();
    let mut records = server.records();
    records.sort_by_key(|r| r.hlc);
    let order: Vec<(&str, Hlc)> = records.iter().map(|r| (r.node.as_str(), r.hlc)).collect();
    assert_eq!(
        order,
        [("n1", sent), ("n2", credited), ("n1", acked)],
        "HLC order follows the messages"
    );
}

#[test]
fn refused_records_are_counted_and_the_rest_of_their_batch_is_stored() {
    let server = TestServer::start();
    let (clock_a, _ta) = manual_clock(5000);
    let mut config_a = config("n1", &server.url);
    config_a.clock = clock_a;
    let a = Recorder::start(config_a).unwrap();
    a.set("inv.a", 1).unwrap();
    a.commit().unwrap();
    a.shutdown();

    // A second process under the same node id whose clock is behind the first's: its first two
    // records are out of order (409), the third is not. All three go in one request.
    let (clock_b, tb) = manual_clock(4000);
    let mut config_b = config("n1", &server.url);
    config_b.clock = clock_b;
    config_b.flush_interval = Duration::from_secs(3600);
    let b = Recorder::start(config_b).unwrap();
    for i in 2..4 {
        b.set("inv.a", i).unwrap();
        b.commit().unwrap();
    }
    tb.store(6000, Ordering::SeqCst);
    b.set("inv.a", 4).unwrap();
    b.commit().unwrap();
    b.flush(Duration::from_secs(20)).unwrap();
    let stats = b.stats();
    assert_eq!(
        (stats.failed, stats.shipped, stats.batches, stats.retries),
        (2, 1, 1, 0),
        "{stats:?}"
    );
    let error = stats.last_error.unwrap_or_default();
    assert!(
        error.contains("refused 2 records") && error.contains("out_of_order"),
        "{error}"
    );
    let values: Vec<_> = server
        .records()
        .iter()
        .map(|r| int(r, "inv.a").unwrap())
        .collect();
    assert_eq!(values, [1, 4]);
}

#[test]
fn the_token_is_sent_and_a_missing_one_fails_for_good() {
    let config_with_token = ServerConfig {
        token: Some("s3cret".into()),
        ..ServerConfig::default()
    };
    let server = TestServer::start_with(free_addr(), config_with_token, |_| {});
    let mut good = config("n1", &server.url);
    good.token = Some("s3cret".into());
    let good = Recorder::start(good).unwrap();
    good.set("inv.a", 1).unwrap();
    good.commit().unwrap();
    assert_eq!(good.shutdown().shipped, 1);

    let bad = Recorder::start(config("n2", &server.url)).unwrap();
    bad.set("inv.a", 1).unwrap();
    bad.commit().unwrap();
    bad.flush(Duration::from_secs(20)).unwrap();
    let stats = bad.shutdown();
    assert_eq!((stats.failed, stats.shipped, stats.retries), (1, 0, 0));
    assert!(stats
        .last_error
        .unwrap_or_default()
        .contains("unauthorized"));
    assert_eq!(server.records().len(), 1);
}

/// A proxy in front of the server that forwards everything but, on the first connection,
/// swallows the server's answer and hangs up: the batch is stored, the recorder never hears.
fn answer_dropping_proxy(upstream: std::net::SocketAddr) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&connections);
    thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(upstream) else {
                return;
            };
            let first = count.fetch_add(1, Ordering::SeqCst) == 0;
            let (mut c_read, mut s_write) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            thread::spawn(move || {
                let _ = std::io::copy(&mut c_read, &mut s_write);
                let _ = s_write.shutdown(Shutdown::Write);
            });
            let (mut s_read, mut c_write) = (server, client);
            thread::spawn(move || {
                if first {
                    // Wait for the answer (sent only once the batch is on disk), then hang up.
                    let mut buf = [0u8; 4096];
                    let _ = s_read.read(&mut buf);
                    let _ = c_write.shutdown(Shutdown::Both);
                    let _ = s_read.shutdown(Shutdown::Both);
                } else {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = s_read.read(&mut buf) {
                        if n == 0 || c_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = c_write.shutdown(Shutdown::Both);
                }
            });
        }
    });
    (url, connections)
}

#[test]
fn a_batch_whose_answer_was_lost_is_not_stored_twice() {
    let server = TestServer::start();
    let (url, connections) = answer_dropping_proxy(server.addr);
    let mut config = config("n1", &url);
    config.flush_interval = Duration::from_secs(3600);
    let recorder = Recorder::start(config).unwrap();
    for i in 0..3 {
        recorder.set("inv.a", i).unwrap();
        recorder.commit().unwrap();
    }
    recorder.flush(Duration::from_secs(20)).unwrap();
    let stats = recorder.shutdown();
    assert!(connections.load(Ordering::SeqCst) >= 2);
    // The recorder asked the server how far n1 got instead of sending the batch again.
    assert_eq!(
        (stats.shipped, stats.failed, stats.retries, stats.batches),
        (3, 0, 1, 0),
        "{stats:?}"
    );
    let values: Vec<_> = server
        .records()
        .iter()
        .map(|r| int(r, "inv.a").unwrap())
        .collect();
    assert_eq!(values, [0, 1, 2]);
}

#[test]
fn threads_share_one_recorder_and_stay_in_hlc_order() {
    let server = TestServer::start();
    let recorder = Arc::new(Recorder::start(config("n1", &server.url)).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let recorder = Arc::clone(&recorder);
            thread::spawn(move || {
                for i in 0..200 {
                    recorder.set(&format!("t.v{t}"), i).unwrap();
                    recorder.commit().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    recorder.flush(Duration::from_secs(20)).unwrap();
    let stats = recorder.stats();
    assert_eq!(stats.failed, 0, "{stats:?}");
    assert_eq!(stats.shipped, stats.committed);
    let records = server.records();
    assert_eq!(records.len() as u64, stats.committed);
    assert!(records.windows(2).all(|w| w[0].hlc < w[1].hlc));
    // Every thread's last value made it, in some record.
    for t in 0..4 {
        let var = format!("t.v{t}");
        let last = records.iter().rev().find_map(|r| int(r, &var));
        assert_eq!(last, Some(199));
    }
}

#[test]
fn recorders_are_shared_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Recorder>();
}

/// The recorder never needs the program's runtime: it can be started, used and dropped from
/// inside a (single-threaded) one; only dropping it blocks, until the shipper is done.
#[test]
fn works_inside_a_tokio_runtime() {
    let server = TestServer::start();
    let url = server.url.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stats = runtime.block_on(async move {
        let recorder = Recorder::start(config("n1", &url)).unwrap();
        let task = tokio::spawn(async move {
            for i in 0..10 {
                recorder.set("inv.a", i).unwrap();
                recorder.commit().unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let stats = recorder.stats();
            drop(recorder);
            stats
        });
        task.await.unwrap()
    });
    assert_eq!(stats.committed, 10);
    assert_eq!(server.records().len(), 10);
}

#[test]
fn durations_may_be_practically_infinite() {
    let server = TestServer::start();
    let mut config = config("n1", &server.url);
    config.flush_interval = Duration::MAX;
    config.heartbeat_interval = Some(Duration::MAX);
    config.retry_max = Duration::MAX;
    config.shutdown_timeout = Duration::MAX;
    let recorder = Recorder::start(config).unwrap();
    recorder.set("inv.a", 1).unwrap();
    recorder.commit().unwrap();
    recorder.flush(Duration::MAX).unwrap();
    assert_eq!(recorder.shutdown().shipped, 1);
}
