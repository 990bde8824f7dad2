-- Sessions and tombstones, keyed by the SHA-256 of the token.
--
-- `record` holds the entry in Tessera's versioned stored format
-- (tessera_core::codec, `{"v":1,...}`), so every record version ever
-- written keeps loading. The other columns are derived from it when it is
-- written and serve the queries: compare-and-swap on `version`, the id and
-- subject lookups, expiry. `last_seen_at` is the one column newer than the
-- record: touching a session writes only it (and `forget_at`).
CREATE TABLE "{schema}"."{prefix}sessions" (
    token_hash          bytea   PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    session_id          bytea   NOT NULL CHECK (octet_length(session_id) = 16),
    live                boolean NOT NULL,
    subject             text,
    version             bigint  NOT NULL,
    last_seen_at        bigint  NOT NULL,
    idle_timeout_ms     bigint  NOT NULL,
    absolute_expires_at bigint  NOT NULL,
    forget_at           bigint  NOT NULL,
    record              bytea   NOT NULL,
    CHECK (live OR subject IS NULL)
);

-- One live record per public session id (create-if-absent on the id;
-- load_by_id, delete).
CREATE UNIQUE INDEX "{prefix}sessions_live_id"
    ON "{schema}"."{prefix}sessions" (session_id) WHERE live;

-- The per-subject index (list and revoke a user's sessions).
CREATE INDEX "{prefix}sessions_subject"
    ON "{schema}"."{prefix}sessions" (subject) WHERE live AND subject IS NOT NULL;

-- The sweeper's scan for records it may forget.
CREATE INDEX "{prefix}sessions_forget_at"
    ON "{schema}"."{prefix}sessions" (forget_at);

-- The global revocation epoch: exactly one row.
CREATE TABLE "{schema}"."{prefix}global_epoch" (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    epoch     bigint  NOT NULL CHECK (epoch >= 0)
);
INSERT INTO "{schema}"."{prefix}global_epoch" (singleton, epoch) VALUES (true, 0);

-- Per-subject revocation epochs (absent means 0).
CREATE TABLE "{schema}"."{prefix}subject_epochs" (
    subject text   PRIMARY KEY,
    epoch   bigint NOT NULL CHECK (epoch > 0)
);
