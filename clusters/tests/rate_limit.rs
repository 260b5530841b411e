//! A cluster client holds to its rate limit over real HTTP: after its burst, requests go out no
//! faster than the limit allows, whatever the caller asks.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use mesh_clusters::client::client_for;
use mesh_clusters::{ClusterCredentials, RateLimit};

#[tokio::test]
async fn a_cluster_client_sends_no_faster_than_its_limit() {
    let world = mesh_sim::World::builder()
        .clusters(1)
        .start()
        .await
        .unwrap();
    let credentials =
        ClusterCredentials::from_kubeconfig_yaml(&world.cluster(0).kubeconfig_yaml()).unwrap();
    let limit = RateLimit {
        qps: 10.0,
        burst: 2,
    };
    let client = client_for(&credentials, limit).await.unwrap();
    let started = Instant::now();
    // Two go at once, the five after them one per 100 ms.
    for _ in 0..7 {
        client.apiserver_version().await.unwrap();
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(480),
        "7 requests at 10/s with a burst of 2 took only {took:?}"
    );

    let Err(refused) = client_for(&credentials, RateLimit { qps: 0.0, burst: 1 }).await else {
        panic!("a client with no rate at all was built");
    };
    assert!(
        refused.to_string().contains("requests per second"),
        "{refused}"
    );
    world.stop();
}
