//! Native expiry: records, pointers and subject-index entries of expired
//! sessions disappear from Redis itself, on a server and on a cluster.

mod common;

use std::time::Duration;

use common::{TempCluster, TempRedis, fresh_store};
use tessera_core::{
    EXPIRED_RETENTION, Session, SessionData, SessionId, SessionStore, SessionToken, Timestamp,
};
use tessera_redis::RedisStore;

fn now() -> Timestamp {
    Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis() as i64,
    )
}

/// A session of `subject` that Redis may forget `forget_in` from now (its
/// absolute deadline lies just less than the retention in the past).
fn session(subject: &str, forget_in: Duration) -> Session {
    let now = now();
    let absolute = now.plus(forget_in).minus(EXPIRED_RETENTION);
    Session {
        id: SessionId::generate().expect("id"),
        subject: Some(subject.to_owned()),
        auth_level: 1,
        authenticated_at: Some(now),
        data: SessionData::empty(),
        created_at: now.minus(Duration::from_secs(3600)),
        last_seen_at: now,
        token_issued_at: now,
        idle_timeout_ms: 30 * 60 * 1000,
        absolute_expires_at: absolute,
        version: 1,
        epoch: 0,
        client: None,
        binding: None,
    }
}

async fn create(store: &RedisStore, session: &Session) -> String {
    let key = SessionToken::generate().expect("token").hash();
    store.create(&key, session).await.expect("create");
    format!("{}p:{}", store.prefix(), key.to_hex())
}

/// Polls `redis-cli` until `check` holds; the limit only catches a hang.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not happen");
}

async fn expired_members_leave_nothing(store: RedisStore, cli: impl Fn(&[&str]) -> String) {
    let short = Duration::from_millis(1500);
    let long = Duration::from_secs(3600);
    // `gone`: every session expires. `mixed`: one of three survives.
    let mut pointers = Vec::new();
    for _ in 0..3 {
        pointers.push(create(&store, &session("gone", short)).await);
    }
    let survivor = session("mixed", long);
    create(&store, &survivor).await;
    for _ in 0..2 {
        pointers.push(create(&store, &session("mixed", short)).await);
    }
    let gone_index = store.subject_index_key("gone");
    let mixed_index = store.subject_index_key("mixed");
    assert_eq!(cli(&["ZCARD", &gone_index]), "3");
    assert_eq!(cli(&["ZCARD", &mixed_index]), "3");

    // Redis itself removes the records, their pointers and the index whose
    // members all expired, with no call from the store.
    eventually("the index of expired sessions expiring", || {
        cli(&["EXISTS", &gone_index]) == "0"
    });
    for pointer in &pointers {
        eventually("pointers expiring", || cli(&["EXISTS", pointer]) == "0");
    }
    let record_keys = cli(&["--scan", "--pattern", &format!("{}{{*}}", store.prefix())]);
    assert_eq!(
        record_keys.lines().count(),
        1,
        "only the survivor's record is left: {record_keys}"
    );

    // The mixed index keeps its expired members until the next write or
    // list of the subject prunes them.
    let listed = store.list_by_subject("mixed", now()).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, survivor.id);
    assert_eq!(
        cli(&["ZCARD", &mixed_index]),
        "1",
        "no leaked index entries"
    );
    let ttl: i64 = cli(&["PTTL", &mixed_index]).parse().expect("pttl");
    assert!(
        ttl > 0,
        "the index expires with its last member (PTTL {ttl})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_members_leave_no_index_entries_on_a_server() {
    let server = TempRedis::start();
    let store = fresh_store(&server.url(), "exp").await;
    expired_members_leave_nothing(store, |args| server.cli(args)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_members_leave_no_index_entries_on_a_cluster() {
    let cluster = TempCluster::start();
    let store = fresh_store(&cluster.url(), "cexp").await;
    // `--scan` on one node sees that node's keys only: ask every node.
    let nodes = cluster.nodes();
    expired_members_leave_nothing(store, |args| {
        if args.first() == Some(&"--scan") {
            nodes
                .iter()
                .map(|node| node.cli(args))
                .filter(|out| !out.is_empty())
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            cluster.cli(args)
        }
    })
    .await;
}
