//! Private Redis servers for the integration tests: a standalone server and
//! a three-primary cluster, each on free loopback ports, in a temporary
//! directory, killed on drop.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tessera_core::{NewSession, SessionManager};
use tessera_redis::{RedisConfig, RedisStore};

fn temp_dir(tag: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "tessera-redis-{tag}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// A free loopback port. Cluster nodes also listen on port + 10000 (the bus),
/// so those stay below 55535.
pub fn free_port(below: u16) -> u16 {
    for _ in 0..200 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        if port < below
            && (below == u16::MAX || TcpListener::bind(("127.0.0.1", port + 10000)).is_ok())
        {
            return port;
        }
    }
    panic!("no free loopback port below {below}")
}

fn redis_server() -> &'static str {
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("redis-server not found; run scripts/setup/redis.sh");
    }
    "redis-server"
}

/// Runs `redis-cli` against a port and returns its output.
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs (scripts/setup/redis.sh installs it)");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn wait_for_ping(port: u16, extra: &[&str]) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        let mut args = extra.to_vec();
        args.push("PING");
        let answer = redis_cli(port, &args);
        // A server with a password answers NOAUTH: it is up all the same.
        if answer == "PONG" || answer.contains("NOAUTH") {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("redis-server on port {port} did not start");
}

fn wait_for_listener(port: u16) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("redis-server did not listen on port {port}");
}

/// Sends `signal` (`-STOP`, `-CONT`, …) to a process.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid} failed");
}

/// One redis-server process.
pub struct TempRedis {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
    extra: Vec<String>,
}

impl TempRedis {
    /// Starts a server with no persistence.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with extra command-line settings.
    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_on(free_port(u16::MAX), extra)
    }

    /// Starts a server on a given port with extra command-line settings.
    pub fn start_on(port: u16, extra: &[&str]) -> Self {
        let mut server = Self {
            dir: temp_dir("server"),
            port,
            child: None,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        };
        server.start_server();
        server
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The store URL of this server.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the process on the same port.
    pub fn start_server(&mut self) {
        let mut command = Command::new(redis_server());
        command
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.child = Some(command.spawn().expect("start redis-server"));
        if self.extra.iter().any(|a| a == "--tls-port") {
            wait_for_listener(self.port);
        } else {
            wait_for_ping(self.port, &[]);
        }
    }

    /// Kills the process (as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the process (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a paused process (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            self::signal(child.id(), signal);
        }
    }

    /// The process id (0 when not running).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// `redis-cli` against this server.
    pub fn cli(&self, args: &[&str]) -> String {
        redis_cli(self.port, args)
    }
}

impl Drop for TempRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of three primaries, each with `replicas` replicas.
pub struct TempCluster {
    nodes: Vec<TempRedis>,
}

impl TempCluster {
    /// Starts three cluster-enabled servers, joins them and waits for
    /// `cluster_state:ok` on every node.
    pub fn start() -> Self {
        Self::start_with_replicas(0, 5000)
    }

    /// Starts `3 × (1 + replicas)` cluster-enabled servers (cluster bus on
    /// port + 10000, so every port is below 55535), joins them with
    /// `redis-cli --cluster create … --cluster-replicas`, and waits for
    /// `cluster_state:ok` on every node and every replica's link to its
    /// primary.
    pub fn start_with_replicas(replicas: usize, node_timeout_ms: u64) -> Self {
        let mut nodes: Vec<TempRedis> = Vec::new();
        for _ in 0..3 * (1 + replicas) {
            let mut port = free_port(55535);
            while nodes.iter().any(|n| n.port == port) {
                port = free_port(55535);
            }
            let dir = temp_dir("cluster");
            let mut node = TempRedis {
                extra: vec![
                    "--cluster-enabled".into(),
                    "yes".into(),
                    "--cluster-config-file".into(),
                    dir.join("nodes.conf").display().to_string(),
                    "--cluster-node-timeout".into(),
                    node_timeout_ms.to_string(),
                ],
                dir,
                port,
                child: None,
            };
            node.start_server();
            nodes.push(node);
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let replicas = replicas.to_string();
        let mut args = vec!["--cluster", "create"];
        args.extend(addresses.iter().map(String::as_str));
        args.extend(["--cluster-replicas", &replicas, "--cluster-yes"]);
        let out = Command::new("redis-cli")
            .args(&args)
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Self { nodes };
        cluster.wait_until_ok();
        let started = Instant::now();
        'linked: while started.elapsed() < Duration::from_secs(60) {
            for node in &cluster.nodes {
                let replication = node.cli(&["INFO", "replication"]);
                if replication.contains("role:slave")
                    && !replication.contains("master_link_status:up")
                {
                    std::thread::sleep(Duration::from_millis(100));
                    continue 'linked;
                }
            }
            return cluster;
        }
        panic!("the replicas did not link to their primaries");
    }

    /// The store URL of the cluster.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// `redis-cli -c` (following redirections) against the first node.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut all = vec!["-c"];
        all.extend_from_slice(args);
        self.nodes[0].cli(&all)
    }

    /// The nodes.
    pub fn nodes(&self) -> &[TempRedis] {
        &self.nodes
    }

    /// The nodes, to kill and restart them.
    pub fn nodes_mut(&mut self) -> &mut [TempRedis] {
        &mut self.nodes
    }

    /// Waits until every running node reports `cluster_state:ok`.
    pub fn wait_until_ok(&self) {
        let started = Instant::now();
        'wait: while started.elapsed() < Duration::from_secs(60) {
            for node in self.nodes.iter().filter(|n| n.child.is_some()) {
                if !node.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok") {
                    std::thread::sleep(Duration::from_millis(100));
                    continue 'wait;
                }
            }
            return;
        }
        panic!("the cluster did not reach cluster_state:ok");
    }
}

impl TempCluster {
    /// The running primary that serves `key`'s slot (by `CLUSTER NODES`).
    pub fn primary_of(&self, key: &str) -> usize {
        let asked = self
            .nodes
            .iter()
            .find(|n| n.child.is_some())
            .expect("a running node");
        let slot: u16 = asked
            .cli(&["CLUSTER", "KEYSLOT", key])
            .parse()
            .expect("a slot");
        let table = asked.cli(&["CLUSTER", "NODES"]);
        for line in table.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| {
                let (low, high) = range.split_once('-').unwrap_or((range, range));
                match (low.parse::<u16>(), high.parse::<u16>()) {
                    (Ok(low), Ok(high)) => (low..=high).contains(&slot),
                    _ => false,
                }
            });
            if !serves {
                continue;
            }
            let port: u16 = fields[1]
                .split(['@', ','])
                .next()
                .and_then(|address| address.rsplit_once(':'))
                .and_then(|(_, port)| port.parse().ok())
                .expect("a node address");
            if let Some(index) = self.nodes.iter().position(|n| n.port == port) {
                return index;
            }
        }
        panic!("no primary serves the slot of {key}: {table}")
    }

    /// The running replica of the node at `primary`.
    pub fn replica_of(&self, primary: usize) -> usize {
        let port = format!("master_port:{}", self.nodes[primary].port);
        self.nodes
            .iter()
            .position(|node| {
                node.child.is_some() && node.cli(&["INFO", "replication"]).contains(&port)
            })
            .unwrap_or_else(|| panic!("node {primary} has no replica"))
    }
}

/// A unique key prefix, so that cases sharing a server do not see each other.
pub fn unique_prefix(tag: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "t{}{tag}{}:",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A store on a URL under a fresh prefix.
pub async fn fresh_store(url: &str, tag: &str) -> RedisStore {
    let config = RedisConfig::from_url(url)
        .expect("test URL")
        .prefix(&unique_prefix(tag));
    RedisStore::connect_with(config)
        .await
        .unwrap_or_else(|e| panic!("cannot open a Redis store on {url}: {e}"))
}

/// A TCP proxy on loopback in front of a server: what the client sends
/// reaches the server a settable delay later (replies pass at once), each
/// chunk on its own schedule, so a delay adds latency without queueing.
pub struct DelayingProxy {
    port: u16,
    delay_ms: std::sync::Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl DelayingProxy {
    /// Starts forwarding to `upstream` (a port on 127.0.0.1) with no delay.
    pub async fn start(upstream: u16) -> Self {
        Self::start_to(format!("127.0.0.1:{upstream}")).await
    }

    /// Starts forwarding to `upstream` (`host:port`) with no delay.
    pub async fn start_to(upstream: String) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let delay_ms = std::sync::Arc::new(AtomicU64::new(0));
        let delay = delay_ms.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let (sender, mut receiver) =
                    tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
                let delay = delay.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match client_read.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        let at = tokio::time::Instant::now()
                            + Duration::from_millis(delay.load(Ordering::SeqCst));
                        if sender.send((at, buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                });
                tokio::spawn(async move {
                    while let Some((at, bytes)) = receiver.recv().await {
                        tokio::time::sleep_until(at).await;
                        if server_write.write_all(&bytes).await.is_err() {
                            return;
                        }
                    }
                });
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                });
            }
        });
        Self {
            port,
            delay_ms,
            task,
        }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Delays what clients send from now on by `delay`.
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms.store(
            u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            Ordering::SeqCst,
        );
    }
}

impl Drop for DelayingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A session made and validated again through a manager over `store`:
/// proof that the store's connection works end to end.
pub async fn round_trip(store: RedisStore, what: &str) {
    let manager = SessionManager::builder(store).build().expect("manager");
    let created = manager.create(NewSession::default()).await.expect("create");
    let token = created.issued().expect("token").expose().to_owned();
    manager.validate(&token, None).await.expect(what);
}

/// A store at `url` with keys under `prefix`, whose operations time out
/// after `operation` and connection attempts after `connect`.
pub async fn store_with_timeouts(
    url: &str,
    prefix: &str,
    operation: Duration,
    connect: Duration,
) -> RedisStore {
    let config = RedisConfig::from_url(url)
        .expect("url")
        .prefix(prefix)
        .operation_timeout(operation)
        .connect_timeout(connect);
    RedisStore::connect_with(config).await.expect("connect")
}
