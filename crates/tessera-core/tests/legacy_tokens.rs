//! Tokens of the first format (53 characters, no session id inside,
//! `docs/tokens-and-cookies.md`): the manager finds their session through
//! `Records::find_legacy`, and replaces such a token at its first
//! validation; from then on the old token is the previous token of its
//! session, with the rules of any renewed-away token.
//!
//! The store here wraps a memory store and answers `find_legacy` from a
//! map of old token hashes to ids, each with a record created under its id
//! whose token hash is the old hash (converted from a format 1 record, as
//! a store that kept that layout does before answering).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use tessera_core::store::{
    Attachment, AttachmentKind, AttachmentWrite, Attachments, CreateOutcome, Durability, Epochs,
    Journal, JournalEntry, Maintenance, Page, Records, StoreError, SubjectIndex, WriteOutcome,
};
use tessera_core::testkit::Harness;
use tessera_core::testkit::invalid_reason as reason;
use tessera_core::{
    ActiveSession, ClientInfo, InvalidReason, LEGACY_TOKEN_LEN, Login, MemoryStore, Revision,
    SessionId, SessionManager, SessionRecord, SessionToken, TOKEN_LEN, Timestamp, TokenHash, codec,
    forget_at,
};

/// A memory store that also knows sessions by the hash of a format 1 token.
#[derive(Clone, Default)]
struct LegacyStore {
    inner: MemoryStore,
    pointers: Arc<Mutex<HashMap<TokenHash, SessionId>>>,
}

impl LegacyStore {
    /// A session as a store of the old layout held it, and the token of
    /// the first format its client still has.
    async fn add_legacy_session(
        &self,
        subject: Option<&str>,
        now: Timestamp,
    ) -> (String, SessionId) {
        let token = SessionToken::legacy_from_secret(random_secret());
        let id = SessionId::generate().expect("id");
        let minute_ago = now.minus(Duration::from_secs(60)).as_millis();
        // The session was made under the store's global epoch of the time.
        let epoch = self.inner.global_epoch().await.expect("epoch");
        let stored = json!({"v": 1, "session": {
            "id": id.to_string(),
            "subject": subject,
            "auth_level": u8::from(subject.is_some()),
            "authenticated_at": subject.map(|_| minute_ago),
            "data": {"n": 1, "__tessera_csrf": "from the old format"},
            "created_at": minute_ago,
            "last_seen_at": minute_ago,
            "token_issued_at": minute_ago,
            "idle_timeout_ms": 30 * 60 * 1000,
            "absolute_expires_at": minute_ago + 12 * 3600 * 1000,
            "version": 3,
            "epoch": epoch,
        }});
        let key = token.hash();
        let record =
            codec::decode_legacy(stored.to_string().as_bytes(), &key).expect("a format 1 record");
        assert_eq!(
            self.inner
                .create(&record, forget_at(&record))
                .await
                .expect("create"),
            CreateOutcome::Created
        );
        self.pointers.lock().expect("lock").insert(key, id);
        (token.expose().to_owned(), id)
    }
}

fn random_secret() -> [u8; 32] {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).expect("entropy");
    secret
}

#[async_trait]
impl Records for LegacyStore {
    async fn create(
        &self,
        record: &SessionRecord,
        forget_at: Timestamp,
    ) -> Result<CreateOutcome, StoreError> {
        self.inner.create(record, forget_at).await
    }
    async fn load(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.inner.load(id, now).await
    }
    async fn update(
        &self,
        record: &SessionRecord,
        expected: Revision,
        forget_at: Timestamp,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        self.inner.update(record, expected, forget_at, now).await
    }
    async fn touch(
        &self,
        id: &SessionId,
        last_seen_at: Timestamp,
        forget_at: Timestamp,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        self.inner.touch(id, last_seen_at, forget_at, now).await
    }
    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        self.inner.delete(id).await
    }
    async fn find_legacy(
        &self,
        key: &TokenHash,
        _now: Timestamp,
    ) -> Result<Option<SessionId>, StoreError> {
        Ok(self.pointers.lock().expect("lock").get(key).copied())
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

#[async_trait]
impl SubjectIndex for LegacyStore {
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
        self.inner.delete_subject(subject, except, now).await
    }
}

#[async_trait]
impl Epochs for LegacyStore {
    fn durability(&self) -> Durability {
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
impl Maintenance for LegacyStore {
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

#[async_trait]
impl Attachments for LegacyStore {
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
impl Journal for LegacyStore {
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

/// A harness over a legacy store, its manager, and a legacy session.
async fn setup(subject: Option<&str>) -> (Harness, SessionManager, String, SessionId) {
    let store = LegacyStore::default();
    let h = Harness::new(Arc::new(store.clone()));
    let manager = h.manager();
    let (token, id) = store.add_legacy_session(subject, h.now()).await;
    (h, manager, token, id)
}

fn issued(session: &ActiveSession) -> Option<String> {
    session.issued().map(|c| c.expose().to_owned())
}

#[tokio::test]
async fn a_legacy_token_validates_and_is_replaced_at_once() {
    let (h, manager, old, id) = setup(Some("alice")).await;
    assert_eq!(old.len(), LEGACY_TOKEN_LEN);
    let reads = h.calls().reads();
    let first = manager.validate(&old, None).await.expect("valid");
    assert_eq!(
        h.calls().reads(),
        reads + 2,
        "found through the old layout's pointer, then loaded by id"
    );
    let record = first.record();
    assert_eq!(record.id, id);
    assert_eq!(record.subject.as_deref(), Some("alice"));
    assert_eq!(record.version, 3);
    assert_eq!(
        record.data.as_json(),
        r#"{"n":1}"#,
        "the old CSRF key left the data"
    );
    // Replaced at its first use, although it is a minute old (long
    // before renew_after): the response carries a token of the current
    // format, naming the session.
    let new = issued(&first).expect("a new token at once");
    assert_eq!(new.len(), TOKEN_LEN);
    assert_eq!(
        SessionToken::parse(&new).expect("token").session_id(),
        Some(id)
    );
    assert_eq!(h.events.of_kind("renewed").len(), 1);

    // Until the new token is presented, the old one keeps working and
    // its responses carry the new one again.
    let again = manager.validate(&old, None).await.expect("still valid");
    assert_eq!(issued(&again).as_deref(), Some(new.as_str()));
    assert_eq!(again.record().id, id);
    assert_eq!(h.events.of_kind("renewed").len(), 1, "no second renewal");

    // The new token arrives: from then on the old one lives for the grace.
    let confirmed = manager.validate(&new, None).await.expect("the new token");
    assert_eq!(issued(&confirmed), None);
    h.clock
        .advance(manager.config().rotation_grace - Duration::from_secs(1));
    let in_grace = manager
        .validate(&old, None)
        .await
        .expect("within the grace");
    assert_eq!(issued(&in_grace), None, "nothing more to deliver");
    h.clock.advance(Duration::from_secs(1));
    assert_eq!(
        reason(manager.validate(&old, None).await),
        InvalidReason::Reused
    );
    assert_eq!(h.events.of_kind("token_reuse").len(), 1);
    assert!(
        manager.validate(&new, None).await.is_err(),
        "session revoked"
    );
    assert!(manager.get(&id).await.expect("get").is_none());
}

#[tokio::test]
async fn a_legacy_token_whose_replacement_never_arrives_dies_with_the_window() {
    let (h, manager, old, id) = setup(None).await;
    let lost = issued(&manager.validate(&old, None).await.expect("valid")).expect("replaced");
    let window = manager.config().renewal_delivery_window;
    h.clock.advance(window - Duration::from_secs(1));
    let late = manager
        .validate(&old, None)
        .await
        .expect("within the window");
    assert_eq!(issued(&late), Some(lost.clone()), "delivered again");
    h.clock.advance(Duration::from_secs(1));
    assert_eq!(
        reason(manager.validate(&old, None).await),
        InvalidReason::Revoked
    );
    assert!(
        h.events.of_kind("token_reuse").is_empty(),
        "quietly: the replacement was never presented"
    );
    // The session itself lives on, through the replacement.
    let session = manager.validate(&lost, None).await.expect("the new token");
    assert_eq!(session.record().id, id);
}

#[tokio::test]
async fn resolving_a_legacy_token_acts_without_replacing_it() {
    let (_, manager, old, id) = setup(None).await;
    let current = manager.resolve(&old, None).await.expect("resolve");
    assert_eq!(issued(&current), None, "resolve issues nothing");
    let updated = manager
        .update(
            &current,
            tessera_core::DataChange::MergePatch(json!({"m": 2})),
            None,
            None,
        )
        .await
        .expect("a write through the legacy token");
    assert_eq!(updated.record().version, 4);
    let validated = manager.validate(&old, None).await.expect("valid");
    assert_eq!(validated.record().id, id);
    assert_eq!(validated.record().data.as_json(), r#"{"m":2,"n":1}"#);
    assert!(
        issued(&validated).is_some(),
        "the first validation replaces it"
    );
}

#[tokio::test]
async fn a_login_through_a_legacy_token_kills_it_at_once() {
    let (h, manager, old, id) = setup(None).await;
    let current = manager.resolve(&old, None).await.expect("resolve");
    let signed_in = manager
        .login(Some(&current), Login::new("alice"))
        .await
        .expect("login");
    assert_eq!(signed_in.record().id, id, "the same session");
    assert_eq!(
        signed_in.record().data.as_json(),
        r#"{"n":1}"#,
        "anonymous data carries over"
    );
    assert_eq!(
        reason(manager.validate(&old, None).await),
        InvalidReason::Revoked
    );
    assert!(h.events.of_kind("token_reuse").is_empty());
    let new = issued(&signed_in).expect("login issues a token");
    let session = manager.validate(&new, None).await.expect("valid");
    assert_eq!(session.record().subject.as_deref(), Some("alice"));
}

#[tokio::test]
async fn logout_through_a_legacy_token_ends_its_session() {
    let (_, manager, old, id) = setup(Some("bob")).await;
    manager.logout_presented(&old).await.expect("logout");
    assert!(manager.get(&id).await.expect("get").is_none());
    assert_eq!(
        reason(manager.validate(&old, None).await),
        InvalidReason::Unknown
    );
}

#[tokio::test]
async fn an_unknown_legacy_token_is_unknown_and_counts_towards_guessing() {
    let store = LegacyStore::default();
    let h = Harness::new(Arc::new(store.clone()));
    let manager = h.manager_with(|b| b.guessing(3, Duration::from_secs(60)));
    store.add_legacy_session(None, h.now()).await;
    let ip: IpAddr = "192.0.2.66".parse().expect("ip");
    let guesser = ClientInfo::new(Some(ip), None);
    for n in 0..3 {
        assert!(!manager.is_guessing(ip), "below the threshold after {n}");
        let guess = SessionToken::legacy_from_secret(random_secret());
        assert_eq!(
            reason(manager.validate(guess.expose(), Some(&guesser)).await),
            InvalidReason::Unknown
        );
    }
    assert!(manager.is_guessing(ip), "three unknown legacy tokens");
    assert_eq!(h.events.of_kind("token_guessing").len(), 1);
    // A damaged one is refused before any store access.
    let reads = h.calls().reads();
    let mut damaged = SessionToken::legacy_from_secret(random_secret())
        .expose()
        .to_owned();
    damaged.replace_range(10..11, if &damaged[10..11] == "A" { "B" } else { "A" });
    assert_eq!(
        reason(manager.validate(&damaged, None).await),
        InvalidReason::Malformed
    );
    assert_eq!(h.calls().reads(), reads);
}
