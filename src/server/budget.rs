//! How many request bytes the server reads ahead of handling them. Each stream's body is
//! read into memory until its message is whole (up to 4 MiB); without a bound, one client's
//! 256 streams could make the server hold 1 GiB. Bytes are taken from two budgets before a
//! body's data reaches the decoder: the connection's (a stream over it waits, and HTTP/2 flow
//! control stops its client) and the whole server's (a stream over it fails with
//! RESOURCE_EXHAUSTED, so no client can hold up the others). A body returns what it took
//! when it is dropped, once its message is decoded.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

/// Request bytes one connection may have read and not yet handled: a few whole 4 MiB
/// messages (the driver multiplexes a node's mounts over one connection; a real Mount
/// request is a few KiB).
pub(super) const CONNECTION_BYTES: usize = 16 * 1024 * 1024;
/// Request bytes all connections together may have read and not yet handled.
pub(super) const TOTAL_BYTES: usize = 64 * 1024 * 1024;

type Acquire = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

/// A request body that reads only what its connection's and the server's budgets allow.
pub(super) struct Budgeted {
    inner: Incoming,
    connection: Arc<Semaphore>,
    total: Arc<Semaphore>,
    /// What this body took; returned when it is dropped.
    held: Vec<OwnedSemaphorePermit>,
    /// A frame read from the connection, waiting for the connection's budget.
    waiting: Option<(Frame<Bytes>, Acquire)>,
}

impl Budgeted {
    pub(super) fn new(inner: Incoming, connection: Arc<Semaphore>, total: Arc<Semaphore>) -> Self {
        Self { inner, connection, total, held: Vec::new(), waiting: None }
    }
}

fn exhausted() -> Box<dyn std::error::Error + Send + Sync> {
    Box::new(tonic::Status::resource_exhausted(format!(
        "the provider holds {} MiB of requests not yet handled, its limit: try again shortly",
        TOTAL_BYTES >> 20
    )))
}

impl Body for Budgeted {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Some((_, acquire)) = &mut this.waiting {
            let permit = ready!(acquire.as_mut().poll(cx)).map_err(|_| exhausted())?;
            this.held.push(permit);
            let (frame, _) = this.waiting.take().unwrap_or_else(|| unreachable!("checked above"));
            return Poll::Ready(Some(Ok(frame)));
        }
        let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return Poll::Ready(Some(Err(Box::new(e)))),
            None => return Poll::Ready(None),
        };
        let size = frame.data_ref().map_or(0, Bytes::len);
        // An HTTP/2 DATA frame is at most 16 MiB, far below u32::MAX.
        let Ok(permits) = u32::try_from(size) else { return Poll::Ready(Some(Err(exhausted()))) };
        if permits == 0 {
            return Poll::Ready(Some(Ok(frame)));
        }
        match this.total.clone().try_acquire_many_owned(permits) {
            Ok(permit) => this.held.push(permit),
            Err(_) => return Poll::Ready(Some(Err(exhausted()))),
        }
        this.waiting = Some((frame, Box::pin(this.connection.clone().acquire_many_owned(permits))));
        // Poll the acquisition at once: usually it is granted.
        self.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.waiting.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
