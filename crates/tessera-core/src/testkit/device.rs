//! A device for tests of device-bound sessions: a key pair (ES256 or
//! RS256) that signs `dbsc+jwt` proofs as a browser does.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};

use crate::device::DeviceAlgorithm;

/// A device key pair that signs proofs.
pub struct TestDevice {
    key: Key,
}

enum Key {
    Es256(p256::ecdsa::SigningKey),
    Rs256(
        Box<rsa::pkcs1v15::SigningKey<sha2::Sha256>>,
        rsa::RsaPublicKey,
    ),
}

impl std::fmt::Debug for TestDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDevice")
            .field("alg", &self.algorithm())
            .finish_non_exhaustive()
    }
}

impl TestDevice {
    /// A new P-256 key (ES256).
    pub fn es256() -> Self {
        Self {
            key: Key::Es256(p256::ecdsa::SigningKey::random(&mut rand_core::OsRng)),
        }
    }

    /// A new 2048-bit RSA key (RS256).
    pub fn rs256() -> Self {
        let private =
            rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).expect("an RSA key is generated");
        let public = private.to_public_key();
        Self {
            key: Key::Rs256(
                Box::new(rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(private)),
                public,
            ),
        }
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> DeviceAlgorithm {
        match self.key {
            Key::Es256(_) => DeviceAlgorithm::Es256,
            Key::Rs256(..) => DeviceAlgorithm::Rs256,
        }
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> Value {
        match &self.key {
            Key::Es256(key) => {
                let point = key.verifying_key().to_encoded_point(false);
                let (Some(x), Some(y)) = (point.x(), point.y()) else {
                    unreachable!("an uncompressed point has both coordinates");
                };
                json!({
                    "kty": "EC",
                    "crv": "P-256",
                    "x": URL_SAFE_NO_PAD.encode(x),
                    "y": URL_SAFE_NO_PAD.encode(y),
                })
            }
            Key::Rs256(_, public) => json!({
                "kty": "RSA",
                "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
                "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
            }),
        }
    }

    /// A registration proof answering `challenge` (the JWK in the header).
    pub fn registration_proof(&self, challenge: &str) -> String {
        let header = json!({"typ": "dbsc+jwt", "alg": self.algorithm().name(), "jwk": self.jwk()});
        self.sign(&header, &json!({"jti": challenge}))
    }

    /// A refresh proof answering `challenge` (no JWK, as the draft says).
    pub fn refresh_proof(&self, challenge: &str) -> String {
        let header = json!({"typ": "dbsc+jwt", "alg": self.algorithm().name()});
        self.sign(&header, &json!({"jti": challenge}))
    }

    /// A JWT of this header and payload, signed with this key.
    pub fn sign(&self, header: &Value, payload: &Value) -> String {
        let mut text = URL_SAFE_NO_PAD.encode(header.to_string());
        text.push('.');
        text.push_str(&URL_SAFE_NO_PAD.encode(payload.to_string()));
        let signature = match &self.key {
            Key::Es256(key) => {
                let signature: p256::ecdsa::Signature = key.sign(text.as_bytes());
                signature.to_bytes().to_vec()
            }
            Key::Rs256(key, _) => key.sign(text.as_bytes()).to_vec(),
        };
        text.push('.');
        text.push_str(&URL_SAFE_NO_PAD.encode(signature));
        text
    }
}

/// The value of parameter `name` in a structured header such as
/// `Secure-Session-Registration`; panics when it is missing.
pub fn header_param(header: &str, name: &str) -> String {
    let start = header
        .find(&format!("{name}=\""))
        .unwrap_or_else(|| panic!("{name} in {header}"))
        + name.len()
        + 2;
    let end = header[start..].find('"').expect("closing quote") + start;
    header[start..end].to_owned()
}

/// The string item at the start of a `Secure-Session-Challenge` header;
/// panics when the header does not start with one.
pub fn challenge_in(header: &str) -> String {
    header
        .strip_prefix('"')
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("a challenge string in {header}"))
        .to_owned()
}
