//! Every event goes two ways: appended to the mesh's history in the database (the audit trail and
//! the replay source of the event stream) and published on the bus (for live followers).

use std::sync::Arc;

use mesh_bus::{Bus, EventEnvelope};
use mesh_schema::Store;
use mesh_schema::models::{MemberClusterRecord, MeshRecord, NewEvent};
use mesh_schema::store::flow::{FlowAcceptance, FlowStep, FlowToRun};

use crate::error::ActorError;
use crate::observe::Observer;

/// Appends and publishes events.
#[derive(Clone)]
pub struct EventSink {
    store: Store,
    bus: Arc<dyn Bus>,
    observer: Observer,
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSink").finish_non_exhaustive()
    }
}

impl EventSink {
    /// A sink writing to `store` and `bus`.
    pub fn new(store: Store, bus: Arc<dyn Bus>) -> Self {
        Self::observed(store, bus, Observer::default())
    }

    /// A sink writing to `store` and `bus` that shows every recorded event to `observer`.
    pub fn observed(store: Store, bus: Arc<dyn Bus>, observer: Observer) -> Self {
        Self {
            store,
            bus,
            observer,
        }
    }

    /// The worker's observer.
    pub fn observer(&self) -> &Observer {
        &self.observer
    }

    /// The bus events are published on (also where commands go).
    pub fn bus(&self) -> &Arc<dyn Bus> {
        &self.bus
    }

    /// Records an event of `flow_id` (if any). The history write must succeed; a failed publish
    /// is logged, because followers replay from the history.
    pub async fn emit(&self, event: EventEnvelope, flow_id: Option<i64>) -> Result<(), ActorError> {
        let record = history_record(&event, flow_id)?;
        self.store.append_event(record).await?;
        self.announce(&event).await;
        Ok(())
    }

    /// Records `step` of flow `flow_id` with `events` announcing it, all in one transaction, then
    /// publishes the events: whoever sees one finds the flow's and tasks' rows (and its command
    /// and mesh) already there.
    pub async fn emit_flow_step(
        &self,
        flow_id: i64,
        events: Vec<EventEnvelope>,
        mut step: FlowStep,
    ) -> Result<(), ActorError> {
        step.events = events
            .iter()
            .map(|event| history_record(event, Some(flow_id)))
            .collect::<Result<_, _>>()?;
        self.store.record_flow_step(flow_id, step).await?;
        self.announce_all(&events).await;
        Ok(())
    }

    /// Accepts a command in one transaction (recorded, if new; the mesh taken over for the
    /// holder of `acceptance.owner_epoch`, its desired-state change, its flow with its tasks, and
    /// `events` announcing them, stored with `acceptance.events`), then publishes the events:
    /// whoever sees the acceptance finds the flow and the new desired state already there.
    /// Returns the flow's id and, when the decision read the mesh and its members (`decided`),
    /// what running the flow starts from (see [`mesh_schema::Store::record_acceptance`]).
    pub async fn start_flow_announcing(
        &self,
        mut acceptance: FlowAcceptance,
        events: Vec<EventEnvelope>,
        decided: Option<(MeshRecord, Vec<MemberClusterRecord>)>,
    ) -> Result<(i64, Option<FlowToRun>), ActorError> {
        for event in &events {
            acceptance.events.push(history_record(event, None)?);
        }
        let started = self.store.record_acceptance(acceptance, decided).await?;
        self.announce_all(&events).await;
        Ok(started)
    }

    /// Shows a recorded event to the observer and publishes it (a failed publish is logged).
    async fn announce(&self, event: &EventEnvelope) {
        self.announce_all(std::slice::from_ref(event)).await;
    }

    /// Shows recorded events to the observer and publishes them in order, all sent before any
    /// acknowledgement is awaited (a failed publish is logged).
    async fn announce_all(&self, events: &[EventEnvelope]) {
        for event in events {
            self.observer.event(event);
        }
        let acks = self.bus.publish_events(events).await;
        for (event, ack) in events.iter().zip(acks) {
            if let Err(error) = ack {
                tracing::warn!(%error, mesh = %event.mesh, kind = event.kind(), "event kept in history but not published");
            }
        }
    }
}

/// The history row of `event`.
fn history_record(event: &EventEnvelope, flow_id: Option<i64>) -> Result<NewEvent, ActorError> {
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
    })
}
