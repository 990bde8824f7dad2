//! API keys: generated, kept only as SHA-256 hashes in the data directory
//! (`api-keys.json`), each with the scopes it grants, checked in constant
//! time; keys given on the command line must be strong.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The file in the data directory that holds the key hashes.
pub const KEYS_FILE: &str = "api-keys.json";

/// The prefix of generated keys (lets secret scanners spot leaked ones).
pub const KEY_PREFIX: &str = "tsk_";

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The data directory or the keys file could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The keys file is not what this version writes.
    #[error("{path} is not a valid API keys file: {message}")]
    Corrupt {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// No key has this id.
    #[error("no API key with id `{id}` (see `tesserad keys list`)")]
    NotFound {
        /// The id asked for.
        id: String,
    },
    /// The OS gave no randomness.
    #[error("cannot generate a key: {0}")]
    Entropy(String),
    /// A key given on the command line is too easy to guess.
    #[error(
        "the API key given with --api-key is too weak: {problem}; give at least {MIN_KEY_LENGTH} random printable characters, e.g. from `tesserad keys create` or `openssl rand -base64 32`"
    )]
    WeakKey {
        /// What is wrong with it (never the key itself).
        problem: String,
    },
    /// A scope name is not one of `validate`, `sessions`, `admin`.
    #[error("unknown API key scope `{name}`: the scopes are validate, sessions and admin")]
    UnknownScope {
        /// The name given.
        name: String,
    },
    /// No data directory to keep keys in (a `memory:` store without `--data-dir`).
    #[error(
        "the {store} store keeps no files, so there is no keys file; give --data-dir PATH to keep API keys"
    )]
    NoDataDir {
        /// The store URL.
        store: String,
    },
}

/// The shortest key accepted from the command line.
pub const MIN_KEY_LENGTH: usize = 32;

/// The fewest distinct characters a key from the command line must have.
pub const MIN_DISTINCT_CHARACTERS: usize = 8;

/// Refuses a key that is easy to guess: shorter than [`MIN_KEY_LENGTH`],
/// with characters outside printable ASCII, or with fewer than
/// [`MIN_DISTINCT_CHARACTERS`] distinct characters. The error never contains
/// the key.
pub fn check_key_strength(key: &str) -> Result<(), KeyError> {
    let weak = |problem: String| Err(KeyError::WeakKey { problem });
    if key.chars().any(|c| !c.is_ascii_graphic()) {
        return weak("it has characters outside printable ASCII (or spaces)".to_owned());
    }
    if key.len() < MIN_KEY_LENGTH {
        return weak(format!("it has {} characters", key.len()));
    }
    let distinct = key.bytes().collect::<std::collections::BTreeSet<_>>().len();
    if distinct < MIN_DISTINCT_CHARACTERS {
        return weak(format!("it has only {distinct} distinct characters"));
    }
    Ok(())
}

/// What a key may do. A key holds any set of scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Validate tokens (`POST /v1/sessions/validate`).
    Validate,
    /// Create, log in, update, rotate and log out sessions, and end a
    /// session or a subject's sessions.
    Sessions,
    /// Read any session or subject, revoke everything, stats, the console.
    Admin,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 3] = [Scope::Validate, Scope::Sessions, Scope::Admin];

    /// The scope's name in files, flags and errors.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Validate => "validate",
            Scope::Sessions => "sessions",
            Scope::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Scope {
    type Err = KeyError;
    fn from_str(name: &str) -> Result<Self, KeyError> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == name.trim())
            .ok_or_else(|| KeyError::UnknownScope {
                name: name.to_owned(),
            })
    }
}

/// A set of scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(u8);

impl Scopes {
    /// Every scope (keys from before scopes existed, and the default).
    pub const ALL: Scopes = Scopes(0b111);

    fn bit(scope: Scope) -> u8 {
        match scope {
            Scope::Validate => 1,
            Scope::Sessions => 2,
            Scope::Admin => 4,
        }
    }

    /// Whether `scope` is in the set.
    pub fn contains(self, scope: Scope) -> bool {
        self.0 & Self::bit(scope) != 0
    }

    /// The scopes in the set, in their fixed order.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// Parses `validate,sessions` (comma-separated; `all` for every scope).
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        if text.trim() == "all" {
            return Ok(Scopes::ALL);
        }
        let mut set = Scopes(0);
        for name in text.split(',').filter(|name| !name.trim().is_empty()) {
            set = set.with(name.parse()?);
        }
        if set.0 == 0 {
            return Err(KeyError::UnknownScope {
                name: text.to_owned(),
            });
        }
        Ok(set)
    }

    /// The set with `scope` added.
    pub fn with(self, scope: Scope) -> Self {
        Scopes(self.0 | Self::bit(scope))
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        iter.into_iter().fold(Scopes(0), Scopes::with)
    }
}

impl std::fmt::Display for Scopes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.iter().map(Scope::as_str).collect();
        f.write_str(&names.join(","))
    }
}

impl std::str::FromStr for Scopes {
    type Err = KeyError;
    fn from_str(text: &str) -> Result<Self, KeyError> {
        Scopes::parse(text)
    }
}

/// One key, as kept on disk: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// A short public id (the first 12 hex digits of the hash), for listing and revoking.
    pub id: String,
    /// SHA-256 of the key, hex.
    pub sha256: String,
    /// What the key is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// When the key was created (RFC 3339).
    pub created_at: String,
    /// What the key may do; absent in files written before scopes existed,
    /// which read as every scope.
    #[serde(default = "all_scopes")]
    pub scopes: Vec<Scope>,
}

fn all_scopes() -> Vec<Scope> {
    Scope::ALL.to_vec()
}

/// The keys file's format version: 2 added `scopes` (a server that knows
/// only version 1 refuses the file rather than grant every scope).
const KEYS_FILE_VERSION: u32 = 2;

#[derive(Debug, Default, Serialize, Deserialize)]
struct KeysDocument {
    v: u32,
    keys: Vec<KeyRecord>,
}

/// A newly created key: show [`key`](Self::key) once, then forget it.
#[derive(Clone)]
pub struct NewKey {
    /// The secret key.
    pub key: String,
    /// What is kept of it.
    pub record: KeyRecord,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("key", &"<redacted>")
            .field("record", &self.record)
            .finish()
    }
}

/// SHA-256 of a key.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// A fresh random key: `tsk_` + 256 bits in base64url.
pub fn generate_key() -> Result<String, KeyError> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| KeyError::Entropy(e.to_string()))?;
    Ok(format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(secret)))
}

/// The key hashes in a data directory.
#[derive(Debug, Clone)]
pub struct KeyStore {
    path: PathBuf,
}

impl KeyStore {
    /// The key store of a data directory. Nothing is created until a key
    /// is written (then the directory, mode 0700, and the file, 0600).
    pub fn open(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join(KEYS_FILE),
        }
    }

    /// The keys file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<KeysDocument, KeyError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(KeysDocument {
                    v: KEYS_FILE_VERSION,
                    keys: Vec::new(),
                });
            }
            Err(source) => {
                return Err(KeyError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let document: KeysDocument =
            serde_json::from_str(&text).map_err(|e| KeyError::Corrupt {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
        if !(1..=KEYS_FILE_VERSION).contains(&document.v) {
            return Err(KeyError::Corrupt {
                path: self.path.clone(),
                message: format!("format version {} is not supported", document.v),
            });
        }
        Ok(document)
    }

    /// Writes the document through a temporary file and a rename, so a
    /// crash leaves the old or the new file, never half of one.
    fn write(&self, document: &KeysDocument) -> Result<(), KeyError> {
        let io = |source| KeyError::Io {
            path: self.path.clone(),
            source,
        };
        let text = serde_json::to_string_pretty(document).map_err(|e| KeyError::Corrupt {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        if let Some(dir) = self.path.parent() {
            create_private_dir(dir).map_err(|source| KeyError::Io {
                path: dir.to_owned(),
                source,
            })?;
        }
        let temporary = self.path.with_extension("json.tmp");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&temporary).map_err(io)?;
        // A temporary file left behind by a crash keeps its mode when it is
        // opened again: narrow it before anything is written into it.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(io)?;
        }
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&temporary, &self.path).map_err(io)
    }

    /// Every key, oldest first.
    pub fn list(&self) -> Result<Vec<KeyRecord>, KeyError> {
        Ok(self.read()?.keys)
    }

    /// Creates a key with these scopes and keeps its hash.
    pub fn create(&self, label: Option<&str>, scopes: Scopes) -> Result<NewKey, KeyError> {
        let key = generate_key()?;
        let record = self.add(&key, label, scopes)?;
        Ok(NewKey { key, record })
    }

    fn add(&self, key: &str, label: Option<&str>, scopes: Scopes) -> Result<KeyRecord, KeyError> {
        let mut document = self.read()?;
        let sha256 = hex::encode(hash_key(key));
        let record = KeyRecord {
            id: key_id(&hash_key(key)),
            sha256,
            scopes: scopes.iter().collect(),
            label: label.map(str::to_owned),
            created_at: tessera::Timestamp(
                i64::try_from(
                    SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_millis(),
                )
                .unwrap_or(i64::MAX),
            )
            .to_rfc3339(),
        };
        document.v = KEYS_FILE_VERSION;
        document.keys.push(record.clone());
        self.write(&document)?;
        Ok(record)
    }

    /// Removes the key with this id.
    pub fn revoke(&self, id: &str) -> Result<KeyRecord, KeyError> {
        let mut document = self.read()?;
        let Some(position) = document.keys.iter().position(|k| k.id == id) else {
            return Err(KeyError::NotFound { id: id.to_owned() });
        };
        let removed = document.keys.remove(position);
        document.v = KEYS_FILE_VERSION;
        self.write(&document)?;
        Ok(removed)
    }

    /// The hash, id and scopes of every key.
    pub fn hashes(&self) -> Result<Vec<AcceptedKey>, KeyError> {
        Ok(self
            .list()?
            .iter()
            .filter_map(|record| {
                let bytes = hex::decode(&record.sha256).ok()?;
                let hash = <[u8; 32]>::try_from(bytes.as_slice()).ok()?;
                Some(AcceptedKey {
                    hash,
                    identity: KeyIdentity {
                        id: record.id.clone(),
                        scopes: record.scopes.iter().copied().collect(),
                    },
                })
            })
            .collect())
    }

    fn modified(&self) -> Option<SystemTime> {
        std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok()
    }
}

/// The public id of a key: the first 12 hex digits of its SHA-256.
pub fn key_id(hash: &[u8; 32]) -> String {
    hex::encode(&hash[..6])
}

/// Who presented a request: the key's public id and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyIdentity {
    /// The key's public id (as `tesserad keys list` shows it).
    pub id: String,
    /// Its scopes.
    pub scopes: Scopes,
}

/// One accepted key: its hash and identity.
#[derive(Debug, Clone)]
pub struct AcceptedKey {
    hash: [u8; 32],
    identity: KeyIdentity,
}

impl AcceptedKey {
    /// A key held only in memory (given on the command line, or generated
    /// for a server that keeps no files).
    pub fn in_memory(key: &str, scopes: Scopes) -> Self {
        let hash = hash_key(key);
        Self {
            identity: KeyIdentity {
                id: key_id(&hash),
                scopes,
            },
            hash,
        }
    }
}

/// The keys the server accepts: those given on the command line (or
/// generated in memory) and those in the data directory, reloaded when the
/// file changes.
#[derive(Debug)]
pub struct ApiKeys {
    configured: Vec<AcceptedKey>,
    stored: RwLock<Vec<AcceptedKey>>,
    store: Option<KeyStore>,
    loaded_at: RwLock<Option<SystemTime>>,
}

impl ApiKeys {
    /// A ring accepting `configured` with every scope and every key in `store`.
    pub fn new(configured: Option<&str>, store: Option<KeyStore>) -> Result<Self, KeyError> {
        Self::with_keys(
            configured
                .map(|key| AcceptedKey::in_memory(key, Scopes::ALL))
                .into_iter()
                .collect(),
            store,
        )
    }

    /// A ring accepting `configured` and every key in `store`.
    pub fn with_keys(
        configured: Vec<AcceptedKey>,
        store: Option<KeyStore>,
    ) -> Result<Self, KeyError> {
        let ring = Self {
            configured,
            stored: RwLock::new(Vec::new()),
            loaded_at: RwLock::new(None),
            store,
        };
        ring.reload()?;
        Ok(ring)
    }

    /// Re-reads the keys file.
    pub fn reload(&self) -> Result<(), KeyError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let modified = store.modified();
        let hashes = store.hashes()?;
        if let Ok(mut stored) = self.stored.write() {
            *stored = hashes;
        }
        if let Ok(mut loaded_at) = self.loaded_at.write() {
            *loaded_at = modified;
        }
        Ok(())
    }

    /// Re-reads the keys file if it changed since it was last read.
    pub fn reload_if_changed(&self) -> Result<(), KeyError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let current = store.modified();
        let loaded = self.loaded_at.read().map(|at| *at).unwrap_or(None);
        if current != loaded {
            self.reload()?;
        }
        Ok(())
    }

    /// Re-reads the keys file every `interval` when it changed (so `tesserad
    /// keys create|revoke` take effect without a restart).
    pub fn spawn_reloader(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let ring = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(ring) = ring.upgrade() else { break };
                if let Err(error) = ring.reload_if_changed() {
                    tracing::error!(%error, "cannot reload API keys; keeping the previous set");
                }
            }
        })
    }

    /// Whether `presented` is an accepted key.
    pub fn verify(&self, presented: &str) -> bool {
        self.identify(presented).is_some()
    }

    /// The identity of `presented` if it is an accepted key. Compares against
    /// every key in constant time (no early exit), so timing tells nothing
    /// about the keys.
    pub fn identify(&self, presented: &str) -> Option<KeyIdentity> {
        let hash = hash_key(presented);
        let mut found: Option<KeyIdentity> = None;
        let mut check = |key: &AcceptedKey| {
            if bool::from(key.hash.ct_eq(&hash)) {
                found = Some(key.identity.clone());
            }
        };
        self.configured.iter().for_each(&mut check);
        if let Ok(stored) = self.stored.read() {
            stored.iter().for_each(&mut check);
        }
        found
    }

    /// The identity of the key with public id `id`, if it is still accepted.
    pub fn identity_by_id(&self, id: &str) -> Option<KeyIdentity> {
        let matching = |key: &&AcceptedKey| key.identity.id == id;
        if let Some(key) = self.configured.iter().find(matching) {
            return Some(key.identity.clone());
        }
        let stored = self.stored.read().ok()?;
        stored.iter().find(matching).map(|key| key.identity.clone())
    }

    /// Whether any key is accepted at all.
    pub fn is_empty(&self) -> bool {
        self.configured.is_empty() && self.stored.read().map(|s| s.is_empty()).unwrap_or(true)
    }
}

/// Creates `dir` (and its parents) if missing; a directory this creates is
/// readable by its owner only.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "tesserad-keys-{name}-{}-{}",
            std::process::id(),
            generate_key().expect("random")
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn keys_are_kept_hashed_and_can_be_revoked() {
        let dir = temp_dir("lifecycle");
        let store = KeyStore::open(&dir);
        assert!(store.list().expect("list").is_empty());
        let first = store.create(Some("first"), Scopes::ALL).expect("create");
        let second = store.create(None, Scopes::ALL).expect("create");
        assert!(first.key.starts_with(KEY_PREFIX));
        assert_eq!(first.key.len(), 4 + 43);
        let text = std::fs::read_to_string(store.path()).expect("file");
        assert!(!text.contains(&first.key) && !text.contains(&second.key));
        assert!(text.contains(&hex::encode(hash_key(&first.key))));

        let ring = ApiKeys::new(Some("configured-key"), Some(store.clone())).expect("ring");
        assert!(ring.verify(&first.key));
        assert!(ring.verify(&second.key));
        assert!(ring.verify("configured-key"));
        assert!(!ring.verify("tsk_wrong"));
        assert!(!ring.verify(""));

        store.revoke(&first.record.id).expect("revoke");
        ring.reload().expect("reload");
        assert!(!ring.verify(&first.key));
        assert!(ring.verify(&second.key));
        assert!(matches!(
            store.revoke(&first.record.id),
            Err(KeyError::NotFound { .. })
        ));
        assert!(!format!("{second:?}").contains(&second.key));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[cfg(unix)]
    #[test]
    fn the_keys_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;

        let dir = temp_dir("mode");
        // A temporary file left by a crash, readable by everyone.
        let leftover = dir.join(KEYS_FILE).with_extension("json.tmp");
        std::fs::write(&leftover, "{}").expect("write");
        std::fs::set_permissions(&leftover, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let store = KeyStore::open(&dir);
        store.create(Some("mode"), Scopes::ALL).expect("create");
        let mode = std::fs::metadata(store.path())
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_corrupt_file_is_a_clear_error() {
        let dir = temp_dir("corrupt");
        std::fs::write(dir.join(KEYS_FILE), "not json").expect("write");
        let store = KeyStore::open(&dir);
        let error = store.list().expect_err("corrupt").to_string();
        assert!(error.contains("not a valid API keys file"), "{error}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn keys_carry_their_scopes_and_old_files_grant_every_scope() {
        let dir = temp_dir("scopes");
        let store = KeyStore::open(&dir);
        let validator = store
            .create(Some("edge"), Scopes::parse("validate").expect("scopes"))
            .expect("create");
        let ring = ApiKeys::new(None, Some(store.clone())).expect("ring");
        let identity = ring.identify(&validator.key).expect("accepted");
        assert_eq!(identity.id, validator.record.id);
        assert!(identity.scopes.contains(Scope::Validate));
        assert!(!identity.scopes.contains(Scope::Admin));
        let text = std::fs::read_to_string(store.path()).expect("file");
        assert!(
            text.contains("\"v\": 2") && text.contains("\"validate\""),
            "{text}"
        );

        // A version 1 file (no scopes) keeps working with every scope.
        let old = format!(
            r#"{{"v":1,"keys":[{{"id":"{}","sha256":"{}","created_at":"2026-01-01T00:00:00Z"}}]}}"#,
            validator.record.id, validator.record.sha256
        );
        std::fs::write(store.path(), old).expect("write");
        ring.reload().expect("reload");
        let identity = ring.identify(&validator.key).expect("accepted");
        assert_eq!(identity.scopes, Scopes::ALL);
        std::fs::write(store.path(), r#"{"v":3,"keys":[]}"#).expect("write");
        assert!(ring.reload().is_err(), "a newer format is refused");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn scopes_parse_and_unknown_ones_are_refused() {
        assert_eq!(Scopes::parse("all").expect("all"), Scopes::ALL);
        let set = Scopes::parse("validate, sessions").expect("two");
        assert_eq!(set.to_string(), "validate,sessions");
        assert!(matches!(
            Scopes::parse("validate,root"),
            Err(KeyError::UnknownScope { .. })
        ));
        assert!(Scopes::parse("").is_err());
    }

    #[test]
    fn weak_command_line_keys_are_refused_without_echoing_them() {
        for weak in [
            "hunter2",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "abababababababababababababababababab",
            "a key with spaces in it that is long enough",
        ] {
            let error = check_key_strength(weak).expect_err(weak).to_string();
            assert!(!error.contains(weak), "{error}");
            assert!(error.contains("too weak"), "{error}");
        }
        check_key_strength(&generate_key().expect("key")).expect("a generated key is strong");
        check_key_strength("0123456789abcdef0123456789abcdef").expect("128 bits of hex");
    }

    #[test]
    fn opening_a_key_store_creates_nothing() {
        let dir = temp_dir("lazy").join("not-yet");
        let store = KeyStore::open(&dir);
        assert!(store.list().expect("list").is_empty());
        assert!(!dir.exists());
        store.create(None, Scopes::ALL).expect("create");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(store.path()), 0o600);
        }
        std::fs::remove_dir_all(dir.parent().expect("parent")).expect("cleanup");
    }
}
