//! Cache-aside reads shared by every cached resource: read the cache, on a miss load once per key
//! (single-flight) and store the result with a TTL; writes invalidate.
//!
//! The cache is an accelerator, never a dependency: an unreachable cache or an unreadable entry
//! is a miss, logged, and the database answers.
//!
//! Every read counts `cache_hits_total` or `cache_misses_total`, labelled with the cache's name.

use std::any::Any;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use strata_ports::{Cache, PortError};

use crate::failure::Failure;
use crate::local_cache::LocalCache;
use crate::single_flight::SingleFlight;

/// What one fetch found, and whether the shared cache had it.
type Loaded = Result<(Option<Arc<dyn Any + Send + Sync>>, bool), Arc<PortError>>;

/// Reads answered from the cache.
pub(crate) const HITS: &str = "cache_hits_total";
/// Reads answered from this process's own copies (also counted in [`HITS`]).
pub(crate) const LOCAL_HITS: &str = "cache_local_hits_total";
/// Reads the cache could not answer (absent, unreadable, or the cache unreachable).
pub(crate) const MISSES: &str = "cache_misses_total";

/// A representation of a cached value that its readers want rather than the value itself (the
/// HTTP layer's body and its validator): rendered once, when the value is loaded, kept in the
/// shared cache in the value's place and handed out as it is, so that a hit neither parses nor
/// renders anything.
pub trait Representation<T>: Send + Sync {
    /// What readers are handed; one copy is shared by every reader in this process.
    type Output: Send + Sync + 'static;
    /// `value` as the shared cache keeps it.
    fn render(&self, value: &T) -> anyhow::Result<String>;
    /// What the shared cache kept, read back; `None` for an entry this representation cannot
    /// read (one written by another version), which is then loaded and rendered again.
    fn read(&self, stored: String) -> Option<Self::Output>;
    /// What readers get of a value just loaded and rendered: by default the rendering read back;
    /// a representation that hands out the value itself keeps it and skips the read.
    fn loaded(&self, _value: T, rendered: String) -> Option<Self::Output> {
        self.read(rendered)
    }
}

/// The value itself as JSON: the representation of the caches whose readers want the value.
pub(crate) struct Json<T>(PhantomData<fn() -> T>);

impl<T> Json<T> {
    pub(crate) const fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T> Representation<T> for Json<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    type Output = T;

    fn render(&self, value: &T) -> anyhow::Result<String> {
        Ok(serde_json::to_string(value)?)
    }

    fn read(&self, stored: String) -> Option<T> {
        serde_json::from_str(&stored).ok()
    }

    fn loaded(&self, value: T, _rendered: String) -> Option<T> {
        Some(value)
    }
}

/// Cache-aside access to one kind of value, keyed by string.
pub(crate) struct CacheAside<T> {
    /// The `cache` label of the hit and miss counters.
    name: &'static str,
    cache: Arc<dyn Cache>,
    ttl: Duration,
    loads: SingleFlight<Loaded>,
    /// The in-process tier, when this instance keeps one.
    local: Option<Arc<LocalCache>>,
    /// Registered on first use (by then the process's recorder is installed).
    counters: std::sync::OnceLock<Counters>,
    value: PhantomData<fn() -> T>,
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
            value: PhantomData,
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
        let shared = self.get_or_load_as(key, &Json::new(), load).await?;
        Ok(shared.map(|value| Arc::try_unwrap(value).unwrap_or_else(|value| (*value).clone())))
    }

    /// The value under `key` as `representation` renders it: from this process's copies, the
    /// shared cache (which keeps the rendering, not the value), or `load` (run once however many
    /// callers miss together), whose value is then rendered and cached in both tiers. `Ok(None)`
    /// when `load` finds nothing (not cached). One key is read through one representation.
    pub(crate) async fn get_or_load_as<R, F, Fut>(
        &self,
        key: &str,
        representation: &R,
        load: F,
    ) -> Result<Option<Arc<R::Output>>, Failure>
    where
        R: Representation<T>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, PortError>>,
    {
        let local = self.local.as_deref();
        if let Some(value) = local.and_then(|local| local.get::<R::Output>(key)) {
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
                if let Some(value) = self.read_shared_cache(key, representation).await {
                    let value = Arc::new(value);
                    if let (Some(local), Some(seen)) = (local, seen) {
                        local.insert(key, value.clone(), seen);
                    }
                    return Ok((Some(value as Arc<dyn Any + Send + Sync>), true));
                }
                let Some(value) = load().await.map_err(Arc::new)? else {
                    return Ok((None, false));
                };
                let rendered = representation
                    .render(&value)
                    .map_err(|e| Arc::new(PortError::Unexpected(e)))?;
                // A write heard of during the load may have come after the read: storing the
                // value would put back what the writer removed.
                let unchanged = match (local, seen) {
                    (Some(local), Some(seen)) => local.unchanged_since(key, seen),
                    _ => true,
                };
                if unchanged {
                    self.store(key, &rendered).await;
                }
                let Some(output) = representation.loaded(value, rendered) else {
                    return Err(Arc::new(PortError::Unexpected(anyhow::anyhow!(
                        "the {} cache cannot read back what it rendered",
                        self.name
                    ))));
                };
                let output = Arc::new(output);
                if let (true, Some(local), Some(seen)) = (unchanged, local, seen) {
                    local.insert(key, output.clone(), seen);
                }
                Ok((Some(output as Arc<dyn Any + Send + Sync>), false))
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
                value
                    .map(|value| {
                        value.downcast::<R::Output>().map_err(|_| {
                            Failure::Unexpected(anyhow::anyhow!(
                                "{key} was read through two representations at once"
                            ))
                        })
                    })
                    .transpose()
            }
            Err(shared) => {
                self.counters().misses.increment(1);
                Err(shared_failure(&shared))
            }
        }
    }

    /// The shared cache's entry read back by `representation`; an unreachable cache or an entry
    /// it cannot read is a miss.
    async fn read_shared_cache<R: Representation<T>>(
        &self,
        key: &str,
        representation: &R,
    ) -> Option<R::Output> {
        match self.cache.get(key).await {
            Ok(Some(stored)) => {
                let value = representation.read(stored);
                if value.is_none() {
                    tracing::warn!(%key, "unreadable cache entry; reloading");
                }
                value
            }
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%key, %error, "cache unavailable; reading from the database");
                None
            }
        }
    }

    async fn store(&self, key: &str, rendered: &str) {
        if let Err(error) = self.cache.set(key, rendered, self.ttl).await {
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

    /// Renders a number as `n=<decimal>`, and counts what it rendered and read.
    #[derive(Default)]
    struct Labelled {
        rendered: std::sync::atomic::AtomicUsize,
        read: std::sync::atomic::AtomicUsize,
    }

    impl Representation<u32> for Labelled {
        type Output = String;

        fn render(&self, value: &u32) -> anyhow::Result<String> {
            self.rendered
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(format!("n={value}"))
        }

        fn read(&self, stored: String) -> Option<String> {
            self.read.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            stored.starts_with("n=").then_some(stored)
        }
    }

    #[tokio::test]
    async fn the_shared_cache_keeps_the_rendering_and_a_hit_is_handed_out_as_read() {
        use std::sync::atomic::Ordering::SeqCst;

        let mut cache = MockCache::new();
        cache.expect_get().returning(|key| match key {
            "stored" => Ok(Some("n=5".to_owned())),
            "foreign" => Ok(Some("5".to_owned())),
            _ => Ok(None),
        });
        cache
            .expect_set()
            .withf(|key, value, _| key != "stored" && value == "n=1")
            .times(2)
            .returning(|_, _, _| Ok(()));
        let cached = CacheAside::<u32>::new("numbers", Arc::new(cache), Duration::from_secs(60));
        let labelled = Labelled::default();

        // A hit: read back, never rendered, never loaded.
        let hit = cached
            .get_or_load_as("stored", &labelled, || async {
                panic!("a hit does not load")
            })
            .await;
        assert_eq!(hit.unwrap().as_deref().map(String::as_str), Some("n=5"));
        assert_eq!(labelled.rendered.load(SeqCst), 0);
        // A miss and an entry of another format: loaded, rendered once, the rendering stored.
        for key in ["absent", "foreign"] {
            let loaded = cached
                .get_or_load_as(key, &labelled, || async { Ok(Some(1)) })
                .await;
            assert_eq!(loaded.unwrap().as_deref().map(String::as_str), Some("n=1"));
        }
        assert_eq!(labelled.rendered.load(SeqCst), 2);
    }

    #[tokio::test]
    async fn a_copy_held_in_process_is_shared_without_reading_or_rendering_again() {
        use std::sync::atomic::Ordering::SeqCst;

        let mut cache = MockCache::new();
        cache.expect_get().times(1).returning(|_| Ok(None));
        cache.expect_set().times(1).returning(|_, _, _| Ok(()));
        let local = Arc::new(LocalCache::new(crate::LocalCacheSettings {
            capacity: 10,
            ttl: Duration::from_secs(60),
        }));
        strata_ports::InvalidationListener::feed(local.as_ref(), true);
        let cached = CacheAside::<u32>::new("numbers", Arc::new(cache), Duration::from_secs(60))
            .with_local(Some(local));
        let labelled = Labelled::default();

        let first = cached
            .get_or_load_as("k", &labelled, || async { Ok(Some(3)) })
            .await
            .unwrap()
            .unwrap();
        let second = cached
            .get_or_load_as("k", &labelled, || async { panic!("held in process") })
            .await
            .unwrap()
            .unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(*second, "n=3");
        assert_eq!(
            (labelled.rendered.load(SeqCst), labelled.read.load(SeqCst)),
            (1, 1)
        );
    }

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
