//! The request rate limit of each cluster client: a token bucket that lets `burst` requests go at
//! once and then `qps` per second, so mesh-manager never floods a tenant's API server however many
//! flows and watches touch it.
//!
//! It sits in the client's service stack ([`RateLimitLayer`]), so every request of the client
//! counts: reads, applies, deletes and the start of each watch (a watch's events are not requests).
//! Requests over the limit wait their turn, in order; none is refused.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

/// How many requests a cluster client may send (meshd's `[clusters]` settings).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests per second, sustained.
    pub qps: f64,
    /// Requests that may go at once after a quiet spell.
    pub burst: u32,
}

impl Default for RateLimit {
    /// 20 requests per second with bursts of 30.
    fn default() -> Self {
        Self {
            qps: 20.0,
            burst: 30,
        }
    }
}

impl RateLimit {
    /// Why the limit cannot be used, if it cannot.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.qps.is_finite() && self.qps > 0.0) {
            return Err(format!(
                "a cluster's request rate must be a positive number of requests per second, got {}",
                self.qps
            ));
        }
        if self.burst == 0 {
            return Err("a cluster's request burst must be at least 1".into());
        }
        Ok(())
    }
}

/// Tokens for requests: refilled at `qps`, holding at most `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    limit: RateLimit,
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(limit: RateLimit, now: Instant) -> Self {
        Self {
            limit,
            tokens: f64::from(limit.burst),
            refilled_at: now,
        }
    }

    /// Takes a token at `now`, or tells how long until one is there.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.limit.qps).min(f64::from(self.limit.burst));
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64(
            (1.0 - self.tokens) / self.limit.qps,
        ))
    }
}

/// Puts a [`RateLimited`] in front of a service.
#[derive(Debug, Clone, Copy)]
pub struct RateLimitLayer(RateLimit);

impl RateLimitLayer {
    /// A layer limiting to `limit`.
    pub fn new(limit: RateLimit) -> Self {
        Self(limit)
    }
}

impl<S> tower_layer::Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimited {
            inner,
            bucket: TokenBucket::new(self.0, Instant::now()),
            token: false,
            wait: None,
        }
    }
}

/// A service whose requests are admitted by a [`TokenBucket`]. It is not `Clone`: the kube
/// client drives it from one buffer, so all its requests share the bucket.
pub struct RateLimited<S> {
    inner: S,
    bucket: TokenBucket,
    /// A token was taken for the next call.
    token: bool,
    /// Waiting for the next token.
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> std::fmt::Debug for RateLimited<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimited")
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

impl<S, R> tower_service::Service<R> for RateLimited<S>
where
    S: tower_service::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        while !self.token {
            if let Some(wait) = self.wait.as_mut() {
                if wait.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.wait = None;
            }
            match self.bucket.take(Instant::now()) {
                Ok(()) => self.token = true,
                Err(until) => self.wait = Some(Box::pin(tokio::time::sleep(until))),
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.token = false;
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(qps: f64, burst: u32) -> RateLimit {
        RateLimit { qps, burst }
    }

    #[test]
    fn a_full_bucket_lets_a_burst_go_then_one_request_per_token() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(limit(10.0, 3), start);
        for _ in 0..3 {
            assert_eq!(bucket.take(start), Ok(()));
        }
        let wait = bucket.take(start).expect_err("the burst is spent");
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        assert_eq!(bucket.take(start + Duration::from_millis(100)), Ok(()));
        assert!(bucket.take(start + Duration::from_millis(150)).is_err());
    }

    #[test]
    fn a_quiet_spell_refills_no_more_than_the_burst() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(limit(100.0, 2), start);
        assert_eq!(bucket.take(start), Ok(()));
        assert_eq!(bucket.take(start), Ok(()));
        let later = start + Duration::from_secs(60);
        assert_eq!(bucket.take(later), Ok(()));
        assert_eq!(bucket.take(later), Ok(()));
        assert!(bucket.take(later).is_err(), "two tokens at most");
    }

    #[test]
    fn limits_that_cannot_work_are_refused_with_a_reason() {
        assert!(RateLimit::default().validate().is_ok());
        for qps in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let refused = limit(qps, 1).validate().expect_err("no rate");
            assert!(refused.contains("requests per second"), "{refused}");
        }
        assert!(
            limit(1.0, 0)
                .validate()
                .expect_err("no burst")
                .contains("burst")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn requests_over_the_limit_wait_their_turn_in_order() {
        use tower_layer::Layer;
        use tower_service::Service;
        let mut service = RateLimitLayer::new(limit(5.0, 2))
            .layer(tower_service_fn(|n: u32| async move { Ok::<_, String>(n) }));
        let start = Instant::now();
        let mut answered_at = Vec::new();
        for n in 0..6 {
            std::future::poll_fn(|cx| service.poll_ready(cx))
                .await
                .expect("the inner service is always ready");
            assert_eq!(service.call(n).await, Ok(n));
            answered_at.push(start.elapsed().as_millis());
        }
        assert_eq!(answered_at, [0, 0, 200, 400, 600, 800]);
    }

    /// A service answering with `f` (tower's `service_fn`, without the dependency).
    fn tower_service_fn<F, Fut>(f: F) -> ServiceFn<F>
    where
        F: FnMut(u32) -> Fut,
    {
        ServiceFn(f)
    }

    struct ServiceFn<F>(F);

    impl<F, Fut> tower_service::Service<u32> for ServiceFn<F>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<u32, String>>,
    {
        type Response = u32;
        type Error = String;
        type Future = Fut;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), String>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: u32) -> Fut {
            (self.0)(request)
        }
    }
}
