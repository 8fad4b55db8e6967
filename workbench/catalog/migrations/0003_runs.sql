-- Experiments and runs. The catalog is an index of the per-run event files under runs/<run_id>/;
-- it can be rebuilt from them. No primary keys on the high-volume tables (metrics): ingestion
-- deletes and re-inserts per run inside one transaction instead.
CREATE TABLE experiments (
    name         VARCHAR PRIMARY KEY,
    created_at   TIMESTAMPTZ NOT NULL,
    creator      VARCHAR NOT NULL,
    description  VARCHAR
);

CREATE TABLE runs (
    run_id         VARCHAR PRIMARY KEY,
    experiment     VARCHAR NOT NULL,
    kind           VARCHAR NOT NULL,       -- notebook | interactive
    status         VARCHAR NOT NULL,       -- queued | running | finished | failed | killed
    notebook       VARCHAR,                -- path as given by the user
    notebook_hash  VARCHAR,                -- sha256 of the source notebook content
    notebook_blob  VARCHAR,                -- blob of the source notebook (for rerun)
    output_blob    VARCHAR,                -- blob of the executed notebook
    created_at     TIMESTAMPTZ NOT NULL,
    started_at     TIMESTAMPTZ,
    ended_at       TIMESTAMPTZ,
    duration_s     DOUBLE,
    creator        VARCHAR,
    host           VARCHAR,
    pid            INTEGER,
    git_commit     VARCHAR,
    git_dirty      BOOLEAN,
    python_version VARCHAR,
    packages       JSON,                   -- {name: version}
    kernel         VARCHAR,
    error          JSON,                   -- {cell_index, ename, evalue, traceback}
    parent_run_id  VARCHAR,                -- the run this one reproduces
    sweep_id       VARCHAR,
    pipeline_run   VARCHAR
);

CREATE TABLE run_params (
    run_id      VARCHAR NOT NULL,
    key         VARCHAR NOT NULL,
    value       JSON,                      -- exact value as JSON
    value_num   DOUBLE,                    -- numeric view for filters/sorting (NULL if not a number)
    value_text  VARCHAR                    -- text view for filters
);

CREATE TABLE run_metrics (                 -- every logged point (step series)
    run_id     VARCHAR NOT NULL,
    key        VARCHAR NOT NULL,
    step       BIGINT,
    value      DOUBLE,
    logged_at  TIMESTAMPTZ
);

CREATE TABLE run_metric_summary (          -- one row per run and metric: fast queries
    run_id     VARCHAR NOT NULL,
    key        VARCHAR NOT NULL,
    last       DOUBLE,
    min        DOUBLE,
    max        DOUBLE,
    last_step  BIGINT,
    count      BIGINT
);

CREATE TABLE run_tags (
    run_id  VARCHAR NOT NULL,
    key     VARCHAR NOT NULL,
    value   VARCHAR
);

CREATE TABLE run_artifacts (
    run_id     VARCHAR NOT NULL,
    name       VARCHAR NOT NULL,           -- relative, validated artifact name
    kind       VARCHAR NOT NULL,           -- file | figure | model | notebook | text
    blob       VARCHAR NOT NULL,
    size       BIGINT,
    meta       JSON,                       -- models: {"flavor", "schema", "trusted_types", ...}
    logged_at  TIMESTAMPTZ
);

CREATE TABLE run_inputs (                  -- lineage: snapshots a run read
    run_id            VARCHAR NOT NULL,
    snapshot_name     VARCHAR NOT NULL,
    snapshot_version  INTEGER NOT NULL
);

CREATE TABLE sweeps (
    sweep_id    VARCHAR PRIMARY KEY,
    experiment  VARCHAR NOT NULL,
    notebook    VARCHAR NOT NULL,
    spec        JSON NOT NULL,             -- grid / random spec, parallelism, executor
    created_at  TIMESTAMPTZ NOT NULL,
    creator     VARCHAR
);

CREATE INDEX run_params_run ON run_params (run_id);
CREATE INDEX run_summary_run ON run_metric_summary (run_id);
CREATE INDEX run_metrics_run ON run_metrics (run_id);

CREATE TABLE run_ingest (                  -- how much of each run's event file the catalog holds
    run_id       VARCHAR PRIMARY KEY,
    events_size  BIGINT NOT NULL,
    ingested_at  TIMESTAMPTZ NOT NULL
);
