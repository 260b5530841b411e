//! Every event goes two ways: appended to the mesh's history in the database (the audit trail and
//! the replay source of the event stream) and published on the bus (for live followers).

use std::sync::Arc;

use mesh_bus::{Bus, EventEnvelope};
use mesh_schema::Store;
use mesh_schema::models::NewEvent;

use crate::error::ActorError;

/// Appends and publishes events.
#[derive(Clone)]
pub struct EventSink {
    store: Store,
    bus: Arc<dyn Bus>,
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSink").finish_non_exhaustive()
    }
}

impl EventSink {
    /// A sink writing to `store` and `bus`.
    pub fn new(store: Store, bus: Arc<dyn Bus>) -> Self {
        Self { store, bus }
    }

    /// Records an event of `flow_id` (if any). The history write must succeed; a failed publish
    /// is logged, because followers replay from the history.
    pub async fn emit(&self, event: EventEnvelope, flow_id: Option<i64>) -> Result<(), ActorError> {
        self.store
            .append_event(history_row(&event, flow_id)?)
            .await?;
        self.publish(std::slice::from_ref(&event)).await;
        Ok(())
    }

    /// Publishes events already stored in the history (by a step's transaction), in order; a
    /// failed publish is logged, because followers replay from the history.
    pub async fn publish(&self, events: &[EventEnvelope]) {
        for event in events {
            if let Err(error) = self.bus.publish_event(event).await {
                tracing::warn!(%error, mesh = %event.mesh, kind = event.kind(), "event kept in history but not published");
            }
        }
    }
}

/// The history row of an event of `flow_id` (if any), for a step to store.
pub fn history_row(event: &EventEnvelope, flow_id: Option<i64>) -> Result<NewEvent, ActorError> {
    let payload = event
        .to_json()
        .map_err(|e| ActorError::Message(e.to_string()))?;
    Ok(NewEvent {
        event_id: event.id.to_string(),
        tenant_id: event.tenant.to_string(),
        mesh_name: event.mesh.to_string(),
        kind: event.kind().to_owned(),
        correlation_id: Some(event.correlation_id.to_string()),
        flow_id,
        payload: String::from_utf8_lossy(&payload).into_owned(),
        occurred_at: event.occurred_at.naive_utc(),
        epoch: None,
    })
}
