//! SIGTERM in the middle of a write load loses no acknowledged write: the
//! real binary on the embedded store, many concurrent clients creating and
//! updating sessions, a SIGTERM, a restart on the same database, and every
//! write that was answered 2xx is there.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::{API_KEY, Server, client, temp_dir};
use serde_json::{Value, json};

/// Concurrent clients.
const CLIENTS: usize = 32;
/// Updates each client makes to a session before starting another.
const UPDATES_PER_SESSION: u64 = 4;
/// Acknowledged writes before the SIGTERM.
const ACKS_BEFORE_SIGNAL: usize = 1000;

/// What the server acknowledged for one session: its token and the last
/// value of `n` an update was answered 2xx for (0: created with `n: 0`).
type Acks = Arc<Mutex<HashMap<String, u64>>>;

fn start(store: &str) -> Server {
    Server::start_raw(
        &temp_dir("sigterm-keys"),
        &["--store", store, "--api-key", API_KEY],
        &[],
    )
}

/// One client: creates a session, updates it a few times, repeats, until
/// the server stops answering. Returns the unexpected answers it saw.
async fn load(url: String, worker: usize, acks: Acks, acked: Arc<AtomicUsize>) -> Vec<String> {
    let http = client();
    let mut unexpected = Vec::new();
    for round in 0.. {
        let created = http
            .post(format!("{url}/v1/sessions"))
            .bearer_auth(API_KEY)
            .json(&json!({"subject": format!("load-{worker}-{round}"), "data": {"n": 0}}))
            .send()
            .await;
        let token = match created {
            Ok(response) if response.status().is_success() => {
                let Ok(body) = response.json::<Value>().await else {
                    return unexpected;
                };
                let token = body["token"].as_str().expect("token").to_owned();
                acks.lock().expect("acks").insert(token.clone(), 0);
                acked.fetch_add(1, Ordering::SeqCst);
                token
            }
            Ok(response) => {
                unexpected.push(format!("create answered {}", response.status()));
                return unexpected;
            }
            // Refused or cut off: the server is going away.
            Err(_) => return unexpected,
        };
        for n in 1..=UPDATES_PER_SESSION {
            let updated = http
                .post(format!("{url}/v1/sessions/update"))
                .bearer_auth(API_KEY)
                .json(&json!({"token": token, "patch": {"n": n}}))
                .send()
                .await;
            match updated {
                Ok(response) if response.status().is_success() => {
                    // The answer must arrive whole for the write to count.
                    if response.bytes().await.is_err() {
                        return unexpected;
                    }
                    acks.lock().expect("acks").insert(token.clone(), n);
                    acked.fetch_add(1, Ordering::SeqCst);
                }
                Ok(response) => {
                    unexpected.push(format!("update answered {}", response.status()));
                    return unexpected;
                }
                Err(_) => return unexpected,
            }
        }
    }
    unexpected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_write_load_loses_no_acknowledged_write() {
    let database = temp_dir("sigterm-db");
    let store = format!("embedded:{}", database.join("sessions").display());
    let mut server = start(&store);

    let acks: Acks = Arc::default();
    let acked = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|worker| {
            tokio::spawn(load(
                server.url.clone(),
                worker,
                acks.clone(),
                acked.clone(),
            ))
        })
        .collect();
    while acked.load(Ordering::SeqCst) < ACKS_BEFORE_SIGNAL {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    server.signal("TERM");
    let at_signal = acked.load(Ordering::SeqCst);
    let status = tokio::task::spawn_blocking(move || {
        let status = server.wait();
        (status, server)
    })
    .await
    .expect("wait");
    let (status, server) = status;
    assert!(status.success(), "exit status {status:?}");
    assert!(
        !server.output().contains("did not close cleanly"),
        "{}",
        server.output()
    );
    let mut unexpected = Vec::new();
    for handle in clients {
        unexpected.extend(handle.await.expect("client"));
    }
    assert!(
        unexpected.is_empty(),
        "answers other than 2xx while shutting down: {unexpected:?}"
    );
    drop(server);
    let total = acked.load(Ordering::SeqCst);
    // Writes answered after the signal: the load really was running into the shutdown.
    eprintln!(
        "{total} writes acknowledged, {} of them after SIGTERM",
        total - at_signal
    );

    let acks = std::mem::take(&mut *acks.lock().expect("acks"));
    assert!(acks.len() >= ACKS_BEFORE_SIGNAL / (UPDATES_PER_SESSION as usize + 1));
    let restarted = start(&store);
    let http = client();
    for (token, n) in &acks {
        let response = http
            .post(restarted.at("/v1/sessions/validate"))
            .bearer_auth(API_KEY)
            .json(&json!({"token": token}))
            .send()
            .await
            .expect("validate");
        assert_eq!(
            response.status(),
            200,
            "an acknowledged session is gone after SIGTERM"
        );
        let body: Value = response.json().await.expect("json");
        let stored = body["session"]["data"]["n"].as_u64().expect("n");
        assert!(
            stored >= *n,
            "acknowledged update n={n} lost: the session holds n={stored}"
        );
    }
    drop(restarted);
    let _ = std::fs::remove_dir_all(&database);
}
