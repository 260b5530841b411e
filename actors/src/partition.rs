//! The partition owner: consumes the command partitions of this worker and routes every command to
//! the actor of its mesh, starting actors on demand.

use std::collections::HashMap;

use actix::prelude::*;
use mesh_bus::{BusError, Delivery};

use crate::mesh::{HandleCommand, MeshActor, MeshComponent, ResumeFlow, StopMesh};

/// Route a flow to resume to its mesh actor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Resume {
    /// The mesh's tenant.
    pub tenant: String,
    /// The mesh.
    pub mesh: String,
    /// The flow.
    pub flow_id: i64,
}

/// Stop consuming and stop every mesh actor of the partition (their running flows are dropped
/// where they stand; flows are resumed by the partition's next owner).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// Owns command partitions and the mesh actors of their meshes.
pub struct PartitionOwner {
    component: MeshComponent,
    meshes: HashMap<String, Addr<MeshActor>>,
}

impl PartitionOwner {
    /// An owner whose mesh actors share `component`.
    pub fn new(component: MeshComponent) -> Self {
        Self {
            component,
            meshes: HashMap::new(),
        }
    }

    fn mesh_actor(&mut self, tenant: &str, mesh: &str) -> Addr<MeshActor> {
        let key = format!("{tenant}/{mesh}");
        let component = self.component.clone();
        self.meshes
            .entry(key)
            .or_insert_with(|| {
                // A worker that died may have left the mesh's seed snapshot behind its history.
                component
                    .runner()
                    .store()
                    .mark_event_snapshots_stale([mesh]);
                MeshActor::new(component).start()
            })
            .clone()
    }
}

impl Actor for PartitionOwner {
    type Context = Context<Self>;
}

impl StreamHandler<Result<Delivery, BusError>> for PartitionOwner {
    fn handle(&mut self, item: Result<Delivery, BusError>, _ctx: &mut Context<Self>) {
        match item {
            Ok(delivery) => {
                let envelope = delivery.envelope();
                let actor = self.mesh_actor(envelope.tenant.as_str(), envelope.mesh.as_str());
                actor.do_send(HandleCommand(delivery));
            }
            Err(error) => tracing::warn!(%error, "command stream reported a problem"),
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        // The subscription is gone (e.g. the server restarted and the consumer did not survive):
        // stop, so the ownership loop notices, gives the partition back and it is claimed afresh.
        tracing::warn!("command stream ended; stopping the partition's actors");
        for actor in self.meshes.values() {
            actor.do_send(StopMesh);
        }
        self.meshes.clear();
        ctx.stop();
    }
}

impl Handler<Shutdown> for PartitionOwner {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        for actor in self.meshes.values() {
            actor.do_send(StopMesh);
        }
        self.meshes.clear();
        ctx.stop();
    }
}

impl Handler<Resume> for PartitionOwner {
    type Result = ();

    fn handle(&mut self, resume: Resume, _ctx: &mut Context<Self>) {
        self.mesh_actor(&resume.tenant, &resume.mesh)
            .do_send(ResumeFlow(resume.flow_id));
    }
}
