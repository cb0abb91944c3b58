//! The in-process tier in front of the shared cache, and the cache decorator that makes every
//! invalidation reach every instance.
//!
//! A value kept in process is served without a round trip to the shared cache, so it must never
//! outlive a write by more than the invalidation feed's delivery time. Three rules keep it so:
//!
//! - every write's invalidation is announced to all instances ([`InvalidatingCache`]), and each
//!   instance drops its copies when the announcement arrives ([`LocalCache`] is the listener);
//! - while the feed of announcements is down, announcements may be missed, so nothing is served
//!   from or kept in process until it is back (and everything held before is dropped);
//! - a value read from the shared cache or the database is kept only if no invalidation of its
//!   key arrived while it was being fetched (a per-key generation), so a slow reader cannot put
//!   back what a writer just removed.
//!
//! A time to live bounds whatever slips past (an announcement that could not be sent).

use std::any::Any;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use strata_ports::{Cache, InvalidationListener, InvalidationPublisher, PortError};

/// How many generation counters the keys are spread over: a write to one key only holds back
/// the caching of the keys sharing its counter, and only while their fetch overlaps the write.
const GENERATIONS: usize = 256;

/// Size and freshness bounds of the in-process tier.
#[derive(Debug, Clone, Copy)]
pub struct LocalCacheSettings {
    /// Most entries held; the least recently useful go first.
    pub capacity: u64,
    /// Longest an entry is served, whatever the feed says.
    pub ttl: Duration,
}

/// Values kept in this process, keyed like the shared cache, dropped on every invalidation.
pub struct LocalCache {
    // foldhash rather than SipHash: the keys are this process's own (a product id must exist to
    // be cached), and hashing was most of a lookup.
    entries: moka::sync::Cache<String, Arc<dyn Any + Send + Sync>, foldhash::fast::RandomState>,
    generations: Box<[AtomicU64]>,
    hasher: foldhash::fast::RandomState,
    /// Whether the invalidation feed is up: nothing is served or kept while it is not.
    live: AtomicBool,
}

impl std::fmt::Debug for LocalCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCache")
            .field("entries", &self.entries.entry_count())
            .field("live", &self.live.load(Ordering::Relaxed))
            .finish()
    }
}

impl LocalCache {
    /// An empty cache, not live until the invalidation feed reports that it is up.
    pub fn new(settings: LocalCacheSettings) -> Self {
        Self {
            entries: moka::sync::Cache::builder()
                .max_capacity(settings.capacity)
                .time_to_live(settings.ttl)
                .build_with_hasher(foldhash::fast::RandomState::default()),
            generations: (0..GENERATIONS).map(|_| AtomicU64::new(0)).collect(),
            hasher: foldhash::fast::RandomState::default(),
            live: AtomicBool::new(false),
        }
    }

    /// Whether values are being served from and kept in this process right now.
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    fn generation_of(&self, key: &str) -> &AtomicU64 {
        // The modulo keeps the index below GENERATIONS, so the truncation loses nothing.
        #[allow(clippy::cast_possible_truncation)]
        let slot = (self.hasher.hash_one(key) % GENERATIONS as u64) as usize;
        &self.generations[slot]
    }

    /// The current generation of `key`, to be handed back to [`LocalCache::insert`].
    pub(crate) fn generation(&self, key: &str) -> u64 {
        self.generation_of(key).load(Ordering::Acquire)
    }

    /// The value under `key`, when one of type `T` is held and the feed is up.
    pub(crate) fn get<T: Any + Send + Sync>(&self, key: &str) -> Option<Arc<T>> {
        if !self.is_live() {
            return None;
        }
        self.entries
            .get(key)
            .and_then(|value| value.downcast::<T>().ok())
    }

    /// Keeps `value` under `key` unless `key` was invalidated since `seen` was read (or the feed
    /// is down): the value may predate that write.
    pub(crate) fn insert<T: Any + Send + Sync>(&self, key: &str, value: Arc<T>, seen: u64) {
        let generation = self.generation_of(key);
        if !self.is_live() || generation.load(Ordering::Acquire) != seen {
            return;
        }
        self.entries.insert(key.to_owned(), value);
        // An invalidation may have landed between the check and the insert: it bumped the
        // generation before removing, so checking again and removing closes the gap.
        if generation.load(Ordering::Acquire) != seen || !self.is_live() {
            self.entries.invalidate(key);
        }
    }

    /// Whether the value fetched since `seen` may still be stored in the shared cache: not when
    /// this instance has heard of a write to `key` in the meantime.
    pub(crate) fn unchanged_since(&self, key: &str, seen: u64) -> bool {
        self.generation(key) == seen
    }

    /// Drops `keys`.
    pub fn invalidate(&self, keys: &[String]) {
        for key in keys {
            self.generation_of(key).fetch_add(1, Ordering::AcqRel);
            self.entries.invalidate(key);
        }
    }

    fn drop_everything(&self) {
        for generation in &self.generations {
            generation.fetch_add(1, Ordering::AcqRel);
        }
        self.entries.invalidate_all();
    }
}

impl InvalidationListener for LocalCache {
    fn invalidated(&self, keys: &[String]) {
        self.invalidate(keys);
    }

    fn feed(&self, up: bool) {
        if up {
            // Whatever was held may have been written while the feed was down.
            self.drop_everything();
            self.live.store(true, Ordering::Release);
        } else {
            self.live.store(false, Ordering::Release);
            self.drop_everything();
        }
    }
}

/// The shared cache, with every removal also dropped from this process's copies at once and
/// announced to every instance.
pub struct InvalidatingCache {
    shared: Arc<dyn Cache>,
    publisher: Arc<dyn InvalidationPublisher>,
    local: Option<Arc<LocalCache>>,
}

impl InvalidatingCache {
    /// `shared`, announcing its removals through `publisher` and applying them to `local`.
    pub fn new(
        shared: Arc<dyn Cache>,
        publisher: Arc<dyn InvalidationPublisher>,
        local: Option<Arc<LocalCache>>,
    ) -> Self {
        Self {
            shared,
            publisher,
            local,
        }
    }
}

#[async_trait]
impl Cache for InvalidatingCache {
    async fn get(&self, key: &str) -> Result<Option<String>, PortError> {
        self.shared.get(key).await
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<(), PortError> {
        self.shared.set(key, value, ttl).await
    }

    async fn delete(&self, key: &str) -> Result<(), PortError> {
        self.delete_many(&[key.to_owned()]).await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), PortError> {
        if keys.is_empty() {
            return Ok(());
        }
        if let Some(local) = &self.local {
            local.invalidate(keys);
        }
        let (deleted, published) =
            tokio::join!(self.shared.delete_many(keys), self.publisher.publish(keys));
        if let Err(error) = published {
            tracing::warn!(?keys, %error, "could not announce an invalidation to the other instances");
        }
        deleted
    }
}

#[cfg(test)]
mod tests {
    use strata_ports::{MockCache, MockInvalidationPublisher};

    use super::*;
    use crate::test_support::unavailable;

    fn live_cache() -> LocalCache {
        let cache = LocalCache::new(LocalCacheSettings {
            capacity: 100,
            ttl: Duration::from_secs(60),
        });
        cache.feed(true);
        cache
    }

    #[test]
    fn nothing_is_served_or_kept_until_the_feed_is_up() {
        let cache = LocalCache::new(LocalCacheSettings {
            capacity: 100,
            ttl: Duration::from_secs(60),
        });
        let seen = cache.generation("k");
        cache.insert("k", Arc::new(1_u32), seen);
        assert!(cache.get::<u32>("k").is_none());
        cache.feed(true);
        let seen = cache.generation("k");
        cache.insert("k", Arc::new(2_u32), seen);
        assert_eq!(cache.get::<u32>("k").as_deref(), Some(&2));
    }

    #[test]
    fn losing_the_feed_drops_everything_and_stops_serving() {
        let cache = live_cache();
        cache.insert("k", Arc::new(1_u32), cache.generation("k"));
        cache.feed(false);
        assert!(cache.get::<u32>("k").is_none());
        cache.feed(true);
        assert!(
            cache.get::<u32>("k").is_none(),
            "a value held before the outage is gone"
        );
    }

    #[test]
    fn a_value_fetched_across_an_invalidation_is_not_kept() {
        let cache = live_cache();
        let seen = cache.generation("k");
        cache.invalidated(&["k".to_owned()]);
        assert!(!cache.unchanged_since("k", seen));
        cache.insert("k", Arc::new(1_u32), seen);
        assert!(cache.get::<u32>("k").is_none());
        // Another key (almost always on another counter) is unaffected.
        let other = cache.generation("other");
        cache.insert("other", Arc::new(2_u32), other);
        assert_eq!(cache.get::<u32>("other").as_deref(), Some(&2));
    }

    #[test]
    fn an_invalidation_drops_the_key_and_a_wrong_type_is_a_miss() {
        let cache = live_cache();
        cache.insert("k", Arc::new(1_u32), cache.generation("k"));
        assert!(cache.get::<String>("k").is_none());
        cache.invalidated(&["k".to_owned()]);
        assert!(cache.get::<u32>("k").is_none());
    }

    #[tokio::test]
    async fn a_removal_is_applied_locally_deleted_and_announced_even_when_the_cache_is_down() {
        let local = Arc::new(live_cache());
        local.insert("k", Arc::new(1_u32), local.generation("k"));
        let mut shared = MockCache::new();
        shared
            .expect_delete_many()
            .withf(|keys| keys == ["k".to_owned()])
            .times(1)
            .returning(|_| Err(unavailable()));
        let mut publisher = MockInvalidationPublisher::new();
        publisher
            .expect_publish()
            .withf(|keys| keys == ["k".to_owned()])
            .times(1)
            .returning(|_| Ok(()));
        let cache =
            InvalidatingCache::new(Arc::new(shared), Arc::new(publisher), Some(local.clone()));

        assert!(cache.delete("k").await.is_err());
        assert!(local.get::<u32>("k").is_none());
    }
}
