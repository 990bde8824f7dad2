//! The storage contract every backend implements: storage only, no policy.

use std::sync::Arc;

use async_trait::async_trait;

use crate::clock::Timestamp;
use crate::record::{Session, StoredEntry, Tombstone};
use crate::token::{SessionId, TokenHash};

/// A boxed error from a backend's client library.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A failure of the store itself (not a protocol outcome such as a version conflict).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached or did not answer in time. Callers fail
    /// closed: no session is valid while its store is unavailable.
    #[error("session store unavailable: {message}")]
    Unavailable {
        /// What went wrong, for the operator.
        message: String,
        /// The backend's own error.
        #[source]
        source: Option<BoxError>,
    },
    /// The backend holds a record this version cannot read.
    #[error("session store holds an unreadable record: {message}")]
    Corrupt {
        /// What could not be read.
        message: String,
    },
    /// An argument the store cannot use (such as a foreign export cursor).
    #[error("invalid request to the session store: {message}")]
    Invalid {
        /// What is wrong.
        message: String,
    },
    /// The store does not offer this optional operation.
    #[error("this session store does not support {operation}")]
    Unsupported {
        /// The operation asked for.
        operation: &'static str,
    },
}

impl StoreError {
    /// An `Unavailable` error wrapping a backend error.
    pub fn unavailable(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        StoreError::Unavailable {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// A `Corrupt` error.
    pub fn corrupt(message: impl Into<String>) -> Self {
        StoreError::Corrupt {
            message: message.into(),
        }
    }
}

/// The outcome of a create-if-absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateOutcome {
    /// The session was stored.
    Created,
    /// The key or the session id was already present; nothing was written.
    AlreadyExists,
}

/// The outcome of a conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The write happened.
    Written,
    /// The stored version differs from the expected one; nothing was written.
    VersionConflict {
        /// The version the store holds.
        current: u64,
    },
    /// No live session under the key (expired, deleted, or rotated away);
    /// nothing was written.
    NotFound,
}

/// One page of a store's live sessions, from [`SessionStore::export_page`].
#[derive(Debug, Clone, Default)]
pub struct ExportPage {
    /// Live sessions (not tombstones) with the key each is stored under.
    pub sessions: Vec<(TokenHash, Arc<Session>)>,
    /// Where the next page starts; `None` when this was the last page.
    pub next: Option<String>,
}

/// Storage for session records, keyed by [`TokenHash`].
///
/// Stores never see tokens and make no policy decisions: the
/// [`SessionManager`](crate::SessionManager) decides; a store only keeps
/// records and gives these guarantees, which the conformance suite in
/// [`testkit`](crate#testkit) proves for every backend:
///
/// * **create-if-absent**: [`create`](Self::create) never overwrites a key or a session id;
/// * **load**: a live record or a tombstone; nothing whose
///   [`forget_at`](Session::forget_at) (or [`Tombstone::forget_at`]) is not
///   after `now` is ever returned;
/// * **compare-and-swap**: [`update`](Self::update) and [`rotate`](Self::rotate)
///   write only if the stored version equals the expected one, so concurrent
///   writers lose no update;
/// * **atomic rotate**: the new key appears and the old key becomes a
///   tombstone pointing at it, in one step;
/// * **delete**, **list and delete by subject** (the per-subject index never
///   returns expired, rotated or deleted sessions);
/// * **expiry**: expired records and tombstones do not accumulate (native TTL,
///   or [`sweep_expired`](Self::sweep_expired));
/// * the **global and per-subject revocation epochs** are shared by everyone
///   using the store and only ever grow.
///
/// # A complete custom store
///
/// A store built on one mutex-guarded map, passing the conformance suite:
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::{Arc, Mutex};
/// use tessera_core::{
///     CreateOutcome, ExportPage, Session, SessionId, SessionStore, StoreError, StoredEntry, Timestamp,
///     TokenHash, Tombstone, WriteOutcome, async_trait, page_of_keys,
/// };
///
/// #[derive(Default)]
/// struct MutexStore {
///     inner: Mutex<Inner>,
/// }
///
/// #[derive(Default)]
/// struct Inner {
///     entries: HashMap<TokenHash, StoredEntry>,
///     ids: HashMap<SessionId, TokenHash>,
///     epoch: u64,
///     subject_epochs: HashMap<String, u64>,
/// }
///
/// fn poisoned() -> StoreError {
///     StoreError::Unavailable { message: "lock poisoned".into(), source: None }
/// }
///
/// impl Inner {
///     fn live(&self, key: &TokenHash, now: Timestamp) -> Option<Arc<Session>> {
///         match self.entries.get(key) {
///             Some(StoredEntry::Live(s)) if s.forget_at() > now => Some(s.clone()),
///             _ => None,
///         }
///     }
/// }
///
/// #[async_trait]
/// impl SessionStore for MutexStore {
///     async fn create(&self, key: &TokenHash, session: &Session) -> Result<CreateOutcome, StoreError> {
///         let mut inner = self.inner.lock().map_err(|_| poisoned())?;
///         if inner.entries.contains_key(key) || inner.ids.contains_key(&session.id) {
///             return Ok(CreateOutcome::AlreadyExists);
///         }
///         inner.entries.insert(*key, StoredEntry::Live(Arc::new(session.clone())));
///         inner.ids.insert(session.id, *key);
///         Ok(CreateOutcome::Created)
///     }
///
///     async fn load(&self, key: &TokenHash, now: Timestamp) -> Result<Option<StoredEntry>, StoreError> {
///         let inner = self.inner.lock().map_err(|_| poisoned())?;
///         Ok(match inner.entries.get(key) {
///             Some(StoredEntry::Live(s)) if s.forget_at() > now => Some(StoredEntry::Live(s.clone())),
///             Some(StoredEntry::Tombstone(t)) if t.forget_at > now => Some(StoredEntry::Tombstone(*t)),
///             _ => None,
///         })
///     }
///
///     async fn load_by_id(&self, id: &SessionId, now: Timestamp)
///         -> Result<Option<(TokenHash, Arc<Session>)>, StoreError> {
///         let inner = self.inner.lock().map_err(|_| poisoned())?;
///         Ok(inner.ids.get(id).and_then(|key| inner.live(key, now).map(|s| (*key, s))))
///     }
///
///     async fn update(&self, key: &TokenHash, session: &Session, expected_version: u64, now: Timestamp)
///         -> Result<WriteOutcome, StoreError> {
///         let mut inner = self.inner.lock().map_err(|_| poisoned())?;
///         match inner.live(key, now) {
///             None => Ok(WriteOutcome::NotFound),
///             Some(s) if s.version != expected_version => Ok(WriteOutcome::VersionConflict { current: s.version }),
///             Some(_) => {
///                 inner.entries.insert(*key, StoredEntry::Live(Arc::new(session.clone())));
///                 Ok(WriteOutcome::Written)
///             }
///         }
///     }
///
///     async fn touch(&self, key: &TokenHash, last_seen_at: Timestamp, now: Timestamp)
///         -> Result<WriteOutcome, StoreError> {
///         let mut inner = self.inner.lock().map_err(|_| poisoned())?;
///         let Some(s) = inner.live(key, now) else { return Ok(WriteOutcome::NotFound) };
///         let mut touched = (*s).clone();
///         touched.last_seen_at = touched.last_seen_at.max(last_seen_at);
///         inner.entries.insert(*key, StoredEntry::Live(Arc::new(touched)));
///         Ok(WriteOutcome::Written)
///     }
///
///     async fn rotate(&self, old_key: &TokenHash, new_key: &TokenHash, session: &Session,
///         expected_version: u64, tombstone: &Tombstone, now: Timestamp) -> Result<WriteOutcome, StoreError> {
///         let mut inner = self.inner.lock().map_err(|_| poisoned())?;
///         match inner.live(old_key, now) {
///             None => return Ok(WriteOutcome::NotFound),
///             Some(s) if s.version != expected_version =>
///                 return Ok(WriteOutcome::VersionConflict { current: s.version }),
///             Some(_) => {}
///         }
///         inner.entries.insert(*new_key, StoredEntry::Live(Arc::new(session.clone())));
///         inner.entries.insert(*old_key, StoredEntry::Tombstone(*tombstone));
///         inner.ids.insert(session.id, *new_key);
///         Ok(WriteOutcome::Written)
///     }
///
///     async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
///         let mut inner = self.inner.lock().map_err(|_| poisoned())?;
///         let Some(key) = inner.ids.remove(id) else { return Ok(false) };
///         Ok(matches!(inner.entries.remove(&key), Some(StoredEntry::Live(_))))
///     }
///
///     async fn list_by_subject(&self, subject: &str, now: Timestamp) -> Result<Vec<Arc<Session>>, StoreError> {
///         let inner = self.inner.lock().map_err(|_| poisoned())?;
///         Ok(inner.ids.values().filter_map(|key| inner.live(key, now))
///             .filter(|s| s.subject.as_deref() == Some(subject)).collect())
///     }
///
///     async fn global_epoch(&self) -> Result<u64, StoreError> {
///         Ok(self.inner.lock().map_err(|_| poisoned())?.epoch)
///     }
///
///     async fn bump_global_epoch(&self) -> Result<u64, StoreError> {
///         let mut inner = self.inner.lock().map_err(|_| poisoned())?;
///         inner.epoch += 1;
///         Ok(inner.epoch)
///     }
///
///     async fn subject_epoch(&self, subject: &str) -> Result<u64, StoreError> {
///         let inner = self.inner.lock().map_err(|_| poisoned())?;
///         Ok(inner.subject_epochs.get(subject).copied().unwrap_or(0))
///     }
///
///     async fn bump_subject_epoch(&self, subject: &str) -> Result<u64, StoreError> {
///         let mut inner = self.inner.lock().map_err(|_| poisoned())?;
///         let epoch = inner.subject_epochs.entry(subject.to_owned()).or_insert(0);
///         *epoch += 1;
///         Ok(*epoch)
///     }
///
///     async fn sweep_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
///         let mut inner = self.inner.lock().map_err(|_| poisoned())?;
///         let before = inner.entries.len();
///         inner.entries.retain(|_, entry| match entry {
///             StoredEntry::Live(s) => s.forget_at() > now,
///             StoredEntry::Tombstone(t) => t.forget_at > now,
///         });
///         let Inner { entries, ids, .. } = &mut *inner;
///         ids.retain(|_, key| matches!(entries.get(key), Some(StoredEntry::Live(_))));
///         Ok((before - inner.entries.len()) as u64)
///     }
///
///     async fn export_page(&self, cursor: Option<&str>, limit: usize, now: Timestamp)
///         -> Result<ExportPage, StoreError> {
///         let inner = self.inner.lock().map_err(|_| poisoned())?;
///         let (keys, next) = page_of_keys(inner.ids.values().copied(), cursor, limit)?;
///         let sessions = keys.into_iter()
///             .filter_map(|key| inner.live(&key, now).map(|s| (key, s))).collect();
///         Ok(ExportPage { sessions, next })
///     }
/// }
///
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() {
/// tessera_core::testkit::assert_conformance(|| async { MutexStore::default() }).await;
/// # }
/// ```
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Stores a new session under `key` unless the key or the session id exists.
    async fn create(&self, key: &TokenHash, session: &Session)
    -> Result<CreateOutcome, StoreError>;

    /// What is stored under `key`, or `None` if nothing unexpired is.
    async fn load(
        &self,
        key: &TokenHash,
        now: Timestamp,
    ) -> Result<Option<StoredEntry>, StoreError>;

    /// The live session with this public id and its current key.
    async fn load_by_id(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> Result<Option<(TokenHash, Arc<Session>)>, StoreError>;

    /// Replaces the live session under `key` if its version is `expected_version`.
    async fn update(
        &self,
        key: &TokenHash,
        session: &Session,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError>;

    /// Moves `last_seen_at` forward (never back) without changing the version.
    async fn touch(
        &self,
        key: &TokenHash,
        last_seen_at: Timestamp,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError>;

    /// Atomically moves the live session at `old_key` (whose version must be
    /// `expected_version`) to `new_key` as `session`, leaving `tombstone` at `old_key`.
    async fn rotate(
        &self,
        old_key: &TokenHash,
        new_key: &TokenHash,
        session: &Session,
        expected_version: u64,
        tombstone: &Tombstone,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError>;

    /// Deletes the session with this id; `true` if one was live.
    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError>;

    /// Every live session of a subject.
    async fn list_by_subject(
        &self,
        subject: &str,
        now: Timestamp,
    ) -> Result<Vec<Arc<Session>>, StoreError>;

    /// Deletes every session of a subject except `except`; returns the ids deleted.
    ///
    /// The default lists and deletes one by one; stores with a native bulk
    /// operation override it.
    async fn delete_by_subject(
        &self,
        subject: &str,
        except: Option<&SessionId>,
        now: Timestamp,
    ) -> Result<Vec<SessionId>, StoreError> {
        let mut deleted = Vec::new();
        for session in self.list_by_subject(subject, now).await? {
            if Some(&session.id) != except && self.delete(&session.id).await? {
                deleted.push(session.id);
            }
        }
        Ok(deleted)
    }

    /// The global revocation epoch (starts at 0).
    async fn global_epoch(&self) -> Result<u64, StoreError>;

    /// Increments the global revocation epoch and returns the new value.
    async fn bump_global_epoch(&self) -> Result<u64, StoreError>;

    /// The revocation epoch of one subject (starts at 0). Client-side
    /// (sealed-cookie) sessions carry the epoch they were sealed in and die
    /// when it moves on, since there is no server record to delete.
    async fn subject_epoch(&self, subject: &str) -> Result<u64, StoreError>;

    /// Increments a subject's revocation epoch and returns the new value.
    async fn bump_subject_epoch(&self, subject: &str) -> Result<u64, StoreError>;

    /// Physically removes records and tombstones that expired before `now`;
    /// returns how many. Stores with native expiry keep the default (0).
    async fn sweep_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        let _ = now;
        Ok(0)
    }

    /// Whether the store answers (for readiness checks).
    async fn ping(&self) -> Result<(), StoreError> {
        self.global_epoch().await.map(|_| ())
    }

    /// Up to `limit` live sessions starting at `cursor` (`None`: the
    /// beginning), for copying a whole store (`tesserad migrate`).
    ///
    /// The cursor is opaque: pass back [`ExportPage::next`] to continue.
    /// Paging through a store that is being written to returns every
    /// session that lived throughout at least once; sessions created or
    /// changed meanwhile may or may not appear, and may appear twice. The
    /// default answers [`StoreError::Unsupported`].
    async fn export_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<ExportPage, StoreError> {
        let _ = (cursor, limit, now);
        Err(StoreError::Unsupported {
            operation: "exporting all sessions",
        })
    }
}

/// Pages through keys that have a total order and no natural cursor (hash
/// maps): the cursor is the hex of the last key returned, and each page is
/// the `limit` smallest keys after it. Costs one pass over `keys` per page.
pub fn page_of_keys(
    keys: impl Iterator<Item = TokenHash>,
    cursor: Option<&str>,
    limit: usize,
) -> Result<(Vec<TokenHash>, Option<String>), StoreError> {
    let after = match cursor {
        None => None,
        Some(text) => Some(ExportPage::parse_key_cursor(text)?.0),
    };
    let limit = limit.max(1);
    let mut page: Vec<TokenHash> = keys.filter(|key| after.is_none_or(|a| key.0 > a)).collect();
    let more = page.len() > limit;
    if more {
        page.select_nth_unstable_by(limit - 1, |a, b| a.0.cmp(&b.0));
        page.truncate(limit);
    }
    page.sort_unstable_by_key(|key| key.0);
    let next = if more {
        page.last().map(ExportPage::key_cursor)
    } else {
        None
    };
    Ok((page, next))
}

impl ExportPage {
    /// A cursor that resumes after `key`, for stores ordered by key.
    pub fn key_cursor(key: &TokenHash) -> String {
        use std::fmt::Write;
        key.0
            .iter()
            .fold(String::with_capacity(64), |mut out, byte| {
                let _ = write!(out, "{byte:02x}");
                out
            })
    }

    /// The key a [`key_cursor`](Self::key_cursor) resumes after.
    pub fn parse_key_cursor(text: &str) -> Result<TokenHash, StoreError> {
        let bad = || StoreError::Invalid {
            message: format!("`{text}` is not an export cursor of this store"),
        };
        if text.len() != 64 || !text.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(TokenHash(out))
    }
}

#[async_trait]
impl<S: SessionStore + ?Sized> SessionStore for Arc<S> {
    async fn create(
        &self,
        key: &TokenHash,
        session: &Session,
    ) -> Result<CreateOutcome, StoreError> {
        (**self).create(key, session).await
    }
    async fn load(
        &self,
        key: &TokenHash,
        now: Timestamp,
    ) -> Result<Option<StoredEntry>, StoreError> {
        (**self).load(key, now).await
    }
    async fn load_by_id(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> Result<Option<(TokenHash, Arc<Session>)>, StoreError> {
        (**self).load_by_id(id, now).await
    }
    async fn update(
        &self,
        key: &TokenHash,
        session: &Session,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        (**self).update(key, session, expected_version, now).await
    }
    async fn touch(
        &self,
        key: &TokenHash,
        last_seen_at: Timestamp,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        (**self).touch(key, last_seen_at, now).await
    }
    async fn rotate(
        &self,
        old_key: &TokenHash,
        new_key: &TokenHash,
        session: &Session,
        expected_version: u64,
        tombstone: &Tombstone,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        (**self)
            .rotate(old_key, new_key, session, expected_version, tombstone, now)
            .await
    }
    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        (**self).delete(id).await
    }
    async fn list_by_subject(
        &self,
        subject: &str,
        now: Timestamp,
    ) -> Result<Vec<Arc<Session>>, StoreError> {
        (**self).list_by_subject(subject, now).await
    }
    async fn delete_by_subject(
        &self,
        subject: &str,
        except: Option<&SessionId>,
        now: Timestamp,
    ) -> Result<Vec<SessionId>, StoreError> {
        (**self).delete_by_subject(subject, except, now).await
    }
    async fn global_epoch(&self) -> Result<u64, StoreError> {
        (**self).global_epoch().await
    }
    async fn bump_global_epoch(&self) -> Result<u64, StoreError> {
        (**self).bump_global_epoch().await
    }
    async fn subject_epoch(&self, subject: &str) -> Result<u64, StoreError> {
        (**self).subject_epoch(subject).await
    }
    async fn bump_subject_epoch(&self, subject: &str) -> Result<u64, StoreError> {
        (**self).bump_subject_epoch(subject).await
    }
    async fn sweep_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        (**self).sweep_expired(now).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        (**self).ping().await
    }
    async fn export_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<ExportPage, StoreError> {
        (**self).export_page(cursor, limit, now).await
    }
}
