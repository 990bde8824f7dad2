//! Acknowledged writes survive `kill -9`.
//!
//! This test binary plays two parts. As the parent (how `cargo test` runs
//! it), it starts itself again as a child that writes sessions as fast as it
//! can and prints one line per acknowledged write, kills the child with
//! SIGKILL at a random moment, reopens the database, and checks that it
//! opens cleanly (which includes checking that its indexes agree with its
//! records) and that every acknowledged write is there. It repeats this for
//! [`CYCLES`] cycles on the same database, so every earlier crash is checked
//! again after each later one.
//!
//! Each child session goes through create → update → rotate, so a crash can
//! land between any two steps, and inside group commits of all three kinds.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tessera_core::{
    Clock, Session, SessionData, SessionId, SessionStore, SessionToken, StoredEntry, SystemClock,
    TokenHash, Tombstone, WriteOutcome,
};
use tessera_embedded::{EmbeddedError, EmbeddedStore};

const CHILD_ENV: &str = "TESSERA_EMBEDDED_CRASH_CHILD_DIR";
const CYCLES: usize = 20;
const WRITERS: usize = 16;
const NAME: &str = "kill_nine_keeps_every_acknowledged_write";

fn main() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(&dir);
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("{NAME}: test");
        return;
    }
    // Honour a name filter as libtest would.
    if let Some(filter) = args.iter().find(|a| !a.starts_with('-'))
        && !NAME.contains(filter.as_str())
    {
        println!(
            "\nrunning 0 tests\n\ntest result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 1 filtered out\n"
        );
        return;
    }
    println!("\nrunning 1 test");
    let started = Instant::now();
    parent();
    println!("test {NAME} ... ok\n");
    println!(
        "test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in {:.2}s\n",
        started.elapsed().as_secs_f64()
    );
}

/// One acknowledged write, as the child reports it.
enum Ack {
    Created { id: SessionId, key: TokenHash },
    Updated { id: SessionId, version: u64 },
    Rotated { id: SessionId, key: TokenHash },
}

fn parse_ack(line: &str) -> Option<Ack> {
    let mut parts = line.split(' ');
    let kind = parts.next()?;
    let id = SessionId::parse(parts.next()?).ok()?;
    let value = parts.next()?;
    match kind {
        "C" => Some(Ack::Created {
            id,
            key: TokenHash::from_hex(value)?,
        }),
        "U" => Some(Ack::Updated {
            id,
            version: value.parse().ok()?,
        }),
        "R" => Some(Ack::Rotated {
            id,
            key: TokenHash::from_hex(value)?,
        }),
        _ => None,
    }
}

/// What the parent knows must be stored for one session.
struct Expected {
    first_key: TokenHash,
    version: u64,
    rotated_to: Option<TokenHash>,
}

fn parent() {
    let dir = tempfile::tempdir().expect("temp dir");
    let seed = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed);
    eprintln!("crash test: seed {seed}, data in {}", dir.path().display());
    let exe = std::env::current_exe().expect("own path");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut expected: HashMap<SessionId, Expected> = HashMap::new();
    let mut total_acks = 0usize;

    for cycle in 0..CYCLES {
        let mut child = Command::new(&exe)
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the child");
        let stdout = child.stdout.take().expect("child stdout");
        let (lines_tx, lines) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });

        // Wait until the child writes, then let it run for a random while.
        let first = lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("cycle {cycle}: the child acknowledged nothing in 20 s"));
        if cycle == 0 {
            // The child holds the lock: a second process cannot open the file.
            match EmbeddedStore::open(dir.path()) {
                Err(EmbeddedError::Locked { .. }) => {}
                other => {
                    panic!("opening beside a running child must fail with Locked, got {other:?}")
                }
            }
        }
        std::thread::sleep(Duration::from_millis(rng.u64(5..150)));
        child.kill().expect("SIGKILL the child");
        child.wait().expect("reap the child");
        reader.join().expect("reader thread");

        let mut acks = 0usize;
        for line in std::iter::once(first).chain(lines.try_iter()) {
            // A line cut by the kill was never a complete acknowledgement.
            let Some(ack) = parse_ack(&line) else {
                continue;
            };
            acks += 1;
            match ack {
                Ack::Created { id, key } => {
                    expected.insert(
                        id,
                        Expected {
                            first_key: key,
                            version: 1,
                            rotated_to: None,
                        },
                    );
                }
                Ack::Updated { id, version } => {
                    let entry = expected
                        .get_mut(&id)
                        .expect("update of an acknowledged create");
                    entry.version = entry.version.max(version);
                }
                Ack::Rotated { id, key } => {
                    expected
                        .get_mut(&id)
                        .expect("rotate of an acknowledged create")
                        .rotated_to = Some(key);
                }
            }
        }
        total_acks += acks;

        let store = EmbeddedStore::open(dir.path()).unwrap_or_else(|e| {
            panic!("cycle {cycle}: the database must reopen after kill -9: {e}")
        });
        runtime.block_on(verify(&store, &expected, cycle));
        store.close().expect("close");
    }
    assert!(
        total_acks > CYCLES,
        "the children acknowledged only {total_acks} writes in {CYCLES} cycles"
    );
    eprintln!(
        "crash test: {CYCLES} kills, {total_acks} acknowledged writes, {} sessions verified",
        expected.len()
    );
}

async fn verify(store: &EmbeddedStore, expected: &HashMap<SessionId, Expected>, cycle: usize) {
    let now = SystemClock.now();
    for (id, want) in expected {
        let Some((key, session)) = store.load_by_id(id, now).await.expect("load by id") else {
            panic!("cycle {cycle}: acknowledged session {id} is missing");
        };
        assert!(
            session.version >= want.version,
            "cycle {cycle}: session {id} lost an acknowledged update (version {} < {})",
            session.version,
            want.version
        );
        match want.rotated_to {
            Some(rotated) => assert_eq!(
                key, rotated,
                "cycle {cycle}: acknowledged rotation of {id} lost"
            ),
            None if key == want.first_key => {}
            // The rotation was committed but the kill came before its acknowledgement.
            None => match store.load(&want.first_key, now).await.expect("load") {
                Some(StoredEntry::Tombstone(t)) if t.successor == key => {}
                other => panic!("cycle {cycle}: session {id} moved without a tombstone: {other:?}"),
            },
        }
        if want.rotated_to.is_some() {
            assert!(
                matches!(
                    store.load(&want.first_key, now).await.expect("load"),
                    Some(StoredEntry::Tombstone(_))
                ),
                "cycle {cycle}: the tombstone of {id}'s rotation is missing"
            );
        }
    }
}

/// The child: writes until it is killed, printing each acknowledgement.
fn child(dir: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = EmbeddedStore::open(dir).expect("child: open");
        let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
        for writer in 0..WRITERS {
            let (store, out) = (store.clone(), out.clone());
            tokio::spawn(async move {
                loop {
                    write_one(&store, &out, writer).await;
                }
            });
        }
        // The writers run until the parent kills this process.
        std::future::pending::<()>().await;
    });
}

fn say(out: &std::sync::Mutex<std::io::Stdout>, line: String) {
    let mut out = out.lock().expect("stdout");
    writeln!(out, "{line}").expect("print");
    out.flush().expect("flush");
}

async fn write_one(store: &EmbeddedStore, out: &std::sync::Mutex<std::io::Stdout>, writer: usize) {
    let now = SystemClock.now();
    let key = SessionToken::generate().expect("token").hash();
    let mut session = Session {
        id: SessionId::generate().expect("id"),
        subject: Some(format!("writer-{writer}")),
        auth_level: 1,
        authenticated_at: Some(now),
        data: SessionData::empty(),
        created_at: now,
        last_seen_at: now,
        token_issued_at: now,
        idle_timeout_ms: 30 * 60 * 1000,
        absolute_expires_at: now.plus(Duration::from_secs(12 * 3600)),
        version: 1,
        epoch: 0,
        client: None,
        binding: None,
    };
    store.create(&key, &session).await.expect("child: create");
    say(out, format!("C {} {}", session.id, key.to_hex()));

    session.version = 2;
    session.data = SessionData::from_json(r#"{"step":"updated"}"#).expect("data");
    let updated = store
        .update(&key, &session, 1, now)
        .await
        .expect("child: update");
    assert_eq!(updated, WriteOutcome::Written);
    say(out, format!("U {} 2", session.id));

    let new_key = SessionToken::generate().expect("token").hash();
    let tombstone = Tombstone {
        session_id: session.id,
        successor: new_key,
        grace_until: None,
        forget_at: session.absolute_expires_at,
    };
    let rotated = store
        .rotate(&key, &new_key, &session, 2, &tombstone, now)
        .await
        .expect("child: rotate");
    assert_eq!(rotated, WriteOutcome::Written);
    say(out, format!("R {} {}", session.id, new_key.to_hex()));
}
