//! DBSC proofs: the `dbsc+jwt` a browser signs with its device key, read
//! and verified (ES256 with P-256, RS256 with RSA of 2048 bits or more).
//! `alg: none` and every other algorithm are refused.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Verifier;
use rsa::traits::PublicKeyParts;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Largest proof accepted, in bytes (an RS256 proof with a 4096-bit key is
/// about 1.7 KiB).
pub const MAX_PROOF_BYTES: usize = 8 * 1024;

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// Largest RSA modulus accepted, in bits (bounds the cost of a verification).
pub const MAX_RSA_BITS: usize = 8192;

/// A signature algorithm a device key may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum DeviceAlgorithm {
    /// ECDSA over P-256 with SHA-256.
    #[serde(rename = "ES256")]
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    #[serde(rename = "RS256")]
    Rs256,
}

impl DeviceAlgorithm {
    /// Every algorithm, in the order offered to browsers.
    pub const ALL: [DeviceAlgorithm; 2] = [DeviceAlgorithm::Es256, DeviceAlgorithm::Rs256];

    /// The JOSE name (`ES256`, `RS256`).
    pub fn name(self) -> &'static str {
        match self {
            DeviceAlgorithm::Es256 => "ES256",
            DeviceAlgorithm::Rs256 => "RS256",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "ES256" => Some(DeviceAlgorithm::Es256),
            "RS256" => Some(DeviceAlgorithm::Rs256),
            _ => None,
        }
    }
}

/// Why a proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// Not three base64url parts of JSON, or over [`MAX_PROOF_BYTES`].
    #[error("the proof is not a well-formed JWT: {0}")]
    Malformed(&'static str),
    /// The header's `typ` is not `dbsc+jwt`.
    #[error("the proof's typ is {0:?}, expected \"dbsc+jwt\"")]
    WrongType(String),
    /// `alg` is `none` or an algorithm this server does not accept.
    #[error("the proof's algorithm {0:?} is not accepted (ES256 and RS256 are)")]
    AlgorithmNotAllowed(String),
    /// The key in `jwk` is missing, of another algorithm, or unusable.
    #[error("the proof's key is not usable: {0}")]
    BadKey(&'static str),
    /// The signature does not verify with the key.
    #[error("the proof's signature does not verify")]
    BadSignature,
    /// The key is not the session's bound key.
    #[error("the proof is signed by another key than the session's")]
    WrongKey,
}

/// A device's public key as a JWK, checked usable for its algorithm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceKey {
    /// The algorithm it signs with.
    pub alg: DeviceAlgorithm,
    /// The public key's JWK members that identify it (`kty`, `crv`, `x`,
    /// `y` or `kty`, `n`, `e`), as the browser sent them.
    pub jwk: Value,
}

impl DeviceKey {
    /// Reads a JWK for `alg`, keeping only the members that identify the key.
    pub fn from_jwk(alg: DeviceAlgorithm, jwk: &Value) -> Result<Self, ProofError> {
        let member = |name: &str| jwk.get(name).and_then(Value::as_str);
        let kept = match alg {
            DeviceAlgorithm::Es256 => {
                if member("kty") != Some("EC") || member("crv") != Some("P-256") {
                    return Err(ProofError::BadKey("ES256 needs an EC key on P-256"));
                }
                serde_json::json!({
                    "kty": "EC",
                    "crv": "P-256",
                    "x": member("x").ok_or(ProofError::BadKey("no x"))?,
                    "y": member("y").ok_or(ProofError::BadKey("no y"))?,
                })
            }
            DeviceAlgorithm::Rs256 => {
                if member("kty") != Some("RSA") {
                    return Err(ProofError::BadKey("RS256 needs an RSA key"));
                }
                serde_json::json!({
                    "kty": "RSA",
                    "n": member("n").ok_or(ProofError::BadKey("no n"))?,
                    "e": member("e").ok_or(ProofError::BadKey("no e"))?,
                })
            }
        };
        let key = Self { alg, jwk: kept };
        key.verifier()?;
        Ok(key)
    }

    fn coordinate(&self, name: &str) -> Result<Vec<u8>, ProofError> {
        let text = self
            .jwk
            .get(name)
            .and_then(Value::as_str)
            .ok_or(ProofError::BadKey("a member is missing"))?;
        URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| ProofError::BadKey("a member is not base64url"))
    }

    fn verifier(&self) -> Result<KeyVerifier, ProofError> {
        match self.alg {
            DeviceAlgorithm::Es256 => {
                let (x, y) = (self.coordinate("x")?, self.coordinate("y")?);
                if x.len() != 32 || y.len() != 32 {
                    return Err(ProofError::BadKey("P-256 coordinates are 32 bytes"));
                }
                let point = p256::EncodedPoint::from_affine_coordinates(
                    p256::FieldBytes::from_slice(&x),
                    p256::FieldBytes::from_slice(&y),
                    false,
                );
                let key = p256::ecdsa::VerifyingKey::from_encoded_point(&point)
                    .map_err(|_| ProofError::BadKey("not a point on P-256"))?;
                Ok(KeyVerifier::Es256(key))
            }
            DeviceAlgorithm::Rs256 => {
                let n = rsa::BigUint::from_bytes_be(&self.coordinate("n")?);
                let e = rsa::BigUint::from_bytes_be(&self.coordinate("e")?);
                let key = rsa::RsaPublicKey::new_with_max_size(n, e, MAX_RSA_BITS)
                    .map_err(|_| ProofError::BadKey("not a usable RSA public key"))?;
                if key.n().bits() < MIN_RSA_BITS {
                    return Err(ProofError::BadKey("RSA keys need at least 2048 bits"));
                }
                Ok(KeyVerifier::Rs256(Box::new(rsa::pkcs1v15::VerifyingKey::<
                    sha2::Sha256,
                >::new(key))))
            }
        }
    }
}

enum KeyVerifier {
    Es256(p256::ecdsa::VerifyingKey),
    Rs256(Box<rsa::pkcs1v15::VerifyingKey<sha2::Sha256>>),
}

impl KeyVerifier {
    fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), ProofError> {
        let verified = match self {
            KeyVerifier::Es256(key) => p256::ecdsa::Signature::from_slice(signature)
                .ok()
                .is_some_and(|sig| key.verify(message, &sig).is_ok()),
            KeyVerifier::Rs256(key) => rsa::pkcs1v15::Signature::try_from(signature)
                .ok()
                .is_some_and(|sig| key.verify(message, &sig).is_ok()),
        };
        if verified {
            Ok(())
        } else {
            Err(ProofError::BadSignature)
        }
    }
}

/// A proof whose signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    /// The key that signed it.
    pub key: DeviceKey,
    /// The challenge it answers (`jti`).
    pub challenge: String,
    /// The `authorization` claim, when present.
    pub authorization: Option<String>,
}

/// Verifies a proof. At registration (`bound: None`) the key comes from
/// the proof's `jwk` (in the header, or the payload as some browsers send
/// it); at refresh the proof must verify with the bound key, and a `jwk`
/// it carries must be that key.
pub fn verify_proof(proof: &str, bound: Option<&DeviceKey>) -> Result<VerifiedProof, ProofError> {
    if proof.len() > MAX_PROOF_BYTES {
        return Err(ProofError::Malformed("longer than 8 KiB"));
    }
    let mut parts = proof.split('.');
    let (Some(header_part), Some(payload_part), Some(signature_part), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ProofError::Malformed("not three parts"));
    };
    let json = |part: &str| -> Result<Value, ProofError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| ProofError::Malformed("a part is not base64url"))?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(value @ Value::Object(_)) => Ok(value),
            _ => Err(ProofError::Malformed("a part is not a JSON object")),
        }
    };
    let header = json(header_part)?;
    let payload = json(payload_part)?;
    let typ = header.get("typ").and_then(Value::as_str).unwrap_or("");
    if typ != "dbsc+jwt" {
        return Err(ProofError::WrongType(typ.to_owned()));
    }
    let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let Some(alg) = DeviceAlgorithm::from_name(alg_name) else {
        return Err(ProofError::AlgorithmNotAllowed(alg_name.to_owned()));
    };
    let jwk = header.get("jwk").or_else(|| payload.get("jwk"));
    let key = match (bound, jwk) {
        (Some(bound), Some(jwk)) => {
            if DeviceKey::from_jwk(alg, jwk)? != *bound {
                return Err(ProofError::WrongKey);
            }
            bound.clone()
        }
        (Some(bound), None) if bound.alg == alg => bound.clone(),
        (Some(_), None) => return Err(ProofError::WrongKey),
        (None, Some(jwk)) => DeviceKey::from_jwk(alg, jwk)?,
        (None, None) => return Err(ProofError::BadKey("registration needs a jwk")),
    };
    let signature = URL_SAFE_NO_PAD
        .decode(signature_part)
        .map_err(|_| ProofError::Malformed("the signature is not base64url"))?;
    let signed = &proof[..header_part.len() + 1 + payload_part.len()];
    key.verifier()?.verify(signed.as_bytes(), &signature)?;
    let Some(challenge) = payload.get("jti").and_then(Value::as_str) else {
        return Err(ProofError::Malformed("no jti"));
    };
    Ok(VerifiedProof {
        challenge: challenge.to_owned(),
        authorization: payload
            .get("authorization")
            .and_then(Value::as_str)
            .map(str::to_owned),
        key,
    })
}
