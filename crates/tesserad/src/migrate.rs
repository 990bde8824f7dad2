//! `tesserad migrate --from URL --to URL`: copies every live session from
//! one store to another (see [`tessera::store::copy`]) with a progress bar. A copy
//! is safe to run twice, and with `--checkpoint FILE` it resumes where an
//! interrupted run stopped.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use tessera::open::{OpenStoreError, StoreUrl, open_store};
use tessera::store::copy::{CopyError, CopyPage, copy_page};
use tessera::{Clock, SystemClock};

/// The flags of `tesserad migrate`.
#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// The store to copy from (it is only read).
    #[arg(long, env = "TESSERA_MIGRATE_FROM")]
    pub from: StoreUrl,
    /// The store to copy into (sessions it already holds are kept or updated).
    #[arg(long, env = "TESSERA_MIGRATE_TO")]
    pub to: StoreUrl,
    /// Sessions read and written per step.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u16).range(1..))]
    pub page_size: u16,
    /// A file that records how far the copy got, so that a run stopped
    /// midway resumes there; removed when the copy completes.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long)]
    pub quiet: bool,
}

/// Why a migration stopped.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// Source and destination are the same store.
    #[error("--from and --to name the same store ({0}); nothing to copy")]
    SameStore(String),
    /// A store could not be opened.
    #[error("cannot open {side} store: {source}")]
    Open {
        /// `the source` or `the destination`.
        side: &'static str,
        /// Why.
        #[source]
        source: OpenStoreError,
    },
    /// Copying failed; run the command again to resume.
    #[error("{source}; {copied} sessions were copied so far: run the same command again to resume")]
    Copy {
        /// What failed.
        #[source]
        source: CopyError,
        /// Sessions handled before the failure.
        copied: u64,
    },
    /// The checkpoint file could not be read or written.
    #[error("checkpoint file {path}: {problem}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        problem: String,
    },
}

/// What a checkpoint file holds.
#[derive(Debug, Serialize, Deserialize)]
struct Checkpoint {
    from: String,
    to: String,
    cursor: String,
    done: CopyTotals,
}

/// Sessions handled, by outcome.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CopyTotals {
    /// Written to the destination for the first time.
    pub created: u64,
    /// Brought up to date in the destination.
    pub updated: u64,
    /// Already current in the destination.
    pub unchanged: u64,
    /// Ended by a global revocation; not copied.
    pub revoked: u64,
    /// Refused by the destination (another session under the same key, or
    /// changed there meanwhile).
    pub conflicts: u64,
}

impl CopyTotals {
    fn add(&mut self, page: &CopyPage) {
        self.created += page.created;
        self.updated += page.updated;
        self.unchanged += page.unchanged;
        self.revoked += page.revoked;
        self.conflicts += page.conflicts;
    }

    /// Every session handled.
    pub fn total(&self) -> u64 {
        self.created + self.updated + self.unchanged + self.revoked + self.conflicts
    }
}

/// Runs the migration; returns the summary line to print.
pub async fn run(args: &MigrateArgs) -> Result<String, MigrateError> {
    if args.from == args.to {
        return Err(MigrateError::SameStore(args.from.to_string()));
    }
    let (from_text, to_text) = (args.from.to_string(), args.to.to_string());
    let mut totals = CopyTotals::default();
    let mut cursor = None;
    if let Some(path) = &args.checkpoint
        && let Some(saved) = read_checkpoint(path)?
    {
        if saved.from != from_text || saved.to != to_text {
            return Err(MigrateError::Checkpoint {
                path: path.clone(),
                problem: format!(
                    "it belongs to a copy from {} to {}; remove it to start a new copy",
                    saved.from, saved.to
                ),
            });
        }
        cursor = Some(saved.cursor);
        totals = saved.done;
    }

    let from = open_store(&args.from)
        .await
        .map_err(|source| MigrateError::Open {
            side: "the source",
            source,
        })?;
    let to = open_store(&args.to)
        .await
        .map_err(|source| MigrateError::Open {
            side: "the destination",
            source,
        })?;

    let progress = progress_bar(
        args.quiet,
        from.record_counter.as_ref().map(|count| count()),
    );
    progress.set_position(totals.total());
    let started = Instant::now();
    let result = loop {
        let page = match copy_page(
            &*from.store,
            &*to.store,
            cursor.as_deref(),
            usize::from(args.page_size),
            SystemClock.now(),
        )
        .await
        {
            Ok(page) => page,
            Err(source) => {
                break Err(MigrateError::Copy {
                    source,
                    copied: totals.total(),
                });
            }
        };
        totals.add(&page);
        progress.set_position(totals.total());
        cursor = page.next;
        match (&cursor, &args.checkpoint) {
            (Some(next), Some(path)) => {
                let saved = Checkpoint {
                    from: from_text.clone(),
                    to: to_text.clone(),
                    cursor: next.clone(),
                    done: totals.clone(),
                };
                if let Err(error) = write_checkpoint(path, &saved) {
                    break Err(error);
                }
            }
            (None, Some(path)) => {
                if let Err(error) = remove_checkpoint(path) {
                    break Err(error);
                }
                break Ok(());
            }
            (None, None) => break Ok(()),
            (Some(_), None) => {}
        }
    };
    progress.finish_and_clear();
    let elapsed = started.elapsed();
    for (side, opened) in [("source", from), ("destination", to)] {
        if let Err(error) = opened.shutdown() {
            tracing::warn!(%error, side, "a store did not close cleanly");
        }
    }
    result?;
    Ok(summary(&totals, &from_text, &to_text, elapsed))
}

fn summary(totals: &CopyTotals, from: &str, to: &str, elapsed: Duration) -> String {
    format!(
        "migrated {} sessions from {from} to {to} in {:.1} s: {} created, {} updated, {} already current, {} skipped as revoked, {} conflicts",
        totals.total(),
        elapsed.as_secs_f64(),
        totals.created,
        totals.updated,
        totals.unchanged,
        totals.revoked,
        totals.conflicts,
    )
}

fn progress_bar(quiet: bool, expected: Option<u64>) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    match expected {
        Some(total) => {
            let bar = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(
                "{bar:40} {pos}/{len} sessions ({per_sec}, about {eta} left)",
            ) {
                bar.set_style(style);
            }
            bar
        }
        None => {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {pos} sessions ({per_sec})")
            {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        }
    }
}

fn checkpoint_error(path: &Path, problem: impl std::fmt::Display) -> MigrateError {
    MigrateError::Checkpoint {
        path: path.to_owned(),
        problem: problem.to_string(),
    }
}

fn read_checkpoint(path: &Path) -> Result<Option<Checkpoint>, MigrateError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            checkpoint_error(path, format!("unreadable ({e}); remove it to start over"))
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(checkpoint_error(path, error)),
    }
}

/// Writes the checkpoint atomically (a temporary file renamed over it).
fn write_checkpoint(path: &Path, checkpoint: &Checkpoint) -> Result<(), MigrateError> {
    let text = serde_json::to_vec(checkpoint).map_err(|e| checkpoint_error(path, e))?;
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text).map_err(|e| checkpoint_error(&temporary, e))?;
    std::fs::rename(&temporary, path).map_err(|e| checkpoint_error(path, e))
}

fn remove_checkpoint(path: &Path) -> Result<(), MigrateError> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(checkpoint_error(path, error))
        }
        _ => Ok(()),
    }
}
