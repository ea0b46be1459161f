//! The client side of the log server (feature `client`): instrumenting a node and reading a
//! server's stream. Usable without the `server` feature; nothing here starts a server.
//!
//! - [`Recorder`]: a node's changes (`set`, `unset`, `add`, `remove`) buffered and turned into one
//!   SPEC §1.3 record per [`Recorder::commit`], stamped with the node's [`HlcClock`] (SPEC §1.2);
//!   [`Recorder::on_send`] / [`Recorder::on_receive`] carry the clock across the program's own
//!   messages, so that happened-before implies HLC order. A background thread ships the records
//!   to `POST {url}/v1/records` in batches (retrying with backoff), keeps a bounded buffer, sends
//!   heartbeats while the node is idle (SPEC §5.1) and flushes on shutdown.
//! - [`subscribe`]: `GET {url}/v1/stream` as a sequence of [`StreamItem`]s (records and progress
//!   lines), with HTTP failures as a typed [`SubscribeError`].
//!
//! The protocol both speak is documented on the server side (`server/mod.rs`, or the README).
//! Only plain `http://` URLs work in the default build (reqwest without a TLS backend); a program
//! that needs https enables a reqwest TLS feature (e.g. `rustls-tls`) in its own manifest.
//!
//! ```no_run
//! use log_server::client::{Recorder, RecorderConfig};
//!
//! # fn main() -> Result<(), log_server::client::RecorderError> {
//! let recorder = Recorder::start(RecorderConfig::new("n1", "http://127.0.0.1:7400"))?;
//! recorder.set("inv.a", 5)?;
//! recorder.add("zk.members", ["n1", "n2"])?;
//! recorder.commit()?; // one record, one HLC tick
//! let stamp = recorder.on_send()?; // put stamp.packed() into the message
//! # let _ = stamp;
//! recorder.shutdown(); // ships what is left (also done on drop)
//! # Ok(())
//! # }
//! ```
//!
//! [`HlcClock`]: crate::hlc::HlcClock

mod error_body;
mod recorder;
mod shipper;
mod subscribe;
mod value;

pub use recorder::{BufferPolicy, Recorder, RecorderConfig, RecorderError, RecorderStats};
pub use subscribe::{subscribe, StreamItem, SubscribeError, SubscribeOptions, Subscription};
pub use value::IntoValue;

pub use crate::hlc::{Hlc, HlcClock, HlcError};
pub use crate::record::Record;
pub use crate::value::{SetValue, Value};

/// `base` (e.g. `http://host:7400`, possibly with a path prefix behind a proxy) joined with an
/// API path, checked to be an http(s) URL.
fn endpoint(base: &str, path: &str) -> Result<reqwest::Url, String> {
    let joined = format!("{}{path}", base.trim_end_matches('/'));
    let url = reqwest::Url::parse(&joined)
        .map_err(|e| format!("bad server URL {base:?}: {e} (write e.g. http://127.0.0.1:7400)"))?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(format!(
            "bad server URL {base:?}: scheme {other:?}, expected http (e.g. http://127.0.0.1:7400)"
        )),
    }
}

/// An error and its causes: reqwest's own message ("error sending request") alone does not say
/// what happened ("connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_join_with_or_without_a_trailing_slash() {
        for base in ["http://127.0.0.1:7400", "http://127.0.0.1:7400/"] {
            assert_eq!(
                endpoint(base, "/v1/records").unwrap().as_str(),
                "http://127.0.0.1:7400/v1/records"
            );
        }
        assert_eq!(
            endpoint("http://proxy/rql/", "/v1/stream")
                .unwrap()
                .as_str(),
            "http://proxy/rql/v1/stream"
        );
        assert!(endpoint("127.0.0.1:7400", "/v1/records").is_err());
        let err = endpoint("ftp://host", "/v1/records").unwrap_err();
        assert!(err.contains("scheme \"ftp\""), "{err}");
        assert!(endpoint("not a url", "/v1/records").is_err());
    }
}
