-- Users of the team server (`workbench server user add`): a name, a role and the sha256 of
-- their token. The token itself is shown once and never stored. Revoking keeps the row (and
-- its audit trail) and stops the token at once; adding the name again issues a new token.
CREATE TABLE server_users (
    name        VARCHAR PRIMARY KEY,
    role        VARCHAR NOT NULL,
    token_hash  VARCHAR NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    created_by  VARCHAR NOT NULL,
    revoked_at  TIMESTAMPTZ
);
