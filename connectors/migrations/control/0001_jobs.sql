-- The control plane's jobs: what was submitted, the state each is in, and how it got there.
-- Portable between PostgreSQL and SQLite (TEXT and BIGINT only; times in ms since the epoch).
CREATE TABLE arus_jobs (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    spec        TEXT NOT NULL,
    overrides   TEXT NOT NULL,
    workers     BIGINT NOT NULL,
    processes   BIGINT NOT NULL,
    state       TEXT NOT NULL,
    since_ms    BIGINT NOT NULL,
    created_ms  BIGINT NOT NULL,
    launches    BIGINT NOT NULL,
    pids        TEXT NOT NULL,
    last_error  TEXT
);

CREATE TABLE arus_job_transitions (
    job_id      TEXT NOT NULL REFERENCES arus_jobs (id),
    seq         BIGINT NOT NULL,
    at_ms       BIGINT NOT NULL,
    from_state  TEXT,
    to_state    TEXT NOT NULL,
    reason      TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
);
