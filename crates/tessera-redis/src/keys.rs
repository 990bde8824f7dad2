//! Key names. Each key holds one thing and lives in its own cluster slot:
//! a session's record, a bucket of the subject index, an epoch. Nothing
//! needs two keys in one slot, so no key carries a hash tag.
//!
//! The names of the layout before records were keyed by session id are
//! kept here too (`legacy_*`), for finding the sessions it still holds
//! (`crate::legacy`); the new names never collide with them.

use sha2::{Digest, Sha256};
use tessera_core::store::AttachmentKind;
use tessera_core::{SessionId, TokenHash};

/// How many hashes the subject index is spread over. Fixed: a subject is
/// found in the bucket its name hashes to, so changing it would hide
/// every entry. 1024 keeps each bucket a small listpack (at most 128
/// entries, `hash-max-listpack-entries`) up to about 130 000 signed-in
/// sessions; beyond, buckets turn into hash tables and an entry costs
/// about twice as much, still less than a hash per subject.
pub(crate) const INDEX_BUCKETS: u32 = 1024;

/// Where a subject's sessions are indexed: its bucket, and the 4-byte tag
/// that tells its entries from other subjects' in the bucket (a tag two
/// subjects share only costs a record read: listing compares the record's
/// subject). Both from the SHA-256 of the subject, the same on every node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IndexSlot {
    pub(crate) bucket: u32,
    pub(crate) tag: [u8; 4],
}

impl IndexSlot {
    pub(crate) fn of(subject: &str) -> Self {
        let digest = Sha256::digest(subject.as_bytes());
        let word = |at: usize| [digest[at], digest[at + 1], digest[at + 2], digest[at + 3]];
        Self {
            bucket: u32::from_be_bytes(word(0)) % INDEX_BUCKETS,
            tag: word(4),
        }
    }

    /// The index field of one session of the subject: the raw id, then the tag.
    pub(crate) fn field(&self, id: &SessionId) -> [u8; 20] {
        let mut field = [0; 20];
        field[..16].copy_from_slice(&id.0);
        field[16..].copy_from_slice(&self.tag);
        field
    }

    /// The session an index field names, if it is one of this subject's.
    pub(crate) fn id_of(&self, field: &[u8]) -> Option<SessionId> {
        if field.get(16..) != Some(&self.tag[..]) {
            return None;
        }
        id_of_field(field)
    }
}

/// Builds the store's key names under one prefix.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A session's record, a string holding the codec's bytes:
    /// `{prefix}s:<id>`, the id in its public 22-character form.
    pub(crate) fn record(&self, id: &SessionId) -> String {
        format!("{}s:{id}", self.prefix)
    }

    /// The session id of a record key of this prefix.
    pub(crate) fn id_of_record(&self, key: &str) -> Option<SessionId> {
        let id = key.strip_prefix(&self.prefix)?.strip_prefix("s:")?;
        SessionId::parse(id).ok()
    }

    /// A bucket of the subject index, a hash whose fields are the raw
    /// 16-byte ids of its subjects' sessions followed by their subject's
    /// tag (values empty): `{prefix}i:<bucket>`.
    pub(crate) fn index_bucket(&self, bucket: u32) -> String {
        format!("{}i:{bucket}", self.prefix)
    }

    /// The bucket a subject's sessions are indexed in.
    pub(crate) fn subject_index(&self, subject: &str) -> String {
        self.index_bucket(IndexSlot::of(subject).bucket)
    }

    /// The global revocation epoch: `{prefix}epoch`.
    pub(crate) fn global_epoch(&self) -> String {
        format!("{}epoch", self.prefix)
    }

    /// A subject's revocation epoch: `{prefix}epoch:<subject>`.
    pub(crate) fn subject_epoch(&self, subject: &str) -> String {
        format!("{}epoch:{subject}", self.prefix)
    }

    /// An attachment of a session, a string holding its generation and
    /// forget deadline (8 bytes each, big-endian) and its bytes:
    /// `{prefix}a:<id>:<kind>`.
    pub(crate) fn attachment(&self, id: &SessionId, kind: AttachmentKind) -> String {
        format!("{}a:{id}:{}", self.prefix, kind.name())
    }

    /// The session id of an attachment key of this prefix.
    pub(crate) fn id_of_attachment(&self, key: &str) -> Option<SessionId> {
        let rest = key.strip_prefix(&self.prefix)?.strip_prefix("a:")?;
        SessionId::parse(rest.get(..22)?).ok()
    }

    /// The glob matching every attachment key.
    pub(crate) fn attachment_pattern(&self) -> String {
        format!("{}a:*", glob_escape(&self.prefix))
    }

    /// The journal, a sorted set of entries in the order of their bytes
    /// (time, nonce): `{prefix}j`.
    pub(crate) fn journal(&self) -> String {
        format!("{}j", self.prefix)
    }

    /// The glob matching every key of this prefix.
    pub(crate) fn all_pattern(&self) -> String {
        format!("{}*", glob_escape(&self.prefix))
    }

    /// The glob matching every record key.
    pub(crate) fn record_pattern(&self) -> String {
        format!("{}s:*", glob_escape(&self.prefix))
    }

    /// The glob matching every bucket of the subject index.
    pub(crate) fn index_pattern(&self) -> String {
        format!("{}i:*", glob_escape(&self.prefix))
    }

    /// The previous layout's record of a session, a hash: `{prefix}{<id hex>}`.
    pub(crate) fn legacy_record(&self, id: &SessionId) -> String {
        format!("{}{{{}}}", self.prefix, hex::encode(id.0))
    }

    /// The previous layout's pointer from a token hash to the session id
    /// (hex): `{prefix}p:<token hash hex>`.
    pub(crate) fn legacy_pointer(&self, key: &TokenHash) -> String {
        format!("{}p:{}", self.prefix, key.to_hex())
    }

    /// The previous layout's subject index, a sorted set of session ids
    /// (hex): `{prefix}x:<subject>`.
    pub(crate) fn legacy_index(&self, subject: &str) -> String {
        format!("{}x:{subject}", self.prefix)
    }
}

/// Escapes glob characters for `SCAN MATCH`.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The session id an index field starts with.
pub(crate) fn id_of_field(field: &[u8]) -> Option<SessionId> {
    <[u8; 16]>::try_from(field.get(..16)?).ok().map(SessionId)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_names_never_meet_the_previous_layouts() {
        let keys = Keys::new("tss:");
        let id = SessionId([0xab; 16]);
        let record = keys.record(&id);
        assert_eq!(record, format!("tss:s:{id}"));
        assert_eq!(record.len(), "tss:s:".len() + 22);
        assert!(!record.contains(['{', '}']), "no hash tag");
        assert_eq!(keys.id_of_record(&record), Some(id));
        assert_eq!(keys.id_of_record("tss:s:short"), None);
        assert_eq!(keys.id_of_record(&format!("other:s:{id}")), None);
        assert_eq!(
            keys.legacy_record(&id),
            format!("tss:{{{}}}", "ab".repeat(16))
        );
        let ann = IndexSlot::of("ann");
        assert_eq!(ann, IndexSlot::of("ann"), "the same on every node");
        assert!(ann.bucket < INDEX_BUCKETS);
        assert_eq!(keys.subject_index("ann"), format!("tss:i:{}", ann.bucket));
        assert_ne!(keys.subject_index("ann"), keys.legacy_index("ann"));
        assert_eq!(Keys::new("a*b:").record_pattern(), "a\\*b:s:*");
        assert_eq!(Keys::new("a*b:").index_pattern(), "a\\*b:i:*");
        let field = ann.field(&id);
        assert_eq!(ann.id_of(&field), Some(id));
        let bob = IndexSlot::of("bob");
        assert_ne!(ann.tag, bob.tag);
        assert_eq!(bob.id_of(&field), None, "another subject's entry");
        assert_eq!(id_of_field(&field), Some(id));
        let attachment = keys.attachment(&id, AttachmentKind::DeviceBinding);
        assert_eq!(attachment, format!("tss:a:{id}:dbsc"));
        assert_eq!(keys.id_of_attachment(&attachment), Some(id));
        assert_eq!(keys.id_of_attachment("tss:a:short"), None);
        assert_eq!(id_of_field(&[7; 15]), None);
    }
}
