-- Background jobs: the durable truth about each job (the queue only carries its id and kind), and
-- the ticks of periodic tasks, so that one runs once per cluster per tick.
CREATE TABLE jobs (
    id         uuid        PRIMARY KEY,
    kind       text        NOT NULL CHECK (char_length(kind) BETWEEN 1 AND 100),
    payload    jsonb       NOT NULL,
    status     text        NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
    attempts   integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error text,
    -- The W3C traceparent of the request that queued it, so the job's spans join its trace.
    trace_parent text CHECK (char_length(trace_parent) <= 128),
    run_after  timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

-- The stranded sweep: unfinished jobs untouched for a while, oldest first. Finished jobs, the
-- vast majority, stay out of the index.
CREATE INDEX jobs_unfinished_updated_at_idx ON jobs (updated_at)
    WHERE status IN ('queued', 'running');

-- A row per periodic task per tick, inserted by the one worker that runs it.
CREATE TABLE job_ticks (
    name       text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    tick       timestamptz NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, tick)
);
