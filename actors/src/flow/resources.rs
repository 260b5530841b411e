//! Tasks of resource flows: writing a batch of Istio resource changes into a cluster, undoing it,
//! and bringing a cluster's managed resources back to the desired state.
//!
//! Inputs: the flow's `resource_change` rows (before/after of each object) or the mesh's desired
//! rows; the live objects read from the cluster. Output: server-side applies and deletes — only
//! for objects whose live state differs from the wanted one, so an unchanged object costs no
//! write — and a one-line summary for the task log.

use std::collections::BTreeMap;

use mesh_clusters::{ClusterOps, ObjectRef};
use mesh_core::resources::{IstioKind, drift, managed_resource_selector, with_managed_labels};
use mesh_core::{ClusterName, MeshName};
use mesh_schema::Store;
use mesh_schema::store::resource::ResourceChangeRecord;
use serde_json::Value;

use super::tasks::TaskContext;
use crate::error::ActorError;

/// What a cluster should hold for one object: a body, or nothing.
struct Wanted {
    kind: IstioKind,
    namespace: String,
    name: String,
    body: Option<Value>,
}

impl Wanted {
    fn object_ref(&self) -> ObjectRef {
        ObjectRef {
            api_version: self.kind.api_version(),
            kind: self.kind.kind().to_owned(),
            namespace: Some(self.namespace.clone()),
            name: self.name.clone(),
        }
    }
}

/// Which side of a change to write.
#[derive(Clone, Copy)]
enum Side {
    After,
    Before,
}

/// Counts of what a task did.
#[derive(Default)]
struct Tally {
    applied: usize,
    deleted: usize,
    unchanged: usize,
}

impl Tally {
    fn summary(&self, cluster: &ClusterName) -> String {
        format!(
            "{cluster}: {} applied, {} deleted, {} already as wanted ({} write(s))",
            self.applied,
            self.deleted,
            self.unchanged,
            self.applied + self.deleted
        )
    }
}

fn parse_body(context: &TaskContext<'_>, text: &str) -> Result<Value, ActorError> {
    serde_json::from_str(text).map_err(|e| ActorError::CorruptState {
        mesh: context.spec.name.to_string(),
        reason: format!("stored Istio resource is not JSON: {e}"),
    })
}

/// Apply order: hosts and subsets before the routes that use them; deletes the other way round.
fn kind_rank(kind: IstioKind) -> usize {
    IstioKind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(usize::MAX)
}

/// A managed object in a cluster: kind, namespace, name.
pub(crate) type ObjectKey = (IstioKind, String, String);

/// What `cluster` must hold of the mesh's tenant resources: the mesh-wide ones and its own, with
/// the managed labels, by object.
pub(crate) async fn desired_in(
    store: &Store,
    mesh: &MeshName,
    cluster: &ClusterName,
) -> Result<BTreeMap<ObjectKey, Value>, ActorError> {
    let rows = store
        .list_resources(mesh.as_str(), None, None, None)
        .await?;
    let mut desired = BTreeMap::new();
    for row in rows
        .iter()
        .filter(|r| r.cluster_name.is_empty() || r.cluster_name == cluster.as_str())
    {
        let Some(kind) = IstioKind::from_kind(&row.kind) else {
            continue;
        };
        let body: Value =
            serde_json::from_str(&row.body).map_err(|e| ActorError::CorruptState {
                mesh: mesh.to_string(),
                reason: format!("stored Istio resource is not JSON: {e}"),
            })?;
        desired.insert(
            (kind, row.namespace.clone(), row.name.clone()),
            with_managed_labels(&body, mesh),
        );
    }
    Ok(desired)
}

/// The mesh's tenant resources `ops`'s cluster holds now, by object (one list per kind).
pub(crate) async fn live_in(
    ops: &ClusterOps,
    mesh: &MeshName,
) -> Result<BTreeMap<ObjectKey, Value>, ActorError> {
    let selector = managed_resource_selector(mesh);
    let mut live = BTreeMap::new();
    for kind in IstioKind::ALL {
        for object in ops
            .list_labelled_objects(&kind.api_version(), kind.kind(), &selector)
            .await?
        {
            let field = |name: &str| {
                object["metadata"][name]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            };
            live.insert((kind, field("namespace"), field("name")), object);
        }
    }
    Ok(live)
}

impl TaskContext<'_> {
    fn wanted_from_changes(
        &self,
        changes: &[ResourceChangeRecord],
        cluster: &ClusterName,
        side: Side,
    ) -> Result<Vec<Wanted>, ActorError> {
        let mut wanted = Vec::new();
        for change in changes {
            if !change.cluster_name.is_empty() && change.cluster_name != cluster.as_str() {
                continue;
            }
            let Some(kind) = IstioKind::from_kind(&change.kind) else {
                return Err(ActorError::CorruptState {
                    mesh: self.spec.name.to_string(),
                    reason: format!("unknown Istio kind {:?} in a change", change.kind),
                });
            };
            let text = match side {
                Side::After => change.after_body.as_deref(),
                Side::Before => change.before_body.as_deref(),
            };
            let body = text
                .map(|t| parse_body(self, t).map(|b| with_managed_labels(&b, &self.spec.name)))
                .transpose()?;
            wanted.push(Wanted {
                kind,
                namespace: change.namespace.clone(),
                name: change.name.clone(),
                body,
            });
        }
        Ok(wanted)
    }

    /// Makes `cluster` hold exactly `wanted` for those objects, writing only what differs.
    ///
    /// The live objects are read one by one for a small change, and with one list per kind of
    /// the mesh's managed objects for a large one (a batch of a hundred objects then costs seven
    /// reads, not a hundred). Either way an object already as wanted costs no write.
    async fn converge(
        &self,
        cluster: &ClusterName,
        mut wanted: Vec<Wanted>,
    ) -> Result<Tally, ActorError> {
        let connection = self.connections.get(cluster.as_str()).await?;
        let mut tally = Tally::default();
        // Writes first in apply order, then deletes in reverse.
        wanted.sort_by_key(|w| (w.body.is_none(), kind_rank(w.kind)));
        let (writes, mut deletes): (Vec<Wanted>, Vec<Wanted>) =
            wanted.into_iter().partition(|w| w.body.is_some());
        deletes.reverse();
        let listed = if writes.len() + deletes.len() > IstioKind::ALL.len() {
            Some(live_in(&connection.ops, &self.spec.name).await?)
        } else {
            None
        };
        for item in writes.iter().chain(deletes.iter()) {
            let target = item.object_ref();
            let key = (item.kind, item.namespace.clone(), item.name.clone());
            // A managed object missing from the list may still exist without the labels (someone
            // stripped them): a write takes it over anyway, a delete must look it up.
            let live = match listed.as_ref().map(|l| l.get(&key)) {
                Some(Some(live)) => Some(live.clone()),
                Some(None) if item.body.is_some() => None,
                _ => connection
                    .ops
                    .get(&target)
                    .await?
                    .map(|live| serde_json::to_value(&live).unwrap_or(Value::Null)),
            };
            match (&item.body, live) {
                (Some(body), Some(live)) => {
                    if drift(body, &live).is_empty() {
                        tally.unchanged += 1;
                    } else {
                        connection.ops.apply(body).await?;
                        tally.applied += 1;
                    }
                }
                (Some(body), None) => {
                    connection.ops.apply(body).await?;
                    tally.applied += 1;
                }
                (None, Some(_)) => {
                    connection.ops.delete(&target).await?;
                    tally.deleted += 1;
                }
                (None, None) => tally.unchanged += 1,
            }
        }
        Ok(tally)
    }

    /// Writes the flow's changes into `cluster`.
    pub(super) async fn apply_resources(
        &self,
        cluster: &ClusterName,
    ) -> Result<String, ActorError> {
        let changes = self.store.resource_changes(self.flow_id).await?;
        let wanted = self.wanted_from_changes(&changes, cluster, Side::After)?;
        Ok(self.converge(cluster, wanted).await?.summary(cluster))
    }

    /// Puts the flow's objects in `cluster` back to their version before the flow.
    pub(super) async fn restore_resources(
        &self,
        cluster: &ClusterName,
    ) -> Result<String, ActorError> {
        let changes = self.store.resource_changes(self.flow_id).await?;
        let wanted = self.wanted_from_changes(&changes, cluster, Side::Before)?;
        Ok(format!(
            "restored {}",
            self.converge(cluster, wanted).await?.summary(cluster)
        ))
    }

    /// Puts the mesh's desired resources back to their version before the flow.
    pub(super) async fn restore_desired(&self) -> Result<String, ActorError> {
        let restored = self
            .store
            .restore_desired_resources(self.flow_id, self.epoch)
            .await?;
        Ok(format!("restored {restored} desired resource(s)"))
    }

    /// Makes `cluster`'s managed resources equal the desired state: missing or edited objects
    /// are applied again, managed objects nobody wants any more are deleted.
    pub(super) async fn sync_resources(&self, cluster: &ClusterName) -> Result<String, ActorError> {
        let mesh = &self.spec.name;
        let connection = self.connections.get(cluster.as_str()).await?;
        let mut wanted: BTreeMap<ObjectKey, Option<Value>> = desired_in(self.store, mesh, cluster)
            .await?
            .into_iter()
            .map(|(key, body)| (key, Some(body)))
            .collect();
        for key in live_in(&connection.ops, mesh).await?.into_keys() {
            wanted.entry(key).or_insert(None);
        }
        let wanted = wanted
            .into_iter()
            .map(|((kind, namespace, name), body)| Wanted {
                kind,
                namespace,
                name,
                body,
            })
            .collect();
        let tally = self.converge(cluster, wanted).await?;
        Ok(format!("synced {}", tally.summary(cluster)))
    }
}
