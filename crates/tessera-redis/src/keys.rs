//! Key names. Every key of one session carries the session id as its hash
//! tag, so a session's record and tombstones share a cluster slot; pointers,
//! subject indexes and epochs spread over the cluster by their own names.

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

    /// The hash holding a session's live record: `{prefix}{<id>}`.
    pub(crate) fn live(&self, id: &SessionId) -> String {
        format!("{}{{{}}}", self.prefix, hex::encode(id.0))
    }

    /// The live record key of a session id given in hex (as pointers hold it).
    pub(crate) fn live_hex(&self, id_hex: &str) -> String {
        format!("{}{{{id_hex}}}", self.prefix)
    }

    /// The tombstone a rotation left at `key`: `{prefix}{<id>}:t:<key>`.
    pub(crate) fn tombstone(&self, id: &SessionId, key: &TokenHash) -> String {
        format!(
            "{}{{{}}}:t:{}",
            self.prefix,
            hex::encode(id.0),
            key.to_hex()
        )
    }

    /// The tombstone key for a session id given in hex.
    pub(crate) fn tombstone_hex(&self, id_hex: &str, key: &TokenHash) -> String {
        format!("{}{{{id_hex}}}:t:{}", self.prefix, key.to_hex())
    }

    /// The pointer from a token hash to its session id: `{prefix}p:<key>`.
    pub(crate) fn pointer(&self, key: &TokenHash) -> String {
        format!("{}p:{}", self.prefix, key.to_hex())
    }

    /// A subject's index: a sorted set of session ids scored by their
    /// forget deadlines, `{prefix}x:<subject>`.
    pub(crate) fn subject_index(&self, subject: &str) -> String {
        format!("{}x:{subject}", self.prefix)
    }

    /// The global revocation epoch.
    pub(crate) fn global_epoch(&self) -> String {
        format!("{}epoch", self.prefix)
    }

    /// A subject's revocation epoch.
    pub(crate) fn subject_epoch(&self, subject: &str) -> String {
        format!("{}epoch:{subject}", self.prefix)
    }

    /// The glob matching every live record key.
    pub(crate) fn live_pattern(&self) -> String {
        format!("{}{{*}}", glob_escape(&self.prefix))
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

/// How the subject travels in a record's `u` field: empty for none,
/// `=subject` otherwise, so an empty subject stays distinct from none.
pub(crate) fn encode_subject(subject: Option<&str>) -> String {
    subject.map_or_else(String::new, |s| format!("={s}"))
}

/// The reverse of [`encode_subject`].
pub(crate) fn decode_subject(field: &[u8]) -> Option<String> {
    field
        .strip_prefix(b"=")
        .map(|s| String::from_utf8_lossy(s).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sessions_keys_share_its_hash_tag() {
        let keys = Keys::new("tss:");
        let id = SessionId([0xab; 16]);
        let key = TokenHash([1; 32]);
        let tag = format!("{{{}}}", hex::encode(id.0));
        assert!(keys.live(&id).contains(&tag));
        assert!(keys.tombstone(&id, &key).contains(&tag));
        assert_eq!(keys.live(&id), keys.live_hex(&hex::encode(id.0)));
        assert!(!keys.pointer(&key).contains('{'));
        assert_eq!(Keys::new("a*b:").live_pattern(), "a\\*b:{*}");
        assert_eq!(
            decode_subject(encode_subject(Some("")).as_bytes()),
            Some(String::new())
        );
        assert_eq!(decode_subject(encode_subject(None).as_bytes()), None);
    }
}
