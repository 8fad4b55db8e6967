-- Audit log: one row per state change, appended in the same transaction as the change.
CREATE SEQUENCE audit_seq START 1;
CREATE TABLE audit (
    id          BIGINT PRIMARY KEY DEFAULT nextval('audit_seq'),
    occurred_at TIMESTAMPTZ NOT NULL,
    actor       VARCHAR NOT NULL,
    action      VARCHAR NOT NULL,
    target      VARCHAR NOT NULL,
    details     JSON,
    reason      VARCHAR
);
CREATE INDEX audit_target ON audit (target);
