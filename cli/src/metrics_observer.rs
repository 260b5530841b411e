//! meshd's worker reports into meshd's `/metrics`: commands by kind and outcome, flows started
//! and finished by outcome, live actors by kind and the partition leases this process holds.
//!
//! Input: what the worker tells its [`WorkerObserver`]. Output: the series of
//! [`mesh_api::Metrics`] the API serves.

use mesh_actors::WorkerObserver;
use mesh_api::Metrics;
use mesh_api::metrics::CommandOutcome;
use mesh_bus::{Event, EventEnvelope};

/// Feeds a [`Metrics`] registry from a worker.
pub struct MetricsObserver {
    metrics: Metrics,
}

impl MetricsObserver {
    /// Reports into `metrics` (a clone of the API's, so both share one registry).
    pub fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }
}

impl WorkerObserver for MetricsObserver {
    fn event(&self, event: &EventEnvelope) {
        match &event.body {
            Event::CommandAccepted(accepted) => self
                .metrics
                .command_handled(&accepted.command, CommandOutcome::Accepted),
            Event::CommandRejected(rejected) => self
                .metrics
                .command_handled(&rejected.command, CommandOutcome::Rejected),
            Event::FlowStarted(_) => self.metrics.flow_started(),
            Event::FlowFinished(finished) => self.metrics.flow_finished(finished.outcome),
            _ => {}
        }
    }

    fn partitions(&self, owned: &[u32], total: u32) {
        for partition in 0..total {
            self.metrics
                .set_lease_owned(partition, owned.contains(&partition));
        }
    }

    fn actors(&self, kind: &'static str, count: usize) {
        self.metrics
            .set_actors(kind, i64::try_from(count).unwrap_or(i64::MAX));
    }
}
