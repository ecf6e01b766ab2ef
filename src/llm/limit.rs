//! The per-provider concurrency limit: at most N model calls in flight to one provider
//! across the whole server, so that a big run queues here instead of tripping the
//! provider's rate limits. A permit is held for a whole call, retries included, so
//! backing off does not let other calls pile in behind it.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Semaphore;

use super::{ModelClient, ModelError, ModelReply, ModelRequest};

/// One semaphore per limited provider, built once from the config and shared by every
/// client made afterwards. A provider absent from the map, or limited to 0, is not
/// limited.
#[derive(Clone, Default)]
pub struct ProviderLimits {
    semaphores: Arc<HashMap<String, Arc<Semaphore>>>,
}

impl ProviderLimits {
    pub fn new(limits: HashMap<String, usize>) -> Self {
        let semaphores = limits
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(provider, n)| (provider, Arc::new(Semaphore::new(n))))
            .collect();
        ProviderLimits {
            semaphores: Arc::new(semaphores),
        }
    }

    /// No limit on any provider.
    pub fn unlimited() -> Self {
        Self::default()
    }

    /// The client behind the provider's limit (or the client itself when unlimited).
    pub fn wrap(&self, provider: &str, client: Box<dyn ModelClient>) -> Box<dyn ModelClient> {
        match self.semaphores.get(provider) {
            Some(permits) => Box::new(Limited {
                inner: client,
                permits: permits.clone(),
            }),
            None => client,
        }
    }
}

/// A client that waits for a permit of its provider's semaphore before each call.
pub struct Limited {
    inner: Box<dyn ModelClient>,
    permits: Arc<Semaphore>,
}

impl Limited {
    pub fn new(inner: Box<dyn ModelClient>, permits: Arc<Semaphore>) -> Self {
        Limited { inner, permits }
    }
}

#[async_trait]
impl ModelClient for Limited {
    async fn complete(&self, request: ModelRequest<'_>) -> Result<ModelReply, ModelError> {
        let _permit = self.permits.acquire().await.map_err(|_| {
            ModelError::Unavailable("the provider's concurrency limit was shut down".to_string())
        })?;
        self.inner.complete(request).await
    }

    fn restore_turns(&self, turns: &[crate::domain::events::TurnTokens]) -> Result<(), ModelError> {
        self.inner.restore_turns(turns)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::domain::chat::{Message, ToolSet};
    use crate::domain::events::ModelSettings;

    /// Counts calls in flight and remembers the most seen at once.
    #[derive(Clone, Default)]
    struct Gauge {
        now: Arc<AtomicUsize>,
        max: Arc<AtomicUsize>,
    }

    struct Slow(Gauge);

    #[async_trait]
    impl ModelClient for Slow {
        async fn complete(&self, _: ModelRequest<'_>) -> Result<ModelReply, ModelError> {
            let n = self.0.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.0.max.fetch_max(n, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.0.now.fetch_sub(1, Ordering::SeqCst);
            Ok(ModelReply {
                message: Message::assistant(Some("ok".into()), vec![]),
                usage: None,
                logprobs: None,
                tokens: None,
            })
        }
    }

    fn settings() -> ModelSettings {
        ModelSettings {
            temperature: 0.0,
            max_steps: 1,
            context_stride: 0,
            has_api_key: true,
            ..ModelSettings::new("anthropic", "m")
        }
    }

    async fn max_in_flight(limits: &ProviderLimits, provider: &str, calls: usize) -> usize {
        let gauge = Gauge::default();
        let clients: Vec<_> = (0..calls)
            .map(|_| limits.wrap(provider, Box::new(Slow(gauge.clone()))))
            .collect();
        let s = settings();
        let results = futures::future::join_all(clients.iter().map(|c| {
            c.complete(ModelRequest {
                messages: &[],
                tools: ToolSet::none(),
                settings: &s,
            })
        }))
        .await;
        assert!(results.iter().all(Result::is_ok));
        gauge.max.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn clients_of_a_limited_provider_share_its_permits() {
        let limits = ProviderLimits::new(HashMap::from([("anthropic".to_string(), 2)]));
        let max = max_in_flight(&limits, "anthropic", 6).await;
        assert!((1..=2).contains(&max), "{max} calls were in flight at once");
    }

    #[tokio::test]
    async fn a_provider_without_a_limit_or_limited_to_zero_is_not_limited() {
        let limits = ProviderLimits::new(HashMap::from([("gcp".to_string(), 0)]));
        // Only completion is asserted: how many overlap is up to the scheduler.
        assert!(max_in_flight(&limits, "gcp", 3).await >= 1);
        assert!(max_in_flight(&limits, "openai", 3).await >= 1);
    }
}
