//! A private PostgreSQL server (initdb + pg_ctl) on a free loopback port, so
//! a test can stop and start it without disturbing any other test.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// A PostgreSQL cluster in a temporary directory; stopped and removed on drop.
pub struct TempPostgres {
    root: PathBuf,
    bin: PathBuf,
    port: u16,
    /// Run the server tools as the `postgres` user (initdb refuses root).
    as_postgres: bool,
}

fn find_bin_dir() -> PathBuf {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| {
            dirs.filter_map(|d| d.ok())
                .map(|d| d.path().join("bin"))
                .filter(|p| p.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    candidates.sort();
    if let Some(newest) = candidates.pop() {
        return newest;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .find(|dir| dir.join("initdb").exists() && dir.join("pg_ctl").exists())
        .unwrap_or_else(|| panic!("initdb and pg_ctl not found; run scripts/setup/postgres.sh"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("run id");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u32>()
            .expect("the postgres user exists (installed with PostgreSQL)")
    };
    (id("-u"), id("-g"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl TempPostgres {
    /// Creates a cluster with trust authentication and starts it.
    pub fn start() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let root = std::env::temp_dir().join(format!("tessera-pg-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&root).expect("create temp dir");
        let as_postgres = is_root();
        if as_postgres {
            let (uid, gid) = postgres_ids();
            std::os::unix::fs::chown(&root, Some(uid), Some(gid)).expect("chown temp dir");
        }
        let server = Self {
            root,
            bin: find_bin_dir(),
            port: free_port(),
            as_postgres,
        };
        let data = server.data_dir();
        server.run(
            "initdb",
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        server.start_server();
        server
    }

    fn data_dir(&self) -> String {
        self.root.join("data").display().to_string()
    }

    /// The URL of the `postgres` database on this server.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the (stopped) server again on the same port.
    pub fn start_server(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50",
            self.port,
            self.root.display()
        );
        let log = self.root.join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data_dir(),
                "-l",
                &log,
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }

    /// Stops the server (fast shutdown: open connections are cut).
    pub fn stop_server(&self) {
        self.run(
            "pg_ctl",
            &["-D", &self.data_dir(), "-m", "fast", "-w", "stop"],
        );
    }

    fn command(&self, tool: &str, args: &[&str]) -> Command {
        let program = self.bin.join(tool);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command
                .args(["-u", "postgres", "--"])
                .arg(&program)
                .args(args);
            command
        } else {
            let mut command = Command::new(program);
            command.args(args);
            command
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self
            .command(tool, args)
            .current_dir(&self.root)
            .output()
            .unwrap_or_else(|e| panic!("run {tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.root.join("server.log")).unwrap_or_default()
        );
    }

    /// Where the cluster lives.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let _ = self
            .command(
                "pg_ctl",
                &["-D", &self.data_dir(), "-m", "immediate", "stop"],
            )
            .output();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
