-- State attached to a session (a device binding), in a table of its own:
-- a write of the session's record never touches it. Compare-and-swap on
-- `generation`; nothing is returned once `forget_at` has passed; deleted
-- with its session (by id, by subject, and by the sweeper once the
-- session is gone).
CREATE TABLE "{schema}"."{prefix}attachments" (
    id         bytea    NOT NULL CHECK (octet_length(id) = 16),
    kind       smallint NOT NULL,
    generation bigint   NOT NULL CHECK (generation > 0),
    forget_at  bigint   NOT NULL,
    value      bytea    NOT NULL,
    PRIMARY KEY (id, kind)
);

-- The sweeper's scan for attachments it may forget.
CREATE INDEX "{prefix}attachments_forget_at"
    ON "{schema}"."{prefix}attachments" (forget_at);

-- The journal of operators' actions, shared by every node: listed newest
-- first, by (at, nonce), which is its primary key.
CREATE TABLE "{schema}"."{prefix}journal" (
    at        bigint NOT NULL,
    nonce     bytea  NOT NULL CHECK (octet_length(nonce) = 8),
    forget_at bigint NOT NULL,
    value     bytea  NOT NULL,
    PRIMARY KEY (at, nonce)
);

-- The sweeper's scan for journal entries it may forget.
CREATE INDEX "{prefix}journal_forget_at"
    ON "{schema}"."{prefix}journal" (forget_at);
