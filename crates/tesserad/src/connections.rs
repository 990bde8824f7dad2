//! Connection limits against slow and idle clients (slowloris): a cap on
//! open connections, a deadline for a request's headers and a deadline for
//! an idle kept-alive connection.
//!
//! [`ConnectionGuard`] is an `axum-server` acceptor. It refuses a
//! connection beyond the cap (closing it at once), and wraps the accepted
//! stream and the connection's service so that they share one
//! [`Phase`]: while a request is being answered no deadline applies (the
//! request timeout of `crate::api` bounds handlers); between requests the
//! stream's reads have a deadline, counted from the connection's start or
//! from the end of the previous response:
//!
//! * no byte of the next request yet: the keep-alive timeout after a
//!   response, the header-read timeout on a new connection;
//! * some bytes: the header-read timeout from the first of them, however
//!   slowly the rest trickles in.
//!
//! A read past its deadline fails with `TimedOut`, which makes hyper close
//! the connection.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Request, Response};
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tower::Service;

use crate::metrics::{ConnectionClose, Metrics};

/// The limits [`ConnectionGuard`] enforces.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections open at once; more are closed as soon as accepted.
    pub max_connections: usize,
    /// Time for a request's headers, from its first byte (or from the
    /// connection's start, for its first request).
    pub header_read_timeout: Duration,
    /// Time a kept-alive connection may stay idle after a response.
    pub keep_alive_timeout: Duration,
}

/// An `axum-server` acceptor enforcing [`ConnectionLimits`].
#[derive(Debug, Clone)]
pub struct ConnectionGuard {
    limits: ConnectionLimits,
    permits: Arc<Semaphore>,
    metrics: Option<Arc<Metrics>>,
}

impl ConnectionGuard {
    /// A guard for `limits`, counting in `metrics` when given.
    pub fn new(limits: ConnectionLimits, metrics: Option<Arc<Metrics>>) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
            metrics,
        }
    }

    fn count(&self, reason: ConnectionClose) {
        if let Some(metrics) = &self.metrics {
            metrics.connection_closed(reason);
        }
    }
}

impl<I, S> axum_server::accept::Accept<I, S> for ConnectionGuard {
    type Stream = GuardedStream<I>;
    type Service = GuardedService<S>;
    type Future = std::future::Ready<io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            self.count(ConnectionClose::Refused);
            tracing::debug!(
                max_connections = self.limits.max_connections,
                "connection refused: the connection limit is reached"
            );
            return std::future::ready(Err(io::Error::other("connection limit reached")));
        };
        let phase = Arc::new(Phase::default());
        let open = self.metrics.clone().map(OpenConnection::new);
        std::future::ready(Ok((
            GuardedStream {
                inner: stream,
                phase: phase.clone(),
                limits: self.limits,
                seen_generation: 0,
                waiting_since: Instant::now(),
                first_byte: None,
                deadline: Box::pin(tokio::time::sleep(self.limits.header_read_timeout)),
                deadline_at: None,
                metrics: self.metrics.clone(),
                _permit: permit,
                _open: open,
            },
            GuardedService {
                inner: service,
                phase,
            },
        )))
    }
}

/// Keeps the open-connections gauge up while the connection lives.
#[derive(Debug)]
struct OpenConnection(Arc<Metrics>);

impl OpenConnection {
    fn new(metrics: Arc<Metrics>) -> Self {
        metrics.connection_opened();
        Self(metrics)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connection_ended();
    }
}

/// What the stream and the service of one connection share.
#[derive(Debug, Default)]
struct Phase {
    /// Requests being answered.
    in_flight: AtomicUsize,
    /// Responses finished; changes when the connection turns idle.
    generation: AtomicU64,
}

/// Marks a request as being answered until dropped (with the response
/// body, or with the handler's future if it never answers).
#[derive(Debug)]
struct InFlight(Arc<Phase>);

impl InFlight {
    fn new(phase: Arc<Phase>) -> Self {
        phase.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(phase)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.generation.fetch_add(1, Ordering::AcqRel);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's stream, whose reads between requests have a deadline.
#[derive(Debug)]
pub struct GuardedStream<I> {
    inner: I,
    phase: Arc<Phase>,
    limits: ConnectionLimits,
    /// The phase's generation when the current wait began.
    seen_generation: u64,
    /// When the connection began waiting for a request.
    waiting_since: Instant,
    /// The first byte of the awaited request, once it came.
    first_byte: Option<Instant>,
    deadline: Pin<Box<Sleep>>,
    deadline_at: Option<Instant>,
    metrics: Option<Arc<Metrics>>,
    _permit: OwnedSemaphorePermit,
    _open: Option<OpenConnection>,
}

impl<I> GuardedStream<I> {
    /// When the current wait for a request ends, and why; `None` while a
    /// request is being answered.
    fn current_deadline(&mut self) -> Option<(Instant, ConnectionClose)> {
        if self.phase.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let generation = self.phase.generation.load(Ordering::Acquire);
        if generation != self.seen_generation {
            // A response ended since: a new wait begins now.
            self.seen_generation = generation;
            self.waiting_since = Instant::now();
            self.first_byte = None;
        }
        Some(match self.first_byte {
            Some(first) => (
                first + self.limits.header_read_timeout,
                ConnectionClose::HeaderTimeout,
            ),
            None if generation == 0 => (
                self.waiting_since + self.limits.header_read_timeout,
                ConnectionClose::HeaderTimeout,
            ),
            None => (
                self.waiting_since + self.limits.keep_alive_timeout,
                ConnectionClose::IdleTimeout,
            ),
        })
    }
}

impl<I> GuardedStream<I> {
    fn timed_out(&self, reason: ConnectionClose) -> io::Error {
        if let Some(metrics) = &self.metrics {
            metrics.connection_closed(reason);
        }
        io::Error::new(io::ErrorKind::TimedOut, reason.as_str())
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for GuardedStream<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let deadline = this.current_deadline();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if let Some((at, reason)) = deadline {
                    let now = Instant::now();
                    if now >= at {
                        // A client that keeps sending never lets a read
                        // wait, so the deadline is checked here too.
                        return Poll::Ready(Err(this.timed_out(reason)));
                    }
                    if this.first_byte.is_none() && buf.filled().len() > before {
                        this.first_byte = Some(now);
                    }
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                let Some((at, reason)) = deadline else {
                    return Poll::Pending;
                };
                if this.deadline_at != Some(at) {
                    this.deadline.as_mut().reset(at);
                    this.deadline_at = Some(at);
                }
                ready!(this.deadline.as_mut().poll(cx));
                Poll::Ready(Err(this.timed_out(reason)))
            }
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for GuardedStream<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A connection's service: marks each request in flight until its
/// response body ends.
#[derive(Debug, Clone)]
pub struct GuardedService<S> {
    inner: S,
    phase: Arc<Phase>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<Request<B>> for GuardedService<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let in_flight = InFlight::new(self.phase.clone());
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            Ok(response.map(|body| {
                Body::new(GuardedBody {
                    inner: body,
                    _in_flight: in_flight,
                })
            }))
        })
    }
}

/// A response body that keeps its request in flight until it is dropped.
struct GuardedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Raises the soft limit on open files as far as the hard limit allows and
/// returns how many connections fit under it (a margin is kept for the
/// store, the log and the listener).
pub fn fit_connection_cap(wanted: usize) -> usize {
    const MARGIN: u64 = 256;
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "cannot read the open-files limit");
            return wanted;
        }
    };
    let fits = usize::try_from(limit.saturating_sub(MARGIN)).unwrap_or(usize::MAX);
    if fits < wanted {
        tracing::warn!(
            max_connections = wanted,
            open_files_limit = limit,
            using = fits,
            "the open-files limit is too low for --max-connections; raise it (ulimit -n, LimitNOFILE=) to serve that many"
        );
        return fits.max(1);
    }
    wanted
}
