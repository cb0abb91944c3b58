-- The W3C tracestate that goes with a job's trace_parent: vendors' entries the trace carries on
-- into the job's spans. The specification allows up to 32 entries of up to 256 characters each,
-- and recommends propagating at least 512 characters; longer is cut by entries before storing.
ALTER TABLE jobs ADD COLUMN trace_state text CHECK (char_length(trace_state) <= 512);
