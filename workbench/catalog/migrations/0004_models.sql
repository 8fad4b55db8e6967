-- Model registry: models, numbered versions (each pointing at a run's model artifact), aliases
-- and their history (for rollback).
CREATE TABLE models (
    name         VARCHAR PRIMARY KEY,
    created_at   TIMESTAMPTZ NOT NULL,
    creator      VARCHAR NOT NULL,
    description  VARCHAR,
    gates        JSON                     -- promotion gates, see workbench/models/gates.py
);

CREATE TABLE model_versions (
    name         VARCHAR NOT NULL,
    version      INTEGER NOT NULL,
    run_id       VARCHAR NOT NULL,
    artifact     VARCHAR NOT NULL,        -- the run's artifact name
    blob         VARCHAR NOT NULL,        -- the skops file
    meta         JSON,                    -- flavor, class, schema, trusted types, classes
    metrics      JSON,                    -- the run's metrics at promotion time
    params       JSON,
    inputs       JSON,                    -- training snapshots ["wine@2"]
    created_at   TIMESTAMPTZ NOT NULL,
    creator      VARCHAR NOT NULL,
    reason       VARCHAR,
    PRIMARY KEY (name, version)
);

CREATE TABLE model_aliases (
    name         VARCHAR NOT NULL,
    alias        VARCHAR NOT NULL,
    version      INTEGER NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    updated_by   VARCHAR NOT NULL,
    PRIMARY KEY (name, alias)
);

CREATE TABLE model_alias_history (
    name         VARCHAR NOT NULL,
    alias        VARCHAR NOT NULL,
    version      INTEGER NOT NULL,
    previous     INTEGER,
    moved_at     TIMESTAMPTZ NOT NULL,
    actor        VARCHAR NOT NULL,
    reason       VARCHAR
);
