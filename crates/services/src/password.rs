//! argon2id password hashing on a bounded blocking pool.
//!
//! Hashing takes tens of milliseconds of CPU and ~19 MiB of memory, so it never runs on an async
//! worker: each call takes a permit from a semaphore (at most `max_concurrent` hashes at once) and
//! runs on tokio's blocking pool. A caller that cannot get a permit within `queue_timeout` gets
//! [`HashError::Overloaded`] (503) instead of piling up behind the others.
//!
//! Hashes are PHC strings, which carry the algorithm, version and parameters; a hash made with other
//! parameters than the current ones is reported as `needs_rehash`, so raising the cost later
//! upgrades each user's hash at their next login.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use async_trait::async_trait;
use strata_domain::Password;
use strata_ports::{HashError, PasswordHasher, PasswordVerdict};
use tokio::sync::Semaphore;

/// Cost parameters and concurrency bounds of the hasher.
#[derive(Debug, Clone)]
pub struct Argon2Settings {
    /// Memory cost in KiB (OWASP minimum for argon2id: 19456).
    pub memory_kib: u32,
    /// Iterations.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
    /// Hashes allowed to run at once (the pool's bound).
    pub max_concurrent: usize,
    /// How long a caller may wait for a free slot before being shed.
    pub queue_timeout: Duration,
}

impl Default for Argon2Settings {
    fn default() -> Self {
        Self {
            memory_kib: Params::DEFAULT_M_COST,
            iterations: Params::DEFAULT_T_COST,
            parallelism: Params::DEFAULT_P_COST,
            max_concurrent: std::thread::available_parallelism().map_or(2, |n| n.get()),
            queue_timeout: Duration::from_secs(5),
        }
    }
}

/// The argon2id [`PasswordHasher`].
#[derive(Clone)]
pub struct Argon2Hasher {
    params: Params,
    permits: Arc<Semaphore>,
    queue_timeout: Duration,
    dummy_hash: Arc<str>,
}

impl std::fmt::Debug for Argon2Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Argon2Hasher")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl Argon2Hasher {
    /// Builds the hasher and the dummy hash used for unknown accounts (one hash, at start-up).
    pub fn new(settings: &Argon2Settings) -> anyhow::Result<Self> {
        let params = Params::new(
            settings.memory_kib,
            settings.iterations,
            settings.parallelism,
            None,
        )
        .map_err(|e| anyhow!("invalid argon2 parameters: {e}"))?;
        let mut salt_source = [0u8; 32];
        getrandom::fill(&mut salt_source).map_err(|e| anyhow!("no system randomness: {e}"))?;
        let dummy_hash = argon2(&params)
            .hash_password(&salt_source)
            .map_err(|e| anyhow!("argon2 failed: {e}"))?
            .to_string();
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(settings.max_concurrent.max(1))),
            queue_timeout: settings.queue_timeout,
            dummy_hash: dummy_hash.into(),
        })
    }

    async fn on_blocking_pool<T, F>(&self, work: F) -> Result<T, HashError>
    where
        T: Send + 'static,
        F: FnOnce(Argon2<'static>) -> Result<T, HashError> + Send + 'static,
    {
        let permit = tokio::time::timeout(self.queue_timeout, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| HashError::Overloaded)?
            .map_err(|_| HashError::Overloaded)?;
        let hasher = argon2(&self.params);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work(hasher)
        })
        .await
        .context("password hashing task panicked")?
    }

    fn needs_rehash(&self, stored: &PasswordHash) -> bool {
        let current_algorithm = stored.algorithm == Algorithm::Argon2id.ident();
        let current_version = stored.version == Some(Version::V0x13.into());
        let current_params = Params::try_from(stored).is_ok_and(|p| {
            p.m_cost() == self.params.m_cost()
                && p.t_cost() == self.params.t_cost()
                && p.p_cost() == self.params.p_cost()
        });
        !(current_algorithm && current_version && current_params)
    }
}

fn argon2(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &Password) -> Result<String, HashError> {
        let plaintext = password.expose().as_bytes().to_vec();
        self.on_blocking_pool(move |hasher| {
            hasher
                .hash_password(&plaintext)
                .map(|hash| hash.to_string())
                .map_err(|e| HashError::Unexpected(anyhow!("argon2 failed: {e}")))
        })
        .await
    }

    async fn verify(
        &self,
        password: &Password,
        stored: &str,
    ) -> Result<PasswordVerdict, HashError> {
        let parsed = PasswordHash::new(stored)
            .map_err(|e| HashError::Unexpected(anyhow!("unreadable password hash: {e}")))?;
        let needs_rehash = self.needs_rehash(&parsed);
        let plaintext = password.expose().as_bytes().to_vec();
        let stored = stored.to_owned();
        let matches = self
            .on_blocking_pool(move |hasher| {
                Ok(hasher.verify_password(&plaintext, stored.as_str()).is_ok())
            })
            .await?;
        Ok(PasswordVerdict {
            matches,
            needs_rehash,
        })
    }

    async fn verify_dummy(&self, password: &Password) -> Result<(), HashError> {
        let dummy = self.dummy_hash.clone();
        self.verify(password, &dummy).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Argon2Settings {
        Argon2Settings {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
            max_concurrent: 1,
            queue_timeout: Duration::from_millis(10),
        }
    }

    fn password(raw: &str) -> Password {
        Password::unchecked(raw)
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_and_nothing_else() -> anyhow::Result<()> {
        let hasher = Argon2Hasher::new(&cheap())?;
        let hash = hasher.hash(&password("correct horse")).await?;
        assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{hash}");
        assert!(
            hasher
                .verify(&password("correct horse"), &hash)
                .await?
                .matches
        );
        assert!(
            !hasher
                .verify(&password("wrong horse"), &hash)
                .await?
                .matches
        );
        assert!(
            !hasher
                .verify(&password("correct horse"), &hash)
                .await?
                .needs_rehash
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_hash_made_with_older_parameters_asks_for_a_rehash() -> anyhow::Result<()> {
        let old = Argon2Hasher::new(&cheap())?;
        let hash = old.hash(&password("correct horse")).await?;
        let stronger = Argon2Hasher::new(&Argon2Settings {
            memory_kib: 2048,
            ..cheap()
        })?;
        let verdict = stronger.verify(&password("correct horse"), &hash).await?;
        assert!(verdict.matches && verdict.needs_rehash);
        Ok(())
    }

    #[tokio::test]
    async fn the_dummy_verification_never_succeeds() -> anyhow::Result<()> {
        let hasher = Argon2Hasher::new(&cheap())?;
        hasher.verify_dummy(&password("anything")).await?;
        Ok(())
    }

    #[tokio::test]
    async fn an_unreadable_stored_hash_is_unexpected() -> anyhow::Result<()> {
        let hasher = Argon2Hasher::new(&cheap())?;
        let result = hasher.verify(&password("x"), "not-a-phc-string").await;
        assert!(matches!(result, Err(HashError::Unexpected(_))));
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_beyond_the_bound_are_shed_not_queued_forever() -> anyhow::Result<()> {
        let hasher = Argon2Hasher::new(&Argon2Settings {
            memory_kib: 65536,
            iterations: 4,
            ..cheap()
        })?;
        let results = futures_join(&hasher).await;
        assert!(results.iter().any(Result::is_ok));
        assert!(
            results
                .iter()
                .any(|r| matches!(r, Err(HashError::Overloaded)))
        );
        Ok(())
    }

    async fn futures_join(hasher: &Argon2Hasher) -> Vec<Result<String, HashError>> {
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let hasher = hasher.clone();
            tasks.push(tokio::spawn(async move {
                hasher.hash(&Password::unchecked("pw")).await
            }));
        }
        let mut results = Vec::new();
        for task in tasks {
            results.push(
                task.await
                    .unwrap_or_else(|e| Err(HashError::Unexpected(e.into()))),
            );
        }
        results
    }
}
