//! Shared by the client tests: a real log server (`log_server::server::serve` over a `Store` in
//! a temporary directory) on a loopback port, in this process with its own runtime, and ways to
//! read back what it stored. Stopped on drop, so a failing test leaves nothing behind.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener as StdListener};
use std::time::{Duration, Instant};

use log_server::client::{subscribe, StreamItem, SubscribeError, SubscribeOptions};
use log_server::server::{serve, ServerConfig};
use log_server::store::{Store, StoreConfig};
use log_server::Record;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

pub struct TestServer {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub addr: SocketAddr,
    pub store: Store,
    pub token: Option<String>,
    runtime: Runtime,
    stop: Option<oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

/// A loopback address nobody listens on (it was free a moment ago): for a server that is down,
/// or one that comes up later.
pub fn free_addr() -> SocketAddr {
    let listener = StdListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("read the port")
}

impl TestServer {
    /// A server with default settings on a free port.
    pub fn start() -> TestServer {
        TestServer::start_with(free_addr(), ServerConfig::default(), |_| {})
    }

    /// A server on `addr`, with `config`, whose store configuration `store` may change (its
    /// directory is a fresh temporary one).
    pub fn start_with(
        addr: SocketAddr,
        config: ServerConfig,
        store: impl FnOnce(&mut StoreConfig),
    ) -> TestServer {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut store_config = StoreConfig::new(dir.path().join("data"));
        store(&mut store_config);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime for the server");
        let (store, _recovery) = Store::open(store_config).expect("open the store");
        // The port was free a moment ago; another process may just have taken it.
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match runtime.block_on(tokio::net::TcpListener::bind(addr)) {
                Ok(listener) => break listener,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("binding {addr}: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("cannot listen on {addr}: {e}"),
            }
        };
        // A recorder of our own, not the process-wide one: several servers run in one process.
        let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
            .build_recorder()
            .handle();
        let (stop, stopped) = oneshot::channel::<()>();
        let token = config.token.clone();
        let served = runtime.spawn(serve(listener, store.clone(), metrics, config, async {
            let _ = stopped.await;
        }));
        TestServer {
            url: format!("http://{addr}"),
            addr,
            store,
            token,
            runtime,
            stop: Some(stop),
            served: Some(served),
            _dir: dir,
        }
    }

    /// Stops serving (finishing requests in flight) and closes the store; the port is free
    /// again afterwards.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            let result = self.runtime.block_on(served);
            assert!(
                matches!(result, Ok(Ok(()))),
                "the server failed: {result:?}"
            );
            self.store.clone().close().expect("close the store");
        }
    }

    /// Runs a future on the server's runtime (for the async client API).
    pub fn block_on<F: std::future::Future>(&self, fut: F) -> F::Output {
        self.runtime.block_on(fut)
    }

    /// Runs a future in the background on the server's runtime.
    pub fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime.spawn(fut)
    }

    /// Everything stored, read back through `client::subscribe` with `follow=false`.
    pub fn records(&self) -> Vec<Record> {
        self.items(SubscribeOptions::default())
            .expect("read the stream")
            .into_iter()
            .filter_map(|item| match item {
                StreamItem::Record(r) => Some(r),
                StreamItem::Progress(_) => None,
            })
            .collect()
    }

    /// Every item of a `follow=false` subscription with `options`.
    pub fn items(&self, options: SubscribeOptions) -> Result<Vec<StreamItem>, SubscribeError> {
        let options = SubscribeOptions {
            follow: false,
            token: options.token.or_else(|| self.token.clone()),
            ..options
        };
        self.block_on(async {
            let mut sub = subscribe(&self.url, &options).await?;
            let mut items = Vec::new();
            while let Some(item) = sub.next().await {
                items.push(item?);
            }
            Ok(items)
        })
    }

    /// POSTs an NDJSON body to `/v1/records` (with the server's token); the status and body.
    pub fn post(&self, body: &str) -> (u16, String) {
        let request = reqwest::Client::new()
            .post(format!("{}/v1/records", self.url))
            .header("Content-Type", "application/x-ndjson")
            .body(body.to_string());
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        self.block_on(async {
            let response = request.send().await.expect("POST /v1/records");
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        })
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            let _ = self.runtime.block_on(served);
            let _ = self.store.clone().close();
        }
    }
}

/// Polls `done` every 10 ms for at most `limit`; whether it became true.
pub fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
