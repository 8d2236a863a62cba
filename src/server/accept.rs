//! Accepting connections without spinning: when accept fails (at the file-descriptor limit
//! the pending connection stays queued and the listener stays readable, so retrying at once
//! burns a core), wait before the next try, longer while it keeps failing, and log it at
//! most once per interval.

use std::io;
use std::time::{Duration, Instant};

/// The first wait after a failed accept; doubled on every further failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// The longest wait: connections resume within this once descriptors are free again.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Accept failures are logged at most this often (with the number left unlogged).
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Tracks consecutive accept failures of one listener.
#[derive(Debug)]
pub(crate) struct AcceptBackoff {
    listener: &'static str,
    next: Duration,
    last_log: Option<Instant>,
    unlogged: u64,
}

impl AcceptBackoff {
    /// `listener` names the listener in the log ("socket", "metrics").
    pub(crate) fn new(listener: &'static str) -> Self {
        Self { listener, next: FIRST_BACKOFF, last_log: None, unlogged: 0 }
    }

    /// A connection was accepted: the next failure starts a fresh backoff.
    pub(crate) fn succeeded(&mut self) {
        self.next = FIRST_BACKOFF;
    }

    /// Logs the failure (rate limited) and waits before the caller may accept again.
    pub(crate) async fn failed(&mut self, error: &io::Error) {
        let now = Instant::now();
        if self.last_log.is_none_or(|at| now.duration_since(at) >= LOG_INTERVAL) {
            let hint = if is_out_of_descriptors(error) {
                "; the process is at its open-file limit (raise it, or find what holds connections open)"
            } else {
                ""
            };
            tracing::warn!(
                listener = self.listener,
                unlogged_failures = self.unlogged,
                retry_in_ms = self.next.as_millis() as u64,
                "cannot accept connections: {error}{hint}"
            );
            self.last_log = Some(now);
            self.unlogged = 0;
        } else {
            self.unlogged += 1;
        }
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(MAX_BACKOFF);
    }
}

/// EMFILE / ENFILE: no descriptor for the new connection.
fn is_out_of_descriptors(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_up_to_a_second_and_resets_on_success() {
        let mut backoff = AcceptBackoff::new("test");
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        let mut waits = Vec::new();
        for _ in 0..9 {
            waits.push(backoff.next);
            backoff.failed(&emfile).await;
        }
        let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        assert_eq!(backoff.unlogged, 8, "one line per interval, the rest counted");
        backoff.succeeded();
        assert_eq!(backoff.next, FIRST_BACKOFF);
    }

    #[test]
    fn descriptor_exhaustion_is_recognised() {
        assert!(is_out_of_descriptors(&io::Error::from_raw_os_error(libc::EMFILE)));
        assert!(is_out_of_descriptors(&io::Error::from_raw_os_error(libc::ENFILE)));
        assert!(!is_out_of_descriptors(&io::Error::from_raw_os_error(libc::ECONNABORTED)));
    }
}
