//! Performs N of one core operation (create, validate, update, rotate) on a
//! memory store already holding the benchmark's sessions, so that
//! `bench/instructions.sh` can count the instructions of exactly that
//! operation under callgrind.
//!
//! ```text
//! tessera-bench-instructions <create|validate|update|rotate> [--ops N] [--sessions M]
//! ```
//!
//! Only the body of the `measure_*` function for the chosen operation runs
//! with callgrind collecting (`--collect-atstart=no --toggle-collect=…`);
//! setting up the warm store is not counted.
#![forbid(unsafe_code)]

use std::error::Error;
use std::hint::black_box;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;
use tessera::{
    ActiveSession, DataChange, MemoryStore, NewSession, SessionData, SessionError, SessionManager,
};
use tokio::runtime::Runtime;

/// The operations that can be measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Create,
    Validate,
    Update,
    ValidateUpdate,
    Rotate,
}

impl Operation {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "create" => Some(Self::Create),
            "validate" => Some(Self::Validate),
            "update" => Some(Self::Update),
            "validate_update" => Some(Self::ValidateUpdate),
            "rotate" => Some(Self::Rotate),
            _ => None,
        }
    }
}

/// What the command line asked for.
struct Args {
    operation: Operation,
    ops: usize,
    sessions: usize,
}

const USAGE: &str =
    "usage: tessera-bench-instructions <create|validate|update|rotate> [--ops N] [--sessions M]";

fn parse_args() -> Result<Args, String> {
    let mut operation = None;
    let mut ops = 10_000;
    let mut sessions = 10_000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--ops" | "--sessions" => {
                let value = args.next().ok_or_else(|| format!("{arg} needs a number"))?;
                let number: usize = value
                    .parse()
                    .map_err(|_| format!("{arg} needs a number, got {value:?}"))?;
                if arg == "--ops" {
                    ops = number;
                } else {
                    sessions = number;
                }
            }
            name => {
                operation = Some(
                    Operation::parse(name).ok_or_else(|| format!("unknown operation {name:?}"))?,
                );
            }
        }
    }
    let operation = operation.ok_or_else(|| "no operation given".to_owned())?;
    Ok(Args {
        operation,
        ops,
        sessions,
    })
}

/// The payload every benchmark session carries.
fn payload(user_id: usize, counter: u64) -> Result<SessionData, SessionError> {
    Ok(SessionData::from_value(
        &json!({"user_id": user_id, "counter": counter}),
    )?)
}

/// A manager over a memory store with `sessions` live sessions, and their tokens.
fn warm_store(
    rt: &Runtime,
    sessions: usize,
) -> Result<(SessionManager, Vec<String>), Box<dyn Error>> {
    let manager = SessionManager::builder(MemoryStore::new())
        // A load generator: the anonymous creation caps would refuse it.
        .anonymous_creation_caps(None, None)
        .idle_timeout(Duration::from_secs(3600))
        .build()?;
    let tokens = rt.block_on(async {
        let mut tokens = Vec::with_capacity(sessions);
        for user_id in 0..sessions {
            let issued = manager
                .create(NewSession::anonymous().data(payload(user_id, 0)?))
                .await?;
            if let Some(token) = issued.issued() {
                tokens.push(token.expose().to_owned());
            }
        }
        Ok::<_, SessionError>(tokens)
    })?;
    Ok((manager, tokens))
}

/// What each measured operation works on: the runtime, the manager over
/// the warm store, and the tokens of the sessions it works on.
struct Bench<'a> {
    rt: &'a Runtime,
    manager: &'a SessionManager,
    tokens: &'a [String],
}

#[inline(never)]
fn measure_create(bench: &Bench, data: &[SessionData]) -> Result<(), SessionError> {
    bench.rt.block_on(async {
        for data in data {
            let issued = bench
                .manager
                .create(NewSession::anonymous().data(data.clone()))
                .await?;
            black_box(issued);
        }
        Ok(())
    })
}

#[inline(never)]
fn measure_validate(bench: &Bench) -> Result<(), SessionError> {
    bench.rt.block_on(async {
        for token in bench.tokens {
            black_box(bench.manager.validate(token, None).await?);
        }
        Ok(())
    })
}

/// Writes `data` into each session as found by `find`: the body of the
/// two measured writes.
fn write_each(
    bench: &Bench,
    data: &[SessionData],
    find: impl AsyncFn(&str) -> Result<ActiveSession, SessionError>,
) -> Result<(), SessionError> {
    bench.rt.block_on(async {
        for (token, data) in bench.tokens.iter().zip(data) {
            let found = find(token).await?;
            let change = DataChange::Replace(data.clone());
            black_box(bench.manager.update(&found, change, None, None).await?);
        }
        Ok(())
    })
}

/// As an API call makes it: the token resolved, then the write.
#[inline(never)]
fn measure_update(bench: &Bench, data: &[SessionData]) -> Result<(), SessionError> {
    write_each(bench, data, async |token| {
        bench.manager.resolve(token, None).await
    })
}

/// What a web request that writes costs: validate, then write the
/// validated session without reading it again.
#[inline(never)]
fn measure_validate_update(bench: &Bench, data: &[SessionData]) -> Result<(), SessionError> {
    write_each(bench, data, async |token| {
        bench.manager.validate(token, None).await
    })
}

#[inline(never)]
fn measure_rotate(bench: &Bench) -> Result<(), SessionError> {
    bench.rt.block_on(async {
        for token in bench.tokens {
            let current = bench.manager.resolve(token, None).await?;
            black_box(bench.manager.rotate(&current).await?);
        }
        Ok(())
    })
}

fn run(args: &Args) -> Result<(), Box<dyn Error>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // The measured operations work on their own sessions, so each one meets a
    // session in the state it would meet in service (rotate: never rotated).
    let (manager, tokens) = warm_store(&rt, args.sessions + args.ops)?;
    let bench = Bench {
        rt: &rt,
        manager: &manager,
        tokens: &tokens[args.sessions..],
    };
    let payloads = |counter| {
        (0..args.ops)
            .map(|user_id| payload(user_id, counter))
            .collect::<Result<Vec<_>, _>>()
    };
    match args.operation {
        Operation::Create => measure_create(&bench, &payloads(0)?)?,
        Operation::Validate => measure_validate(&bench)?,
        Operation::Update => measure_update(&bench, &payloads(1)?)?,
        Operation::ValidateUpdate => measure_validate_update(&bench, &payloads(1)?)?,
        Operation::Rotate => measure_rotate(&bench)?,
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("benchmark operation failed: {error}");
            ExitCode::FAILURE
        }
    }
}
