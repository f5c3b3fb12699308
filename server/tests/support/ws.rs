//! WebSocket helpers shared by the test binaries that listen to `/v1/events`.

use futures_util::StreamExt;
use serde_json::Value;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Failure guard for a frame that must come; never a pacing device.
pub const GUARD: Duration = Duration::from_secs(20);

/// The next data frame of `ws` as JSON (pings and pongs skipped); panics on close, or when
/// none comes within [`GUARD`] in all (a ping does not restart it).
pub async fn next_frame<S>(ws: &mut WebSocketStream<S>) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("a frame within the guard time")
            .expect("the connection is open")
            .expect("a frame, not an error");
        match msg {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}
