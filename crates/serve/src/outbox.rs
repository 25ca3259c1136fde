//! A connection's outgoing frames: a bounded queue drained by one writer task, so a client that
//! does not read holds back only its own sandboxes' output, never the daemon's memory.

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::mpsc;

/// Frames queued per connection before senders wait.
pub const QUEUED_FRAMES: usize = 64;

/// Where a connection's frames are queued.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Vec<u8>>,
}

impl Outbox {
    /// An outbox and the receiving end for [`write_frames`].
    pub fn new() -> (Outbox, mpsc::Receiver<Vec<u8>>) {
        let (tx, rx) = mpsc::channel(QUEUED_FRAMES);
        (Outbox { tx }, rx)
    }

    /// Queues one frame (waits while the queue is full; a closed connection drops it).
    pub async fn send(&self, frame: &impl Serialize) {
        let payload = match serde_json::to_vec(frame) {
            Ok(payload) => payload,
            Err(e) => {
                tracing::error!(error = %e, "a frame could not be serialized");
                return;
            }
        };
        if let Some(frame) = bunker_api::protocol::encode_frame(&payload) {
            let _ = self.tx.send(frame).await;
        }
    }
}

/// Writes queued frames until every sender is gone or the socket fails.
pub async fn write_frames(mut socket: OwnedWriteHalf, mut frames: mpsc::Receiver<Vec<u8>>) {
    while let Some(frame) = frames.recv().await {
        if socket.write_all(&frame).await.is_err() {
            return;
        }
    }
    let _ = socket.shutdown().await;
}
