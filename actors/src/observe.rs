//! What a worker tells about itself while it runs, for whoever embeds it (meshd feeds its
//! `/metrics` from it).
//!
//! Input: every event the worker records (commands accepted or rejected, flows started and
//! finished), the partitions it owns after each ownership round, and its live actors. Output:
//! calls on a [`WorkerObserver`]; the default observes nothing. Observers are called inline, so
//! they must be cheap and must not block.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mesh_bus::EventEnvelope;

/// Receives what a worker reports. Every method has a do-nothing default.
pub trait WorkerObserver: Send + Sync {
    /// An event the worker has just recorded.
    fn event(&self, _event: &EventEnvelope) {}
    /// The partitions the worker owns now, of `total`.
    fn partitions(&self, _owned: &[u32], _total: u32) {}
    /// How many actors of `kind` (`partition`, `mesh`) the worker runs now.
    fn actors(&self, _kind: &'static str, _count: usize) {}
}

/// The observer of a worker, with the live mesh actor count it keeps for it.
#[derive(Clone)]
pub struct Observer {
    inner: Option<Arc<dyn WorkerObserver>>,
    mesh_actors: Arc<AtomicUsize>,
}

impl Default for Observer {
    fn default() -> Self {
        Self {
            inner: None,
            mesh_actors: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("observed", &self.inner.is_some())
            .field("mesh_actors", &self.mesh_actors.load(Ordering::Relaxed))
            .finish()
    }
}

impl Observer {
    /// Reports to `observer`.
    pub fn new(observer: Arc<dyn WorkerObserver>) -> Self {
        Self {
            inner: Some(observer),
            ..Self::default()
        }
    }

    pub(crate) fn event(&self, event: &EventEnvelope) {
        if let Some(observer) = &self.inner {
            observer.event(event);
        }
    }

    pub(crate) fn partitions(&self, owned: &[u32], total: u32) {
        if let Some(observer) = &self.inner {
            observer.partitions(owned, total);
            observer.actors("partition", owned.len());
        }
    }

    pub(crate) fn mesh_actor_started(&self) {
        let count = self.mesh_actors.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(observer) = &self.inner {
            observer.actors("mesh", count);
        }
    }

    pub(crate) fn mesh_actor_stopped(&self) {
        let count = self
            .mesh_actors
            .fetch_sub(1, Ordering::Relaxed)
            .saturating_sub(1);
        if let Some(observer) = &self.inner {
            observer.actors("mesh", count);
        }
    }
}
