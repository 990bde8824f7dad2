//! API keys: generated, kept only as SHA-256 hashes in the data directory
//! (`api-keys.json`), and checked in constant time.

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
}

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
    /// The key store of a data directory, creating the directory if needed.
    pub fn open(data_dir: &Path) -> Result<Self, KeyError> {
        std::fs::create_dir_all(data_dir).map_err(|source| KeyError::Io {
            path: data_dir.to_owned(),
            source,
        })?;
        Ok(Self {
            path: data_dir.join(KEYS_FILE),
        })
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
                    v: 1,
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
        if document.v != 1 {
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

    /// Creates a key and keeps its hash.
    pub fn create(&self, label: Option<&str>) -> Result<NewKey, KeyError> {
        let key = generate_key()?;
        let record = self.add(&key, label)?;
        Ok(NewKey { key, record })
    }

    fn add(&self, key: &str, label: Option<&str>) -> Result<KeyRecord, KeyError> {
        let mut document = self.read()?;
        let sha256 = hex::encode(hash_key(key));
        let record = KeyRecord {
            id: sha256[..12].to_owned(),
            sha256,
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
        document.v = 1;
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
        self.write(&document)?;
        Ok(removed)
    }

    /// The hashes of every key.
    pub fn hashes(&self) -> Result<Vec<[u8; 32]>, KeyError> {
        Ok(self
            .list()?
            .iter()
            .filter_map(|record| {
                let bytes = hex::decode(&record.sha256).ok()?;
                <[u8; 32]>::try_from(bytes.as_slice()).ok()
            })
            .collect())
    }

    fn modified(&self) -> Option<SystemTime> {
        std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok()
    }
}

/// The keys the server accepts: the one given on the command line (if
/// any) and those in the data directory, reloaded when the file changes.
#[derive(Debug)]
pub struct ApiKeys {
    configured: Option<[u8; 32]>,
    stored: RwLock<Vec<[u8; 32]>>,
    store: Option<KeyStore>,
    loaded_at: RwLock<Option<SystemTime>>,
}

impl ApiKeys {
    /// A ring accepting `configured` and every key in `store`.
    pub fn new(configured: Option<&str>, store: Option<KeyStore>) -> Result<Self, KeyError> {
        let ring = Self {
            configured: configured.map(hash_key),
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

    /// Whether `presented` is an accepted key. Compares against every key in
    /// constant time (no early exit), so timing tells nothing about the keys.
    pub fn verify(&self, presented: &str) -> bool {
        let hash = hash_key(presented);
        let mut accepted = subtle::Choice::from(0u8);
        if let Some(configured) = &self.configured {
            accepted |= configured.ct_eq(&hash);
        }
        if let Ok(stored) = self.stored.read() {
            for key in stored.iter() {
                accepted |= key.ct_eq(&hash);
            }
        }
        accepted.into()
    }

    /// Whether any key is accepted at all.
    pub fn is_empty(&self) -> bool {
        self.configured.is_none() && self.stored.read().map(|s| s.is_empty()).unwrap_or(true)
    }
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
        let store = KeyStore::open(&dir).expect("open");
        assert!(store.list().expect("list").is_empty());
        let first = store.create(Some("first")).expect("create");
        let second = store.create(None).expect("create");
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
        let store = KeyStore::open(&dir).expect("open");
        store.create(Some("mode")).expect("create");
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
        let store = KeyStore::open(&dir).expect("open");
        let error = store.list().expect_err("corrupt").to_string();
        assert!(error.contains("not a valid API keys file"), "{error}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
