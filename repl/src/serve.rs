//! `rql serve`: runs the log server (`log_server::server` over `log_server::store`) until SIGINT
//! or SIGTERM, then finishes the requests in flight and closes the store.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytesize::ByteSize;
use clap::Args;
use log_server::server::{self, ServerConfig};
use log_server::store::{Store, StoreConfig};

use crate::query::EXIT_FAILURE;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on. The default accepts local connections only; port 0 picks a free
    /// port (the line printed at start says which).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7400")]
    pub listen: SocketAddr,
    /// Directory of the log [default: rql under the user's data directory, e.g.
    /// ~/.local/share/rql].
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Delete whole segments whose newest record arrived longer ago than this (e.g. 24h, 90m);
    /// `off` keeps records regardless of age.
    #[arg(long, value_name = "AGE", default_value = "24h", value_parser = duration_or_off)]
    pub retention: OrOff<Duration>,
    /// Delete the oldest whole segments while the log is larger than this (e.g. 10GiB, 500MB);
    /// `off` for no size bound.
    #[arg(long, value_name = "SIZE", default_value = "10GiB", value_parser = size_or_off)]
    pub max_bytes: OrOff<u64>,
    /// Require `Authorization: Bearer TOKEN` on every endpoint but /v1/health. Prefer the
    /// environment variable, which other users cannot see in the process list.
    #[arg(long, value_name = "TOKEN", env = "RQL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Start a new segment file once the current one is this large.
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = size)]
    pub segment_bytes: u64,
    /// Largest ingest request body.
    #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = size)]
    pub max_body_bytes: u64,
    /// Longest record line in an ingest body.
    #[arg(long, value_name = "SIZE", default_value = "1MiB", value_parser = size)]
    pub max_line_bytes: u64,
    /// Distinct nodes the log accepts; a batch from a further node is rejected.
    #[arg(long, value_name = "N", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub max_nodes: u64,
    /// Concurrent connections; further ones are answered 503.
    #[arg(long, value_name = "N", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// Concurrent stream subscribers; further ones are answered 503.
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_subscribers: u64,
    /// A node that sent nothing for this long is listed as idle.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = duration)]
    pub idle_timeout: Duration,
    /// Longest gap between progress lines on an idle stream.
    #[arg(long, value_name = "DURATION", default_value = "200ms", value_parser = duration)]
    pub heartbeat: Duration,
    /// Disconnect a client that reads nothing for this long.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration)]
    pub stall_timeout: Duration,
    /// Close a connection on which nothing is sent or received for this long.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration)]
    pub connection_idle_timeout: Duration,
    /// An ingest body must arrive within this long.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration)]
    pub request_timeout: Duration,
    /// How often retention runs.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration)]
    pub retention_interval: Duration,
}

fn duration(text: &str) -> Result<Duration, String> {
    let d =
        humantime::parse_duration(text).map_err(|e| format!("{e} (write e.g. 500ms, 30s, 24h)"))?;
    if d.is_zero() {
        return Err("must be more than 0".into());
    }
    Ok(d)
}

/// A bound that `off` switches off.
#[derive(Clone, Copy, Debug)]
pub struct OrOff<T>(pub Option<T>);

fn duration_or_off(text: &str) -> Result<OrOff<Duration>, String> {
    if text == "off" {
        return Ok(OrOff(None));
    }
    duration(text).map(|d| OrOff(Some(d)))
}

fn size(text: &str) -> Result<u64, String> {
    let bytes = text
        .parse::<ByteSize>()
        .map_err(|e| format!("{e} (write e.g. 64MiB, 10GiB, 500MB)"))?
        .as_u64();
    if bytes == 0 {
        return Err("must be more than 0 bytes".into());
    }
    Ok(bytes)
}

fn size_or_off(text: &str) -> Result<OrOff<u64>, String> {
    if text == "off" {
        return Ok(OrOff(None));
    }
    size(text).map(|n| OrOff(Some(n)))
}

pub fn run(args: &ServeArgs) -> ExitCode {
    init_logging();
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Logs to stderr; `RUST_LOG` overrides the default level (info).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn serve(args: &ServeArgs) -> Result<(), String> {
    let data = match &args.data {
        Some(dir) => dir.clone(),
        None => dirs::data_dir()
            .map(|d| d.join("rql"))
            .ok_or("no user data directory is known here; pass --data DIR")?,
    };
    std::fs::create_dir_all(&data)
        .map_err(|e| format!("cannot create the data directory {}: {e}", data.display()))?;
    let to_usize = |n: u64, flag: &str| {
        usize::try_from(n).map_err(|_| format!("{flag} {n} is too large for this machine"))
    };
    let store_config = StoreConfig {
        dir: data.clone(),
        segment_bytes: args.segment_bytes,
        retention_age: args.retention.0,
        max_bytes: args.max_bytes.0,
        max_nodes: to_usize(args.max_nodes, "--max-nodes")?,
    };
    let config = ServerConfig {
        token: match &args.token {
            Some(t) if t.trim().is_empty() => {
                return Err(
                    "the token is empty; give a non-empty --token (or RQL_TOKEN), or \
                            none to run without one"
                        .into(),
                )
            }
            token => token.clone(),
        },
        max_body_bytes: to_usize(args.max_body_bytes, "--max-body-bytes")?,
        max_line_bytes: to_usize(args.max_line_bytes, "--max-line-bytes")?,
        max_connections: to_usize(args.max_connections, "--max-connections")?,
        max_subscribers: to_usize(args.max_subscribers, "--max-subscribers")?,
        idle_timeout: args.idle_timeout,
        heartbeat_interval: args.heartbeat,
        stall_timeout: args.stall_timeout,
        connection_idle_timeout: args.connection_idle_timeout,
        request_timeout: args.request_timeout,
        retention_interval: args.retention_interval,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async move {
        let metrics = server::install_metrics()?;
        let (store, recovery) = Store::open(store_config).map_err(|e| e.to_string())?;
        tracing::info!(
            "opened {}: {} segments, {} records of {} nodes",
            data.display(),
            recovery.segments,
            recovery.records,
            recovery.nodes
        );
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("cannot read the listening address: {e}"))?;
        if !addr.ip().is_loopback() && config.token.is_none() {
            tracing::warn!(
                "listening on {addr}, reachable from other machines, without --token: anyone \
                 who can connect can write and read the log"
            );
        }
        // Scripts and tests read the port from this line.
        println!("listening on http://{addr} (data: {})", data.display());
        let served = server::serve(listener, store.clone(), metrics, config, shutdown_signal())
            .await
            .map_err(|e| format!("the server failed: {e}"));
        let closed = tokio::task::spawn_blocking(move || store.close())
            .await
            .map_err(|e| format!("closing the store failed: {e}"))?
            .map_err(|e| format!("closing the store failed: {e}"));
        served?;
        closed?;
        tracing::info!("stopped; every acknowledged record is on disk");
        Ok(())
    })
}

/// SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = terminate => tracing::info!("SIGTERM received"),
    }
}
