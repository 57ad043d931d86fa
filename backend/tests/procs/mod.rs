//! What the tests that run real `sf3d` processes share: free ports, a process that is killed when the test ends
//! (also half-way, on a failure), and a WebSocket client.

#![allow(dead_code)] // each test file uses its part

use std::process::Child;
use std::time::Duration;

use futures_util::StreamExt;
use sf3d_shared::ServerMessage;
use tokio_tungstenite::tungstenite::Message;

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A process of the test, killed when dropped.
pub struct Proc(pub Child);

impl Proc {
    /// SIGKILL, as a crash or a pulled plug.
    pub fn kill_9(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A WebSocket to the server on `port`, past its `hello`.
pub async fn connect(port: u16) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws")).await.unwrap();
    assert!(matches!(next(&mut ws).await, ServerMessage::Hello { .. }));
    ws
}

/// The next protocol message, within one deadline however many pings come meanwhile.
pub async fn next(ws: &mut Ws) -> ServerMessage {
    let until = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let frame = tokio::time::timeout_at(until, ws.next()).await.expect("a message in time");
        match frame {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(t.as_str()).unwrap(),
            Some(Ok(Message::Close(c))) => panic!("closed: {c:?}"),
            Some(Ok(_)) => continue,
            other => panic!("socket ended: {other:?}"),
        }
    }
}

/// The test picture as PNG bytes.
pub fn image() -> Vec<u8> {
    sf3d::pipeline::png_bytes(&sf3d::test_model::bench_image(200)).unwrap()
}
