//! Core engine benchmarks: tokens, the stored form of a record, and
//! validate/create/update on a warm memory store at 10 thousand and 1
//! million sessions, and on sealed sessions.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use serde_json::json;
use tessera_core::sealed::{KeyRing, SealingKey};
use tessera_core::{
    ActiveSession, Clock, DataChange, MemoryStore, NewSession, SessionData, SessionManager,
    SessionToken, SystemClock, codec, forget_at,
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

fn credential(session: &ActiveSession) -> String {
    session.issued().expect("a credential").expose().to_owned()
}

/// A signed-in session with 100 bytes of data, from a throwaway manager.
fn sample(rt: &tokio::runtime::Runtime) -> ActiveSession {
    let manager = SessionManager::builder(MemoryStore::new())
        // A load generator: the anonymous creation caps would refuse it.
        .anonymous_creation_caps(None, None)
        .build()
        .expect("config");
    rt.block_on(
        manager.create(
            NewSession::anonymous()
                .subject("alice")
                .data(hundred_bytes()),
        ),
    )
    .expect("create")
}

fn tokens(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("token");
    // Tokens are made only with their session (see memory_store/create).
    let text = credential(&sample(&rt));
    group.bench_function("parse", |b| b.iter(|| SessionToken::parse(&text)));
    group.bench_function("parse_and_hash", |b| {
        b.iter(|| SessionToken::parse(&text).map(|t| t.hash()))
    });
    let legacy = SessionToken::legacy_from_secret([7; 32])
        .expose()
        .to_owned();
    group.bench_function("parse_legacy", |b| b.iter(|| SessionToken::parse(&legacy)));
    group.finish();
}

fn records(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("codec");
    let session = sample(&rt);
    let record = session.record();
    let deadline = forget_at(record);
    group.bench_function("encode", |b| b.iter(|| codec::encode(record, deadline)));
    let bytes = codec::encode(record, deadline);
    group.bench_function("decode", |b| b.iter(|| codec::decode(&bytes, None)));
    group.bench_function("revision_of", |b| b.iter(|| codec::revision_of(&bytes)));
    let mut touched = bytes.clone();
    let now = SystemClock.now();
    group.bench_function("touch_in_place", |b| {
        b.iter(|| codec::touch_in_place(&mut touched, now, deadline))
    });
    group.finish();
}

fn warm_manager(rt: &tokio::runtime::Runtime, sessions: usize) -> (SessionManager, Vec<String>) {
    let manager = SessionManager::builder(MemoryStore::new())
        // A load generator: the anonymous creation caps would refuse it.
        .anonymous_creation_caps(None, None)
        .build()
        .expect("config");
    let data = hundred_bytes();
    let tokens = rt.block_on(async {
        let mut tokens = Vec::with_capacity(sessions);
        for _ in 0..sessions {
            let created = manager
                .create(NewSession::anonymous().data(data.clone()))
                .await
                .expect("create");
            tokens.push(credential(&created));
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
        // What an API call that changes the data does: resolve the
        // presented token, then write.
        let mut j = 0usize;
        group.bench_with_input(BenchmarkId::new("update", sessions), &sessions, |b, _| {
            b.iter(|| {
                j = (j + 7919) % tokens.len();
                rt.block_on(async {
                    let current = manager.resolve(&tokens[j], None).await?;
                    manager
                        .update(
                            &current,
                            DataChange::MergePatch(json!({"counter": j})),
                            None,
                            None,
                        )
                        .await
                })
                .expect("update")
            })
        });
        // A handler's write after the middleware validated: no second read.
        let mut k = 0usize;
        group.bench_with_input(
            BenchmarkId::new("update_validated", sessions),
            &sessions,
            |b, _| {
                b.iter_batched(
                    || {
                        k = (k + 7919) % tokens.len();
                        rt.block_on(manager.validate(&tokens[k], None))
                            .expect("valid")
                    },
                    |current| {
                        rt.block_on(manager.update(
                            &current,
                            DataChange::MergePatch(json!({"counter": 1})),
                            None,
                            None,
                        ))
                        .expect("update")
                    },
                    criterion::BatchSize::SmallInput,
                )
            },
        );
        drop((manager, tokens));
    }
    let (manager, _) = warm_manager(&rt, 10_000);
    let data = hundred_bytes();
    group.bench_function("create", |b| {
        b.iter(|| {
            rt.block_on(manager.create(NewSession::anonymous().data(data.clone())))
                .expect("create")
        })
    });
    group.finish();
}

fn sealed(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("sealed");
    let manager = SessionManager::builder(MemoryStore::new())
        // A load generator: the anonymous creation caps would refuse it.
        .anonymous_creation_caps(None, None)
        .sealed(KeyRing::new(SealingKey::new(1, [9; 32])))
        .allow_volatile_epochs()
        .build()
        .expect("config");
    let data = hundred_bytes();
    let anonymous = credential(
        &rt.block_on(manager.create(NewSession::anonymous().data(data.clone())))
            .expect("create"),
    );
    let signed_in = credential(
        &rt.block_on(manager.create(NewSession::anonymous().subject("alice").data(data.clone())))
            .expect("create"),
    );
    group.bench_function("validate_anonymous", |b| {
        b.iter(|| {
            rt.block_on(manager.validate(&anonymous, None))
                .expect("valid")
        })
    });
    group.bench_function("validate_signed_in", |b| {
        b.iter(|| {
            rt.block_on(manager.validate(&signed_in, None))
                .expect("valid")
        })
    });
    group.bench_function("create", |b| {
        b.iter(|| {
            rt.block_on(manager.create(NewSession::anonymous().data(data.clone())))
                .expect("create")
        })
    });
    group.finish();
}

criterion_group!(benches, tokens, records, lifecycle, sealed);
criterion_main!(benches);
