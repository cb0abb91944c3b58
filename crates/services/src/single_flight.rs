//! Collapses concurrent loads of one key into a single load.
//!
//! When a cached entry expires under load, every request would otherwise miss at once and query the
//! database together (a stampede). The first caller for a key runs the load; the others wait for its
//! result. If the first caller is cancelled, a waiting caller takes over.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OnceCell;

type Slot<V> = Arc<OnceCell<V>>;

/// Per-key deduplication of in-flight loads; `V` is the shared result (errors included).
pub struct SingleFlight<V> {
    in_flight: Mutex<HashMap<String, Slot<V>>>,
}

impl<V> Default for SingleFlight<V> {
    fn default() -> Self {
        Self {
            in_flight: Mutex::new(HashMap::new()),
        }
    }
}

impl<V: Clone> SingleFlight<V> {
    /// Runs `load` unless a load of `key` is already running, in which case its result is shared.
    pub async fn run<F, Fut>(&self, key: &str, load: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let slot = {
            let mut map = self
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            map.entry(key.to_owned()).or_default().clone()
        };
        let value = slot.get_or_init(load).await.clone();
        let mut map = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if map
            .get(key)
            .is_some_and(|current| Arc::ptr_eq(current, &slot))
        {
            map.remove(key);
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_loads_of_one_key_run_once() {
        let flights = Arc::new(SingleFlight::<u32>::default());
        let loads = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (flights, loads) = (flights.clone(), loads.clone());
            tasks.push(tokio::spawn(async move {
                flights
                    .run("k", || async {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        7
                    })
                    .await
            }));
        }
        for task in tasks {
            assert_eq!(task.await.expect("task"), 7);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_later_load_runs_again_once_the_first_finished() {
        let flights = SingleFlight::<u32>::default();
        assert_eq!(flights.run("k", || async { 1 }).await, 1);
        assert_eq!(flights.run("k", || async { 2 }).await, 2);
    }
}
