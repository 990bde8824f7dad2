//! Sessions written in the previous layout (records keyed by the hash of a
//! 53-character token: a hash `{prefix}{<id hex>}`, pointers, tombstones
//! and a sorted set per subject), written here by hand with the commands
//! the previous version's scripts sent, keep working after the upgrade: an
//! old token validates, is replaced by a new one and then behaves as a
//! previous token; old sessions are listed, and revoked by subject and by
//! id. On a server and on a cluster. The old data is there before the
//! store first connects, as in an upgrade: the previous version kept no
//! global epoch until a revoke-all, and the store takes such a store's
//! epoch as 0 (`crates/tessera-redis/src/epochs.rs`).

mod common;

use std::time::Duration;

use common::{TempCluster, TempRedis, unique_prefix};
use tessera_core::store::Epochs;
use tessera_core::store::{Records, SubjectIndex};
use tessera_core::testkit::invalid_reason as reason;
use tessera_core::{
    Clock, EXPIRED_RETENTION, InvalidReason, ManualClock, SessionId, SessionManager, SessionToken,
    Timestamp,
};
use tessera_redis::{RedisConfig, RedisStore};

/// A session as the previous version stored it.
struct OldSession {
    id: SessionId,
    subject: Option<&'static str>,
    token: SessionToken,
    version: u64,
    created_at: Timestamp,
    /// `last_seen_at` inside the JSON record.
    recorded_last_seen: Timestamp,
    /// The hash's `s` field, which a touch moved without rewriting the record.
    last_seen: Timestamp,
    token_issued_at: Timestamp,
    idle_timeout_ms: u64,
    absolute_expires_at: Timestamp,
}

impl OldSession {
    fn new(seed: u8, subject: Option<&'static str>, now: Timestamp) -> Self {
        Self {
            id: SessionId([seed; 16]),
            subject,
            token: SessionToken::legacy_from_secret([seed; 32]),
            version: 3,
            created_at: now.minus(Duration::from_secs(3600)),
            recorded_last_seen: now.minus(Duration::from_secs(120)),
            last_seen: now.minus(Duration::from_secs(10)),
            token_issued_at: now.minus(Duration::from_secs(60)),
            idle_timeout_ms: 30 * 60 * 1000,
            absolute_expires_at: now.plus(Duration::from_secs(11 * 3600)),
        }
    }

    fn forget_at(&self) -> i64 {
        let idle = self.last_seen.as_millis() + self.idle_timeout_ms as i64;
        idle.min(self.absolute_expires_at.as_millis()) + EXPIRED_RETENTION.as_millis() as i64
    }

    fn pointer_deadline(&self) -> i64 {
        (self.absolute_expires_at.as_millis() + EXPIRED_RETENTION.as_millis() as i64)
            .max(self.forget_at())
    }

    fn id_hex(&self) -> String {
        self.id.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The format 1 record, fields in the order the previous version
    /// serialised them.
    fn json(&self) -> String {
        let subject = self
            .subject
            .map_or("null".to_owned(), |s| format!("\"{s}\""));
        let (level, authenticated) = match self.subject {
            Some(_) => (1, self.created_at.as_millis().to_string()),
            None => (0, "null".to_owned()),
        };
        format!(
            concat!(
                r#"{{"v":1,"session":{{"id":"{id}","subject":{subject},"auth_level":{level},"#,
                r#""authenticated_at":{authenticated},"data":{{"__tessera_csrf":"c3JmLXNlY3JldA","cart":[1,2]}},"#,
                r#""created_at":{created},"last_seen_at":{seen},"token_issued_at":{issued},"#,
                r#""idle_timeout_ms":{idle},"absolute_expires_at":{absolute},"version":{version},"epoch":0}}}}"#
            ),
            id = self.id,
            created = self.created_at.as_millis(),
            seen = self.recorded_last_seen.as_millis(),
            issued = self.token_issued_at.as_millis(),
            idle = self.idle_timeout_ms,
            absolute = self.absolute_expires_at.as_millis(),
            version = self.version,
            subject = subject,
            level = level,
            authenticated = authenticated,
        )
    }

    /// Writes the session as the previous version's create script did:
    /// the subject index, the pointer, the record hash and its expiry.
    fn write(&self, prefix: &str, cli: &impl Fn(&[&str]) -> String) {
        let key = self.token.hash().to_hex();
        let live = format!("{prefix}{{{}}}", self.id_hex());
        let forget = self.forget_at().to_string();
        if let Some(subject) = self.subject {
            let index = format!("{prefix}x:{subject}");
            assert_eq!(cli(&["ZADD", &index, "GT", &forget, &self.id_hex()]), "1");
            cli(&["PEXPIREAT", &index, &forget]);
        }
        let pointer = format!("{prefix}p:{key}");
        let deadline = self.pointer_deadline().to_string();
        assert_eq!(
            cli(&["SET", &pointer, &self.id_hex(), "PXAT", &deadline]),
            "OK"
        );
        let subject_field = self.subject.map_or(String::new(), |s| format!("={s}"));
        let fields = [
            ("k", key.clone()),
            ("r", self.json()),
            ("v", self.version.to_string()),
            ("s", self.last_seen.as_millis().to_string()),
            ("i", self.idle_timeout_ms.to_string()),
            ("a", self.absolute_expires_at.as_millis().to_string()),
            ("f", forget.clone()),
            ("u", subject_field),
        ];
        let mut hset = vec!["HSET", live.as_str()];
        for (name, value) in &fields {
            hset.push(name);
            hset.push(value);
        }
        assert_eq!(cli(&hset), "8");
        assert_eq!(cli(&["PEXPIREAT", &live, &forget]), "1");
    }

    /// A rotation done by the previous version: the record moved to a new
    /// token; the old one left a tombstone and kept its pointer.
    fn rotate(&mut self, prefix: &str, cli: &impl Fn(&[&str]) -> String, seed: u8) -> SessionToken {
        let old = std::mem::replace(
            &mut self.token,
            SessionToken::legacy_from_secret([seed; 32]),
        );
        let (old_key, new_key) = (old.hash().to_hex(), self.token.hash().to_hex());
        let live = format!("{prefix}{{{}}}", self.id_hex());
        let deadline = self.pointer_deadline().to_string();
        cli(&[
            "SET",
            &format!("{prefix}p:{new_key}"),
            &self.id_hex(),
            "PXAT",
            &deadline,
        ]);
        let tombstone = format!(
            r#"{{"v":1,"tombstone":{{"session_id":"{}","successor":"{new_key}","grace_until":null,"forget_at":{}}}}}"#,
            self.id,
            self.absolute_expires_at.as_millis()
        );
        let tombstone_key = format!("{live}:t:{old_key}");
        cli(&["SET", &tombstone_key, &tombstone]);
        cli(&["PEXPIREAT", &tombstone_key, &deadline]);
        cli(&["HSET", &live, "k", &new_key, "r", &self.json()]);
        old
    }
}

async fn old_sessions_keep_working(url: &str, tag: &str, cli: impl Fn(&[&str]) -> String) {
    let prefix = unique_prefix(tag);
    let clock = ManualClock::starting_now();
    let now = clock.now();
    let exists = |key: &str| cli(&["EXISTS", key]) == "1";

    let alice_1 = OldSession::new(1, Some("alice"), now);
    let mut alice_2 = OldSession::new(2, Some("alice"), now);
    let bob = OldSession::new(3, Some("bob"), now);
    let carol = OldSession::new(4, Some("carol"), now);
    let anonymous = OldSession::new(5, None, now);
    for old in [&alice_1, &alice_2, &bob, &carol, &anonymous] {
        old.write(&prefix, &cli);
    }
    let rotated_away = alice_2.rotate(&prefix, &cli, 12);
    // Subjects signed out everywhere before the upgrade: the old store's
    // subject epochs, under the names the store still uses.
    for n in 0..30 {
        cli(&["SET", &format!("{prefix}epoch:ghost-{n}"), "1"]);
    }

    // The new version starts.
    let config = RedisConfig::from_url(url).expect("url").prefix(&prefix);
    let store = RedisStore::connect_with(config).await.expect("connect");
    assert_eq!(
        store.global_epoch().await.expect("epoch"),
        0,
        "a store of the previous version that never revoked everything"
    );
    let manager = SessionManager::builder(store.clone())
        .clock(clock.clone())
        .build()
        .expect("manager");

    // An old token validates through the manager and is replaced at once.
    let old_token = alice_1.token.expose();
    let first = manager
        .validate(old_token, None)
        .await
        .expect("an old token validates");
    let record = first.record();
    assert_eq!(record.id, alice_1.id);
    assert_eq!(record.subject.as_deref(), Some("alice"));
    assert_eq!(record.version, alice_1.version);
    assert_eq!(
        record.data.as_json(),
        r#"{"cart":[1,2]}"#,
        "old data, CSRF key dropped"
    );
    assert_eq!(record.last_seen_at, clock.now(), "touched by the renewal");
    assert_eq!(record.created_at, alice_1.created_at);
    let new_token = first
        .issued()
        .expect("an old token is replaced at its first use")
        .expose()
        .to_owned();
    assert_eq!(new_token.len(), tessera_core::TOKEN_LEN);
    assert!(exists(&store.record_key(&alice_1.id)), "converted");
    assert!(
        !exists(&format!("{prefix}{{{}}}", alice_1.id_hex())),
        "the old hash is gone once converted"
    );
    // Before the new token arrives, the old one hands it out again.
    let again = manager
        .validate(old_token, None)
        .await
        .expect("old token again");
    assert_eq!(again.issued().map(|t| t.expose()), Some(new_token.as_str()));
    // The new token takes over; the old one is now the previous token:
    // honoured for the grace, a theft after it.
    let current = manager.validate(&new_token, None).await.expect("new token");
    assert!(current.issued().is_none());
    let within_grace = manager
        .validate(old_token, None)
        .await
        .expect("within the grace");
    assert_eq!(within_grace.record().id, alice_1.id);
    assert!(within_grace.issued().is_none());
    let found = store
        .find_legacy(&alice_1.token.hash(), clock.now())
        .await
        .expect("find_legacy");
    assert_eq!(
        found,
        Some(alice_1.id),
        "the old pointer still leads to the session"
    );

    // Listing reaches a session still in the old layout (and converts it).
    let listed = manager.list_subject("alice").await.expect("list alice");
    let ids: Vec<SessionId> = listed.iter().map(|s| s.id).collect();
    assert_eq!(
        ids,
        vec![alice_1.id, alice_2.id],
        "both of alice's sessions"
    );
    assert_eq!(listed[1].data.as_json(), r#"{"cart":[1,2]}"#);
    assert!(
        !exists(&format!("{prefix}x:alice")),
        "the old index is emptied"
    );
    assert!(!exists(&format!("{prefix}{{{}}}", alice_2.id_hex())));
    // A token rotated away before the upgrade is dropped; the current one works.
    assert_eq!(
        reason(manager.validate(rotated_away.expose(), None).await),
        InvalidReason::Unknown
    );
    let second = manager
        .validate(alice_2.token.expose(), None)
        .await
        .expect("the old session's current token");
    assert_eq!(second.record().id, alice_2.id);
    let second_token = second.issued().expect("replaced").expose().to_owned();

    // Revoked by subject: converted or not, every session of alice ends.
    assert_eq!(
        manager
            .revoke_subject("alice", None)
            .await
            .expect("revoke alice"),
        2
    );
    for token in [new_token.as_str(), second_token.as_str(), old_token] {
        assert!(
            manager.validate(token, None).await.is_err(),
            "alice's sessions are over"
        );
    }
    // A subject never listed before: its old sessions end all the same.
    assert_eq!(
        manager
            .revoke_subject("carol", None)
            .await
            .expect("revoke carol"),
        1
    );
    assert_eq!(
        reason(manager.validate(carol.token.expose(), None).await),
        InvalidReason::Unknown
    );

    // Revoked by id, never touched since the upgrade.
    assert!(
        manager.revoke(&bob.id).await.expect("revoke bob"),
        "bob's session was live"
    );
    assert!(!exists(&format!("{prefix}{{{}}}", bob.id_hex())));
    assert_eq!(
        reason(manager.validate(bob.token.expose(), None).await),
        InvalidReason::Unknown
    );
    assert!(
        manager
            .list_subject("bob")
            .await
            .expect("list bob")
            .is_empty()
    );

    // An anonymous old session: found by its token, then revoked by id.
    let anonymous_now = manager
        .validate(anonymous.token.expose(), None)
        .await
        .expect("anonymous old session");
    assert!(anonymous_now.record().subject.is_none());
    assert!(manager.revoke(&anonymous.id).await.expect("revoke"));
    assert!(
        manager
            .validate(anonymous_now.issued().expect("replaced").expose(), None)
            .await
            .is_err()
    );

    // Many requests with one old token at once (a page's parallel
    // requests right after the upgrade): each converts or finds the
    // conversion, one renewal wins, and every request gets its token.
    let busy = OldSession::new(7, Some("erin"), now);
    busy.write(&prefix, &cli);
    let racing: Vec<_> = (0..16)
        .map(|_| {
            let (manager, token) = (manager.clone(), busy.token.expose().to_owned());
            tokio::spawn(async move { manager.validate(&token, None).await })
        })
        .collect();
    let mut issued = std::collections::BTreeSet::new();
    for request in racing {
        let valid = request
            .await
            .expect("task")
            .expect("every parallel request with the old token is valid");
        assert_eq!(valid.record().id, busy.id);
        issued.insert(valid.issued().expect("the new token").expose().to_owned());
    }
    assert_eq!(issued.len(), 1, "one renewal, handed to every request");
    assert_eq!(manager.list_subject("erin").await.expect("list").len(), 1);

    // The old token after the grace: a theft, and the session ends.
    let fresh = OldSession::new(6, Some("dave"), now);
    fresh.write(&prefix, &cli);
    let replaced = manager
        .validate(fresh.token.expose(), None)
        .await
        .expect("dave");
    let successor = replaced.issued().expect("replaced").expose().to_owned();
    manager.validate(&successor, None).await.expect("successor");
    clock.advance(Duration::from_secs(11));
    assert_eq!(
        reason(manager.validate(fresh.token.expose(), None).await),
        InvalidReason::Reused
    );
    assert!(
        manager.validate(&successor, None).await.is_err(),
        "revoked by the reuse"
    );
    let unknown = SessionToken::legacy_from_secret([99; 32]);
    assert_eq!(
        store
            .find_legacy(&unknown.hash(), clock.now())
            .await
            .expect("find"),
        None
    );
    assert!(
        store
            .list_subject("dave", None, 10, clock.now())
            .await
            .expect("list")
            .items
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_sessions_keep_working_on_a_server() {
    let server = TempRedis::start();
    old_sessions_keep_working(&server.url(), "legacy", |args| server.cli(args)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_sessions_keep_working_on_a_cluster() {
    let cluster = TempCluster::start();
    old_sessions_keep_working(&cluster.url(), "clegacy", |args| cluster.cli(args)).await;
}
