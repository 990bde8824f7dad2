//! The `tesserad` binary: parses the command line and runs the command.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use tesserad::cli::{Cli, Command};
use tesserad::{admin_client, logging, migrate, serve};

mod output;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tesserad: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result: Result<Option<String>, String> = runtime.block_on(async {
        match cli.command {
            None => run_server(cli.serve).await.map(|()| None),
            Some(Command::Serve(args)) => run_server(*args).await.map(|()| None),
            Some(Command::Keys { location, command }) => admin_client::keys(&location, &command)
                .map(Some)
                .map_err(|e| e.to_string()),
            Some(Command::Sessions { remote, command }) => {
                admin_client::sessions(&remote, &command)
                    .await
                    .map(Some)
                    .map_err(|e| e.to_string())
            }
            Some(Command::Stats { remote }) => admin_client::stats(&remote)
                .await
                .map(Some)
                .map_err(|e| e.to_string()),
            Some(Command::Migrate(args)) => migrate::run(&args)
                .await
                .map(Some)
                .map_err(|e| e.to_string()),
        }
    });
    match result {
        Ok(Some(text)) => match output::print_line(&text) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("tesserad: cannot write the output: {error}");
                ExitCode::FAILURE
            }
        },
        Ok(None) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("tesserad: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run_server(args: tesserad::cli::ServeArgs) -> Result<(), String> {
    logging::init(args.log_format, &args.log_level)?;
    serve::run(args).await.map_err(|error| {
        tracing::error!(%error, "tesserad failed");
        error.to_string()
    })
}
