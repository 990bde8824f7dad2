//! The command line (`docs/cli.md`): `serve` (the default) and the local
//! and remote admin commands. Every flag also reads `TESSERA_<NAME>`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tessera::BindingPolicy;
use tessera::open::StoreUrl;

use crate::keys::Scopes;

/// Tessera's session server.
#[derive(Debug, Parser)]
#[command(
    name = "tesserad",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to do (default: `serve`).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The flags of `serve`, when no subcommand is given.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve(Box<ServeArgs>),
    /// Manage API keys in the data directory (local; no server needed).
    Keys {
        /// Where the keys live.
        #[command(flatten)]
        location: DataDirArgs,
        /// The key operation.
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// List and revoke sessions on a running server.
    Sessions {
        /// Which server, with which key.
        #[command(flatten)]
        remote: RemoteArgs,
        /// The session operation.
        #[command(subcommand)]
        command: SessionsCommand,
    },
    /// Show what a running server has done since it started.
    Stats {
        /// Which server, with which key.
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Copy every live session from one store to another (resumable, safe
    /// to run twice): `tesserad migrate --from embedded:./data --to postgres://…`.
    Migrate(crate::migrate::MigrateArgs),
}

/// `tesserad keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it once (only its hash is kept).
    Create {
        /// What the key is for.
        #[arg(long)]
        label: Option<String>,
        /// What the key may do: `validate`, `sessions`, `admin`,
        /// comma-separated, or `all`.
        #[arg(long, default_value = "all", value_parser = scopes)]
        scopes: Scopes,
    },
    /// List the keys (ids, labels and scopes, never the keys).
    List,
    /// Revoke a key by id (running servers notice within seconds).
    Revoke {
        /// The key's id, as `keys list` shows it (may start with `-`).
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
}

/// `tesserad sessions …`.
#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// List the sessions of a subject, one page at a time.
    List {
        /// The subject (user).
        #[arg(long, allow_hyphen_values = true)]
        subject: String,
        /// Sessions per page (1 to 1000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        /// Continue after this page (the cursor a previous listing printed).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// End one session by its public id.
    Revoke {
        /// The session id (base64url: it may start with `-`).
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
    /// End every session of a subject.
    RevokeSubject {
        /// The subject (user).
        #[arg(allow_hyphen_values = true)]
        subject: String,
        /// Keep this session (its id may start with `-`).
        #[arg(long, allow_hyphen_values = true)]
        except: Option<String>,
    },
}

/// Where the server keeps its own files.
#[derive(Debug, Clone, Args)]
pub struct DataDirArgs {
    /// The store URL: `embedded:PATH`, `memory:`, `postgres://user@host/db`.
    #[arg(long, env = "TESSERA_STORE", default_value = "embedded:./tessera-data")]
    pub store: StoreUrl,
    /// Directory for the server's own files (API key hashes). Default: the
    /// embedded store's directory; `./tessera-data` for PostgreSQL and
    /// Redis; none for `memory:` (which keeps no files).
    #[arg(long, env = "TESSERA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

impl DataDirArgs {
    /// The data directory in force: none for a `memory:` store without
    /// `--data-dir`, whose keys live and die with the process.
    pub fn data_dir(&self) -> Option<PathBuf> {
        self.data_dir
            .clone()
            .or_else(|| self.store.data_dir().map(PathBuf::from))
            .or_else(|| {
                (!matches!(self.store, StoreUrl::Memory)).then(|| PathBuf::from("./tessera-data"))
            })
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{e} (write durations like `30m`, `2s`, `12h`)"))
}

fn bound_cookie_lifetime(text: &str) -> Result<Duration, String> {
    let lifetime = duration(text)?;
    tessera::device::DeviceBindingPolicy::new(lifetime).map_err(|e| e.to_string())?;
    Ok(lifetime)
}

fn scopes(text: &str) -> Result<Scopes, String> {
    Scopes::parse(text).map_err(|e| e.to_string())
}

fn binding(text: &str) -> Result<BindingPolicy, String> {
    text.parse::<BindingPolicy>().map_err(|e| e.to_string())
}

/// `tesserad serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "TESSERA_LISTEN", default_value = "127.0.0.1:7450")]
    pub listen: SocketAddr,
    /// The store and the data directory.
    #[command(flatten)]
    pub location: DataDirArgs,
    /// Keep recently validated sessions in memory, kept coherent with every
    /// other node through Redis pub/sub (Redis stores only).
    #[arg(long, env = "TESSERA_NEAR_CACHE")]
    pub near_cache: bool,
    /// An API key to accept (besides those in the data directory): at
    /// least 32 random printable characters. With none given and none
    /// stored, one is generated and shown once.
    #[arg(long, env = "TESSERA_API_KEY", hide_env_values = true)]
    pub api_key: Option<Secret>,
    /// What `--api-key` may do: `validate`, `sessions`, `admin`,
    /// comma-separated, or `all`.
    #[arg(long, env = "TESSERA_API_KEY_SCOPES", default_value = "all", value_parser = scopes)]
    pub api_key_scopes: Scopes,
    /// Serve the admin console at `/admin` (sign in with an API key that
    /// has the `admin` scope).
    #[arg(long, env = "TESSERA_ADMIN_CONSOLE")]
    pub admin_console: bool,
    /// Failed API key checks one client IP (IPv6: its /64) may make per
    /// minute; beyond it, its keyed requests get `429 rate_limited` until
    /// the minute ends.
    #[arg(long, env = "TESSERA_MAX_AUTH_FAILURES", default_value = "20")]
    pub max_auth_failures: std::num::NonZeroU32,
    /// A session ends this long after its last use [default: 30m].
    #[arg(long, env = "TESSERA_IDLE_TIMEOUT", value_parser = duration)]
    pub idle_timeout: Option<Duration>,
    /// A session nobody has signed in to ends this long after its last
    /// use [default: 10m, at most the idle timeout].
    #[arg(long, env = "TESSERA_ANONYMOUS_IDLE_TIMEOUT", value_parser = duration)]
    pub anonymous_idle_timeout: Option<Duration>,
    /// Anonymous sessions one client address (IPv6: its /64) may create
    /// per minute; 0 lifts the cap.
    #[arg(
        long,
        env = "TESSERA_ANONYMOUS_PER_IP_PER_MINUTE",
        default_value = "60"
    )]
    pub anonymous_per_ip_per_minute: u32,
    /// Anonymous sessions all clients together may create per minute; 0
    /// lifts the cap.
    #[arg(long, env = "TESSERA_ANONYMOUS_PER_MINUTE", default_value = "20000")]
    pub anonymous_per_minute: u32,
    /// A session ends this long after creation, however active [default:
    /// 12h, at least the idle timeout].
    #[arg(long, env = "TESSERA_ABSOLUTE_TIMEOUT", value_parser = duration)]
    pub absolute_timeout: Option<Duration>,
    /// Validation rotates a token older than this [default: 15m, at most
    /// half the idle timeout].
    #[arg(long, env = "TESSERA_RENEW_AFTER", value_parser = duration)]
    pub renew_after: Option<Duration>,
    /// A token replaced by renewal still works this long after its
    /// successor is presented (requests in flight) [default: 10s, at most a
    /// quarter of the renewal interval].
    #[arg(long, env = "TESSERA_ROTATION_GRACE", value_parser = duration)]
    pub rotation_grace: Option<Duration>,
    /// Validation writes the idle deadline only when it is older than this
    /// [default: 60s, at most a quarter of the idle timeout].
    #[arg(long, env = "TESSERA_TOUCH_AFTER", value_parser = duration)]
    pub touch_after: Option<Duration>,
    /// What to do when a client's User-Agent or IP prefix changes: off, log or reject.
    #[arg(long, env = "TESSERA_BINDING", default_value = "log", value_parser = binding)]
    pub binding: BindingPolicy,
    /// Sessions one subject may hold; logging in beyond it ends the oldest.
    #[arg(long, env = "TESSERA_MAX_SESSIONS_PER_SUBJECT")]
    pub max_sessions_per_subject: Option<std::num::NonZeroUsize>,
    /// Proxies whose X-Forwarded-For and X-Real-IP forward-auth believes:
    /// addresses and networks (CIDR), separated by commas.
    #[arg(
        long,
        env = "TESSERA_TRUSTED_PROXIES",
        default_value = "127.0.0.0/8,::1"
    )]
    pub trusted_proxies: tessera_web::TrustedProxies,
    /// Device-bound sessions (DBSC, docs/dbsc.md) for forward-auth:
    /// serve `/v1/dbsc/register` and `/v1/dbsc/refresh`, offer browsers
    /// that support it to bind each sign-in to their device, and refuse a
    /// bound session in `/v1/auth` without its current bound cookie.
    #[arg(long, env = "TESSERA_DBSC")]
    pub dbsc: bool,
    /// With `--dbsc`: how long a bound cookie lives, so how long a stolen
    /// cookie jar works (at least 1s; challenges live 5 minutes longer).
    #[arg(long, env = "TESSERA_DBSC_COOKIE_LIFETIME", default_value = "10m", value_parser = bound_cookie_lifetime)]
    pub dbsc_cookie_lifetime: Duration,
    /// The session cookie forward-auth reads (and renews).
    #[arg(long, env = "TESSERA_COOKIE_NAME", default_value = crate::api::DEFAULT_COOKIE_NAME)]
    pub cookie_name: String,
    /// A request still unanswered after this gets `503 store_unavailable`.
    #[arg(long, env = "TESSERA_REQUEST_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub request_timeout: Duration,
    /// A client must send a request's headers within this, counted from
    /// their first byte (or from connecting, for a connection's first
    /// request); slower connections are closed.
    #[arg(long, env = "TESSERA_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub header_read_timeout: Duration,
    /// A kept-alive connection idle this long after a response is closed
    /// (longer than nginx's default upstream `keepalive_timeout` of 60s).
    #[arg(long, env = "TESSERA_KEEP_ALIVE_TIMEOUT", default_value = "75s", value_parser = duration)]
    pub keep_alive_timeout: Duration,
    /// Connections open at once; more are closed as soon as they are
    /// accepted (lowered to fit the open-files limit, with a warning).
    #[arg(long, env = "TESSERA_MAX_CONNECTIONS", default_value = "10000")]
    pub max_connections: std::num::NonZeroUsize,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish.
    #[arg(long, env = "TESSERA_SHUTDOWN_GRACE", default_value = "30s", value_parser = duration)]
    pub shutdown_grace: Duration,
    /// PEM certificate chain: serve HTTPS (with `--tls-key`).
    #[arg(long, env = "TESSERA_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `--tls-cert`.
    #[arg(long, env = "TESSERA_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "TESSERA_LOG_FORMAT", value_enum, default_value = "human")]
    pub log_format: LogFormat,
    /// Log filter: a level (`info`, `debug`, …) or `tracing` directives.
    #[arg(long, env = "TESSERA_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

/// A secret given on the command line (an API key): its `Debug` shows
/// only that it is there, never its text.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret's text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(text.to_owned()))
    }
}

/// How the admin commands reach a running server.
#[derive(Debug, Clone, Args)]
pub struct RemoteArgs {
    /// The server's base URL.
    #[arg(
        long,
        global = true,
        env = "TESSERA_SERVER",
        default_value = "http://127.0.0.1:7450"
    )]
    pub server: String,
    /// An API key of that server.
    #[arg(long, global = true, env = "TESSERA_API_KEY", hide_env_values = true)]
    pub api_key: Option<Secret>,
    /// A PEM CA certificate to trust for an `https://` server (besides the usual roots).
    #[arg(long, global = true, env = "TESSERA_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn debug_of_the_command_line_redacts_api_keys() {
        for cli in [
            Cli::try_parse_from(["tesserad", "--api-key", "tsk_very_secret"]),
            Cli::try_parse_from(["tesserad", "stats", "--api-key", "tsk_very_secret"]),
        ] {
            let shown = format!("{:?}", cli.expect("parse"));
            assert!(!shown.contains("tsk_very_secret"), "{shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_is_the_default_with_the_design_defaults() {
        let cli = Cli::try_parse_from(["tesserad"]).expect("parse");
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.listen.to_string(), "127.0.0.1:7450");
        assert_eq!(
            cli.serve.location.store.to_string(),
            "embedded:./tessera-data"
        );
        assert_eq!(
            cli.serve.location.data_dir(),
            Some(PathBuf::from("./tessera-data"))
        );
        assert_eq!(cli.serve.api_key_scopes, Scopes::ALL);
        let memory = Cli::try_parse_from(["tesserad", "--store", "memory:"]).expect("parse");
        assert_eq!(
            memory.serve.location.data_dir(),
            None,
            "memory: keeps no files"
        );
        let redis =
            Cli::try_parse_from(["tesserad", "--store", "redis://127.0.0.1:6379"]).expect("parse");
        assert_eq!(
            redis.serve.location.data_dir(),
            Some(PathBuf::from("./tessera-data"))
        );
        assert_eq!(cli.serve.idle_timeout, None, "derived by the manager");
        assert_eq!(cli.serve.absolute_timeout, None);
        assert_eq!(cli.serve.renew_after, None);
        assert_eq!(cli.serve.rotation_grace, None);
        assert_eq!(cli.serve.touch_after, None);
        assert_eq!(cli.serve.binding, BindingPolicy::Log);
        assert_eq!(cli.serve.cookie_name, "__Host-tessera");
    }

    #[test]
    fn durations_and_subcommands_parse() {
        let cli = Cli::try_parse_from([
            "tesserad",
            "serve",
            "--store",
            "memory:",
            "--idle-timeout",
            "2s",
            "--binding",
            "reject",
        ])
        .expect("parse");
        let Some(Command::Serve(serve)) = cli.command else {
            panic!("serve expected");
        };
        assert_eq!(serve.idle_timeout, Some(Duration::from_secs(2)));
        assert_eq!(serve.binding, BindingPolicy::Reject);
        assert!(Cli::try_parse_from(["tesserad", "--idle-timeout", "soon"]).is_err());
        assert!(Cli::try_parse_from(["tesserad", "--store", "mongodb://x"]).is_err());
        assert!(Cli::try_parse_from(["tesserad", "--binding", "maybe"]).is_err());
        let cli = Cli::try_parse_from([
            "tesserad",
            "sessions",
            "--api-key",
            "k",
            "list",
            "--subject",
            "alice",
        ])
        .expect("parse");
        assert!(matches!(
            cli.command,
            Some(Command::Sessions {
                command: SessionsCommand::List { .. },
                ..
            })
        ));
    }

    #[test]
    fn session_ids_starting_with_a_hyphen_are_values_not_flags() {
        // Session ids are base64url and start with `-` one time in 64.
        let cli = Cli::try_parse_from([
            "tesserad",
            "sessions",
            "revoke-subject",
            "dora",
            "--except",
            "-YbTqbhcsDqUsCgWkJ7Ppw",
        ])
        .expect("parse");
        assert!(matches!(
            cli.command,
            Some(Command::Sessions {
                command: SessionsCommand::RevokeSubject { except: Some(ref id), .. },
                ..
            }) if id == "-YbTqbhcsDqUsCgWkJ7Ppw"
        ));
        let cli = Cli::try_parse_from(["tesserad", "sessions", "revoke", "-abcdefghijklmnopqrstu"])
            .expect("parse");
        assert!(matches!(
            cli.command,
            Some(Command::Sessions {
                command: SessionsCommand::Revoke { ref id },
                ..
            }) if id == "-abcdefghijklmnopqrstu"
        ));
    }
}
