//! Publishing commands for long operations, and `?wait=`.
//!
//! Input: a validated [`CommandEnvelope`] and an optional wait. Output: `202 Accepted` with
//! `{"commandId","mesh"}` right after the bus stored the command; with `?wait=60s` the handler
//! first follows the mesh's events correlated with the command and answers `200` with the flow's
//! outcome when a `FlowFinished` arrives, `409` when the worker rejects the command, or `202` with
//! what it saw so far when the time is up.
//!
//! The subscription starts shortly before the publish so no correlated event can slip between
//! the two; events are matched on the command's correlation id.

use std::time::Duration;

use actix_web::HttpResponse;
use chrono::Utc;
use futures::StreamExt;
use mesh_bus::event::FlowOutcome;
use mesh_bus::{Command, CommandEnvelope, Event, EventFilter, StartAt};
use mesh_core::{MeshName, TenantId};
use mesh_schema::models::MeshRecord;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::envelope::{ApiError, ApiResponse};
use crate::state::ApiState;

/// How far before the publish the wait's subscription starts.
const SUBSCRIBE_MARGIN: Duration = Duration::from_secs(2);

/// The `?wait=` query parameter of long operations.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// How long to wait for the flow to end: `60s`, `500ms`, `2m` or plain seconds, at most the
    /// server's maximum (5 minutes by default). Without it the answer is 202 right away.
    #[param(pattern = "^[0-9]+(ms|s|m|h)?$", example = "60s")]
    pub wait: Option<String>,
}

impl WaitQuery {
    /// The wait asked for, bounded by the state's maximum; `None` when not asked.
    pub fn duration(&self, max: Duration) -> Result<Option<Duration>, ApiError> {
        self.wait
            .as_deref()
            .map(|text| parse_duration(text, max))
            .transpose()
    }
}

/// Parses `60s`, `500ms`, `2m`, `1h` or plain seconds, at most `max`.
pub fn parse_duration(text: &str, max: Duration) -> Result<Duration, ApiError> {
    let text = text.trim();
    let bad = || {
        ApiError::BadRequest(format!(
            "invalid wait {:?}: use a duration like 30s, 500ms or 2m, at most {}s",
            text.chars().take(32).collect::<String>(),
            max.as_secs()
        ))
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let amount: u64 = digits.parse().map_err(|_| bad())?;
    let duration = match unit {
        "" | "s" => Duration::from_secs(amount),
        "ms" => Duration::from_millis(amount),
        "m" => Duration::from_secs(amount.checked_mul(60).ok_or_else(bad)?),
        "h" => Duration::from_secs(amount.checked_mul(3600).ok_or_else(bad)?),
        _ => return Err(bad()),
    };
    if duration > max {
        return Err(bad());
    }
    Ok(duration)
}

/// What a long operation answers.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommandAnswer {
    /// The command's envelope id (also the correlation id of everything that follows from it).
    pub command_id: String,
    /// The mesh.
    pub mesh: String,
    /// The command kind (`CreateMesh`, ...).
    #[schema(value_type = String)]
    pub kind: &'static str,
    /// `Accepted` (published), `Running` (a flow started), `Succeeded`, `Failed`, `RolledBack`,
    /// `Cancelled`.
    pub status: String,
    /// The flow the command started, once known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow_id: Option<i64>,
    /// What went wrong, when the flow did not succeed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The tenant and name of a stored mesh, as commands name them.
fn mesh_key(mesh: &MeshRecord) -> Result<(TenantId, MeshName), ApiError> {
    let tenant = TenantId::new(mesh.tenant_id.as_str())
        .map_err(|e| ApiError::Internal(format!("stored mesh has a bad tenant: {e}")))?;
    let name = MeshName::new(mesh.name.as_str())
        .map_err(|e| ApiError::Internal(format!("stored mesh has a bad name: {e}")))?;
    Ok((tenant, name))
}

/// Publishes `command` for the stored `mesh` on behalf of `caller`, then as [`publish`].
pub async fn publish_for(
    state: &ApiState,
    caller: &Caller,
    mesh: &MeshRecord,
    command: impl Into<Command>,
    wait: Option<Duration>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, name) = mesh_key(mesh)?;
    let envelope = CommandEnvelope::command(tenant, name, &caller.principal, command)?;
    publish(state, envelope, wait).await
}

/// Publishes `command` and answers 202, or waits for its outcome when `wait` is set.
pub async fn publish(
    state: &ApiState,
    command: CommandEnvelope,
    wait: Option<Duration>,
) -> Result<HttpResponse, ApiError> {
    let bus = state.bus()?;
    let mut answer = CommandAnswer {
        command_id: command.id.to_string(),
        mesh: command.mesh.to_string(),
        kind: command.kind(),
        status: "Accepted".into(),
        flow_id: None,
        detail: None,
    };
    let Some(wait) = wait else {
        bus.publish_command(&command).await?;
        tracing::info!(mesh = %command.mesh, tenant = %command.tenant, message_id = %command.id, kind = command.kind(), "command published");
        return Ok(HttpResponse::Accepted().json(ApiResponse::ok(answer)));
    };

    let since = Utc::now()
        - chrono::Duration::from_std(SUBSCRIBE_MARGIN).unwrap_or_else(|_| chrono::Duration::zero());
    let mut events = bus
        .subscribe_events(
            EventFilter::Mesh(command.tenant.clone(), command.mesh.clone()),
            StartAt::Time(since),
        )
        .await?;
    bus.publish_command(&command).await?;
    tracing::info!(mesh = %command.mesh, tenant = %command.tenant, message_id = %command.id, kind = command.kind(), "command published, waiting");

    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let next = match tokio::time::timeout_at(deadline, events.next()).await {
            Err(_) | Ok(None) => break,
            Ok(Some(Err(error))) => {
                tracing::warn!(%error, "skipping an event that cannot be read");
                continue;
            }
            Ok(Some(Ok(record))) => record.envelope,
        };
        if next.correlation_id != command.correlation_id {
            continue;
        }
        match next.body {
            Event::FlowStarted(started) => {
                answer.status = "Running".into();
                answer.flow_id = Some(started.flow_id);
            }
            Event::CommandRejected(rejected) => {
                return Err(ApiError::Conflict(format!(
                    "{} was rejected: {}",
                    rejected.command, rejected.reason
                )));
            }
            Event::FlowFinished(finished) => {
                answer.flow_id = Some(finished.flow_id);
                answer.status = match finished.outcome {
                    FlowOutcome::Succeeded => "Succeeded",
                    FlowOutcome::Failed => "Failed",
                    FlowOutcome::RolledBack => "RolledBack",
                    FlowOutcome::Cancelled => "Cancelled",
                }
                .into();
                answer.detail = finished.detail;
                return Ok(HttpResponse::Ok().json(ApiResponse::ok(answer)));
            }
            _ => {}
        }
    }
    Ok(HttpResponse::Accepted().json(ApiResponse::ok(answer)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_parse_with_units_and_stay_bounded() {
        let max = Duration::from_secs(300);
        assert_eq!(
            parse_duration("60s", max).ok(),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_duration("60", max).ok(),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_duration("500ms", max).ok(),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            parse_duration("2m", max).ok(),
            Some(Duration::from_secs(120))
        );
        for bad in [
            "",
            "s",
            "-1s",
            "10d",
            "1.5s",
            "6m",
            "99999999999999999999h",
            "1h",
        ] {
            assert!(parse_duration(bad, max).is_err(), "{bad}");
        }
    }
}
