//! Cache-aside reads shared by every cached resource: read the cache, on a miss load once per key
//! (single-flight) and store the result with a TTL; writes invalidate.
//!
//! The cache is an accelerator, never a dependency: an unreachable cache or an unreadable entry
//! is a miss, logged, and the database answers.
//!
//! Every read counts `cache_hits_total` or `cache_misses_total`, labelled with the cache's name.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use strata_ports::{Cache, PortError};

use crate::failure::Failure;
use crate::local_cache::{LocalCache, Shared};
use crate::single_flight::SingleFlight;

/// What one fetch found, and whether the shared cache had it.
type Loaded<T> = Result<(Option<Arc<Shared<T>>>, bool), Arc<PortError>>;

/// Reads answered from the cache.
pub(crate) const HITS: &str = "cache_hits_total";
/// Reads answered from this process's own copies (also counted in [`HITS`]).
pub(crate) const LOCAL_HITS: &str = "cache_local_hits_total";
/// Reads the cache could not answer (absent, unreadable, or the cache unreachable).
pub(crate) const MISSES: &str = "cache_misses_total";

/// Cache-aside access to one kind of value, keyed by string.
pub(crate) struct CacheAside<T> {
    /// The `cache` label of the hit and miss counters.
    name: &'static str,
    cache: Arc<dyn Cache>,
    ttl: Duration,
    loads: SingleFlight<Loaded<T>>,
    /// The in-process tier, when this instance keeps one.
    local: Option<Arc<LocalCache>>,
    /// Registered on first use (by then the process's recorder is installed).
    counters: std::sync::OnceLock<Counters>,
}

/// The handles of one cache's hit and miss counters.
struct Counters {
    hits: metrics::Counter,
    local_hits: metrics::Counter,
    misses: metrics::Counter,
}

impl<T> CacheAside<T>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Values kept for `ttl` in `cache`, counted in the metrics as cache `name`.
    pub(crate) fn new(name: &'static str, cache: Arc<dyn Cache>, ttl: Duration) -> Self {
        Self {
            name,
            cache,
            ttl,
            loads: SingleFlight::default(),
            local: None,
            counters: std::sync::OnceLock::new(),
        }
    }

    fn counters(&self) -> &Counters {
        self.counters.get_or_init(|| Counters {
            hits: metrics::counter!(HITS, "cache" => self.name),
            local_hits: metrics::counter!(LOCAL_HITS, "cache" => self.name),
            misses: metrics::counter!(MISSES, "cache" => self.name),
        })
    }

    /// The same, with `local` in front of the shared cache.
    pub(crate) fn with_local(mut self, local: Option<Arc<LocalCache>>) -> Self {
        self.local = local;
        self
    }

    /// The value under `key`: from the cache, or from `load` (run once however many callers miss
    /// together), which is then cached. `Ok(None)` when `load` finds nothing (not cached).
    pub(crate) async fn get_or_load<F, Fut>(&self, key: &str, load: F) -> Result<Option<T>, Failure>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, PortError>>,
    {
        let shared = self.get_or_load_shared(key, load).await?;
        Ok(shared.map(Shared::into_value))
    }

    /// [`CacheAside::get_or_load`], handing out the value as this process shares it: a value held
    /// in process is not copied, and what callers derive from it is kept with it.
    pub(crate) async fn get_or_load_shared<F, Fut>(
        &self,
        key: &str,
        load: F,
    ) -> Result<Option<Arc<Shared<T>>>, Failure>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, PortError>>,
    {
        let local = self.local.as_deref();
        if let Some(value) = local.and_then(|local| local.get::<Shared<T>>(key)) {
            let counters = self.counters();
            counters.hits.increment(1);
            counters.local_hits.increment(1);
            return Ok(Some(value));
        }
        // Read before the fetch: a write heard of meanwhile keeps the fetched value out.
        let seen = local.map(|local| local.generation(key));
        // One fetch per key at a time, the shared cache's read included: a burst of readers of a
        // key missing from this process (its copy expired, say) costs one Redis round trip, not
        // one each, and cannot pile up on Redis until it times out and sends them all to the
        // database.
        let fetched = self
            .loads
            .run(key, || async {
                if let Some(value) = self.read_shared_cache(key).await {
                    let value = Arc::new(Shared::new(value));
                    if let (Some(local), Some(seen)) = (local, seen) {
                        local.insert(key, value.clone(), seen);
                    }
                    return Ok((Some(value), true));
                }
                let value = load()
                    .await
                    .map_err(Arc::new)?
                    .map(Shared::new)
                    .map(Arc::new);
                if let Some(value) = &value {
                    // A write heard of during the load may have come after the read: storing
                    // the value would put back what the writer removed.
                    let unchanged = match (local, seen) {
                        (Some(local), Some(seen)) => local.unchanged_since(key, seen),
                        _ => true,
                    };
                    if unchanged {
                        self.store(key, value.value()).await;
                        if let (Some(local), Some(seen)) = (local, seen) {
                            local.insert(key, value.clone(), seen);
                        }
                    }
                }
                Ok((value, false))
            })
            .await;
        // Every caller counts, waiters included, as what served it: the ratio then says how
        // often readers missed the cache.
        match fetched {
            Ok((value, from_cache)) => {
                let counters = self.counters();
                if from_cache {
                    counters.hits.increment(1);
                } else {
                    counters.misses.increment(1);
                }
                Ok(value)
            }
            Err(shared) => {
                self.counters().misses.increment(1);
                Err(shared_failure(&shared))
            }
        }
    }

    /// The value in the shared cache, if it holds a readable one; an unreachable cache is a miss.
    async fn read_shared_cache(&self, key: &str) -> Option<T> {
        match self.cache.get(key).await {
            Ok(Some(json)) => match serde_json::from_str::<T>(&json) {
                Ok(value) => Some(value),
                Err(error) => {
                    tracing::warn!(%key, %error, "unreadable cache entry; reloading");
                    None
                }
            },
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%key, %error, "cache unavailable; reading from the database");
                None
            }
        }
    }

    async fn store(&self, key: &str, value: &T) {
        let Ok(json) = serde_json::to_string(value) else {
            return;
        };
        if let Err(error) = self.cache.set(key, &json, self.ttl).await {
            tracing::warn!(%key, %error, "could not cache the value");
        }
    }

    /// Drops `keys` after a write. On failure the entries live until their TTL, which bounds how
    /// long readers may see the old value.
    pub(crate) async fn invalidate(&self, keys: &[String]) {
        invalidate(self.cache.as_ref(), keys).await;
    }
}

/// Drops `keys` after a write, for services that invalidate a cache they do not read. On failure
/// the entries live until their TTL, which bounds how long readers may see the old value.
pub(crate) async fn invalidate(cache: &dyn Cache, keys: &[String]) {
    if let Err(error) = cache.delete_many(keys).await {
        tracing::warn!(?keys, %error, "could not invalidate cached values");
    }
}

/// A copy of a failure shared by several waiting callers.
fn shared_failure(error: &PortError) -> Failure {
    match error {
        PortError::Unavailable(cause) => Failure::Unavailable(anyhow::anyhow!("{cause:#}")),
        PortError::Unexpected(cause) => Failure::Unexpected(anyhow::anyhow!("{cause:#}")),
    }
}

#[cfg(test)]
mod tests {
    use metrics_exporter_prometheus::PrometheusBuilder;
    use strata_ports::MockCache;

    use super::*;
    use crate::test_support::unavailable;

    #[tokio::test]
    async fn reads_count_a_hit_only_when_the_cache_answers_with_a_readable_value() {
        let mut cache = MockCache::new();
        cache.expect_get().returning(|key| match key {
            "hit" => Ok(Some("7".to_owned())),
            "garbled" => Ok(Some("not json".to_owned())),
            "down" => Err(unavailable()),
            _ => Ok(None),
        });
        cache.expect_set().returning(|_, _, _| Ok(()));
        let cached = CacheAside::<u32>::new("numbers", Arc::new(cache), Duration::from_secs(60));
        // A recorder of this thread only: the process-wide one is not this test's to set.
        let recorder = PrometheusBuilder::new().build_recorder();
        let _local = metrics::set_default_local_recorder(&recorder);

        for key in ["hit", "hit", "absent", "garbled", "down"] {
            let value = cached.get_or_load(key, || async { Ok(Some(1)) }).await;
            assert!(value.unwrap().is_some());
        }
        let rendered = recorder.handle().render();
        assert!(
            rendered.contains("cache_hits_total{cache=\"numbers\"} 2\n"),
            "{rendered}"
        );
        assert!(
            rendered.contains("cache_misses_total{cache=\"numbers\"} 3\n"),
            "{rendered}"
        );
    }
}
