//! The job state adapter against a real server, each test in a fresh database cloned from the
//! migrated template.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers fail loudly by design

use std::collections::HashSet;

use chrono::{DateTime, SubsecRound, Utc};
use strata_ports::{Job, JobRepository, JobStatus, PortError};
use strata_postgres::PgJobRepository;
use strata_postgres::testing::{TestDatabase, now};
use uuid::Uuid;

fn seconds(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

/// A queued job last touched at `touched`, due from `run_after`.
fn job_at(touched: DateTime<Utc>, run_after: DateTime<Utc>) -> Job {
    Job {
        id: Uuid::now_v7(),
        kind: "reports.sales".into(),
        payload: r#"{"days":30}"#.into(),
        status: JobStatus::Queued,
        attempts: 0,
        last_error: None,
        trace_parent: None,
        trace_state: None,
        run_after,
        created_at: touched,
        updated_at: touched,
    }
}

fn job() -> Job {
    let t = now();
    job_at(t, t)
}

async fn stored(jobs: &PgJobRepository, id: Uuid) -> Job {
    jobs.find(id).await.unwrap().expect("the job is stored")
}

#[tokio::test]
async fn a_job_is_created_found_started_and_completed_and_a_finished_job_never_restarts()
-> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let jobs = PgJobRepository::new(test_db.database());
    let queued = Job {
        // jsonb keeps the value, not the text: it reads back compact.
        payload: r#"{ "days": 30 }"#.into(),
        ..job()
    };
    jobs.create(&queued).await?;
    assert_eq!(
        jobs.find(queued.id).await?,
        Some(Job {
            payload: r#"{"days":30}"#.into(),
            ..queued.clone()
        })
    );
    assert!(jobs.find(Uuid::now_v7()).await?.is_none());

    let t1 = now() + seconds(1);
    let running = jobs.start(queued.id, t1).await?.expect("queued");
    assert_eq!(
        (running.status, running.attempts, running.updated_at),
        (JobStatus::Running, 1, t1)
    );
    assert_eq!(stored(&jobs, queued.id).await, running);

    let t2 = now() + seconds(2);
    jobs.complete(queued.id, t2).await?;
    let done = stored(&jobs, queued.id).await;
    assert_eq!(
        done,
        Job {
            status: JobStatus::Done,
            updated_at: t2,
            ..running
        }
    );
    // A duplicate delivery of a finished job is dropped, and no late write reopens it.
    assert!(jobs.start(queued.id, now()).await?.is_none());
    jobs.fail(queued.id, "late failure", Some(now()), now())
        .await?;
    jobs.fail(queued.id, "late failure", None, now()).await?;
    jobs.release(queued.id, now()).await?;
    assert_eq!(stored(&jobs, queued.id).await, done);
    assert!(jobs.start(Uuid::now_v7(), now()).await?.is_none());
    Ok(())
}

#[tokio::test]
async fn a_failed_attempt_is_queued_for_its_retry_time_or_fails_for_good() -> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let jobs = PgJobRepository::new(test_db.database());
    let queued = job();
    jobs.create(&queued).await?;
    jobs.start(queued.id, now()).await?.expect("queued");

    let (t, retry_at) = (now() + seconds(1), now() + seconds(60));
    jobs.fail(
        queued.id,
        "timeout talking to the mail server",
        Some(retry_at),
        t,
    )
    .await?;
    let waiting = stored(&jobs, queued.id).await;
    assert_eq!(
        (
            waiting.status,
            waiting.run_after,
            waiting.last_error.as_deref(),
            waiting.attempts,
            waiting.updated_at
        ),
        (
            JobStatus::Queued,
            retry_at,
            Some("timeout talking to the mail server"),
            1,
            t
        )
    );

    let again = jobs.start(queued.id, now()).await?.expect("queued again");
    assert_eq!((again.status, again.attempts), (JobStatus::Running, 2));
    jobs.fail(queued.id, "still failing", None, now()).await?;
    let failed = stored(&jobs, queued.id).await;
    assert_eq!(
        (failed.status, failed.last_error.as_deref(), failed.attempts),
        (JobStatus::Failed, Some("still failing"), 2)
    );
    assert!(
        jobs.start(queued.id, now()).await?.is_none(),
        "failed is final"
    );
    jobs.complete(queued.id, now()).await?;
    assert_eq!(stored(&jobs, queued.id).await, failed);
    Ok(())
}

#[tokio::test]
async fn queued_jobs_are_counted_by_kind_retries_included_and_nothing_else() -> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let jobs = PgJobRepository::new(test_db.database());
    assert_eq!(jobs.queued_by_kind().await?, Vec::new());

    let of = |kind: &str| Job {
        kind: kind.into(),
        ..job()
    };
    for kind in [
        "reports.sales",
        "reports.sales",
        "reports.sales",
        "subscriptions.renew",
    ] {
        jobs.create(&of(kind)).await?;
    }
    // Neither a running, a done nor a failed job waits; a retry waiting out its backoff does.
    let (running, done, failed, retrying) = (
        of("reports.sales"),
        of("reports.sales"),
        of("reports.sales"),
        of("subscriptions.renew"),
    );
    for each in [&running, &done, &failed, &retrying] {
        jobs.create(each).await?;
        jobs.start(each.id, now()).await?.expect("queued");
    }
    jobs.complete(done.id, now()).await?;
    jobs.fail(failed.id, "gave up", None, now()).await?;
    jobs.fail(retrying.id, "later", Some(now() + seconds(60)), now())
        .await?;

    let mut counts = jobs.queued_by_kind().await?;
    counts.sort();
    assert_eq!(
        counts,
        vec![
            ("reports.sales".to_owned(), 3),
            ("subscriptions.renew".to_owned(), 2)
        ]
    );
    Ok(())
}

#[tokio::test]
async fn a_released_job_is_queued_again_and_only_a_running_one_is_released() -> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let jobs = PgJobRepository::new(test_db.database());
    let queued = job();
    jobs.create(&queued).await?;
    jobs.release(queued.id, now() + seconds(5)).await?;
    assert_eq!(
        stored(&jobs, queued.id).await,
        queued,
        "not running: untouched"
    );

    let running = jobs.start(queued.id, now()).await?.expect("queued");
    let t = now() + seconds(1);
    jobs.release(queued.id, t).await?;
    assert_eq!(
        stored(&jobs, queued.id).await,
        Job {
            status: JobStatus::Queued,
            updated_at: t,
            ..running
        },
        "queued again; the attempt it started still counts"
    );
    // A redelivery of a job whose worker crashed (still running) starts it again.
    jobs.start(queued.id, now()).await?.expect("queued");
    let restarted = jobs.start(queued.id, now()).await?.expect("running");
    assert_eq!(restarted.attempts, 3);
    Ok(())
}

#[tokio::test]
async fn stranded_finds_old_unfinished_due_jobs_once_and_touches_them() -> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let jobs = PgJobRepository::new(test_db.database());
    let t = now();
    let (old, before) = (t - seconds(600), t - seconds(300));

    let old_queued = job_at(old - seconds(2), old);
    let old_running = job_at(old - seconds(1), old);
    let recent = job_at(t - seconds(10), t - seconds(10));
    let waiting_for_retry = job_at(old, t + seconds(60));
    let (old_done, old_failed) = (job_at(old, old), job_at(old, old));
    for job in [
        &old_queued,
        &old_running,
        &recent,
        &waiting_for_retry,
        &old_done,
        &old_failed,
    ] {
        jobs.create(job).await?;
    }
    // Put the running and finished ones in their states while keeping them old.
    jobs.start(old_running.id, old).await?.expect("queued");
    jobs.start(old_done.id, old).await?.expect("queued");
    jobs.complete(old_done.id, old).await?;
    jobs.fail(old_failed.id, "gave up", None, old).await?;

    let found = jobs.stranded(before, t, 10).await?;
    let ids: Vec<_> = found.iter().map(|job| job.id).collect();
    assert_eq!(ids, [old_queued.id, old_running.id], "oldest first");
    assert!(found.iter().all(|job| job.updated_at == t), "touched");
    assert_eq!(
        found[1].status,
        JobStatus::Running,
        "the status is unchanged"
    );
    assert_eq!(stored(&jobs, old_queued.id).await.updated_at, t);
    assert!(
        jobs.stranded(before, t, 10).await?.is_empty(),
        "a second sweep right after finds them fresh"
    );
    // Once they are old again, they come back, up to the limit.
    let later = t + seconds(600);
    let page = jobs.stranded(later - seconds(300), later, 1).await?;
    assert_eq!(page.len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_heartbeat_keeps_a_long_running_job_from_the_sweep_and_only_a_running_job_beats()
-> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let jobs = PgJobRepository::new(test_db.database());
    let t = now();
    let long = job_at(t - seconds(3600), t - seconds(3600));
    jobs.create(&long).await?;
    jobs.start(long.id, t - seconds(3600))
        .await?
        .expect("queued");

    assert!(jobs.heartbeat(long.id, t - seconds(10)).await?);
    assert!(
        jobs.stranded(t - seconds(300), t, 10).await?.is_empty(),
        "a job beating within the sweep's bound is not stranded"
    );
    let beaten = stored(&jobs, long.id).await;
    assert_eq!(beaten.updated_at, t - seconds(10));
    assert_eq!((beaten.status, beaten.attempts), (JobStatus::Running, 1));

    // Its worker died: once the last beat is older than the bound, the sweep finds it.
    let later = t + seconds(600);
    assert_eq!(
        jobs.stranded(later - seconds(300), later, 10).await?.len(),
        1
    );

    jobs.complete(long.id, later).await?;
    assert!(
        !jobs.heartbeat(long.id, later + seconds(1)).await?,
        "a finished job does not beat"
    );
    assert_eq!(stored(&jobs, long.id).await.updated_at, later);
    let queued = job();
    jobs.create(&queued).await?;
    assert!(!jobs.heartbeat(queued.id, later).await?);
    assert!(!jobs.heartbeat(Uuid::now_v7(), later).await?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sweepers_never_return_the_same_stranded_job() -> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let jobs = PgJobRepository::new(test_db.roomy());
    let t = now();
    let old = t - seconds(600);
    let mut all = HashSet::new();
    for i in 0..40 {
        let job = job_at(old + seconds(i), old);
        jobs.create(&job).await?;
        all.insert(job.id);
    }
    let sweepers: Vec<_> = (0..4)
        .map(|_| {
            let jobs = jobs.clone();
            tokio::spawn(async move {
                let mut found = Vec::new();
                loop {
                    let page = jobs.stranded(t - seconds(300), t, 3).await.unwrap();
                    if page.is_empty() {
                        return found;
                    }
                    found.extend(page.into_iter().map(|job| job.id));
                }
            })
        })
        .collect();
    let mut seen = Vec::new();
    for sweeper in sweepers {
        seen.extend(sweeper.await?);
    }
    let distinct: HashSet<_> = seen.iter().copied().collect();
    assert_eq!(distinct.len(), seen.len(), "no job handed out twice");
    assert_eq!(distinct, all);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_of_one_tick_have_exactly_one_winner() -> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let jobs = PgJobRepository::new(test_db.roomy());
    let tick = now().trunc_subsecs(0);
    let claims: Vec<_> = (0..5)
        .map(|_| {
            let jobs = jobs.clone();
            tokio::spawn(async move { jobs.claim_tick("subscriptions.renew", tick).await })
        })
        .collect();
    let mut winners = 0;
    for claim in claims {
        if claim.await?? {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
    assert!(!jobs.claim_tick("subscriptions.renew", tick).await?);
    assert!(
        jobs.claim_tick("subscriptions.renew", tick + seconds(60))
            .await?,
        "the next tick is free"
    );
    assert!(
        jobs.claim_tick("reports.cleanup", tick).await?,
        "ticks are per task"
    );
    Ok(())
}

#[tokio::test]
async fn a_payload_that_is_not_json_is_refused_as_a_bug() -> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let jobs = PgJobRepository::new(test_db.database());
    let broken = Job {
        payload: "{not json".into(),
        ..job()
    };
    let refused = jobs.create(&broken).await;
    assert!(
        matches!(refused, Err(PortError::Unexpected(_))),
        "{refused:?}"
    );
    assert!(jobs.find(broken.id).await?.is_none());
    Ok(())
}

#[tokio::test]
async fn a_job_keeps_the_trace_of_the_request_that_queued_it() {
    let test_db = TestDatabase::create().await.unwrap();
    let jobs = PgJobRepository::new(test_db.database());
    let mut job = job();
    job.trace_parent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
    job.trace_state = Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7".into());
    jobs.create(&job).await.unwrap();
    let found = jobs.find(job.id).await.unwrap().unwrap();
    assert_eq!(found.trace_parent, job.trace_parent);
    assert_eq!(found.trace_state, job.trace_state);
    let started = jobs.start(job.id, now()).await.unwrap().unwrap();
    assert_eq!(started.trace_parent, job.trace_parent);
    assert_eq!(started.trace_state, job.trace_state);
}

#[tokio::test]
async fn the_retention_sweep_deletes_only_old_finished_jobs_old_ticks_and_expired_keys() {
    use diesel_async::RunQueryDsl;
    use strata_ports::{RetentionCutoffs, RetentionRepository};

    let test_db = TestDatabase::create().await.unwrap();
    let db = test_db.database();
    let jobs = PgJobRepository::new(db.clone());
    let t = now();
    // Finished long ago, finished recently, and unfinished long ago (never purged).
    let old_done = job_at(t - seconds(10 * 86_400), t);
    let recent_done = job_at(t - seconds(60), t);
    let old_queued = job_at(t - seconds(10 * 86_400), t);
    for job in [&old_done, &recent_done, &old_queued] {
        jobs.create(job).await.unwrap();
    }
    let mut conn = db.connection().await.unwrap();
    for (id, at) in [
        (old_done.id, t - seconds(10 * 86_400)),
        (recent_done.id, t - seconds(60)),
    ] {
        diesel::sql_query("UPDATE jobs SET status = 'done', updated_at = $2 WHERE id = $1")
            .bind::<diesel::sql_types::Uuid, _>(id)
            .bind::<diesel::sql_types::Timestamptz, _>(at)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    assert!(
        jobs.claim_tick("old", t - seconds(3 * 86_400))
            .await
            .unwrap()
    );
    assert!(jobs.claim_tick("new", t - seconds(60)).await.unwrap());
    let user = strata_postgres::testing::insert_user(&db, "keys@example.com")
        .await
        .unwrap();
    for (key, expires) in [("expired", t - seconds(1)), ("live", t + seconds(3600))] {
        diesel::sql_query(
            "INSERT INTO idempotency_keys (user_id, key, operation, fingerprint, created_at, \
             expires_at) VALUES ($1, $2, 'orders.place', 'f', $3, $4)",
        )
        .bind::<diesel::sql_types::Uuid, _>(user.0)
        .bind::<diesel::sql_types::Text, _>(key)
        .bind::<diesel::sql_types::Timestamptz, _>(t - seconds(86_400))
        .bind::<diesel::sql_types::Timestamptz, _>(expires)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    drop(conn);

    let retention = strata_postgres::PgRetentionRepository::new(db.clone());
    let cutoffs = RetentionCutoffs {
        finished_jobs_before: t - seconds(7 * 86_400),
        ticks_before: t - seconds(86_400),
        idempotency_expired_before: t,
    };
    let purged = retention.purge(&cutoffs, 100).await.unwrap();
    assert_eq!(
        (purged.jobs, purged.ticks, purged.idempotency_keys),
        (1, 1, 1)
    );
    assert!(jobs.find(old_done.id).await.unwrap().is_none());
    assert!(jobs.find(recent_done.id).await.unwrap().is_some());
    assert!(
        jobs.find(old_queued.id).await.unwrap().is_some(),
        "unfinished jobs stay"
    );
    assert!(
        !jobs.claim_tick("new", t - seconds(60)).await.unwrap(),
        "a recent tick stays"
    );
    let again = retention.purge(&cutoffs, 100).await.unwrap();
    assert_eq!((again.jobs, again.ticks, again.idempotency_keys), (0, 0, 0));
}
