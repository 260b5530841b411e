//! `GET /meshes/{mesh}/events`: the mesh's events as server-sent events, history then live.
//!
//! Input: the store's event history of the mesh (`mesh_event_log`) and the bus's event stream
//! for the mesh. Output: `text/event-stream` frames
//!
//! ```text
//! id: 42
//! event: FlowStarted
//! data: {"id":"0190…","kind":"FlowStarted",…}
//! ```
//!
//! History frames carry the event's position in the history (`42`); live frames carry the bus
//! sequence (`bus-1234`). A client resumes with `Last-Event-ID` (or `?after=`) set to the last id
//! it saw: a history position continues the history after it and then goes live; a bus sequence
//! goes on live right after it.
//!
//! The live subscription opens before the history is read and reaches back
//! [`LIVE_OVERLAP`], so an event stored while the history is being read is not lost; events
//! already sent from the history are skipped by envelope id, and after a resume from a history
//! position so are live events that happened no later than the event at that position. A
//! comment line every
//! [`KEEP_ALIVE`] keeps proxies from closing an idle stream.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::time::Duration;

use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use mesh_bus::{BusStream, EventFilter, StartAt};
use mesh_core::{MeshName, TenantId};
use mesh_schema::Store;
use mesh_schema::models::EventRecord;
use serde::Deserialize;
use utoipa::IntoParams;

use super::meshes::visible_mesh;
use crate::auth::Caller;
use crate::envelope::ApiError;
use crate::openapi::{BadRequest, MethodNotAllowed, NotFound, Unauthorized, Unavailable};
use crate::state::ApiState;

/// How far back the live subscription starts, to cover events stored while history is read.
pub const LIVE_OVERLAP: Duration = Duration::from_secs(60);
/// Interval of keep-alive comments on an idle stream.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// History rows read per query.
const HISTORY_PAGE: i64 = 200;
/// Envelope ids remembered for skipping live duplicates of history events.
const REMEMBERED_IDS: usize = 10_000;
/// Prefix of ids of live frames.
const BUS_ID_PREFIX: &str = "bus-";

/// `?after=` of the event stream.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Resume after this id (a history position, or `bus-<sequence>`); `Last-Event-ID` wins.
    #[param(pattern = "^(bus-)?[0-9]+$", example = "42")]
    pub after: Option<String>,
}

/// Where a stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resume {
    /// History after this position, then live.
    History(i64),
    /// Live after this bus sequence.
    Bus(u64),
}

fn parse_resume(text: &str) -> Result<Resume, ApiError> {
    let text = text.trim();
    let bad = || {
        ApiError::BadRequest(format!(
            "invalid event id {:?}: use an id the stream sent (a number or bus-<number>)",
            text.chars().take(32).collect::<String>()
        ))
    };
    match text.strip_prefix(BUS_ID_PREFIX) {
        Some(sequence) => sequence.parse().map(Resume::Bus).map_err(|_| bad()),
        None => text
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(Resume::History)
            .ok_or_else(bad),
    }
}

/// One server-sent event frame; `data` may span lines.
fn frame(id: &str, kind: &str, data: &str) -> Bytes {
    let clean = |s: &str| s.replace(['\r', '\n'], "");
    let mut out = format!("id: {}\nevent: {}\n", clean(id), clean(kind));
    for line in data.lines() {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

/// The state of one stream: history first, then live.
struct Feed {
    store: Store,
    mesh: String,
    tenant: String,
    /// Position after which history is still to be read; `None` once it is done.
    history_after: Option<i64>,
    buffer: VecDeque<EventRecord>,
    seen: HashSet<String>,
    seen_order: VecDeque<String>,
    live: Option<BusStream<mesh_bus::EventRecord>>,
    /// Live events that happened at or before this time were sent before the client resumed.
    live_cutoff: Option<DateTime<Utc>>,
    greeted: bool,
}

impl Feed {
    fn remember(&mut self, id: String) {
        if self.seen.insert(id.clone()) {
            self.seen_order.push_back(id);
            if self.seen_order.len() > REMEMBERED_IDS
                && let Some(old) = self.seen_order.pop_front()
            {
                self.seen.remove(&old);
            }
        }
    }

    /// The next frame, or `None` when the stream ends.
    async fn next_frame(&mut self) -> Option<Bytes> {
        if !self.greeted {
            self.greeted = true;
            return Some(Bytes::from_static(b"retry: 3000\n\n"));
        }
        loop {
            if let Some(record) = self.buffer.pop_front() {
                self.remember(record.event_id.clone());
                return Some(frame(&record.id.to_string(), &record.kind, &record.payload));
            }
            if let Some(after) = self.history_after {
                match self
                    .store
                    .list_events(&self.mesh, after, HISTORY_PAGE)
                    .await
                {
                    Ok(page) => {
                        self.history_after = page.last().map(|r| r.id);
                        let tenant = &self.tenant;
                        self.buffer
                            .extend(page.into_iter().filter(|r| &r.tenant_id == tenant));
                        continue;
                    }
                    Err(error) => {
                        tracing::warn!(mesh = %self.mesh, %error, "cannot read event history");
                        return None;
                    }
                }
            }
            let live = self.live.as_mut()?;
            match tokio::time::timeout(KEEP_ALIVE, live.next()).await {
                Err(_idle) => return Some(Bytes::from_static(b": keep-alive\n\n")),
                Ok(None) => return None,
                Ok(Some(Err(error))) => {
                    tracing::warn!(mesh = %self.mesh, %error, "skipping an event that cannot be read");
                }
                Ok(Some(Ok(record))) => {
                    let id = record.envelope.id.to_string();
                    let sent_before_resume = self
                        .live_cutoff
                        .is_some_and(|cutoff| record.envelope.occurred_at <= cutoff);
                    if sent_before_resume || self.seen.contains(&id) {
                        continue;
                    }
                    self.remember(id);
                    match record.envelope.to_json() {
                        Ok(json) => {
                            return Some(frame(
                                &format!("{BUS_ID_PREFIX}{}", record.sequence),
                                record.envelope.kind(),
                                &String::from_utf8_lossy(&json),
                            ));
                        }
                        Err(error) => {
                            tracing::warn!(mesh = %self.mesh, %error, "cannot encode an event");
                        }
                    }
                }
            }
        }
    }
}

/// When the event at history `position` of `mesh` happened, from its envelope (the stored
/// timestamp column may have lost the sub-second part). A mesh's events come from its one owner
/// in order, so live events up to that time are ones the resuming client already had.
async fn resume_time(
    store: &Store,
    tenant: &str,
    mesh: &str,
    position: i64,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    #[derive(Deserialize)]
    struct Occurred {
        occurred_at: DateTime<Utc>,
    }
    let found = store.list_events(mesh, position - 1, 1).await?;
    Ok(found
        .into_iter()
        .find(|r| r.id == position && r.tenant_id == tenant)
        .and_then(|r| serde_json::from_str::<Occurred>(&r.payload).ok())
        .map(|o| o.occurred_at))
}

/// `GET /meshes/{mesh}/events`: history from `Last-Event-ID` / `?after=` (default: the
/// beginning), then live events until the client goes away.
#[utoipa::path(
    get,
    path = "/apis/v1/mesh/meshes/{mesh}/events",
    tag = "events",
    operation_id = "streamMeshEvents",
    params(
        super::meshes::MeshParam,
        EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id (as `?after=`)"),
    ),
    responses(
        (status = 200, description = "Server-sent events: `id:` (a history position or `bus-<sequence>`), `event:` (the kind, e.g. `FlowStarted`), `data:` (the event envelope as JSON); never ends by itself", content_type = "text/event-stream", body = String),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 405, response = MethodNotAllowed),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = []), ("tke" = []))
)]
pub async fn stream(
    caller: Caller,
    state: web::Data<ApiState>,
    path: web::Path<String>,
    query: web::Query<EventsQuery>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let last_event_id = request
        .headers()
        .get("Last-Event-ID")
        .map(|v| {
            v.to_str()
                .map(str::to_owned)
                .map_err(|_| ApiError::BadRequest("Last-Event-ID must be ASCII".into()))
        })
        .transpose()?;
    let resume = last_event_id
        .as_deref()
        .or(query.after.as_deref())
        .map(parse_resume)
        .transpose()?
        .unwrap_or(Resume::History(0));
    let mesh = visible_mesh(&caller, &state, &path).await?;
    let store = state.store()?.clone();
    let live = match &state.bus {
        Some(bus) => {
            let tenant = TenantId::new(mesh.tenant_id.as_str())
                .map_err(|e| ApiError::Internal(format!("stored mesh has a bad tenant: {e}")))?;
            let name = MeshName::new(mesh.name.as_str())
                .map_err(|e| ApiError::Internal(format!("stored mesh has a bad name: {e}")))?;
            let start = match resume {
                Resume::Bus(sequence) => StartAt::Sequence(sequence.saturating_add(1)),
                Resume::History(_) => StartAt::Time(
                    Utc::now()
                        - chrono::Duration::from_std(LIVE_OVERLAP)
                            .unwrap_or_else(|_| chrono::Duration::zero()),
                ),
            };
            Some(
                bus.subscribe_events(EventFilter::Mesh(tenant, name), start)
                    .await?,
            )
        }
        None => None,
    };
    let live_cutoff = match resume {
        Resume::History(position) if position > 0 => {
            resume_time(&store, &mesh.tenant_id, &mesh.name, position).await?
        }
        _ => None,
    };
    let feed = Feed {
        store,
        live_cutoff,
        history_after: match resume {
            Resume::History(after) => Some(after),
            Resume::Bus(_) => None,
        },
        mesh: mesh.name,
        tenant: mesh.tenant_id,
        buffer: VecDeque::new(),
        seen: HashSet::new(),
        seen_order: VecDeque::new(),
        live,
        greeted: false,
    };
    let body = futures::stream::unfold(feed, |mut feed| async move {
        let frame = feed.next_frame().await?;
        Some((Ok::<Bytes, Infallible>(frame), feed))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_ids_are_history_positions_or_bus_sequences() {
        assert_eq!(parse_resume("42").ok(), Some(Resume::History(42)));
        assert_eq!(parse_resume("bus-7").ok(), Some(Resume::Bus(7)));
        for bad in ["", "-1", "bus-", "bus--1", "x", "1.5"] {
            assert!(parse_resume(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn frames_put_every_line_of_data_on_its_own_data_field() {
        let bytes = frame("1", "Flow\nStarted", "{\"a\":1}\n{\"b\":2}");
        assert_eq!(
            std::str::from_utf8(&bytes).ok(),
            Some("id: 1\nevent: FlowStarted\ndata: {\"a\":1}\ndata: {\"b\":2}\n\n")
        );
    }
}
