-- Data snapshots: immutable, content-addressed, versioned per name.
CREATE TABLE snapshots (
    name          VARCHAR NOT NULL,
    version       INTEGER NOT NULL,
    content_hash  VARCHAR NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    creator       VARCHAR NOT NULL,
    source        VARCHAR NOT NULL,
    description   VARCHAR,
    row_count     BIGINT NOT NULL,
    byte_size     BIGINT NOT NULL,
    columns       JSON NOT NULL,
    profile       JSON NOT NULL,
    blob          VARCHAR NOT NULL,
    PRIMARY KEY (name, version)
);
