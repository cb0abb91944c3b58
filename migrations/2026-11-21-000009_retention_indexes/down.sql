DROP INDEX job_ticks_tick_idx;
DROP INDEX jobs_finished_updated_at_idx;
