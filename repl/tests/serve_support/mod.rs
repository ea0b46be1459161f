//! Shared by the `rql serve` tests: start the real binary on an ephemeral loopback port with its
//! own data directory, talk to it over HTTP, and stop it (killed on drop, so a failing test never
//! leaves a server behind).

#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub data: PathBuf,
    log: PathBuf,
}

impl Server {
    /// Starts `rql serve --listen 127.0.0.1:0 --data DATA ARGS...` and waits for its
    /// `listening on` line.
    pub fn start(data: &Path, args: &[&str]) -> Server {
        Server::start_at(data, "127.0.0.1:0", args)
    }

    /// [`Server::start`] listening on `listen` (e.g. the address of a server that stopped, to
    /// restart it where its clients expect it).
    pub fn start_at(data: &Path, listen: &str, args: &[&str]) -> Server {
        let log = data.with_extension("log");
        let stderr = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .expect("create the server log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_rql"))
            .args(["serve", "--listen", listen, "--data"])
            .arg(data)
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("RQL_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start rql serve");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "rql serve printed nothing in 30 s; log:\n{}",
                    read_log(&log)
                );
            }
        };
        let Some(rest) = line.strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("unexpected first line {line:?}; log:\n{}", read_log(&log));
        };
        let base = rest
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        assert!(base.starts_with("http://127.0.0.1:"), "{line}");
        Server {
            child,
            base,
            data: data.to_path_buf(),
            log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn log(&self) -> String {
        read_log(&self.log)
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        self.child.kill().expect("kill rql serve");
        self.child.wait().expect("reap rql serve");
    }

    /// SIGTERM, then waits for the exit (at most 20 s).
    pub fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for rql serve") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "rql serve did not stop within 20 s of SIGTERM; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

pub fn http_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("build the HTTP client")
}

/// A status and the body parsed as JSON (`Value::Null` if it is not JSON).
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn of(response: reqwest::blocking::Response) -> Reply {
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = response.text().expect("read the response body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            content_type,
            body,
            text,
        }
    }

    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }

    /// The line numbers the error lists.
    pub fn lines(&self) -> Vec<u64> {
        self.body["error"]["lines"]
            .as_array()
            .map(|ls| ls.iter().filter_map(|l| l["line"].as_u64()).collect())
            .unwrap_or_default()
    }

    /// Asserts a JSON error with this status and code and a message.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}", self.text);
        assert!(
            self.content_type.starts_with("application/json"),
            "{}",
            self.content_type
        );
        assert_eq!(self.code(), code, "{}", self.text);
        assert!(!self.message().is_empty(), "{}", self.text);
    }
}

pub fn post(
    client: &reqwest::blocking::Client,
    server: &Server,
    body: impl Into<Vec<u8>>,
) -> Reply {
    Reply::of(
        client
            .post(server.url("/v1/records"))
            .header("content-type", "application/x-ndjson")
            .body(body.into())
            .send()
            .expect("POST /v1/records"),
    )
}

pub fn get(client: &reqwest::blocking::Client, server: &Server, path: &str) -> Reply {
    Reply::of(client.get(server.url(path)).send().expect("GET"))
}

/// One record line: `node` at `[l, c]` setting `m.x` to `x`.
pub fn record(node: &str, l: u64, c: u64, x: i64) -> String {
    format!(r#"{{"node":"{node}","hlc":[{l},{c}],"set":{{"m.x":{x}}}}}"#)
}

pub fn batch(lines: &[String]) -> String {
    let mut body = lines.join("\n");
    body.push('\n');
    body
}

/// A stream line, classified.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Record {
        node: String,
        hlc: (u64, u64),
        text: String,
    },
    Progress(HashMap<String, (u64, u64)>),
    Error(Value),
}

pub fn classify(line: &str) -> Line {
    let v: Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("bad stream line {line:?}: {e}"));
    let hlc = |h: &Value| (h[0].as_u64().unwrap(), h[1].as_u64().unwrap());
    if let Some(p) = v.get("progress") {
        let map = p
            .as_object()
            .expect("progress is an object")
            .iter()
            .map(|(n, h)| (n.clone(), hlc(h)))
            .collect();
        return Line::Progress(map);
    }
    if v.get("error").is_some() {
        return Line::Error(v);
    }
    Line::Record {
        node: v["node"].as_str().expect("record has a node").to_string(),
        hlc: hlc(&v["hlc"]),
        text: line.to_string(),
    }
}

/// `GET /v1/stream?QUERY&follow=false`, every line classified; panics unless it is a 200 that ends
/// cleanly.
pub fn read_stream(client: &reqwest::blocking::Client, server: &Server, query: &str) -> Vec<Line> {
    let response = client
        .get(server.url(&format!("/v1/stream?{query}&follow=false")))
        .send()
        .expect("GET /v1/stream");
    assert_eq!(response.status().as_u16(), 200);
    let mut text = String::new();
    BufReader::new(response)
        .read_to_string(&mut text)
        .expect("the stream ends cleanly");
    text.lines().map(classify).collect()
}

/// The (node, hlc) of every record line.
pub fn records_of(lines: &[Line]) -> Vec<(String, (u64, u64))> {
    lines
        .iter()
        .filter_map(|l| match l {
            Line::Record { node, hlc, .. } => Some((node.clone(), *hlc)),
            _ => None,
        })
        .collect()
}

/// Polls `cond` every 20 ms for up to `timeout`.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
