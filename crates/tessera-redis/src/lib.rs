//! A Redis and Redis Cluster session store for Tessera
//! ([`SessionStore`](tessera_core::store::SessionStore)): the store for many
//! server nodes sharing their sessions.
//!
//! * **Client**: redis-rs, async on tokio, one multiplexed connection per
//!   server (a `ConnectionManager` that reconnects by itself; for a cluster
//!   one per primary, following the slot map). Requests from every task are
//!   pipelined over it, so there is no pool to size. Every operation is
//!   bounded by a timeout (default 2 s) and fails as
//!   [`StoreError::Unavailable`](tessera_core::store::StoreError) when Redis
//!   is down or hung; callers fail closed.
//! * **Server**: Redis 7.0 or later (`SET … PXAT`, `KEEPTTL`, `SCAN … TYPE`),
//!   standalone or Redis Cluster.
//! * **Expiry**: Redis removes each record itself at the forget deadline
//!   the manager gives (`PXAT`); reads also compare that deadline, kept in
//!   the record, with the caller's clock. The subject indexes are tidied
//!   when listed and by
//!   [`Maintenance::sweep_expired`](tessera_core::store::Maintenance::sweep_expired):
//!   run [`spawn_sweeper`](tessera_core::store::spawn_sweeper) (every few
//!   minutes is plenty) so that the index entries of sessions that expired
//!   unlisted go.
//!
//! # Keys
//!
//! With the default prefix `tss:`:
//!
//! | key | type | holds | expires |
//! | --- | --- | --- | --- |
//! | `tss:s:<id>` | string | the session's record: the codec's bytes ([`tessera_core::codec`]) | at its forget deadline (`PXAT`) |
//! | `tss:i:<bucket>` | hash | the subject index in 1024 buckets: one field per signed-in session, its raw 16-byte id and its subject's 4-byte tag (value empty) | never; tidied by listing and sweeping |
//! | `tss:epoch`, `tss:epoch:<subject>` | integer | revocation epochs | never |
//! | `tss:a:<id>:<kind>` | string | an attachment: generation, forget deadline (8 bytes each), bytes | at its forget deadline (`PXAT`); deleted with its session |
//! | `tss:j` | sorted set | the journal, one member per entry, in the order of its bytes (time, nonce) | never; swept past each entry's deadline |
//!
//! `<id>` is the session's public id (22 base64url characters). Keys carry
//! no hash tag: in a cluster each key lives in its own slot, and no
//! operation needs two keys in one slot. The keys of the previous layout
//! (`tss:{<id hex>}`, `tss:p:…`, `tss:x:…`) are different names; sessions
//! still kept there are converted when found (see *Sessions of the previous
//! layout*).
//!
//! # Operations
//!
//! | operation | commands | round trips |
//! | --- | --- | --- |
//! | load (validation) | `GET`; the deadline is checked and the record decoded here | 1 |
//! | create | `SET … NX PXAT`, with `HSET` of the subject index when signed in | 1 |
//! | update | `EVALSHA` of a compare-and-swap of bytes 1–40, then `SET … PXAT`; with the `HSET` | 1 |
//! | touch | `EVALSHA` raising `last_seen_at`, the deadline and the expiry, never lowering | 1 |
//! | delete | `DEL` of the record and of its previous layout's hash | 1 |
//! | list a subject | `HKEYS`, then `MGET` of the page | 2 |
//!
//! Commands sent together go as one pipeline to a single server, and at
//! once to their nodes in a cluster. No script computes a deadline; each
//! takes the manager's.
//!
//! # Consistency
//!
//! * **A record** changes only in single commands or scripts on its one
//!   key: create-if-absent, compare-and-swap and touch are atomic on a
//!   single server and in a cluster alike. A write to a record that expired
//!   or was deleted answers [`WriteOutcome::NotFound`](tessera_core::store::WriteOutcome).
//! * **Subject indexes** are only added to by writes (in the same round
//!   trip as the record); entries of deleted or expired records, and of
//!   records whose subject changed at login, stay until a listing of the
//!   subject or a sweep drops them, and listing skips them meanwhile. A
//!   record is missing from its index only after a write that reported a
//!   failure (its record was written, its `HSET` was not): such a write
//!   never handed out a token. A session created concurrently with a
//!   revoke-all may survive it (the subject epoch, bumped by the manager,
//!   covers sealed sessions).
//! * **Epochs** are plain counters (`INCR`), raised by a script that only
//!   moves them up. A global epoch that does not exist starts at the
//!   current time in milliseconds, so a server that lost its data revives
//!   no revoked sealed session (`src/epochs.rs` says when it starts at 0
//!   instead: a store of an earlier version). `durability()` is
//!   `Persistent` only when every primary keeps an append-only file.
//!
//! # Sessions of the previous layout
//!
//! Sessions written before records were keyed by session id keep working
//! until they expire: they are converted to the layout above the first time
//! their token is presented (through the old pointer, which keeps
//! leading to the session after the manager replaced the old token) or
//! their subject is listed or revoked, and a deletion by id ends them where
//! they are. Tokens rotated away before the upgrade are dropped. Details in
//! `crates/tessera-redis/src/legacy.rs`.
//!
//! ```no_run
//! use tessera_core::{NewSession, SessionManager};
//! use tessera_redis::RedisStore;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = RedisStore::connect("redis://127.0.0.1:6379/0?prefix=app:").await?;
//! let _sweeper = tessera_core::store::spawn_sweeper(
//!     store.clone(),
//!     std::time::Duration::from_secs(300),
//! );
//! let manager = SessionManager::builder(store).build()?;
//! let created = manager.create(NewSession::default()).await?;
//! let token = created.issued().expect("a new session's token").expose();
//! manager.validate(token, None).await?;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod bus;
mod config;
mod conn;
mod epochs;
mod error;
mod extras;
mod index;
mod keys;
mod legacy;
mod maintenance;
mod scripts;
mod server;
mod store;

pub use bus::RedisBus;
pub use config::{DEFAULT_PREFIX, MAX_PREFIX_LEN, RedisConfig};
pub use error::RedisStoreError;
pub use store::RedisStore;
