//! Core engine benchmarks: tokens, and validate/create/update on a warm
//! memory store at 10 thousand and 1 million sessions.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use serde_json::json;
use tessera_core::{
    DataChange, MemoryStore, NewSession, SessionData, SessionManager, SessionToken,
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn hundred_bytes() -> SessionData {
    // {"user_id":…,"payload":"…"} padded to 100 bytes of JSON.
    let pad = 100 - r#"{"payload":"","user_id":1}"#.len();
    SessionData::from_value(&json!({"user_id": 1, "payload": "x".repeat(pad)})).expect("data")
}

fn tokens(c: &mut Criterion) {
    let mut group = c.benchmark_group("token");
    group.bench_function("generate", |b| {
        b.iter(|| SessionToken::generate().expect("entropy"))
    });
    let token = SessionToken::generate().expect("entropy");
    let text = token.expose().to_owned();
    group.bench_function("parse", |b| b.iter(|| SessionToken::parse(&text)));
    group.bench_function("parse_and_hash", |b| {
        b.iter(|| SessionToken::parse(&text).map(|t| t.hash()))
    });
    group.finish();
}

fn warm_manager(rt: &tokio::runtime::Runtime, sessions: usize) -> (SessionManager, Vec<String>) {
    let manager = SessionManager::builder(MemoryStore::new())
        .build()
        .expect("config");
    let data = hundred_bytes();
    let tokens = rt.block_on(async {
        let mut tokens = Vec::with_capacity(sessions);
        for _ in 0..sessions {
            let issued = manager
                .create(NewSession {
                    data: Some(data.clone()),
                    ..NewSession::default()
                })
                .await
                .expect("create");
            tokens.push(issued.token.expose().to_owned());
        }
        tokens
    });
    (manager, tokens)
}

fn lifecycle(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("memory_store");
    group.measurement_time(Duration::from_secs(5));
    for sessions in [10_000usize, 1_000_000] {
        let (manager, tokens) = warm_manager(&rt, sessions);
        let mut i = 0usize;
        group.bench_with_input(BenchmarkId::new("validate", sessions), &sessions, |b, _| {
            b.iter(|| {
                i = (i + 7919) % tokens.len();
                rt.block_on(manager.validate(&tokens[i], None))
                    .expect("valid")
            })
        });
        let mut j = 0usize;
        group.bench_with_input(BenchmarkId::new("update", sessions), &sessions, |b, _| {
            b.iter(|| {
                j = (j + 7919) % tokens.len();
                rt.block_on(manager.update(
                    &tokens[j],
                    DataChange::MergePatch(json!({"counter": j})),
                    None,
                    None,
                ))
                .expect("update")
            })
        });
        drop((manager, tokens));
    }
    let (manager, _) = warm_manager(&rt, 10_000);
    let data = hundred_bytes();
    group.bench_function("create", |b| {
        b.iter(|| {
            rt.block_on(manager.create(NewSession {
                data: Some(data.clone()),
                ..NewSession::default()
            }))
            .expect("create")
        })
    });
    group.finish();
}

criterion_group!(benches, tokens, lifecycle);
criterion_main!(benches);
