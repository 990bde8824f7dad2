//! A near cache: a store that keeps recently loaded sessions in this
//! process's memory in front of a shared store, and drops them as soon as
//! any node says they changed.
//!
//! [`NearCache`] wraps any [`SessionStore`]. Loads of live sessions are
//! answered from memory when possible; every write goes to the inner store
//! and then announces the session ids it touched on an [`InvalidationBus`]
//! (for Redis, pub/sub on one channel). Every node's cache listens on the
//! bus and forgets what changed.
//!
//! **Never stale when the bus fails.** When the bus reports that it lost
//! its connection, or is silent for longer than
//! [`NearCacheConfig::silence_limit`] (each node publishes a heartbeat
//! every [`NearCacheConfig::heartbeat`]), the cache is cleared and bypassed
//! until the bus is back. A write whose announcement fails is reported as
//! [`StoreError::Unavailable`] after clearing the local cache, because other
//! nodes may not have heard of it.
//!
//! **No write left unannounced.** A request whose client goes away is
//! dropped wherever it waits, possibly after its write reached the inner
//! store but before the announcement went out; a write that fails may also
//! have landed (a reply lost to a timeout). Either way the write is
//! announced anyway: an armed guard forgets locally when dropped and
//! publishes from a task of its own, and once more a few seconds later in
//! case the write was still on its way. Only an answer that nothing changed
//! (not found, version conflict) disarms it unannounced.
//!
//! **No lost invalidation while loading.** A load that races with a change
//! made elsewhere could put the old value into the cache after the change's
//! announcement arrived. Each announcement leaves a short-lived mark with a
//! sequence number; a loaded value is inserted, then dropped again if a mark
//! newer than the load's start exists for its id.
//!
//! Timeouts and revocation by epoch are untouched: the cache returns
//! exactly what the inner store returned, and the manager decides.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use dashmap::DashMap;
use tokio::sync::mpsc;

use crate::clock::Timestamp;
use crate::manager::forget_at;
use crate::record::{Revision, SessionRecord};
use crate::store::{
    Attachment, AttachmentKind, AttachmentWrite, Attachments, CreateOutcome, Epochs, Journal,
    JournalEntry, Maintenance, Page, Records, SessionStore, StoreError, SubjectIndex, WriteOutcome,
};
use crate::token::{SessionId, TokenHash};

/// What changed: the sessions with these ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Invalidation {
    /// Sessions that changed or ended.
    pub ids: Vec<SessionId>,
}

/// The first byte of an encoded [`Invalidation`]: its wire format.
const WIRE_FORMAT: u8 = 2;

impl Invalidation {
    /// Encodes as bytes for a wire: a format byte (2), then the count of
    /// ids as one `u16` and the 16-byte ids.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 + self.ids.len() * 16);
        out.push(WIRE_FORMAT);
        let count = u16::try_from(self.ids.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&count.to_be_bytes());
        for id in self.ids.iter().take(usize::from(u16::MAX)) {
            out.extend_from_slice(&id.0);
        }
        out
    }

    /// Decodes [`to_bytes`](Self::to_bytes); `None` for anything else.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (&format, rest) = bytes.split_first()?;
        if format != WIRE_FORMAT {
            return None;
        }
        let (ids, rest) = read_list::<16>(rest)?;
        rest.is_empty().then(|| Invalidation {
            ids: ids.into_iter().map(SessionId).collect(),
        })
    }

    fn of(id: SessionId) -> Self {
        Self { ids: vec![id] }
    }
}

fn read_list<const N: usize>(bytes: &[u8]) -> Option<(Vec<[u8; N]>, &[u8])> {
    let (count, mut rest) = bytes.split_first_chunk::<2>()?;
    let count = usize::from(u16::from_be_bytes(*count));
    let mut items = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let (item, tail) = rest.split_first_chunk::<N>()?;
        items.push(*item);
        rest = tail;
    }
    Some((items, rest))
}

/// What a bus tells its listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// Some node changed these records.
    Invalidate(Invalidation),
    /// A sign of life (a heartbeat from any node).
    Alive,
    /// The bus lost its connection: announcements may be missed from now on.
    Lost,
    /// The bus is connected (again) and hears every announcement from now on.
    Connected,
}

/// How near caches on several nodes tell each other what changed.
#[async_trait]
pub trait InvalidationBus: Send + Sync + 'static {
    /// Announces a change to every node (this one included or not).
    async fn publish(&self, change: &Invalidation) -> Result<(), StoreError>;

    /// Announces that this node is alive (heard by every node as [`BusEvent::Alive`]).
    async fn heartbeat(&self) -> Result<(), StoreError>;

    /// Starts listening: events arrive on the channel, beginning with
    /// [`BusEvent::Connected`] once the subscription is in place, and
    /// reconnecting by itself after [`BusEvent::Lost`].
    fn subscribe(&self, events: mpsc::Sender<BusEvent>) -> tokio::task::JoinHandle<()>;
}

/// Settings of a [`NearCache`].
#[derive(Debug, Clone)]
pub struct NearCacheConfig {
    /// At most this many sessions are kept; beyond it, loads are not cached.
    pub capacity: usize,
    /// How often this node publishes a heartbeat.
    pub heartbeat: Duration,
    /// With no event at all for this long the bus counts as lost.
    pub silence_limit: Duration,
}

impl Default for NearCacheConfig {
    fn default() -> Self {
        Self {
            capacity: 100_000,
            heartbeat: Duration::from_millis(250),
            silence_limit: Duration::from_millis(1000),
        }
    }
}

struct Shared {
    entries: DashMap<SessionId, SessionRecord>,
    /// Recent announcements: id → sequence number, kept for `MARK_LIFETIME`.
    id_marks: DashMap<SessionId, (u64, Instant)>,
    sequence: AtomicU64,
    /// The sequence number of the last time everything was dropped.
    cleared_at: AtomicU64,
    /// False while the bus is not known to be connected: the cache is bypassed.
    usable: AtomicBool,
    hits: StripedCounter,
    misses: StripedCounter,
    capacity: usize,
}

/// A counter split over cache lines, so that cores counting at once do not
/// fight over one (the hit counter is bumped on every cached validation).
#[derive(Default)]
struct StripedCounter([PaddedCounter; 8]);

#[derive(Default)]
#[repr(align(64))]
struct PaddedCounter(AtomicU64);

impl StripedCounter {
    fn add(&self, id: &SessionId) {
        self.0[usize::from(id.0[0] & 7)]
            .0
            .fetch_add(1, Ordering::Relaxed);
    }

    fn total(&self) -> u64 {
        self.0.iter().map(|c| c.0.load(Ordering::Relaxed)).sum()
    }
}

/// How long an announcement's mark outlives it: longer than any load.
const MARK_LIFETIME: Duration = Duration::from_secs(30);

/// How long a write whose caller stopped waiting (dropped, or failed on a
/// timeout) may still be in flight to the store: its change is announced
/// again after this, in case it landed after the first announcement.
const LATE_WRITE_WINDOW: Duration = Duration::from_secs(5);

impl Shared {
    fn forget(&self, change: &Invalidation) {
        let sequence = self.sequence.fetch_add(1, Ordering::SeqCst) + 1;
        let now = Instant::now();
        for id in &change.ids {
            self.id_marks.insert(*id, (sequence, now));
            self.entries.remove(id);
        }
    }

    fn clear(&self) {
        let sequence = self.sequence.fetch_add(1, Ordering::SeqCst) + 1;
        self.cleared_at.store(sequence, Ordering::SeqCst);
        self.entries.clear();
    }

    fn set_usable(&self, usable: bool) {
        // Cleared on both edges: entries from before a loss may be stale,
        // and loads that started during it must not land.
        self.clear();
        self.usable.store(usable, Ordering::SeqCst);
        self.clear();
    }

    fn marked_since(&self, id: &SessionId, started: u64) -> bool {
        self.id_marks.get(id).is_some_and(|mark| mark.0 > started)
    }

    fn remember(&self, record: SessionRecord, started: u64) {
        if !self.usable.load(Ordering::SeqCst) || self.entries.len() >= self.capacity {
            return;
        }
        let id = record.id;
        self.entries.insert(id, record);
        // Inserted first, checked second: an announcement that arrived
        // meanwhile either removed the entry or left a newer mark.
        if self.marked_since(&id, started) || self.sequence_cleared_since(started) {
            self.entries.remove(&id);
        }
    }

    fn sequence_cleared_since(&self, started: u64) -> bool {
        !self.usable.load(Ordering::SeqCst) || self.cleared_at.load(Ordering::SeqCst) > started
    }

    fn prune_marks(&self) {
        let now = Instant::now();
        self.id_marks
            .retain(|_, (_, at)| now.duration_since(*at) < MARK_LIFETIME);
    }
}

/// A [`SessionStore`] that caches live sessions of an inner, shared store in
/// memory and keeps every node's cache coherent through an
/// [`InvalidationBus`]. See the [module docs](self).
///
/// Its listener and heartbeat tasks stop when the last clone is dropped
/// (or at [`shutdown`](Self::shutdown)).
#[derive(Clone)]
pub struct NearCache<S> {
    inner: S,
    bus: Arc<dyn InvalidationBus>,
    shared: Arc<Shared>,
    tasks: Arc<Tasks>,
}

/// The cache's background tasks, aborted when the last cache clone goes.
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

impl<S> std::fmt::Debug for NearCache<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NearCache")
            .field("entries", &self.shared.entries.len())
            .field("usable", &self.shared.usable.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// How a near cache has fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NearCacheStats {
    /// Loads answered from memory.
    pub hits: u64,
    /// Loads that went to the inner store.
    pub misses: u64,
    /// Sessions held now.
    pub entries: usize,
    /// Whether the bus is connected (otherwise every load goes to the inner store).
    pub usable: bool,
}

impl<S: SessionStore> NearCache<S> {
    /// Puts a near cache in front of `inner`, listening on `bus`; must be
    /// called within a tokio runtime (it starts the listener and the
    /// heartbeat). The cache is bypassed until the bus reports it is connected.
    pub fn new(inner: S, bus: Arc<dyn InvalidationBus>, config: NearCacheConfig) -> Self {
        let shared = Arc::new(Shared {
            entries: DashMap::new(),
            id_marks: DashMap::new(),
            sequence: AtomicU64::new(0),
            cleared_at: AtomicU64::new(0),
            usable: AtomicBool::new(false),
            hits: StripedCounter::default(),
            misses: StripedCounter::default(),
            capacity: config.capacity,
        });
        let (sender, receiver) = mpsc::channel(1024);
        let listener = bus.subscribe(sender);
        let watcher = tokio::spawn(watch(shared.clone(), bus.clone(), receiver, config));
        Self {
            inner,
            bus,
            shared,
            tasks: Arc::new(Tasks(vec![listener, watcher])),
        }
    }

    /// Hits, misses and size.
    pub fn stats(&self) -> NearCacheStats {
        NearCacheStats {
            hits: self.shared.hits.total(),
            misses: self.shared.misses.total(),
            entries: self.shared.entries.len(),
            usable: self.shared.usable.load(Ordering::SeqCst),
        }
    }

    /// The store behind the cache.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Stops the listener and the heartbeat; the cache is bypassed from then on.
    pub fn shutdown(&self) {
        for task in &self.tasks.0 {
            task.abort();
        }
        self.shared.set_usable(false);
    }

    /// Arms a guard that announces `change` unless disarmed: see the
    /// module's "No write left unannounced".
    fn guard(&self, change: Invalidation) -> AnnounceGuard {
        AnnounceGuard {
            shared: self.shared.clone(),
            bus: self.bus.clone(),
            change: Some(change),
        }
    }

    /// Announces a write that happened: forgets locally, then tells every
    /// node, and disarms the guard once the announcement is out (until
    /// then, dropping the call still announces). When the announcement
    /// fails, the other nodes may serve the old record, so the caller hears
    /// that the store is unavailable (the write itself did happen).
    async fn announce_guarded(&self, mut guard: AnnounceGuard) -> Result<(), StoreError> {
        let Some(change) = guard.change.as_ref() else {
            return Ok(());
        };
        self.shared.forget(change);
        let published = self.bus.publish(change).await;
        guard.change = None;
        if let Err(error) = published {
            self.shared.set_usable(false);
            return Err(unannounced(error));
        }
        Ok(())
    }
}

fn unannounced(error: StoreError) -> StoreError {
    StoreError::unavailable(
        "a session changed but the near cache's invalidation could not be published; other nodes bypass their caches until their bus is back",
        error,
    )
}

/// Announces its change when dropped still armed: the write it guards may
/// have landed without its caller living to announce it.
struct AnnounceGuard {
    shared: Arc<Shared>,
    bus: Arc<dyn InvalidationBus>,
    change: Option<Invalidation>,
}

impl AnnounceGuard {
    /// Nothing changed: nothing to announce.
    fn disarm(mut self) {
        self.change = None;
    }
}

impl Drop for AnnounceGuard {
    fn drop(&mut self) {
        let Some(change) = self.change.take() else {
            return;
        };
        self.shared.forget(&change);
        let (shared, bus) = (self.shared.clone(), self.bus.clone());
        let publish = async move {
            for round in 0..2 {
                if round == 1 {
                    // The write may land after the first announcement (it
                    // was still on its way); a load in between may have
                    // cached the old record.
                    tokio::time::sleep(LATE_WRITE_WINDOW).await;
                    shared.forget(&change);
                }
                if bus.publish(&change).await.is_err() {
                    tracing::warn!(
                        "near cache: a write's invalidation could not be published; bypassing the cache until the bus is back"
                    );
                    shared.set_usable(false);
                    return;
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(publish)),
            // No runtime to publish from: at least stop serving from here.
            Err(_) => self.shared.set_usable(false),
        }
    }
}

/// Listens to the bus, publishes heartbeats and detects silence.
async fn watch(
    shared: Arc<Shared>,
    bus: Arc<dyn InvalidationBus>,
    mut events: mpsc::Receiver<BusEvent>,
    config: NearCacheConfig,
) {
    let mut last_heard = Instant::now();
    let mut ticker = tokio::time::interval(config.heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks = 0u64;
    // After the bus reports a loss, only its reconnection makes the cache
    // usable again (heartbeats alone end a silence, not a loss).
    let mut lost = false;
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else {
                    shared.set_usable(false);
                    return;
                };
                last_heard = Instant::now();
                match event {
                    BusEvent::Invalidate(change) => shared.forget(&change),
                    BusEvent::Alive => {
                        if !lost && !shared.usable.load(Ordering::SeqCst) {
                            shared.set_usable(true);
                        }
                    }
                    BusEvent::Connected => {
                        lost = false;
                        shared.set_usable(true);
                    }
                    BusEvent::Lost => {
                        lost = true;
                        shared.set_usable(false);
                    }
                }
            }
            _ = ticker.tick() => {
                ticks += 1;
                if bus.heartbeat().await.is_err() {
                    shared.set_usable(false);
                }
                if last_heard.elapsed() > config.silence_limit && shared.usable.load(Ordering::SeqCst) {
                    tracing::warn!("near cache: the invalidation bus went silent; bypassing the cache");
                    shared.set_usable(false);
                }
                if ticks.is_multiple_of(64) {
                    shared.prune_marks();
                }
            }
        }
    }
}

impl<S: SessionStore> NearCache<S> {
    /// Runs a write that changes `id`, announcing it unless the store says
    /// nothing changed (see "No write left unannounced").
    async fn announced(
        &self,
        id: SessionId,
        write: impl std::future::Future<Output = Result<WriteOutcome, StoreError>>,
    ) -> Result<WriteOutcome, StoreError> {
        let guard = self.guard(Invalidation::of(id));
        let outcome = write.await?;
        match outcome {
            WriteOutcome::Written => self.announce_guarded(guard).await?,
            // The store holds another version than the writer read: a
            // cached copy is stale, and the writer's retry must not read it
            // again while the announcement of that change is on its way.
            WriteOutcome::Conflict { .. } | WriteOutcome::NotFound => {
                self.shared.forget(&Invalidation::of(id));
                guard.disarm();
            }
        }
        Ok(outcome)
    }
}

#[async_trait]
impl<S: SessionStore> Records for NearCache<S> {
    async fn create(
        &self,
        record: &SessionRecord,
        forget_at: Timestamp,
    ) -> Result<CreateOutcome, StoreError> {
        // A new session cannot be cached anywhere yet.
        self.inner.create(record, forget_at).await
    }

    async fn load(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let shared = &self.shared;
        if shared.usable.load(Ordering::SeqCst)
            && let Some(cached) = shared.entries.get(id)
            && forget_at(&cached) > now
        {
            shared.hits.add(id);
            return Ok(Some(cached.clone()));
        }
        shared.misses.add(id);
        let started = shared.sequence.load(Ordering::SeqCst);
        let loaded = self.inner.load(id, now).await?;
        if let Some(record) = &loaded {
            shared.remember(record.clone(), started);
        }
        Ok(loaded)
    }

    async fn update(
        &self,
        record: &SessionRecord,
        expected: Revision,
        forget_at: Timestamp,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        let write = self.inner.update(record, expected, forget_at, now);
        self.announced(record.id, write).await
    }

    async fn touch(
        &self,
        id: &SessionId,
        last_seen_at: Timestamp,
        forget_at: Timestamp,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        let write = self.inner.touch(id, last_seen_at, forget_at, now);
        self.announced(*id, write).await
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        // Announced even when nothing was deleted here, or the call failed
        // or was dropped midway: a revocation must never leave a cached
        // copy behind.
        let guard = self.guard(Invalidation::of(*id));
        let deleted = self.inner.delete(id).await;
        let announced = self.announce_guarded(guard).await;
        let deleted = deleted?;
        announced?;
        Ok(deleted)
    }

    async fn find_legacy(
        &self,
        key: &TokenHash,
        now: Timestamp,
    ) -> Result<Option<SessionId>, StoreError> {
        self.inner.find_legacy(key, now).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

#[async_trait]
impl<S: SessionStore> SubjectIndex for NearCache<S> {
    async fn list_subject(
        &self,
        subject: &str,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<Page<SessionRecord>, StoreError> {
        self.inner.list_subject(subject, cursor, limit, now).await
    }

    async fn delete_subject(
        &self,
        subject: &str,
        except: Option<&SessionId>,
        now: Timestamp,
    ) -> Result<Vec<SessionId>, StoreError> {
        // The sessions about to go are announced even if this call fails
        // or is dropped midway (see "No write left unannounced").
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .inner
                .list_subject(subject, cursor.as_deref(), 1000, now)
                .await?;
            ids.extend(
                page.items
                    .iter()
                    .map(|r| r.id)
                    .filter(|id| Some(id) != except),
            );
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let mut guard = self.guard(Invalidation { ids });
        let deleted = self.inner.delete_subject(subject, except, now).await?;
        if let Some(change) = guard.change.as_mut() {
            change.ids.extend(deleted.iter().copied());
            change.ids.sort_unstable();
            change.ids.dedup();
            if change.ids.is_empty() {
                guard.disarm();
                return Ok(deleted);
            }
        }
        self.announce_guarded(guard).await?;
        Ok(deleted)
    }
}

#[async_trait]
impl<S: SessionStore> Epochs for NearCache<S> {
    fn durability(&self) -> crate::store::Durability {
        self.inner.durability()
    }

    async fn global_epoch(&self) -> Result<u64, StoreError> {
        self.inner.global_epoch().await
    }

    async fn bump_global_epoch(&self) -> Result<u64, StoreError> {
        self.inner.bump_global_epoch().await
    }

    async fn raise_global_epoch(&self, epoch: u64) -> Result<u64, StoreError> {
        self.inner.raise_global_epoch(epoch).await
    }

    async fn subject_epoch(&self, subject: &str) -> Result<u64, StoreError> {
        self.inner.subject_epoch(subject).await
    }

    async fn bump_subject_epoch(&self, subject: &str) -> Result<u64, StoreError> {
        self.inner.bump_subject_epoch(subject).await
    }

    async fn raise_subject_epoch(&self, subject: &str, epoch: u64) -> Result<u64, StoreError> {
        self.inner.raise_subject_epoch(subject, epoch).await
    }
}

#[async_trait]
impl<S: SessionStore> Maintenance for NearCache<S> {
    async fn sweep_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.inner.sweep_expired(now).await
    }

    async fn export_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<Page<SessionRecord>, StoreError> {
        self.inner.export_page(cursor, limit, now).await
    }
}

// Attachments and the journal are read from the shared store every time:
// they change rarely and are read rarely, and a cached copy of either could
// only be stale.
#[async_trait]
impl<S: SessionStore> Attachments for NearCache<S> {
    async fn load_attachment(
        &self,
        id: &SessionId,
        kind: AttachmentKind,
        now: Timestamp,
    ) -> Result<Option<Attachment>, StoreError> {
        self.inner.load_attachment(id, kind, now).await
    }

    async fn store_attachment(
        &self,
        id: &SessionId,
        kind: AttachmentKind,
        value: &[u8],
        expected: Option<u64>,
        forget_at: Timestamp,
        now: Timestamp,
    ) -> Result<AttachmentWrite, StoreError> {
        self.inner
            .store_attachment(id, kind, value, expected, forget_at, now)
            .await
    }

    async fn delete_attachment(
        &self,
        id: &SessionId,
        kind: AttachmentKind,
    ) -> Result<bool, StoreError> {
        self.inner.delete_attachment(id, kind).await
    }
}

#[async_trait]
impl<S: SessionStore> Journal for NearCache<S> {
    async fn append_journal(
        &self,
        entry: &JournalEntry,
        forget_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.inner.append_journal(entry, forget_at).await
    }

    async fn journal_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<Page<JournalEntry>, StoreError> {
        self.inner.journal_page(cursor, limit, now).await
    }
}

/// An [`InvalidationBus`] inside one process (a broadcast channel): for
/// tests, and for several caches in front of one store in one process.
#[derive(Debug, Clone)]
pub struct LocalBus {
    sender: tokio::sync::broadcast::Sender<BusEvent>,
}

impl Default for LocalBus {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalBus {
    /// A bus with no listeners yet.
    pub fn new() -> Self {
        Self {
            sender: tokio::sync::broadcast::channel(4096).0,
        }
    }

    /// Tells every listener the bus was lost (to test fail-safe behaviour).
    pub fn break_connection(&self) {
        let _ = self.sender.send(BusEvent::Lost);
    }

    /// Tells every listener the bus is back.
    pub fn restore_connection(&self) {
        let _ = self.sender.send(BusEvent::Connected);
    }
}

#[async_trait]
impl InvalidationBus for LocalBus {
    async fn publish(&self, change: &Invalidation) -> Result<(), StoreError> {
        let _ = self.sender.send(BusEvent::Invalidate(change.clone()));
        Ok(())
    }

    async fn heartbeat(&self) -> Result<(), StoreError> {
        let _ = self.sender.send(BusEvent::Alive);
        Ok(())
    }

    fn subscribe(&self, events: mpsc::Sender<BusEvent>) -> tokio::task::JoinHandle<()> {
        let mut receiver = self.sender.subscribe();
        tokio::spawn(async move {
            if events.send(BusEvent::Connected).await.is_err() {
                return;
            }
            loop {
                let event = match receiver.recv().await {
                    Ok(event) => event,
                    // Missed messages: say so, as a real bus would, then
                    // carry on listening (the cache clears on both edges).
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        if events.send(BusEvent::Lost).await.is_err() {
                            return;
                        }
                        BusEvent::Connected
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                if events.send(event).await.is_err() {
                    return;
                }
            }
        })
    }
}
