//! Round trips per operation, and Redis memory per session, against a real
//! server.
//!
//! Round trips: the store talks to Redis through a proxy in this process
//! that holds everything the client sends for a fixed delay (replies pass
//! at once), so an operation's latency divided by the delay is the number
//! of round trips it waits for one after the other (commands sent together
//! count once). Each operation is timed alone, several times; the median
//! is reported.
//!
//! Memory: `used_memory` of the server before and after creating sessions
//! through a `SessionManager`, per session: anonymous ones, and signed-in
//! ones shaped like the peer benchmark's (`bench/peers`: a subject of their
//! own and `{"user_id":…,"counter":0}`); beside them, for reference, the
//! same number of entries in actix-session's Redis layout (a 64-character
//! key holding its JSON state, with a TTL). Use a server with nothing else
//! on it.
//!
//! `cargo run --release -p tessera-redis --example load_round_trips -- redis://127.0.0.1:6379 [SESSIONS] [--memory-only]`

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tessera_core::store::{Records, SubjectIndex};
use tessera_core::{
    ActiveSession, Clock, DataChange, Login, ManualClock, NewSession, SessionData, SessionManager,
    forget_at,
};
use tessera_redis::{RedisConfig, RedisStore};

// The delaying proxy of the integration tests.
#[path = "../tests/common/mod.rs"]
mod common;

/// The delay added to each request on its way to Redis.
const DELAY: Duration = Duration::from_millis(20);
/// Timings per operation.
const SAMPLES: usize = 7;

/// Times `op` (after `prepare`, untimed) `SAMPLES` times; prints the median
/// in milliseconds and in round trips.
async fn measure<S, P, O, Fut>(name: &str, mut prepare: P, mut op: O)
where
    P: AsyncFnMut() -> S,
    O: FnMut(S) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut took = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let state = prepare().await;
        let started = Instant::now();
        op(state).await;
        took.push(started.elapsed());
    }
    took.sort();
    let median = took[SAMPLES / 2];
    let trips = median.as_secs_f64() / DELAY.as_secs_f64();
    println!(
        "{name:<46} {:>7.1} ms  {:>2} round trip(s) ({trips:.2})",
        median.as_secs_f64() * 1000.0,
        trips.round() as u64
    );
}

fn token(session: &ActiveSession) -> String {
    session.issued().expect("a credential").expose().to_owned()
}

async fn used_memory(url: &str) -> Result<i64, Box<dyn std::error::Error>> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await?;
    let line = info
        .lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .ok_or("no used_memory in INFO")?;
    Ok(line.trim().parse()?)
}

/// The `host:port` of a one-server URL.
fn host_port(url: &str) -> Option<&str> {
    let authority = url.split("://").nth(1)?.split(['/', '?']).next()?;
    authority.rsplit('@').next()
}

async fn round_trips(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let upstream = host_port(url).ok_or("a redis:// URL of one server")?;
    let proxy = common::DelayingProxy::start_to(upstream.to_owned()).await;
    let proxied = url.replacen(upstream, &format!("127.0.0.1:{}", proxy.port()), 1);
    let store = RedisStore::connect_with(
        RedisConfig::from_url(&proxied)?
            .prefix("bench-rt:")
            .operation_timeout(Duration::from_secs(5)),
    )
    .await?;
    let clock = ManualClock::starting_now();
    let manager = SessionManager::builder(store.clone())
        // A load generator: the anonymous creation caps would refuse it.
        .anonymous_creation_caps(None, None)
        .clock(clock.clone())
        .build()?;
    // Warm up: scripts loaded, the epoch cached.
    let warm = manager.create(NewSession::default()).await?;
    manager.validate(&token(&warm), None).await?;
    proxy.set_delay(DELAY);
    println!(
        "round trips ({} ms added to each request, median of {SAMPLES}):",
        DELAY.as_millis()
    );

    let m = &manager;
    let s = &store;
    let c = &clock;
    let signed_in = || async {
        let login = Login::new(format!("user-{}", rand_suffix()))
            .data(SessionData::from_value(&json!({"user_id": 1, "counter": 0})).expect("data"));
        m.login(None, login).await.expect("login")
    };
    // The token of a signed-in session `age` old, with the clock moved on
    // by `age` (another session validated after the move, so that the epoch
    // read again now and then is not part of the timed validation).
    let aged = async |age: Duration| {
        let t = token(&signed_in().await);
        c.advance(age);
        m.validate(&token(&signed_in().await), None)
            .await
            .expect("validate");
        t
    };

    measure("store: load", signed_in, |a| async move {
        s.load(&a.record().id, c.now()).await.expect("load");
    })
    .await;
    measure(
        "store: create (signed in)",
        || async {
            let mut record = signed_in().await.record().as_ref().clone();
            record.id = tessera_core::SessionId::generate().expect("id");
            record
        },
        |record| async move {
            s.create(&record, forget_at(&record)).await.expect("create");
        },
    )
    .await;
    measure("store: update (signed in)", signed_in, |a| async move {
        let mut next = a.record().as_ref().clone();
        next.version += 1;
        s.update(&next, a.record().revision(), forget_at(&next), c.now())
            .await
            .expect("update");
    })
    .await;
    measure("store: touch", signed_in, |a| async move {
        let now = c.now();
        s.touch(
            &a.record().id,
            now,
            now.plus(Duration::from_secs(3600)),
            now,
        )
        .await
        .expect("touch");
    })
    .await;
    measure("store: delete", signed_in, |a| async move {
        s.delete(&a.record().id).await.expect("delete");
    })
    .await;
    measure(
        "store: list a subject (one session)",
        signed_in,
        |a| async move {
            let subject = a.record().subject.clone().expect("subject");
            s.list_subject(&subject, None, 100, c.now())
                .await
                .expect("list");
        },
    )
    .await;
    let validate = |t: String| async move {
        m.validate(&t, None).await.expect("validate");
    };
    let fresh = || async { token(&signed_in().await) };
    measure("manager: validate", fresh, validate).await;
    let touched = || aged(m.config().touch_after);
    measure("manager: validate with a touch", touched, validate).await;
    measure(
        "manager: validate with a renewal",
        || aged(m.config().renew_after),
        |t| async move {
            let renewed = m.validate(&t, None).await.expect("validate");
            assert!(renewed.issued().is_some(), "renewed");
        },
    )
    .await;
    measure(
        "manager: update (the validated session)",
        || async {
            let t = token(&signed_in().await);
            m.validate(&t, None).await.expect("validate")
        },
        |valid| async move {
            m.update(
                &valid,
                DataChange::MergePatch(json!({"counter": 1})),
                None,
                None,
            )
            .await
            .expect("update");
        },
    )
    .await;
    measure(
        "manager: create",
        || async {},
        |()| async move {
            m.create(NewSession::default()).await.expect("create");
        },
    )
    .await;
    measure(
        "manager: login (a session in hand)",
        || async { m.create(NewSession::default()).await.expect("create") },
        |anonymous| async move {
            m.login(
                Some(&anonymous),
                Login::new(format!("user-{}", rand_suffix())),
            )
            .await
            .expect("login");
        },
    )
    .await;
    measure(
        "manager: login (no session)",
        || async {},
        |()| async move {
            m.login(None, Login::new(format!("user-{}", rand_suffix())))
                .await
                .expect("login");
        },
    )
    .await;
    Ok(())
}

fn rand_suffix() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

async fn memory(url: &str, sessions: usize) -> Result<(), Box<dyn std::error::Error>> {
    println!("Redis used_memory per session ({sessions} sessions):");
    for (name, prefix, signed_in) in [
        ("Tessera, anonymous", "mem-a:", false),
        (
            "Tessera, signed in (own subject, 2 fields of data)",
            "mem-s:",
            true,
        ),
    ] {
        let store = RedisStore::connect_with(RedisConfig::from_url(url)?.prefix(prefix)).await?;
        let manager = SessionManager::builder(store.clone())
            // A load generator: the anonymous creation caps would refuse it.
            .anonymous_creation_caps(None, None)
            .build()?;
        manager.create(NewSession::default()).await?;
        let before = used_memory(url).await?;
        let mut tasks = tokio::task::JoinSet::new();
        for worker in 0..32 {
            let manager = manager.clone();
            tasks.spawn(async move {
                for n in (worker..sessions).step_by(32) {
                    if signed_in {
                        let data = SessionData::from_value(&json!({"user_id": n, "counter": 0}))
                            .expect("data");
                        let login = Login::new(format!("user-{n}")).data(data);
                        manager.login(None, login).await.expect("login");
                    } else {
                        manager.create(NewSession::default()).await.expect("create");
                    }
                }
            });
        }
        tasks.join_all().await;
        let after = used_memory(url).await?;
        println!(
            "{name:<56} {:>6.0} bytes",
            (after - before) as f64 / sessions as f64
        );
    }
    // actix-session's layout: `SET <64 characters> <its JSON state> EX <ttl>`.
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let before = used_memory(url).await?;
    for chunk in (0..sessions).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for n in chunk {
            let key = format!("{:064x}", u128::from(*n as u64) * 0x9e37_79b9_7f4a_7c15);
            let state = format!(r#"{{"user_id":"{n}","counter":"0"}}"#);
            pipe.cmd("SET")
                .arg(key)
                .arg(state)
                .arg("EX")
                .arg(1800)
                .ignore();
        }
        pipe.query_async::<()>(&mut conn).await?;
    }
    let after = used_memory(url).await?;
    println!(
        "{:<56} {:>6.0} bytes",
        "actix-session's layout, signed in (for reference)",
        (after - before) as f64 / sessions as f64
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = args
        .first()
        .map_or("redis://127.0.0.1:6379", String::as_str);
    let sessions: usize = args
        .get(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(20_000);
    if args.get(2).map(String::as_str) != Some("--memory-only") {
        round_trips(url).await?;
        println!();
    }
    memory(url, sessions).await?;
    Ok(())
}
