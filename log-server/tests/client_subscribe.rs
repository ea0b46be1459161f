//! `client::subscribe` against a real log server in this process: history with progress lines,
//! `since` and `nodes`, the live tail, `410 since_too_old` and other HTTP errors.

mod client_support;

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::Duration;

use client_support::{free_addr, TestServer};
use futures_util::StreamExt;
use log_server::client::{subscribe, Hlc, StreamItem, SubscribeError, SubscribeOptions};
use log_server::server::ServerConfig;

fn hlc(l: u64, c: u64) -> Hlc {
    Hlc::new(l, c).unwrap()
}

fn line(node: &str, l: u64, value: i64) -> String {
    let node = serde_json::to_string(node).unwrap();
    format!(r#"{{"node":{node},"hlc":[{l},0],"set":{{"inv.a":{value}}}}}"#)
}

fn post_lines(server: &TestServer, lines: &[String]) {
    let (status, body) = server.post(&(lines.join("\n") + "\n"));
    assert_eq!(status, 200, "{body}");
}

fn records_of(items: &[StreamItem]) -> Vec<String> {
    items
        .iter()
        .filter_map(|item| match item {
            StreamItem::Record(r) => Some(r.to_json_line()),
            StreamItem::Progress(_) => None,
        })
        .collect()
}

#[test]
fn history_comes_with_progress_and_ends_when_caught_up() {
    let server = TestServer::start();
    let lines = [
        line("n1", 1000, 1),
        line("n2", 1001, 2),
        line("n1", 1002, 3),
    ];
    post_lines(&server, &lines);
    let items = server.items(SubscribeOptions::default()).unwrap();
    assert_eq!(
        records_of(&items),
        lines,
        "each record is exactly its stored line"
    );
    let Some(StreamItem::Progress(last)) = items.last() else {
        panic!("a clean end comes with a progress line: {items:?}");
    };
    assert_eq!(
        last,
        &BTreeMap::from([
            ("n1".to_string(), hlc(1002, 0)),
            ("n2".to_string(), hlc(1001, 0))
        ])
    );
}

#[test]
fn since_and_nodes_select_records() {
    let server = TestServer::start();
    let odd = "a b&c=d/é"; // needs escaping in the query string
    let lines = [
        line("n1", 1000, 1),
        line(odd, 1001, 2),
        line("n1", 1002, 3),
        line(odd, 1003, 4),
    ];
    post_lines(&server, &lines);
    let since = SubscribeOptions {
        since: hlc(1001, 0),
        ..SubscribeOptions::default()
    };
    assert_eq!(records_of(&server.items(since).unwrap()), lines[1..]);
    let nodes = SubscribeOptions {
        nodes: Some(vec![odd.to_string()]),
        ..SubscribeOptions::default()
    };
    assert_eq!(
        records_of(&server.items(nodes).unwrap()),
        [lines[1].clone(), lines[3].clone()]
    );
}

#[test]
fn follow_delivers_live_records_and_idle_progress() {
    let server = TestServer::start();
    post_lines(&server, &[line("n1", 1000, 1)]);
    let (tx, rx) = mpsc::channel();
    let url = server.url.clone();
    let reader = server.spawn(async move {
        let sub = subscribe(&url, &SubscribeOptions::default()).await;
        let mut stream = match sub {
            Ok(sub) => sub.into_stream().boxed(),
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        while let Some(item) = stream.next().await {
            if tx.send(item).is_err() {
                return;
            }
        }
    });
    let next = || {
        rx.recv_timeout(Duration::from_secs(10))
            .expect("an item within 10 s")
            .expect("no error")
    };
    let first = next();
    assert!(
        matches!(&first, StreamItem::Record(r) if r.hlc == hlc(1000, 0)),
        "{first:?}"
    );
    // Nothing new: the server sends progress lines every heartbeat (200 ms).
    let mut progress = 0;
    while progress < 3 {
        match next() {
            StreamItem::Progress(p) => {
                assert_eq!(p.get("n1"), Some(&hlc(1000, 0)));
                progress += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    post_lines(&server, &[line("n2", 1005, 7)]);
    let live = loop {
        match next() {
            StreamItem::Record(r) => break r,
            StreamItem::Progress(_) => {}
        }
    };
    assert_eq!(live.to_json_line(), line("n2", 1005, 7));
    reader.abort();
}

#[test]
fn since_older_than_the_retained_history_is_410_naming_the_earliest() {
    let server = TestServer::start_with(free_addr(), ServerConfig::default(), |store| {
        store.segment_bytes = 1024;
        store.max_bytes = Some(4096);
    });
    for batch in 0..40u64 {
        let lines: Vec<String> = (0..10)
            .map(|k| line("n1", 1000 + batch * 10 + k, k as i64))
            .collect();
        post_lines(&server, &lines);
    }
    server.store.enforce_retention().unwrap();
    let earliest = server.store.stats().earliest;
    assert!(earliest > Hlc::MIN, "retention deleted nothing");

    let err = server.items(SubscribeOptions::default()).unwrap_err();
    let SubscribeError::Http {
        status,
        code,
        message,
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!((*status, code.as_str()), (410, "since_too_old"));
    assert!(
        message.contains(&earliest.packed().to_string()),
        "{message}"
    );
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("410 since_too_old"), "{err}");

    let kept = server
        .items(SubscribeOptions {
            since: earliest,
            ..SubscribeOptions::default()
        })
        .unwrap();
    assert!(!records_of(&kept).is_empty());
}

#[test]
fn http_failures_are_typed() {
    let config = ServerConfig {
        token: Some("s3cret".into()),
        ..ServerConfig::default()
    };
    let server = TestServer::start_with(free_addr(), config, |_| {});
    let open = |options: SubscribeOptions| {
        server.block_on(async { subscribe(&server.url, &options).await.map(|_| ()) })
    };
    let err = open(SubscribeOptions::default()).unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert_eq!(err.code(), Some("unauthorized"));
    assert!(err.to_string().contains("Bearer"), "{err}");
    let wrong = SubscribeOptions {
        token: Some("nope".into()),
        ..SubscribeOptions::default()
    };
    assert_eq!(open(wrong).unwrap_err().code(), Some("unauthorized"));
    let right = SubscribeOptions {
        token: Some("s3cret".into()),
        ..SubscribeOptions::default()
    };
    assert!(open(right).is_ok());

    // Nobody listening.
    let down = format!("http://{}", free_addr());
    let err = server
        .block_on(async {
            subscribe(&down, &SubscribeOptions::default())
                .await
                .map(|_| ())
        })
        .unwrap_err();
    assert!(matches!(err, SubscribeError::Connect(_)), "{err:?}");
    assert!(err.is_retryable());
}

#[test]
fn a_stopped_server_ends_the_stream_cleanly() {
    let mut server = TestServer::start();
    post_lines(&server, &[line("n1", 1000, 1)]);
    let url = server.url.clone();
    let (tx, rx) = mpsc::channel();
    server.spawn(async move {
        let mut sub = subscribe(&url, &SubscribeOptions::default()).await.unwrap();
        while let Some(item) = sub.next().await {
            let _ = tx.send(Some(item));
        }
        let _ = tx.send(None);
    });
    let first = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(matches!(first, Some(Ok(StreamItem::Record(_)))));
    server.stop();
    // Progress lines (maybe), then the end: no error.
    loop {
        match rx.recv_timeout(Duration::from_secs(10)).unwrap() {
            Some(Ok(StreamItem::Progress(_))) => {}
            None => break,
            other => panic!("{other:?}"),
        }
    }
}
