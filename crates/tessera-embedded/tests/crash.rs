//! Acknowledged writes survive `kill -9`.
//!
//! The test plays two parts. As the parent, it runs its own test binary
//! again, filtered to this test, as a child that writes sessions as fast as
//! it can and prints one line per acknowledged write; it kills the child
//! with SIGKILL at a random moment, reopens the database, and checks that
//! it opens cleanly (which includes decoding every record), that every
//! acknowledged write is there and that its subject lists it. It repeats
//! this for [`CYCLES`] cycles on the same database, so every earlier crash
//! is checked again after each later one.
//!
//! Each child session goes through create → update → rotation (an update
//! that replaces the token), so a crash can land between any two steps,
//! and inside group commits of all three kinds.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use tessera_core::store::{Records, SubjectIndex, WriteOutcome};
use tessera_core::{Clock, SessionData, SessionId, SystemClock, TokenHash, forget_at};
use tessera_embedded::{EmbeddedError, EmbeddedStore};

const CHILD_ENV: &str = "TESSERA_EMBEDDED_CRASH_CHILD_DIR";
const TEST_NAME: &str = "kill_nine_keeps_every_acknowledged_write";
const CYCLES: usize = 20;
const WRITERS: usize = 16;

#[test]
fn kill_nine_keeps_every_acknowledged_write() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(&dir);
        return;
    }
    parent();
}

/// One line of the child: an acknowledged write, or a rotation about to
/// be sent (which may or may not be committed when the kill comes).
enum Line {
    Created { id: SessionId, token: TokenHash },
    Updated { id: SessionId, version: u64 },
    Rotating { id: SessionId, token: TokenHash },
    Rotated { id: SessionId, token: TokenHash },
}

fn parse(line: &str) -> Option<Line> {
    let mut parts = line.split(' ');
    let kind = parts.next()?;
    let id = SessionId::parse(parts.next()?).ok()?;
    let value = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    match kind {
        "C" => Some(Line::Created {
            id,
            token: TokenHash::from_hex(value)?,
        }),
        "U" => Some(Line::Updated {
            id,
            version: value.parse().ok()?,
        }),
        "P" => Some(Line::Rotating {
            id,
            token: TokenHash::from_hex(value)?,
        }),
        "R" => Some(Line::Rotated {
            id,
            token: TokenHash::from_hex(value)?,
        }),
        _ => None,
    }
}

/// What the parent knows must be stored for one session.
struct Expected {
    first_token: TokenHash,
    version: u64,
    /// A rotation sent but not acknowledged: its token may be stored.
    rotating: Option<TokenHash>,
    /// An acknowledged rotation: its token must be stored.
    rotated: Option<TokenHash>,
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
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
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
        let mut seen = Vec::new();
        loop {
            let line = lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| {
                    panic!("cycle {cycle}: the child acknowledged nothing in 30 s")
                });
            let first = parse(&line).is_some();
            seen.push(line);
            if first {
                break;
            }
        }
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
        for line in seen.into_iter().chain(lines.try_iter()) {
            // Anything else (the test runner's own lines, a line cut by the
            // kill) was never a complete acknowledgement.
            let Some(line) = parse(&line) else {
                continue;
            };
            match line {
                Line::Created { id, token } => {
                    acks += 1;
                    expected.insert(
                        id,
                        Expected {
                            first_token: token,
                            version: 1,
                            rotating: None,
                            rotated: None,
                        },
                    );
                }
                Line::Updated { id, version } => {
                    acks += 1;
                    let entry = expected
                        .get_mut(&id)
                        .expect("update of an acknowledged create");
                    entry.version = entry.version.max(version);
                }
                Line::Rotating { id, token } => {
                    expected
                        .get_mut(&id)
                        .expect("rotation of an acknowledged create")
                        .rotating = Some(token);
                }
                Line::Rotated { id, token } => {
                    acks += 1;
                    expected
                        .get_mut(&id)
                        .expect("rotation of an acknowledged create")
                        .rotated = Some(token);
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
    let mut listed: HashMap<String, Vec<SessionId>> = HashMap::new();
    for (id, want) in expected {
        let Some(record) = store.load(id, now).await.expect("load") else {
            panic!("cycle {cycle}: acknowledged session {id} is missing");
        };
        assert!(
            record.version >= want.version,
            "cycle {cycle}: session {id} lost an acknowledged update (version {} < {})",
            record.version,
            want.version
        );
        let token = record.revision().token;
        match want.rotated {
            Some(rotated) => assert_eq!(
                token, rotated,
                "cycle {cycle}: acknowledged rotation of {id} lost"
            ),
            // The rotation may have been committed before the kill came.
            None => assert!(
                token == want.first_token || Some(token) == want.rotating,
                "cycle {cycle}: session {id} holds a token that was never written"
            ),
        }
        let subject = record
            .subject
            .clone()
            .expect("every child session has a subject");
        if !listed.contains_key(&subject) {
            let page = store
                .list_subject(&subject, None, 10_000, now)
                .await
                .expect("list");
            listed.insert(subject.clone(), page.items.iter().map(|r| r.id).collect());
        }
        assert!(
            listed[&subject].contains(id),
            "cycle {cycle}: session {id} is missing from its subject's listing"
        );
    }
}

/// The child: writes until it is killed, printing each acknowledgement.
fn child(dir: &str) {
    let runtime = common::runtime();
    let out = Arc::new(Mutex::new(std::io::stdout()));
    // The test runner has printed `test NAME ... ` without a newline.
    say(&out, String::new());
    runtime.block_on(async {
        let store = EmbeddedStore::open(dir).expect("child: open");
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

fn say(out: &Mutex<std::io::Stdout>, line: String) {
    let mut out = out.lock().expect("stdout");
    writeln!(out, "{line}").expect("print");
    out.flush().expect("flush");
}

async fn write_one(store: &EmbeddedStore, out: &Mutex<std::io::Stdout>, writer: usize) {
    let now = SystemClock.now();
    let subject = format!("writer-{writer}");
    let mut record = common::record(now, Some(&subject), Duration::from_secs(30 * 60));
    let created = store
        .create(&record, forget_at(&record))
        .await
        .expect("child: create");
    assert_eq!(created, tessera_core::store::CreateOutcome::Created);
    say(
        out,
        format!("C {} {}", record.id, record.revision().token.to_hex()),
    );

    let first = record.revision();
    record.version = 2;
    record.data = SessionData::from_json(r#"{"step":"updated"}"#).expect("data");
    let updated = store
        .update(&record, first, forget_at(&record), now)
        .await
        .expect("child: update");
    assert_eq!(updated, WriteOutcome::Written);
    say(out, format!("U {} 2", record.id));

    let next = common::rotated(&record, common::token_hash());
    let token = next.revision().token.to_hex();
    say(out, format!("P {} {token}", record.id));
    let rotated = store
        .update(&next, record.revision(), forget_at(&next), now)
        .await
        .expect("child: rotate");
    assert_eq!(rotated, WriteOutcome::Written);
    say(out, format!("R {} {token}", record.id));
}
