-- One record per session, keyed by the session's public id.
--
-- `record` holds the bytes of tessera_core::codec (format 2) as they are:
-- the revision a compare-and-swap compares sits at bytes 1..41 (SQL
-- `substring(record from 2 for 40)`), last_seen_at at 41..49 and the
-- forget deadline at 49..57. `subject` and `forget_at` repeat what the
-- record says, for the subject index and the sweeper; every write sets
-- them in the same statement as the record.
CREATE TABLE "{schema}"."{prefix}records" (
    id        bytea  PRIMARY KEY CHECK (octet_length(id) = 16),
    subject   text,
    forget_at bigint NOT NULL,
    record    bytea  NOT NULL
);

-- A subject's sessions, paged by id.
CREATE INDEX "{prefix}records_subject"
    ON "{schema}"."{prefix}records" (subject, id) WHERE subject IS NOT NULL;

-- The sweeper's scan for records it may forget.
CREATE INDEX "{prefix}records_forget_at"
    ON "{schema}"."{prefix}records" (forget_at);

-- Tokens of the first format (53 characters, no session id in them) issued
-- before this migration: the SHA-256 of such a token, under which the
-- previous layout kept its session, and the session's id. Filled by the
-- conversion that runs with this migration (src/legacy.rs); a pointer goes
-- when its session is gone and its own deadline (the session's when it was
-- converted) has passed.
CREATE TABLE "{schema}"."{prefix}legacy_tokens" (
    token_hash bytea  PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    id         bytea  NOT NULL,
    forget_at  bigint NOT NULL
);

CREATE INDEX "{prefix}legacy_tokens_forget_at"
    ON "{schema}"."{prefix}legacy_tokens" (forget_at);
