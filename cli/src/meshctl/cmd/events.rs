//! `meshctl events MESH [-f]` and `meshctl flows MESH [ID]`.
//!
//! Without `-f`, `events` prints the history and stops when the stream turns live (the first
//! frame with a `bus-` id) or goes quiet; with `-f` it goes on until interrupted.

use std::time::Duration;

use serde_json::Value;

use crate::meshctl::args::Format;
use crate::meshctl::client::{ApiClient, segment};
use crate::meshctl::error::{Error, Result};
use crate::meshctl::feed::EventFeed;
use crate::meshctl::output::{self, field, out, render};
use crate::meshctl::sse::MeshEvent;

/// Quiet time after which the history is taken to be complete.
const HISTORY_IDLE: Duration = Duration::from_millis(1500);
/// Prefix of the ids of live (not history) frames.
const LIVE_ID_PREFIX: &str = "bus-";

fn print_event(format: Format, event: &MeshEvent, raw: &str) -> Result<()> {
    match format {
        Format::Table => out(&format!("{}\n", event.summary()))?,
        Format::Json => {
            let value: Value =
                serde_json::from_str(raw).map_err(|e| Error::protocol("invalid event", e))?;
            out(&format!("{value}\n"))?;
        }
        Format::Yaml => {
            let value: Value =
                serde_json::from_str(raw).map_err(|e| Error::protocol("invalid event", e))?;
            out(&format!("---\n{}", render(Format::Yaml, &value)?))?;
        }
    }
    Ok(())
}

/// `events MESH [-f]`.
pub async fn events(client: &ApiClient, format: Format, mesh: &str, follow: bool) -> Result<()> {
    let mut feed = EventFeed::open(client, mesh, None).await?;
    loop {
        let next = if follow {
            feed.next().await
        } else {
            match tokio::time::timeout(HISTORY_IDLE, feed.next()).await {
                Ok(next) => next,
                Err(_quiet) => return Ok(()),
            }
        };
        let frame = match next {
            None => return Ok(()),
            Some(Err(error)) => return Err(error),
            Some(Ok(frame)) => frame,
        };
        if !follow
            && frame
                .id
                .as_deref()
                .is_some_and(|id| id.starts_with(LIVE_ID_PREFIX))
        {
            return Ok(());
        }
        if let Some(event) = MeshEvent::from_frame(&frame) {
            print_event(format, &event, &frame.data)?;
        }
    }
}

/// `flows MESH [ID]`.
pub async fn flows(client: &ApiClient, format: Format, mesh: &str, id: Option<i64>) -> Result<()> {
    let path = format!("/meshes/{}/flows", segment(mesh));
    match id {
        None => {
            let flows = client.get(&path).await?;
            output::print(format, &flows, |f| {
                super::mesh::flow_table(f.as_array().map(Vec::as_slice).unwrap_or_default())
            })
        }
        Some(id) => {
            let flow = client.get(&format!("{path}/{id}")).await?;
            output::print(format, &flow, |f| {
                let mut text = format!(
                    "Flow {} ({}) of mesh {}: {}\n",
                    field(f, "id"),
                    field(f, "def_name"),
                    field(f, "mesh_name"),
                    field(f, "status")
                );
                let tasks = f.get("tasks").and_then(Value::as_array);
                text.push_str(&super::mesh::task_table(
                    tasks.map(Vec::as_slice).unwrap_or_default(),
                ));
                let log = field(f, "log");
                if !log.is_empty() {
                    text.push_str(&format!("Log:\n{}\n", log.trim_end()));
                }
                text
            })
        }
    }
}
