//! The TCP listener the server runs on: it bounds concurrent connections and cuts off peers that
//! stop reading.
//!
//! Each accepted connection takes a slot. A connection beyond the limit is still accepted and
//! served, but only to answer its requests with a 503 JSON error and close (so a client gets an
//! answer instead of hanging in the kernel's accept queue); beyond twice the limit connections are
//! closed at once. A write that makes no progress for the stall timeout fails the connection,
//! which is how a subscriber that stopped reading is disconnected even while its response body is
//! not being polled. A connection on which nothing at all is read or written for the idle timeout
//! (an idle keep-alive connection, or a client that opened one and sent nothing) is closed, so
//! idle clients cannot hold every slot.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

pub struct LimitedListener {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    /// Connections that are only told "too many connections"; bounded too.
    refusals: Arc<Semaphore>,
    stall_timeout: Duration,
    idle_timeout: Duration,
}

impl LimitedListener {
    pub fn new(
        listener: TcpListener,
        max_connections: usize,
        stall_timeout: Duration,
        idle_timeout: Duration,
    ) -> Self {
        LimitedListener {
            listener,
            slots: Arc::new(Semaphore::new(max_connections)),
            refusals: Arc::new(Semaphore::new(max_connections.max(1))),
            stall_timeout,
            idle_timeout,
        }
    }
}

impl Listener for LimitedListener {
    type Io = Connection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Connection, SocketAddr) {
        loop {
            let (stream, remote) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning; the
                    // connections being served are not affected.
                    tracing::error!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            // Responses are written in whole chunks; Nagle would only add latency to the stream.
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!("set TCP_NODELAY on {remote}: {e}");
            }
            let slot = match self.slots.clone().try_acquire_owned() {
                Ok(permit) => Slot::Admitted(permit),
                Err(_) => match self.refusals.clone().try_acquire_owned() {
                    Ok(permit) => {
                        tracing::warn!(
                            "connection from {remote} refused: connection limit reached"
                        );
                        Slot::Refused(permit)
                    }
                    Err(_) => {
                        tracing::warn!(
                            "connection from {remote} closed: connection limit reached twice over"
                        );
                        continue;
                    }
                },
            };
            let conn = Connection {
                stream,
                remote,
                slot,
                stall_timeout: self.stall_timeout,
                stall: None,
                idle_timeout: self.idle_timeout,
                last_active: Instant::now(),
                idle: None,
            };
            return (conn, remote);
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

enum Slot {
    Admitted(#[allow(dead_code)] OwnedSemaphorePermit),
    Refused(#[allow(dead_code)] OwnedSemaphorePermit),
}

/// An accepted TCP connection holding its slot until it closes.
pub struct Connection {
    stream: TcpStream,
    remote: SocketAddr,
    slot: Slot,
    stall_timeout: Duration,
    /// Started when a write first returns `Pending`; reset by any progress.
    stall: Option<Pin<Box<Sleep>>>,
    idle_timeout: Duration,
    /// Last time bytes were read or written.
    last_active: Instant,
    /// Armed while a read is pending, for `last_active + idle_timeout`.
    idle: Option<Pin<Box<Sleep>>>,
}

impl Connection {
    /// A pending read fails once nothing has moved either way for the idle timeout. Writes
    /// count, so a long stream whose client sends nothing is not idle.
    fn watch_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let deadline = self.last_active + self.idle_timeout;
            let timer = self
                .idle
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if self.last_active + self.idle_timeout <= Instant::now() {
                tracing::debug!(
                    "closing the idle connection from {} after {:?}",
                    self.remote,
                    self.idle_timeout
                );
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("nothing sent or received for {:?}", self.idle_timeout),
                )));
            }
        }
    }

    fn watch_stall<T>(
        &mut self,
        cx: &mut Context<'_>,
        res: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match res {
            Poll::Ready(r) => {
                self.stall = None;
                self.last_active = Instant::now();
                Poll::Ready(r)
            }
            Poll::Pending => {
                let timeout = self.stall_timeout;
                let timer = self
                    .stall
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        metrics::counter!("rql_stalled_disconnects_total").increment(1);
                        tracing::warn!(
                            "closing the connection from {}: it read nothing for {timeout:?}",
                            self.remote
                        );
                        Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("the peer read nothing for {timeout:?}"),
                        )))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(r) => {
                self.idle = None;
                self.last_active = Instant::now();
                Poll::Ready(r)
            }
            Poll::Pending => self.watch_idle(cx),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.watch_stall(cx, res)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.watch_stall(cx, res)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let res = Pin::new(&mut self.stream).poll_flush(cx);
        self.watch_stall(cx, res)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// What the routes learn about the connection a request came on.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionInfo {
    pub remote: SocketAddr,
    /// False when the connection is over the limit: every request on it gets a 503.
    pub admitted: bool,
}

impl Connected<IncomingStream<'_, LimitedListener>> for ConnectionInfo {
    fn connect_info(stream: IncomingStream<'_, LimitedListener>) -> Self {
        ConnectionInfo {
            remote: *stream.remote_addr(),
            admitted: matches!(stream.io().slot, Slot::Admitted(_)),
        }
    }
}
