//! Faults of one simulated cluster, switchable at run time.
//!
//! The HTTP layer reads latency, error rate and partition on every request; the in-cluster
//! controllers read the rollout, istiod and load-balancer faults on every reconcile and are woken
//! by [`Faults::changed`] when a fault flips, so healing a fault lets the cluster converge.
//! Token revocation lives in [`crate::auth::Auth`].

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};

/// Run-time faults of one cluster. All setters take effect immediately.
#[derive(Debug)]
pub struct Faults {
    latency_ms: AtomicU64,
    istiod_crashloop_revision: std::sync::Mutex<Option<String>>,
    error_rate_ppm: AtomicU32,
    deployments_never_ready: AtomicBool,
    istiod_crashloop: AtomicBool,
    lb_never_assigned: AtomicBool,
    writes_denied: std::sync::Mutex<Option<String>>,
    partition: watch::Sender<bool>,
    changed: Notify,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            latency_ms: AtomicU64::new(0),
            istiod_crashloop_revision: std::sync::Mutex::new(None),
            error_rate_ppm: AtomicU32::new(0),
            deployments_never_ready: AtomicBool::new(false),
            istiod_crashloop: AtomicBool::new(false),
            lb_never_assigned: AtomicBool::new(false),
            writes_denied: std::sync::Mutex::new(None),
            partition: watch::channel(false).0,
            changed: Notify::new(),
        }
    }
}

impl Faults {
    fn flipped(&self) {
        self.changed.notify_waiters();
    }

    /// Add this latency to every API request (0 to heal).
    pub fn set_latency(&self, latency: Duration) {
        self.latency_ms
            .store(latency.as_millis() as u64, Ordering::Relaxed);
    }

    /// The injected API latency.
    pub fn latency(&self) -> Duration {
        Duration::from_millis(self.latency_ms.load(Ordering::Relaxed))
    }

    /// Answer this fraction (0.0–1.0) of authenticated API requests with `500 InternalError`.
    pub fn set_error_rate(&self, rate: f64) {
        let ppm = (rate.clamp(0.0, 1.0) * 1_000_000.0) as u32;
        self.error_rate_ppm.store(ppm, Ordering::Relaxed);
    }

    /// The injected error rate.
    pub fn error_rate(&self) -> f64 {
        f64::from(self.error_rate_ppm.load(Ordering::Relaxed)) / 1_000_000.0
    }

    /// Partition the cluster: close its listening socket (new connections are refused) and cut
    /// every open connection, including watches. `false` heals (same port).
    pub fn set_partitioned(&self, on: bool) {
        self.partition.send_replace(on);
        self.flipped();
    }

    /// Whether the cluster is partitioned.
    pub fn partitioned(&self) -> bool {
        *self.partition.borrow()
    }

    /// Subscribe to partition changes (used by the listener).
    pub fn partition_watch(&self) -> watch::Receiver<bool> {
        self.partition.subscribe()
    }

    /// Deployments never become ready while set.
    pub fn set_deployments_never_ready(&self, on: bool) {
        self.deployments_never_ready.store(on, Ordering::Relaxed);
        self.flipped();
    }

    /// Whether deployments are held unready.
    pub fn deployments_never_ready(&self) -> bool {
        self.deployments_never_ready.load(Ordering::Relaxed)
    }

    /// istiod deployments crash-loop (never ready, pods in `CrashLoopBackOff`) while set.
    pub fn set_istiod_crashloop(&self, on: bool) {
        self.istiod_crashloop.store(on, Ordering::Relaxed);
        self.flipped();
    }

    /// Whether istiod crash-loops.
    pub fn istiod_crashloop(&self) -> bool {
        self.istiod_crashloop.load(Ordering::Relaxed)
    }

    /// Only the istiod of this revision (its `istio.io/rev` label, e.g. `default-v1-30-3`)
    /// crash-loops while set, as a broken new release would during a canary upgrade; `None`
    /// heals.
    pub fn set_istiod_crashloop_revision(&self, revision: Option<&str>) {
        if let Ok(mut crashing) = self.istiod_crashloop_revision.lock() {
            *crashing = revision.map(str::to_owned);
        }
        self.flipped();
    }

    /// Whether the istiod of `revision` crash-loops.
    pub fn istiod_crashloops(&self, revision: &str) -> bool {
        self.istiod_crashloop()
            || self
                .istiod_crashloop_revision
                .lock()
                .ok()
                .is_some_and(|r| r.as_deref() == Some(revision))
    }

    /// LoadBalancer Services get no address while set.
    pub fn set_lb_never_assigned(&self, on: bool) {
        self.lb_never_assigned.store(on, Ordering::Relaxed);
        self.flipped();
    }

    /// Whether load balancers stay pending.
    pub fn lb_never_assigned(&self) -> bool {
        self.lb_never_assigned.load(Ordering::Relaxed)
    }

    /// Refuse every write request (create, update, patch, delete) with `403 Forbidden` and
    /// this message, as an admission webhook (a policy engine) denying requests does; `None`
    /// heals. Reads still work.
    pub fn set_writes_denied(&self, message: Option<&str>) {
        if let Ok(mut denied) = self.writes_denied.lock() {
            *denied = message.map(str::to_owned);
        }
    }

    /// The message writes are denied with, if they are.
    pub fn writes_denied(&self) -> Option<String> {
        self.writes_denied.lock().ok().and_then(|d| d.clone())
    }

    /// Heal every fault of this struct.
    pub fn reset(&self) {
        self.set_latency(Duration::ZERO);
        self.set_istiod_crashloop_revision(None);
        self.set_error_rate(0.0);
        self.set_partitioned(false);
        self.set_deployments_never_ready(false);
        self.set_istiod_crashloop(false);
        self.set_lb_never_assigned(false);
        self.set_writes_denied(None);
    }

    /// Resolves when any controller-visible fault flips.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}
