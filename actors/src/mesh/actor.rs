//! The actix shell of a mesh: one mailbox per mesh, commands handled one at a time and in order
//! (`ctx.wait`), flows run in the background (`ctx.spawn`) so a command arriving meanwhile is
//! answered (rejected as busy) instead of queued behind a long install.

use std::time::Duration;

use actix::prelude::*;
use mesh_bus::Delivery;
use mesh_core::FlowStatus;
use mesh_schema::StoreError;
use mesh_schema::store::flow::FlowToRun;

use super::component::{Acceptance, Accepted, MeshComponent};
use crate::error::ActorError;

/// How long a deferred command waits before it is delivered again.
const DEFER_DELAY: Duration = Duration::from_millis(500);

/// A command delivery for this mesh.
#[derive(Message)]
#[rtype(result = "()")]
pub struct HandleCommand(pub Delivery);

/// Resume an unfinished flow (after a restart or a takeover).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ResumeFlow(pub i64);

/// Stop the actor now (its running flow is dropped where it stands).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopMesh;

/// The actor of one mesh.
pub struct MeshActor {
    component: MeshComponent,
    running: Option<i64>,
}

impl MeshActor {
    /// An actor around `component`.
    pub fn new(component: MeshComponent) -> Self {
        Self {
            component,
            running: None,
        }
    }

    /// Runs flow `flow_id` in the background unless it runs already; `ready` is what it starts
    /// from when its acceptance here returned it.
    fn start_flow(&mut self, flow_id: i64, ready: Option<FlowToRun>, ctx: &mut Context<Self>) {
        if self.running == Some(flow_id) {
            return;
        }
        self.running = Some(flow_id);
        let runner = self.component.runner().clone();
        ctx.spawn(
            async move { runner.run_ready(flow_id, ready).await }
                .into_actor(self)
                .map(move |outcome, actor, _ctx| {
                    match outcome {
                        Ok(FlowStatus::Succeeded) => {
                            tracing::info!(flow = flow_id, "flow succeeded")
                        }
                        Ok(status) => tracing::warn!(flow = flow_id, %status, "flow ended"),
                        Err(error) => {
                            tracing::error!(flow = flow_id, %error, "flow could not be run")
                        }
                    }
                    if actor.running == Some(flow_id) {
                        actor.running = None;
                    }
                }),
        );
    }
}

impl Actor for MeshActor {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        self.component
            .runner()
            .events()
            .observer()
            .mesh_actor_started();
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.component
            .runner()
            .events()
            .observer()
            .mesh_actor_stopped();
    }
}

impl Handler<HandleCommand> for MeshActor {
    type Result = ();

    fn handle(&mut self, HandleCommand(delivery): HandleCommand, ctx: &mut Context<Self>) {
        let component = self.component.clone();
        let work = async move {
            let accepted = component.accept_ready(delivery.envelope()).await;
            match accepted.as_ref().map(|accepted| &accepted.acceptance) {
                Ok(Acceptance::Deferred) => {
                    let _ = delivery.nak(Some(DEFER_DELAY)).await;
                }
                Ok(_) => {
                    if let Err(error) = delivery.ack().await {
                        tracing::warn!(%error, "command handled but not acknowledged; it will come again");
                    }
                }
                Err(error) if error.is_transient() => {
                    tracing::warn!(%error, "command not handled, will retry");
                    let _ = delivery.nak(Some(Duration::from_secs(2))).await;
                }
                Err(error @ ActorError::Store(StoreError::Fenced { .. })) => {
                    // This worker no longer owns the mesh: the command is the new owner's, so it
                    // goes back to the stream instead of being acknowledged without effect.
                    tracing::warn!(%error, "command left to the mesh's newer owner");
                    let _ = delivery.nak(Some(Duration::from_secs(1))).await;
                }
                Err(error) => {
                    // Not retryable: acknowledge so it does not loop forever; the log says why.
                    tracing::error!(%error, "command could not be handled");
                    let _ = delivery.ack().await;
                }
            }
            accepted.ok()
        };
        ctx.wait(work.into_actor(self).map(|accepted, actor, ctx| {
            if let Some(Accepted {
                acceptance: Acceptance::Started(flow_id),
                ready,
            }) = accepted
            {
                actor.start_flow(flow_id, ready, ctx);
            }
        }));
    }
}

impl Handler<StopMesh> for MeshActor {
    type Result = ();

    fn handle(&mut self, _: StopMesh, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<ResumeFlow> for MeshActor {
    type Result = ();

    fn handle(&mut self, ResumeFlow(flow_id): ResumeFlow, ctx: &mut Context<Self>) {
        self.start_flow(flow_id, None, ctx);
    }
}
