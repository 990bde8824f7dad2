//! Key names. Each key holds one thing and lives in its own cluster slot:
//! a session's record, a subject's index, an epoch. Nothing needs two keys
//! in one slot, so no key carries a hash tag.
//!
//! The names of the layout before records were keyed by session id are
//! kept here too (`legacy_*`), for finding the sessions it still holds
//! (`crate::legacy`); the new names never collide with them.

use tessera_core::store::AttachmentKind;
use tessera_core::{SessionId, TokenHash};

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

    /// A subject's index, a hash whose fields are the raw 16-byte ids of
    /// the subject's sessions (values empty): `{prefix}u:<subject>`.
    pub(crate) fn subject_index(&self, subject: &str) -> String {
        format!("{}u:{subject}", self.prefix)
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

    /// The glob matching every subject index key.
    pub(crate) fn index_pattern(&self) -> String {
        format!("{}u:*", glob_escape(&self.prefix))
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

/// A session id kept as a raw 16-byte index field.
pub(crate) fn id_of_field(field: &[u8]) -> Option<SessionId> {
    <[u8; 16]>::try_from(field).ok().map(SessionId)
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
        assert_eq!(keys.subject_index("ann"), "tss:u:ann");
        assert_ne!(keys.subject_index("ann"), keys.legacy_index("ann"));
        assert_eq!(Keys::new("a*b:").record_pattern(), "a\\*b:s:*");
        assert_eq!(Keys::new("a*b:").index_pattern(), "a\\*b:u:*");
        assert_eq!(id_of_field(&[7; 16]), Some(SessionId([7; 16])));
        let attachment = keys.attachment(&id, AttachmentKind::DeviceBinding);
        assert_eq!(attachment, format!("tss:a:{id}:dbsc"));
        assert_eq!(keys.id_of_attachment(&attachment), Some(id));
        assert_eq!(keys.id_of_attachment("tss:a:short"), None);
        assert_eq!(id_of_field(&[7; 15]), None);
    }
}
