//! argon2id password hashing on a bounded blocking pool.
//!
//! Hashing takes tens of milliseconds of CPU and ~19 MiB of memory, so it never runs on an async
//! worker: each call takes a permit from a semaphore (at most `max_concurrent` hashes at once) and
//! runs on a pool of its own with exactly that many threads. A caller that cannot get a permit
//! within `queue_timeout` gets [`HashError::Overloaded`] (503) instead of piling up behind the
//! others.
//!
//! The hashing itself is `argon2-rust` (runtime-selected SIMD, 1.65× RustCrypto's speed here);
//! RustCrypto's `argon2` types parse and format the PHC strings (ADR 0015). Memory stays at
//! `max_concurrent` working areas however many logins come.
//!
//! The pool is two tiers. Half its threads (rounded up) hash at the async workers' priority
//! (`niceness`, 0 by default); the other half, the spare threads, at the lowest one
//! (`spare_niceness`, 19 by default), and a hash goes to a spare thread only when every primary
//! one is busy. A login storm on an otherwise idle machine thus uses every core, but when the
//! async workers also want the CPU, hashing takes at most half of it from them: health checks
//! and reads wait less behind hashing, and logins slow down instead (docs/performance.md, ADR
//! 0019).
//!
//! Hashes are PHC strings, which carry the algorithm, version and parameters; a hash made with other
//! parameters than the current ones is reported as `needs_rehash`, so raising the cost later
//! upgrades each user's hash at their next login.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Params, Version};
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
    /// The primary hashing threads' niceness (0 = as the async workers, 19 = only what they
    /// leave).
    pub niceness: u8,
    /// The spare hashing threads' niceness (never below `niceness`).
    pub spare_niceness: u8,
}

impl Default for Argon2Settings {
    fn default() -> Self {
        Self {
            memory_kib: Params::DEFAULT_M_COST,
            iterations: Params::DEFAULT_T_COST,
            parallelism: Params::DEFAULT_P_COST,
            max_concurrent: std::thread::available_parallelism().map_or(2, |n| n.get()),
            queue_timeout: Duration::from_secs(5),
            niceness: DEFAULT_NICENESS,
            spare_niceness: DEFAULT_SPARE_NICENESS,
        }
    }
}

/// The primary hashing threads' default niceness: none. Measured on two cores
/// (docs/performance.md), raising every thread's niceness shortens health checks' p99 during a
/// login storm (5.8 → 5.2 ms at 5, 3.1 ms at 19) but starves the storm's logins (103 → 73 per
/// second at 5; 46 at 19, with 503s).
pub const DEFAULT_NICENESS: u8 = 0;

/// The spare hashing threads' default niceness: the lowest, so that they hash on what the async
/// workers leave.
pub const DEFAULT_SPARE_NICENESS: u8 = 19;

/// The argon2id [`PasswordHasher`].
#[derive(Clone)]
pub struct Argon2Hasher {
    params: Params,
    primary: Tier,
    /// `None` when the pool has a single thread.
    spare: Option<Tier>,
    queue_timeout: Duration,
    dummy_hash: Arc<str>,
}

/// Threads of one priority, and a permit per thread.
#[derive(Clone)]
struct Tier {
    permits: Arc<Semaphore>,
    pool: Arc<rayon::ThreadPool>,
}

impl Tier {
    /// `threads` threads named from `first_index` on, at `niceness`.
    fn start(threads: usize, first_index: usize, niceness: u8) -> anyhow::Result<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(move |index| format!("strata-hash-{}", first_index + index))
            .start_handler(move |_| lower_priority(niceness))
            .build()
            .context("cannot start the password hashing threads")?;
        Ok(Self {
            permits: Arc::new(Semaphore::new(threads)),
            pool: Arc::new(pool),
        })
    }
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
        let threads = settings.max_concurrent.max(1);
        let niceness = settings.niceness.min(19);
        let primary_threads = threads.div_ceil(2);
        let primary = Tier::start(primary_threads, 0, niceness)?;
        let spare = match threads - primary_threads {
            0 => None,
            spare_threads => Some(Tier::start(
                spare_threads,
                primary_threads,
                settings.spare_niceness.clamp(niceness, 19),
            )?),
        };
        let mut salt_source = [0u8; 32];
        getrandom::fill(&mut salt_source).map_err(|e| anyhow!("no system randomness: {e}"))?;
        let dummy_hash = primary
            .pool
            .install(|| hash_phc(&params, &salt_source))
            .map_err(|e| anyhow!("cannot compute the dummy password hash: {e}"))?;
        Ok(Self {
            params,
            primary,
            spare,
            queue_timeout: settings.queue_timeout,
            dummy_hash: dummy_hash.into(),
        })
    }

    async fn on_blocking_pool<T, F>(&self, work: F) -> Result<T, HashError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, HashError> + Send + 'static,
    {
        let (permit, pool) = tokio::time::timeout(self.queue_timeout, self.thread())
            .await
            .map_err(|_| HashError::Overloaded)?
            .map_err(|_| HashError::Overloaded)?;
        let (done, outcome) = tokio::sync::oneshot::channel();
        pool.spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
            // The permit is released only once the thread is free again.
            drop(permit);
            // A caller that gave up (its request timed out) no longer listens; the hash is lost.
            let _ = done.send(result);
        });
        match outcome.await {
            Ok(Ok(result)) => result,
            Ok(Err(_panic)) => Err(HashError::Unexpected(anyhow!(
                "password hashing task panicked"
            ))),
            Err(_) => Err(HashError::Unexpected(anyhow!(
                "password hashing thread went away"
            ))),
        }
    }

    /// A free hashing thread's permit and pool: a primary one whenever one is free, else whichever
    /// tier frees a thread first.
    async fn thread(
        &self,
    ) -> Result<(tokio::sync::OwnedSemaphorePermit, &rayon::ThreadPool), tokio::sync::AcquireError>
    {
        let primary = self.primary.permits.clone().acquire_owned();
        let Some(spare) = &self.spare else {
            return Ok((primary.await?, &self.primary.pool));
        };
        tokio::select! {
            biased;
            permit = primary => Ok((permit?, &self.primary.pool)),
            permit = spare.permits.clone().acquire_owned() => Ok((permit?, &spare.pool)),
        }
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

/// Sets the calling thread's niceness. Raising one's own niceness needs no privilege; should the
/// system refuse anyway, hashing goes on at the normal priority.
fn lower_priority(niceness: u8) {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadPriorityValue, ThreadSchedulePolicy,
    };
    if niceness == 0 {
        return;
    }
    // The crate spreads its 0–99 scale over niceness 19…-20 (a test reads the result back).
    let value = (0_u8..=99)
        .find(|&p| {
            let ratio = 1.0 - f32::from(p) / 99.0;
            // Truncation is the crate's own rounding.
            #[allow(clippy::cast_possible_truncation)]
            let nice = (39.0 * ratio) as i8 - 20;
            nice <= i8::try_from(niceness).unwrap_or(19)
        })
        .unwrap_or(0);
    let priority = ThreadPriorityValue::try_from(value).map(ThreadPriority::Crossplatform);
    let result = priority.map_err(|e| format!("{e:?}")).and_then(|priority| {
        thread_priority::set_thread_priority_and_policy(
            thread_priority::thread_native_id(),
            priority,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other),
        )
        .map_err(|e| format!("{e:?}"))
    });
    if let Err(error) = result {
        tracing::warn!(%error, "could not lower the password hashing threads' priority");
    }
}

/// Computes `password`'s argon2 output into `out` (its length is the output's) with
/// `argon2-rust`, a port of the reference implementation with SIMD backends chosen at run time:
/// 1.65× as fast here as RustCrypto's `argon2`, whose PHC types still read and write the stored
/// strings (ADR 0015). Its working memory is mapped per hash and unmapped after, so an idle server
/// holds none.
fn compute(
    algorithm: Algorithm,
    version: Version,
    params: &Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), HashError> {
    let algorithm = match algorithm {
        Algorithm::Argon2d => argon2_rust::Algorithm::Argon2d,
        Algorithm::Argon2i => argon2_rust::Algorithm::Argon2i,
        Algorithm::Argon2id => argon2_rust::Algorithm::Argon2id,
    };
    let version = match version {
        Version::V0x10 => argon2_rust::Version::V0x10,
        Version::V0x13 => argon2_rust::Version::V0x13,
    };
    let tag_len = u64::try_from(out.len()).map_err(unexpected)?;
    let params = argon2_rust::Params::builder()
        .memory(argon2_rust::params::Memory::kib(u64::from(params.m_cost())))
        .passes(params.t_cost())
        .lanes(params.p_cost())
        .tag_len(argon2_rust::params::TagLen::bytes(tag_len))
        .build()
        .map_err(unexpected)?;
    argon2_rust::Argon2::new(algorithm, version, params)
        .hash_into(password, salt, out)
        .map_err(unexpected)
}

fn unexpected(e: impl std::fmt::Display) -> HashError {
    HashError::Unexpected(anyhow!("argon2 failed: {e}"))
}

/// The argon2id PHC string of `password` under `params`, with a fresh random salt.
fn hash_phc(params: &Params, password: &[u8]) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| HashError::Unexpected(anyhow!("no randomness: {e}")))?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    compute(
        Algorithm::Argon2id,
        Version::V0x13,
        params,
        password,
        &salt,
        &mut out,
    )?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(unexpected)?,
        salt: Some(Salt::new(&salt).map_err(unexpected)?),
        hash: Some(Output::new(&out).map_err(unexpected)?),
    };
    Ok(phc.to_string())
}

/// Whether `password` hashes to `stored` under `stored`'s own algorithm, version and parameters
/// (compared in constant time).
fn verify_phc(stored: &PasswordHash, password: &[u8]) -> Result<bool, HashError> {
    let (Some(salt), Some(expected)) = (&stored.salt, &stored.hash) else {
        return Ok(false);
    };
    let algorithm = Algorithm::try_from(stored.algorithm.as_str()).map_err(unexpected)?;
    let version = stored
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(unexpected)?
        .unwrap_or_default();
    let params = Params::try_from(stored).map_err(unexpected)?;
    let mut out = vec![0u8; expected.len()];
    compute(algorithm, version, &params, password, salt, &mut out)?;
    Ok(Output::new(&out).map_err(unexpected)? == *expected)
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &Password) -> Result<String, HashError> {
        let plaintext = password.expose().as_bytes().to_vec();
        let params = self.params.clone();
        self.on_blocking_pool(move || hash_phc(&params, &plaintext))
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
        let matches = self
            .on_blocking_pool(move || verify_phc(&parsed, &plaintext))
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
    use argon2::Argon2;

    fn cheap() -> Argon2Settings {
        Argon2Settings {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
            max_concurrent: 1,
            queue_timeout: Duration::from_millis(10),
            niceness: 0,
            spare_niceness: DEFAULT_SPARE_NICENESS,
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
    async fn hashes_are_interchangeable_with_the_argon2_crates_own_phc_code() -> anyhow::Result<()>
    {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let ours = Argon2Hasher::new(&cheap())?;
        let params = Params::new(1024, 1, 1, None).map_err(|e| anyhow!("{e}"))?;
        let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);

        let made_by_us = ours.hash(&password("correct horse")).await?;
        assert!(
            theirs
                .verify_password(b"correct horse", made_by_us.as_str())
                .is_ok()
        );
        assert!(
            theirs
                .verify_password(b"wrong horse", made_by_us.as_str())
                .is_err()
        );

        let made_by_them = theirs
            .hash_password(b"correct horse")
            .map_err(|e| anyhow!("{e}"))?
            .to_string();
        assert!(
            ours.verify(&password("correct horse"), &made_by_them)
                .await?
                .matches
        );
        assert!(
            !ours
                .verify(&password("wrong horse"), &made_by_them)
                .await?
                .matches
        );
        // An argon2i hash with other costs still verifies, in memory sized for it.
        let other = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            Params::new(2048, 2, 1, Some(24)).map_err(|e| anyhow!("{e}"))?,
        )
        .hash_password(b"correct horse")
        .map_err(|e| anyhow!("{e}"))?
        .to_string();
        let verdict = ours.verify(&password("correct horse"), &other).await?;
        assert!(verdict.matches && verdict.needs_rehash);
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

    /// This thread's niceness: field 19 of /proc/thread-self/stat (after the parenthesised name).
    fn own_niceness() -> i64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        after_name.split(' ').nth(16).unwrap().parse().unwrap()
    }

    #[test]
    fn hashing_threads_run_at_the_configured_niceness() {
        for niceness in [0_u8, 5, 10, 19] {
            let seen = std::thread::spawn(move || {
                lower_priority(niceness);
                own_niceness()
            })
            .join()
            .unwrap();
            assert_eq!(seen, i64::from(niceness));
        }
    }

    #[tokio::test]
    async fn a_hash_goes_to_a_spare_thread_only_while_every_primary_one_is_busy()
    -> anyhow::Result<()> {
        let hasher = Argon2Hasher::new(&Argon2Settings {
            max_concurrent: 2,
            queue_timeout: Duration::from_secs(10),
            spare_niceness: 7,
            ..cheap()
        })?;
        let thread = || {
            let name = std::thread::current().name().map(str::to_owned);
            Ok::<_, HashError>((name, own_niceness()))
        };
        let primary = (Some("strata-hash-0".to_owned()), 0);
        assert_eq!(hasher.on_blocking_pool(thread).await?, primary);

        // Hold the primary thread until told to go.
        let (started, primary_busy) = tokio::sync::oneshot::channel();
        let (release, held) = std::sync::mpsc::channel::<()>();
        let busy = tokio::spawn({
            let hasher = hasher.clone();
            async move {
                hasher
                    .on_blocking_pool(move || {
                        let _ = started.send(std::thread::current().name().map(str::to_owned));
                        let _ = held.recv();
                        Ok(())
                    })
                    .await
            }
        });
        assert_eq!(primary_busy.await?.as_deref(), Some("strata-hash-0"));
        let spare = (Some("strata-hash-1".to_owned()), 7);
        assert_eq!(hasher.on_blocking_pool(thread).await?, spare);
        release.send(())?;
        busy.await??;
        assert_eq!(hasher.on_blocking_pool(thread).await?, primary);
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
