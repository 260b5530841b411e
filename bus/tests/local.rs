//! The behaviour suite against [`LocalBus`], the in-process bus.

mod suite;

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use mesh_bus::{BusConfig, LocalBus};

/// One `LocalBus` per test; every `bus()` call hands out a clone of it, as processes sharing a
/// NATS server would share its streams.
#[derive(Default)]
struct Local(Mutex<Option<LocalBus>>);

#[async_trait]
impl suite::Factory for Local {
    type Bus = LocalBus;

    async fn bus(&self, partitions: u32, ack_wait: Duration) -> LocalBus {
        let mut slot = self.0.lock().expect("lock");
        slot.get_or_insert_with(|| {
            LocalBus::new(
                BusConfig::default()
                    .partitions(partitions)
                    .ack_wait(ack_wait),
            )
            .expect("local bus")
        })
        .clone()
    }
}

behaviour_suite!(Local::default());
