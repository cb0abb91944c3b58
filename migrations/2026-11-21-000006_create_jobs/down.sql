DROP TABLE job_ticks;
DROP TABLE jobs;
