//! The embedded store with its disk full: clean errors, and nothing lost or
//! damaged once space returns.
//!
//! Each test runs itself again as a child process that writes sessions
//! until the database cannot grow, reporting every acknowledged write and
//! every error. Its disk fills in one of two ways: a file-size limit
//! (`ulimit -f`, with `SIGXFSZ` ignored so that a write past it fails with
//! `EFBIG`; works anywhere), or a small tmpfs (a real `ENOSPC`; needs root
//! to mount). The parent then gives space back to the running child (lifts
//! the limit with `prlimit`, or remounts the tmpfs larger), and the child's
//! writes must resume without reopening the store by hand. Finally the
//! parent reopens the database and checks that it opens cleanly (every
//! record decodes), that every acknowledged write is there, and that new
//! writes succeed and survive another reopen.
//!
//! The tmpfs test needs root; it is ignored otherwise, and run explicitly
//! where the tests run as root:
//! `cargo test -p tessera-embedded --test disk_full -- --ignored`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tessera_core::store::{CreateOutcome, Records, StoreError, WriteOutcome};
use tessera_core::{Clock, SessionData, SessionId, SessionRecord, SystemClock, forget_at};
use tessera_embedded::{DATABASE_FILE, EmbeddedStore};

const CHILD_ENV: &str = "TESSERA_EMBEDDED_DISK_FULL_CHILD_DIR";
const TEST_NAME: &str = "disk_full_gives_clean_errors_and_recovers_without_loss";
const TMPFS_TEST_NAME: &str = "a_full_filesystem_gives_clean_errors_and_recovers_without_loss";
/// Concurrent writers in the child.
const WRITERS: usize = 8;
/// Errors each writer sees before it stops.
const ERRORS_PER_WRITER: usize = 5;
/// Writes the child makes (each must succeed) once space has returned.
const RECOVERY_WRITES: usize = 50;
/// Attempts at the first write after space returned (the store retries
/// reopening its database once a second).
const RECOVERY_ATTEMPTS: usize = 100;
/// Room the database may grow by in the child, in KiB.
const ROOM_KIB: u64 = 1024;

/// About 1 KiB of session data, so the file fills quickly.
fn payload(step: &str) -> SessionData {
    let filler = "x".repeat(1000);
    SessionData::from_value(&serde_json::json!({"step": step, "filler": filler})).expect("data")
}

fn new_record(subject: String) -> SessionRecord {
    let mut record = common::record(
        SystemClock.now(),
        Some(&subject),
        Duration::from_secs(30 * 60),
    );
    record.data = payload("created");
    record
}

/// How the child's disk fills, and how space comes back.
#[derive(Clone, Copy)]
enum Fault {
    /// `ulimit -f`: writes past the limit fail with `EFBIG`; `prlimit` lifts it.
    FileSizeLimit,
    /// A small tmpfs: writes fail with `ENOSPC`; remounting it larger frees space.
    FullTmpfs,
}

#[test]
fn disk_full_gives_clean_errors_and_recovers_without_loss() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(&dir);
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    run(dir.path(), Fault::FileSizeLimit, TEST_NAME);
}

/// The same on a real full filesystem: a tmpfs, which only root may mount
/// (run it with `--ignored` as root; it fails if it cannot mount one).
#[test]
#[ignore = "needs root"]
fn a_full_filesystem_gives_clean_errors_and_recovers_without_loss() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(&dir);
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let Some(_mount) = Tmpfs::mount(dir.path()) else {
        panic!(
            "cannot mount a tmpfs on {} (needs root)",
            dir.path().display()
        );
    };
    run(dir.path(), Fault::FullTmpfs, TMPFS_TEST_NAME);
}

/// A tmpfs mounted over a directory, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path) -> Option<Tmpfs> {
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=16m", "tessera-disk-full"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .ok()?;
        mounted.success().then(|| Tmpfs(dir.to_owned()))
    }
}

/// Changes the size of the tmpfs mounted on `dir` (never below what is in use).
fn resize_tmpfs(dir: &std::path::Path, kib: u64) {
    let status = Command::new("mount")
        .args(["-o", &format!("remount,size={kib}k"), "tessera-disk-full"])
        .arg(dir)
        .status()
        .expect("mount");
    assert!(status.success(), "cannot resize the tmpfs");
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn run(dir: &std::path::Path, fault: Fault, test_name: &str) {
    // Create the empty database first, to know how large it starts.
    EmbeddedStore::open(dir)
        .expect("open")
        .close()
        .expect("close");
    let start_kib = std::fs::metadata(dir.join(DATABASE_FILE))
        .expect("database file")
        .len()
        / 1024;
    let limit_kib = start_kib + ROOM_KIB;

    let exe = std::env::current_exe().expect("own path");
    let mut command = match fault {
        Fault::FileSizeLimit => {
            // A soft limit only, so that it can be lifted again while the child runs.
            let mut command = Command::new("bash");
            command
                .arg("-c")
                .arg(format!(
                    r#"trap "" XFSZ; ulimit -S -f {limit_kib}; exec "$0" --exact {test_name} --include-ignored --nocapture --test-threads=1"#
                ))
                .arg(&exe);
            command
        }
        Fault::FullTmpfs => {
            resize_tmpfs(dir, limit_kib);
            let mut command = Command::new(&exe);
            command.args([
                "--exact",
                test_name,
                "--include-ignored",
                "--nocapture",
                "--test-threads=1",
            ]);
            command
        }
    };
    let mut child = command
        .env(CHILD_ENV, dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run the child");
    let mut stdout = String::new();
    let mut lines = BufReader::new(child.stdout.take().expect("stdout"));
    loop {
        let mut line = String::new();
        if lines.read_line(&mut line).expect("child output") == 0 {
            panic!("the child stopped before the disk filled:\n{stdout}");
        }
        stdout.push_str(&line);
        if line.trim_end() == "FULL" {
            break;
        }
    }
    // Space returns: lift the limit of the running child and let it go on.
    match fault {
        Fault::FileSizeLimit => {
            let lifted = Command::new("prlimit")
                .arg("--pid")
                .arg(child.id().to_string())
                .arg("--fsize=unlimited:unlimited")
                .status()
                .expect("prlimit (util-linux)");
            assert!(lifted.success(), "prlimit failed");
        }
        Fault::FullTmpfs => resize_tmpfs(dir, 64 * 1024),
    }
    writeln!(child.stdin.as_mut().expect("stdin"), "GO").expect("tell the child");
    lines.read_to_string(&mut stdout).expect("child output");
    let status = child.wait().expect("wait for the child");
    assert!(
        status.success(),
        "the child failed (a panic is not a clean error): {status:?}\n{stdout}"
    );

    // What the child saw.
    let mut created: Vec<SessionId> = Vec::new();
    let mut updated: Vec<SessionId> = Vec::new();
    let mut errors = Vec::new();
    let mut close_line = None;
    let mut recovered = None;
    for line in stdout.lines() {
        let mut words = line.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("C"), Some(id), _) => created.push(SessionId::parse(id).expect("id")),
            (Some("U"), Some(id), _) => updated.push(SessionId::parse(id).expect("id")),
            (Some("E"), Some(kind), message) => {
                errors.push((kind.to_owned(), message.unwrap_or("").to_owned()));
            }
            (Some("CLOSE"), _, _) => close_line = Some(line.to_owned()),
            (Some("RECOVERED"), Some(n), _) => recovered = n.parse::<usize>().ok(),
            _ => {}
        }
    }
    assert!(
        !created.is_empty(),
        "nothing was written before the disk filled:\n{stdout}"
    );
    assert!(
        !errors.is_empty(),
        "the child never ran out of room ({limit_kib} KiB):\n{stdout}"
    );
    for (kind, message) in &errors {
        assert_eq!(
            kind, "unavailable",
            "a full disk must be reported as the store being unavailable, got {kind}: {message}"
        );
    }
    assert_eq!(
        recovered,
        Some(RECOVERY_WRITES),
        "writes did not resume in the running process once space returned:\n{stdout}"
    );
    assert!(close_line.is_some(), "the child did not finish:\n{stdout}");
    let distinct: std::collections::BTreeSet<&str> =
        errors.iter().map(|(_, message)| message.as_str()).collect();
    eprintln!(
        "disk full: {} creates and {} updates acknowledged, {} clean errors:\n  {}",
        created.len(),
        updated.len(),
        errors.len(),
        distinct.into_iter().collect::<Vec<_>>().join("\n  ")
    );

    // Space is back: the database opens cleanly and holds every acknowledged write.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = EmbeddedStore::open(dir).expect("reopen after the disk filled");
        verify(&store, &created, &updated).await;

        // New writes succeed, including updates of the old sessions.
        let mut more = Vec::new();
        for n in 0..200 {
            let record = new_record(format!("after-{n}"));
            let created = store
                .create(&record, forget_at(&record))
                .await
                .expect("create after recovery");
            assert_eq!(created, CreateOutcome::Created);
            more.push(record.id);
        }
        for id in created.iter().take(20) {
            let now = SystemClock.now();
            let stored = store.load(id, now).await.expect("load").expect("present");
            let mut next = stored.clone();
            next.version += 1;
            assert_eq!(
                store
                    .update(&next, stored.revision(), forget_at(&next), now)
                    .await
                    .expect("update after recovery"),
                WriteOutcome::Written
            );
        }
        store.close().expect("close");

        let store = EmbeddedStore::open(dir).expect("reopen");
        verify(&store, &created, &updated).await;
        verify(&store, &more, &[]).await;
        store.close().expect("close");
    });
}

async fn verify(store: &EmbeddedStore, created: &[SessionId], updated: &[SessionId]) {
    let now = SystemClock.now();
    for id in created {
        let Some(session) = store.load(id, now).await.expect("load") else {
            panic!("acknowledged session {id} is missing");
        };
        assert!(
            session.data == payload("created") || session.data == payload("updated"),
            "session {id} holds data that was never written: {:?}",
            session.data
        );
    }
    for id in updated {
        let session = store.load(id, now).await.expect("load").expect("present");
        assert!(session.version >= 2, "acknowledged update of {id} lost");
        assert_eq!(session.data, payload("updated"));
    }
}

/// The child: writes until the file cannot grow, reporting as it goes;
/// then, once the parent has lifted the limit, writes again.
fn child(dir: &str) {
    let runtime = common::runtime();
    let out = Arc::new(Mutex::new(()));
    let say = move |line: String| {
        let _guard = out.lock().expect("stdout");
        println!("{line}");
    };
    // libtest has printed `test NAME ... ` without a newline.
    say(String::new());
    runtime.block_on(async {
        let store = EmbeddedStore::open(dir).expect("child: open");
        let acked = Arc::new(Mutex::new(Vec::new()));
        let mut writers = Vec::new();
        for writer in 0..WRITERS {
            let (store, say, acked) = (store.clone(), say.clone(), acked.clone());
            writers.push(tokio::spawn(async move {
                let mut errors = 0;
                let mut n = 0;
                while errors < ERRORS_PER_WRITER {
                    n += 1;
                    match write_one(&store, &say, format!("writer-{writer}-{n}")).await {
                        Ok(id) => acked.lock().expect("acked").push(id),
                        Err(error) => {
                            say(report(&error));
                            errors += 1;
                        }
                    }
                }
            }));
        }
        for writer in writers {
            writer.await.expect("child: writer");
        }

        // Reads are served while the disk is full.
        let now = SystemClock.now();
        let acked = acked.lock().expect("acked").clone();
        for id in &acked {
            assert!(
                matches!(store.load(id, now).await, Ok(Some(_))),
                "child: an acknowledged session cannot be read while the disk is full"
            );
        }
        say("FULL".into());
        let mut go = String::new();
        std::io::stdin().read_line(&mut go).expect("child: stdin");

        // Space is back: writes resume without reopening the store by hand.
        let mut first = None;
        for attempt in 0..RECOVERY_ATTEMPTS {
            match write_one(&store, &say, format!("recovery-{attempt}")).await {
                Ok(_) => {
                    first = Some(attempt);
                    break;
                }
                Err(error) => {
                    say(report(&error));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        assert!(first.is_some(), "child: writes never resumed");
        for n in 1..RECOVERY_WRITES {
            write_one(&store, &say, format!("after-{n}"))
                .await
                .expect("child: a write after space returned");
        }
        say(format!("RECOVERED {RECOVERY_WRITES}"));
        match store.close() {
            Ok(()) => say("CLOSE ok".into()),
            Err(error) => say(format!("CLOSE error {error}")),
        }
    });
}

/// Creates a session and updates it, reporting each acknowledged step.
async fn write_one(
    store: &EmbeddedStore,
    say: &impl Fn(String),
    subject: String,
) -> Result<SessionId, StoreError> {
    let mut record = new_record(subject);
    match store.create(&record, forget_at(&record)).await? {
        CreateOutcome::Created => say(format!("C {}", record.id)),
        other => panic!("child: create of a fresh session: {other:?}"),
    }
    let first = record.revision();
    record.version = 2;
    record.data = payload("updated");
    match store
        .update(&record, first, forget_at(&record), SystemClock.now())
        .await?
    {
        WriteOutcome::Written => say(format!("U {}", record.id)),
        other => panic!("child: update of a fresh session: {other:?}"),
    }
    Ok(record.id)
}

/// An error line: its kind and the whole chain (message and the operating
/// system's error).
fn report(error: &StoreError) -> String {
    let kind = match error {
        StoreError::Unavailable { .. } => "unavailable",
        StoreError::Corrupt { .. } => "corrupt",
        StoreError::Invalid { .. } => "invalid",
        _ => "other",
    };
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    format!("E {kind} {text}")
}
