//! What the gateway clients (`websocket`, `http`, `grpc`) share: the reconnect policy and the
//! receiving half fed by a connection's driver task.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{FrameReceiver, Termination};
use crate::error::{Error, Result};

/// Reconnect attempts after a dropped connection, before the stream fails.
pub const MAX_RECONNECTS: u32 = 5;
/// A client acks the gateway's frames at least every this many frames.
pub const ACK_EVERY: u64 = 16;
/// The first reconnect delay; doubles with each attempt.
const BACKOFF_BASE: Duration = Duration::from_millis(100);

/// 100 ms·2^attempt, times a jitter factor in [0.5, 1.5).
pub(crate) fn backoff(attempt: u32) -> Duration {
    let base = BACKOFF_BASE * 2u32.saturating_pow(attempt);
    let mut h = RandomState::new().build_hasher();
    h.write_u32(attempt);
    let jitter = 0.5 + (h.finish() % 1000) as f64 / 1000.0;
    base.mul_f64(jitter)
}

/// A transport error with a context and a message.
pub(crate) fn transport_error(context: &'static str, message: impl std::fmt::Display) -> Error {
    Error::transport(context, std::io::Error::other(message.to_string()))
}

/// What a driver task hands the receiving half.
#[derive(Debug)]
pub(crate) enum Event {
    Frame(Bytes),
    /// The gateway refused one of our frames; the stream goes on.
    Refused(Error),
    End(Termination),
    Failed(Error),
}

/// The receiving half of a gateway connection (WebSocket, HTTP or gRPC).
#[derive(Debug)]
pub struct GatewayReceiver {
    rx: mpsc::Receiver<Event>,
    ended: Option<Termination>,
}

impl GatewayReceiver {
    pub(crate) fn new(rx: mpsc::Receiver<Event>) -> Self {
        Self { rx, ended: None }
    }
}

impl FrameReceiver for GatewayReceiver {
    async fn recv(&mut self) -> Result<Option<Result<Bytes>>> {
        if self.ended.is_some() {
            return Ok(None);
        }
        match self.rx.recv().await {
            Some(Event::Frame(f)) => Ok(Some(Ok(f))),
            Some(Event::Refused(e)) => Ok(Some(Err(e))),
            Some(Event::End(t)) => {
                self.ended = Some(t);
                Ok(None)
            }
            Some(Event::Failed(e)) => {
                self.ended = Some(Termination {
                    stderr_tail: e.to_string(),
                    ..Termination::default()
                });
                Err(e)
            }
            None => {
                self.ended = Some(Termination::default());
                Ok(None)
            }
        }
    }

    fn termination(&self) -> Option<Termination> {
        self.ended.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter() {
        for k in 0..MAX_RECONNECTS {
            let d = backoff(k);
            let base = BACKOFF_BASE * 2u32.pow(k);
            assert!(d >= base / 2 && d < base * 3 / 2, "{k}: {d:?}");
        }
    }

    #[tokio::test]
    async fn the_receiver_ends_with_the_termination_and_stays_ended() {
        let (tx, rx) = mpsc::channel(4);
        let mut r = GatewayReceiver::new(rx);
        tx.send(Event::Frame(Bytes::from_static(b"{}")))
            .await
            .unwrap();
        tx.send(Event::Refused(Error::FrameTooLarge { limit: 1, size: 2 }))
            .await
            .unwrap();
        tx.send(Event::End(Termination::clean())).await.unwrap();
        assert_eq!(r.recv().await.unwrap().unwrap().unwrap(), "{}");
        assert!(matches!(
            r.recv().await.unwrap().unwrap(),
            Err(Error::FrameTooLarge { .. })
        ));
        assert!(r.recv().await.unwrap().is_none());
        assert_eq!(r.termination(), Some(Termination::clean()));
        assert!(r.recv().await.unwrap().is_none());
    }
}
