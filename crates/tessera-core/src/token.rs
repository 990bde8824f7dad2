//! Session tokens, their hashes and public session ids (the format is the
//! contract of `docs/tokens-and-cookies.md`).
//!
//! A [`SessionToken`] is the secret a client holds. The current format (2)
//! is `tss_` + base64url of the session's public 16-byte id (the
//! *selector*) and 32 random bytes from the OS CSPRNG (the *verifier*) + 6
//! base64url characters of the CRC-32 of those 48 bytes: 74 characters. A
//! store finds the record by the id and the manager compares the SHA-256 of
//! the whole token with the hash the record keeps, in constant time.
//!
//! Tokens of format 1 (`tss_` + 32 random bytes + CRC-32, 53 characters)
//! were issued before the selector existed; they are still read, found
//! through the store's pointers of that layout
//! ([`Records::find_legacy`](crate::store::Records::find_legacy)), and
//! replaced by a format 2 token at their first use.
//!
//! Stores only ever see a token's SHA-256, the [`TokenHash`]. The
//! [`SessionId`] is public: it stays the same across rotation and is safe
//! to log and show.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The prefix every token starts with; lets secret scanners recognise leaked tokens.
pub const TOKEN_PREFIX: &str = "tss_";
/// Random bytes in a token's verifier (256 bits).
pub const VERIFIER_BYTES: usize = 32;
/// Length of a token in characters: prefix, 64 characters of selector and
/// verifier, 6 of checksum.
pub const TOKEN_LEN: usize = 74;
/// Length of a token of the first format (no selector), still accepted.
pub const LEGACY_TOKEN_LEN: usize = 53;
const BODY_BYTES: usize = 16 + VERIFIER_BYTES;
const BODY_CHARS: usize = 64;
const LEGACY_BODY_CHARS: usize = 43;
const CHECKSUM_CHARS: usize = 6;
const _: () = assert!(TOKEN_PREFIX.len() + BODY_CHARS + CHECKSUM_CHARS == TOKEN_LEN);
const _: () = assert!(TOKEN_PREFIX.len() + LEGACY_BODY_CHARS + CHECKSUM_CHARS == LEGACY_TOKEN_LEN);

/// Why a string is not a well-formed token. The token itself is never included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The token has neither the length of a current token nor that of a legacy one.
    #[error("a session token has {expected} characters, this one has {actual}")]
    Length {
        /// The length a token must have.
        expected: usize,
        /// The length presented.
        actual: usize,
    },
    /// The token does not start with `tss_`.
    #[error("a session token starts with `tss_`")]
    Prefix,
    /// A character outside the base64url alphabet.
    #[error("a session token contains only base64url characters after its prefix")]
    Alphabet,
    /// The CRC-32 does not match: a typo, truncation or a made-up token.
    #[error("the session token's checksum does not match")]
    Checksum,
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    Entropy,
}

/// Fills `bytes` from the OS CSPRNG: one system call however many secrets
/// the bytes are split into afterwards.
pub(crate) fn random<const N: usize>() -> Result<[u8; N], TokenError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|_| TokenError::Entropy)?;
    Ok(bytes)
}

/// A secret bearer token. `Debug` and `Display` are redacted; use
/// [`SessionToken::expose`] where the token must be sent to its holder.
#[derive(Clone)]
pub struct SessionToken {
    text: String,
    /// The session id the token names (`None`: a legacy token).
    id: Option<SessionId>,
}

impl SessionToken {
    /// A token for session `id` with this verifier.
    pub(crate) fn new(id: SessionId, verifier: [u8; VERIFIER_BYTES]) -> Self {
        let mut body = [0u8; BODY_BYTES];
        body[..16].copy_from_slice(&id.0);
        body[16..].copy_from_slice(&verifier);
        let mut text = String::with_capacity(TOKEN_LEN);
        text.push_str(TOKEN_PREFIX);
        URL_SAFE_NO_PAD.encode_string(body, &mut text);
        URL_SAFE_NO_PAD.encode_string(crc32fast::hash(&body).to_be_bytes(), &mut text);
        Self { text, id: Some(id) }
    }

    /// A legacy (format 1) token from its 32 secret bytes; tests and
    /// migration tooling make these, the manager never issues them.
    pub fn legacy_from_secret(secret: [u8; 32]) -> Self {
        let mut text = String::with_capacity(LEGACY_TOKEN_LEN);
        text.push_str(TOKEN_PREFIX);
        URL_SAFE_NO_PAD.encode_string(secret, &mut text);
        URL_SAFE_NO_PAD.encode_string(crc32fast::hash(&secret).to_be_bytes(), &mut text);
        Self { text, id: None }
    }

    /// Parses a token presented by a client. Rejects the wrong prefix, length,
    /// alphabet or checksum without touching any store.
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let bytes = text.as_bytes();
        let body_chars = match bytes.len() {
            TOKEN_LEN => BODY_CHARS,
            LEGACY_TOKEN_LEN => LEGACY_BODY_CHARS,
            actual => {
                return Err(TokenError::Length {
                    expected: TOKEN_LEN,
                    actual,
                });
            }
        };
        if !bytes.starts_with(TOKEN_PREFIX.as_bytes()) {
            return Err(TokenError::Prefix);
        }
        let (body_text, checksum_text) = bytes[TOKEN_PREFIX.len()..].split_at(body_chars);
        let mut body = [0u8; BODY_BYTES];
        let written = URL_SAFE_NO_PAD
            .decode_slice(body_text, &mut body)
            .map_err(|_| TokenError::Alphabet)?;
        let mut checksum = [0u8; 4];
        let checksum_len = URL_SAFE_NO_PAD
            .decode_slice(checksum_text, &mut checksum)
            .map_err(|_| TokenError::Alphabet)?;
        let expected = if body_chars == BODY_CHARS {
            BODY_BYTES
        } else {
            32
        };
        if written != expected || checksum_len != 4 {
            return Err(TokenError::Alphabet);
        }
        let body = &body[..written];
        if u32::from_be_bytes(checksum) != crc32fast::hash(body) {
            return Err(TokenError::Checksum);
        }
        // Non-canonical base64 (spare low bits set) would decode to the same
        // bytes under a different text; only the canonical text is accepted.
        let canonical = if body_chars == BODY_CHARS {
            let mut id = [0u8; 16];
            id.copy_from_slice(&body[..16]);
            let mut verifier = [0u8; VERIFIER_BYTES];
            verifier.copy_from_slice(&body[16..]);
            Self::new(SessionId(id), verifier)
        } else {
            let mut secret = [0u8; 32];
            secret.copy_from_slice(body);
            Self::legacy_from_secret(secret)
        };
        if canonical.text.as_bytes() != bytes {
            return Err(TokenError::Alphabet);
        }
        Ok(canonical)
    }

    /// The token's text, to hand to its holder (in a cookie or a response body).
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// The session the token names; `None` for a legacy token, which names
    /// none and is found through the store's pointers of the old layout.
    pub fn session_id(&self) -> Option<SessionId> {
        self.id
    }

    /// SHA-256 of the token text: what a record keeps to recognise it.
    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.text.as_bytes()).into())
    }

    /// Compares with a presented token text in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        self.text.as_bytes().ct_eq(presented.as_bytes()).into()
    }

    /// The verifier of a format 2 token.
    fn verifier(&self) -> Option<[u8; VERIFIER_BYTES]> {
        self.id?;
        let mut body = [0u8; BODY_BYTES];
        let text = &self.text.as_bytes()[TOKEN_PREFIX.len()..TOKEN_PREFIX.len() + BODY_CHARS];
        URL_SAFE_NO_PAD.decode_slice(text, &mut body).ok()?;
        let mut verifier = [0u8; VERIFIER_BYTES];
        verifier.copy_from_slice(&body[16..]);
        Some(verifier)
    }

    /// The successor of this token sealed for its holder: the successor's
    /// verifier XOR a pad only this token's text yields. A record keeps it
    /// while the successor has not been presented, so that a request
    /// still carrying this token can be given the successor again, while a
    /// dump of the store reveals nothing.
    pub(crate) fn seal_successor(&self, successor: &SessionToken) -> Option<[u8; 32]> {
        let verifier = successor.verifier()?;
        Some(xor(verifier, self.successor_pad()))
    }

    /// Recovers the successor sealed by [`seal_successor`](Self::seal_successor).
    pub(crate) fn open_successor(&self, id: SessionId, sealed: &[u8; 32]) -> SessionToken {
        SessionToken::new(id, xor(*sealed, self.successor_pad()))
    }

    fn successor_pad(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(b"tessera successor\0");
        hasher.update(self.text.as_bytes());
        hasher.finalize().into()
    }
}

fn xor(mut a: [u8; 32], b: [u8; 32]) -> [u8; 32] {
    for (x, y) in a.iter_mut().zip(b) {
        *x ^= y;
    }
    a
}

impl PartialEq for SessionToken {
    fn eq(&self, other: &Self) -> bool {
        self.text.as_bytes().ct_eq(other.text.as_bytes()).into()
    }
}

impl Eq for SessionToken {}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(tss_…redacted)")
    }
}

impl fmt::Display for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tss_…redacted")
    }
}

impl FromStr for SessionToken {
    type Err = TokenError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// SHA-256 of a token: the only form in which stores see tokens.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    /// The hash as lowercase hex, for stores that key by text.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let high = (pair[0] as char).to_digit(16)?;
            let low = (pair[1] as char).to_digit(16)?;
            out[i] = u8::try_from(high * 16 + low).ok()?;
        }
        Some(Self(out))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Whether this is the hash of `other`'s token, in constant time.
    pub fn ct_eq(&self, other: &TokenHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

/// Lowercase hex of some bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A hash is not a secret, but a short form keeps logs readable.
        write!(f, "TokenHash({}…)", &self.to_hex()[..12])
    }
}

impl Serialize for TokenHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for TokenHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::from_hex(&text).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

/// Public 128-bit session id (base64url, 22 characters), stable across
/// rotation, safe to log and to show to users.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub [u8; 16]);

/// Why a string is not a session id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a session id is 22 base64url characters")]
pub struct SessionIdError;

impl SessionId {
    /// Generates a random id from the OS CSPRNG.
    pub fn generate() -> Result<Self, TokenError> {
        random().map(Self)
    }

    /// Parses the 22-character base64url form.
    pub fn parse(text: &str) -> Result<Self, SessionIdError> {
        if text.len() != 22 {
            return Err(SessionIdError);
        }
        let mut bytes = [0u8; 16];
        let written = URL_SAFE_NO_PAD
            .decode_slice(text, &mut bytes)
            .map_err(|_| SessionIdError)?;
        let id = Self(bytes);
        if written != 16 || id.to_string() != text {
            return Err(SessionIdError);
        }
        Ok(id)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 22];
        let written = URL_SAFE_NO_PAD
            .encode_slice(self.0, &mut buf)
            .map_err(|_| fmt::Error)?;
        f.write_str(std::str::from_utf8(&buf[..written]).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

impl FromStr for SessionId {
    type Err = SessionIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for SessionId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> SessionToken {
        SessionToken::new(SessionId([9; 16]), random().expect("entropy"))
    }

    #[test]
    fn generated_token_has_contract_shape() {
        let token = token();
        let text = token.expose();
        assert_eq!(text.len(), TOKEN_LEN);
        assert!(text.starts_with("tss_"));
        assert!(
            text[4..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        let parsed = SessionToken::parse(text).expect("round trip");
        assert_eq!(parsed, token);
        assert_eq!(parsed.session_id(), Some(SessionId([9; 16])));
    }

    #[test]
    fn checksum_is_crc32_ieee_big_endian_of_selector_and_verifier() {
        let token = SessionToken::new(SessionId([1; 16]), [7; 32]);
        let mut body = vec![1u8; 16];
        body.extend([7u8; 32]);
        let crc = crc32fast::hash(&body).to_be_bytes();
        assert!(token.expose().ends_with(&URL_SAFE_NO_PAD.encode(crc)));
        // Known vectors (CRC-32 checked with zlib).
        let zero = SessionToken::new(SessionId([0; 16]), [0; 32]);
        // CRC-32 of 48 zero bytes: 0xF288B395.
        assert_eq!(
            zero.expose(),
            "tss_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA8oizlQ"
        );
        let legacy = SessionToken::legacy_from_secret([0u8; 32]);
        assert_eq!(
            legacy.expose(),
            "tss_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAGQpVrQ"
        );
    }

    #[test]
    fn legacy_tokens_still_parse_and_name_no_session() {
        let legacy = SessionToken::legacy_from_secret(random().expect("entropy"));
        assert_eq!(legacy.expose().len(), LEGACY_TOKEN_LEN);
        let parsed = SessionToken::parse(legacy.expose()).expect("legacy parses");
        assert_eq!(parsed.session_id(), None);
        assert_eq!(parsed.hash(), legacy.hash());
    }

    #[test]
    fn parse_rejects_each_kind_of_garbage() {
        for good in [
            token(),
            SessionToken::legacy_from_secret(random().expect("entropy")),
        ] {
            let text = good.expose().to_owned();
            assert!(matches!(
                SessionToken::parse(""),
                Err(TokenError::Length { .. })
            ));
            assert!(matches!(
                SessionToken::parse(&text[..text.len() - 1]),
                Err(TokenError::Length { .. })
            ));
            let wrong_prefix = format!("tsx_{}", &text[4..]);
            assert_eq!(SessionToken::parse(&wrong_prefix), Err(TokenError::Prefix));
            let bad_alphabet = format!("{}!{}", &text[..10], &text[11..]);
            assert_eq!(
                SessionToken::parse(&bad_alphabet),
                Err(TokenError::Alphabet)
            );
            let mut flipped = text.clone().into_bytes();
            flipped[20] = if flipped[20] == b'A' { b'B' } else { b'A' };
            let flipped = String::from_utf8(flipped).expect("ascii");
            assert_eq!(SessionToken::parse(&flipped), Err(TokenError::Checksum));
            let multibyte = format!("{}é{}", &text[..10], &text[12..]);
            assert!(SessionToken::parse(&multibyte).is_err());
        }
    }

    #[test]
    fn debug_and_display_are_redacted() {
        let token = token();
        let secret_part = &token.expose()[30..60];
        assert!(!format!("{token:?}").contains(secret_part));
        assert!(!format!("{token}").contains(secret_part));
    }

    #[test]
    fn hash_is_sha256_of_the_text() {
        let token = token();
        let expected: [u8; 32] = Sha256::digest(token.expose().as_bytes()).into();
        assert_eq!(token.hash().0, expected);
        assert_eq!(
            TokenHash::from_hex(&token.hash().to_hex()),
            Some(token.hash())
        );
    }

    #[test]
    fn a_successor_opens_only_with_its_predecessor() {
        let id = SessionId([3; 16]);
        let old = SessionToken::new(id, [1; 32]);
        let new = SessionToken::new(id, [2; 32]);
        let sealed = old.seal_successor(&new).expect("format 2 successor");
        assert_eq!(old.open_successor(id, &sealed), new);
        let other = SessionToken::new(id, [5; 32]);
        assert_ne!(other.open_successor(id, &sealed), new);
        let legacy = SessionToken::legacy_from_secret([4; 32]);
        let sealed = legacy
            .seal_successor(&new)
            .expect("successor of a legacy token");
        assert_eq!(legacy.open_successor(id, &sealed), new);
    }

    #[test]
    fn session_id_round_trips_and_is_22_chars() {
        let id = SessionId::generate().expect("entropy");
        let text = id.to_string();
        assert_eq!(text.len(), 22);
        assert_eq!(SessionId::parse(&text), Ok(id));
        assert!(SessionId::parse("short").is_err());
        assert!(SessionId::parse("!!!!!!!!!!!!!!!!!!!!!!").is_err());
    }
}
