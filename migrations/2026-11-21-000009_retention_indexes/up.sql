-- The retention sweep deletes finished jobs and old ticks by age; these keep it off full scans.
-- (Expired Idempotency-Key records are found through idempotency_keys_expires_at_idx.)
CREATE INDEX jobs_finished_updated_at_idx ON jobs (updated_at)
    WHERE status IN ('done', 'failed');
CREATE INDEX job_ticks_tick_idx ON job_ticks (tick);
