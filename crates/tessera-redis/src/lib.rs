//! A Redis and Redis Cluster [`SessionStore`](tessera_core::SessionStore)
//! for Tessera: the store for many server nodes sharing their sessions.
//!
//! * **Client**: redis-rs, async on tokio, one multiplexed connection per
//!   server (a `ConnectionManager` that reconnects by itself; for a cluster
//!   one per primary, following the slot map). Requests from every task are
//!   pipelined over it, so there is no pool to size. Every operation is
//!   bounded by a timeout (default 2 s) and fails as
//!   [`StoreError::Unavailable`](tessera_core::StoreError) when Redis is
//!   down or hung; callers fail closed.
//! * **Atomicity**: every write is one Lua script on the server:
//!   create-if-absent, compare-and-swap update, touch, rotation with its
//!   tombstone and delete. A write to a record that expired or was revoked
//!   is reported ([`WriteOutcome::NotFound`](tessera_core::WriteOutcome)),
//!   never silently dropped.
//! * **Server**: Redis 7.0 or later (the scripts use `PEXPIREAT … GT`,
//!   `ZADD … GT` and `SET … PXAT`), standalone or Redis Cluster.
//! * **Expiry**: Redis removes records itself (`PEXPIREAT` at the record's
//!   forget deadline: the end of its idle or absolute lifetime plus the
//!   retention that lets the manager say *why* a session ended); touching
//!   moves the deadline. Nothing needs sweeping.
//!
//! # Keys
//!
//! With the default prefix `tss:`:
//!
//! | key | type | holds | expires |
//! | --- | --- | --- | --- |
//! | `tss:{<id>}` | hash | the live record and the hash of its current token | at its forget deadline |
//! | `tss:{<id>}:t:<token hash>` | string | a rotated-away token's tombstone | at the tombstone's deadline |
//! | `tss:p:<token hash>` | string | the session id a token belongs to | after the session's last possible deadline |
//! | `tss:x:<subject>` | sorted set | the subject's session ids, scored by forget deadline | with its last member |
//! | `tss:epoch`, `tss:epoch:<subject>` | integer | revocation epochs | never |
//!
//! The session id in braces is the key's hash tag: in a cluster all keys of
//! one session live in one slot, so every script touches one slot only.
//!
//! # Consistency
//!
//! * **A session's own state** (record, version, current token, tombstones)
//!   changes only in single scripts, atomically, on a standalone server and
//!   in a cluster alike.
//! * **Pointers** (token hash → session id) live in other slots. They are
//!   written *before* the record moves and the record names its current
//!   token, so a pointer that is stale (its rotation failed, its session was
//!   deleted) reads as absent or as a tombstone, never as the live session.
//!   Validation in a cluster takes two round trips (pointer, then record);
//!   on one server, one script does both.
//! * **Subject indexes** live in their own slots and are written *before*
//!   the record on create, update and rotate, and only ever have their
//!   scores raised: an index may briefly name a session that does not (or no
//!   longer) exist, which listing skips, but never misses a stored one. So
//!   `list_by_subject` and revoke-all (`delete_by_subject`) see every
//!   session whose write completed before they started; a session created
//!   concurrently with a revoke-all may survive it (the subject epoch,
//!   bumped by the manager, covers sealed sessions). A touch raises the
//!   score after the record; should that second step fail, the entry could
//!   be pruned before its session ends, until the next touch or update of
//!   that session puts it back.
//! * **No leaked entries**: every write and list of a subject first drops
//!   members whose forget deadline passed (`ZREMRANGEBYSCORE` by the
//!   server's clock) and sets the index's own expiry to its latest member's
//!   deadline, so an index whose sessions all expired disappears by itself.
//! * **Epochs** are plain counters (`INCR`), each in its own slot.
//!
//! ```no_run
//! use tessera_core::{NewSession, SessionManager};
//! use tessera_redis::RedisStore;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = RedisStore::connect("redis://127.0.0.1:6379/0?prefix=app:").await?;
//! let manager = SessionManager::builder(store).build()?;
//! let issued = manager.create(NewSession::default()).await?;
//! manager.validate(issued.token.expose(), None).await?;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod bus;
mod config;
mod conn;
mod error;
mod export;
mod keys;
mod records;
mod scripts;
mod store;

pub use bus::RedisBus;
pub use config::{DEFAULT_PREFIX, MAX_PREFIX_LEN, RedisConfig, redacted_url};
pub use error::RedisStoreError;
pub use store::RedisStore;
