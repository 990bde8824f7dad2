//! Session tokens, their storage keys and public session ids (DESIGN.md §2).
//!
//! A [`SessionToken`] is the secret a client holds: `tss_` + base64url of 32
//! random bytes from the OS CSPRNG + 6 base64url characters of the CRC-32 of
//! those bytes, 53 characters in all. Stores only ever see its SHA-256, the
//! [`TokenHash`]. The [`SessionId`] is a separate public 128-bit id that stays
//! the same across rotation and is safe to log and show.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The prefix every token starts with; lets secret scanners recognise leaked tokens.
pub const TOKEN_PREFIX: &str = "tss_";
/// Random bytes in a token (256 bits).
pub const TOKEN_SECRET_BYTES: usize = 32;
/// Length of a token in characters: prefix, 43 characters of secret, 6 of checksum.
pub const TOKEN_LEN: usize = 53;
const SECRET_CHARS: usize = 43;
const CHECKSUM_CHARS: usize = 6;
const _: () = assert!(TOKEN_PREFIX.len() + SECRET_CHARS + CHECKSUM_CHARS == TOKEN_LEN);

/// Why a string is not a well-formed token. The token itself is never included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token does not have exactly [`TOKEN_LEN`] bytes.
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

/// A secret bearer token. `Debug` and `Display` are redacted; use
/// [`SessionToken::expose`] where the token must be sent to its holder.
#[derive(Clone)]
pub struct SessionToken {
    text: String,
    secret: [u8; TOKEN_SECRET_BYTES],
}

impl SessionToken {
    /// Generates a fresh token from the OS CSPRNG.
    pub fn generate() -> Result<Self, TokenError> {
        let mut secret = [0u8; TOKEN_SECRET_BYTES];
        getrandom::fill(&mut secret).map_err(|_| TokenError::Entropy)?;
        Ok(Self::from_secret(secret))
    }

    fn from_secret(secret: [u8; TOKEN_SECRET_BYTES]) -> Self {
        let mut text = String::with_capacity(TOKEN_LEN);
        text.push_str(TOKEN_PREFIX);
        URL_SAFE_NO_PAD.encode_string(secret, &mut text);
        URL_SAFE_NO_PAD.encode_string(crc32fast::hash(&secret).to_be_bytes(), &mut text);
        Self { text, secret }
    }

    /// Parses a token presented by a client. Rejects the wrong prefix, length,
    /// alphabet or checksum without touching any store.
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let bytes = text.as_bytes();
        if bytes.len() != TOKEN_LEN {
            return Err(TokenError::Length {
                expected: TOKEN_LEN,
                actual: bytes.len(),
            });
        }
        if !bytes.starts_with(TOKEN_PREFIX.as_bytes()) {
            return Err(TokenError::Prefix);
        }
        let body = &bytes[TOKEN_PREFIX.len()..];
        let (secret_text, checksum_text) = body.split_at(SECRET_CHARS);
        let mut secret = [0u8; TOKEN_SECRET_BYTES];
        let written = URL_SAFE_NO_PAD
            .decode_slice(secret_text, &mut secret)
            .map_err(|_| TokenError::Alphabet)?;
        let mut checksum = [0u8; 4];
        let checksum_len = URL_SAFE_NO_PAD
            .decode_slice(checksum_text, &mut checksum)
            .map_err(|_| TokenError::Alphabet)?;
        if written != TOKEN_SECRET_BYTES || checksum_len != 4 {
            return Err(TokenError::Alphabet);
        }
        if u32::from_be_bytes(checksum) != crc32fast::hash(&secret) {
            return Err(TokenError::Checksum);
        }
        // Non-canonical base64 (spare low bits set) would decode to the same
        // secret under a different text; only the canonical text is accepted.
        let canonical = Self::from_secret(secret);
        if canonical.text.as_bytes() != bytes {
            return Err(TokenError::Alphabet);
        }
        Ok(canonical)
    }

    /// The token's text, to hand to its holder (in a cookie or a response body).
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// The storage key: SHA-256 of the token text.
    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.text.as_bytes()).into())
    }

    /// Compares with a presented token text in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        self.text.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

impl PartialEq for SessionToken {
    fn eq(&self, other: &Self) -> bool {
        self.secret.ct_eq(&other.secret).into()
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
        let mut out = String::with_capacity(64);
        for byte in self.0 {
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        out
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
}

const HEX: &[u8; 16] = b"0123456789abcdef";

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
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|_| TokenError::Entropy)?;
        Ok(Self(bytes))
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

    #[test]
    fn generated_token_has_contract_shape() {
        let token = SessionToken::generate().expect("entropy");
        let text = token.expose();
        assert_eq!(text.len(), TOKEN_LEN);
        assert!(text.starts_with("tss_"));
        assert!(
            text[4..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(SessionToken::parse(text).expect("round trip"), token);
    }

    #[test]
    fn checksum_is_crc32_ieee_big_endian_of_the_secret() {
        let secret = [7u8; 32];
        let token = SessionToken::from_secret(secret);
        let crc = crc32fast::hash(&secret).to_be_bytes();
        assert!(token.expose().ends_with(&URL_SAFE_NO_PAD.encode(crc)));
        // Known vector: all-zero secret (CRC-32 0x190A55AD, checked with zlib).
        let zero = SessionToken::from_secret([0u8; 32]);
        assert_eq!(
            zero.expose(),
            "tss_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAGQpVrQ"
        );
    }

    #[test]
    fn parse_rejects_each_kind_of_garbage() {
        let good = SessionToken::generate().expect("entropy");
        let text = good.expose().to_owned();
        assert!(matches!(
            SessionToken::parse(""),
            Err(TokenError::Length { .. })
        ));
        assert!(matches!(
            SessionToken::parse(&text[..52]),
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

    #[test]
    fn debug_and_display_are_redacted() {
        let token = SessionToken::generate().expect("entropy");
        let secret_part = &token.expose()[4..20];
        assert!(!format!("{token:?}").contains(secret_part));
        assert!(!format!("{token}").contains(secret_part));
    }

    #[test]
    fn hash_is_sha256_of_the_text() {
        let token = SessionToken::generate().expect("entropy");
        let expected: [u8; 32] = Sha256::digest(token.expose().as_bytes()).into();
        assert_eq!(token.hash().0, expected);
        assert_eq!(
            TokenHash::from_hex(&token.hash().to_hex()),
            Some(token.hash())
        );
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
