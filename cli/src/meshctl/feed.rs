//! Following a mesh's event stream (`GET /meshes/{m}/events`) in the background.
//!
//! Input: the client and a mesh. Output: [`Frame`]s on a channel, history first, then live. A
//! dropped connection is resumed with `Last-Event-ID`, so no event is lost or repeated; the
//! stream ends with an error when the mesh can no longer be seen.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::client::{ApiClient, segment};
use super::error::{Error, Result};
use super::sse::{Frame, Parser};

/// Pause before a dropped stream is reopened.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);
/// Reconnects in a row without a frame in between before giving up.
const MAX_RECONNECTS: u32 = 20;
/// How often a mesh that does not exist yet is looked for.
const APPEAR_POLL: Duration = Duration::from_millis(200);

/// A mesh's events arriving in the background; dropping it closes the stream.
#[derive(Debug)]
pub struct EventFeed {
    frames: mpsc::Receiver<Result<Frame>>,
    task: tokio::task::JoinHandle<()>,
}

impl EventFeed {
    /// Opens the stream of `mesh`. With `appear_by`, a mesh that does not exist yet (its create
    /// command is still on its way to a worker) is looked for again until then.
    pub async fn open(client: &ApiClient, mesh: &str, appear_by: Option<Instant>) -> Result<Self> {
        let path = format!("/meshes/{}/events", segment(mesh));
        let response = loop {
            match client.open_stream(&path, None).await {
                Ok(response) => break response,
                Err(error) if error.is_not_found() => match appear_by {
                    Some(deadline) if Instant::now() < deadline => {
                        tokio::time::sleep(APPEAR_POLL).await;
                    }
                    Some(_) => {
                        return Err(Error::Failed(format!(
                            "mesh {mesh} did not appear in time: its command may have been \
                             rejected (see meshd's log) or the workers are busy"
                        )));
                    }
                    None => return Err(error),
                },
                Err(error) => return Err(error),
            }
        };
        let (sender, frames) = mpsc::channel(256);
        let client = client.clone();
        let task = tokio::spawn(pump(client, path, response, sender));
        Ok(Self { frames, task })
    }

    /// The next frame; `None` when the stream ended for good.
    pub async fn next(&mut self) -> Option<Result<Frame>> {
        self.frames.recv().await
    }
}

impl Drop for EventFeed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(
    client: ApiClient,
    path: String,
    mut response: reqwest::Response,
    sender: mpsc::Sender<Result<Frame>>,
) {
    let mut last_id: Option<String> = None;
    let mut reconnects = 0;
    loop {
        let mut parser = Parser::default();
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let Ok(chunk) = chunk else { break };
            for frame in parser.feed(&chunk) {
                reconnects = 0;
                if frame.id.is_some() {
                    last_id.clone_from(&frame.id);
                }
                if sender.send(Ok(frame)).await.is_err() {
                    return;
                }
            }
        }
        response = loop {
            reconnects += 1;
            if reconnects > MAX_RECONNECTS {
                let _ = sender
                    .send(Err(Error::protocol(
                        format!("event stream {path}"),
                        "the connection keeps dropping",
                    )))
                    .await;
                return;
            }
            tokio::time::sleep(RECONNECT_DELAY).await;
            match client.open_stream(&path, last_id.as_deref()).await {
                Ok(response) => break response,
                Err(error @ (Error::Api { .. } | Error::Protocol { .. })) => {
                    let _ = sender.send(Err(error)).await;
                    return;
                }
                // meshd restarting or unreachable for a moment: try again.
                Err(_) => {}
            }
        };
    }
}
