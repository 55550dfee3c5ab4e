//! Ed25519 update keys and detached signatures (`X.json.sig`).
//!
//! The site holds the public key as `ed25519:<base64 of the 32 key bytes>`;
//! the builder holds the private key as PKCS#8 PEM (what `openssl pkey`
//! reads). A signature file names the key by its id (first 16 hex digits of
//! sha256 over the 32 public key bytes) and carries the base64 signature over
//! the exact bytes of the signed file.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::Signer as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use serde::{Deserialize, Serialize};

/// The prefix of a public key in text form.
pub const PUBLIC_PREFIX: &str = "ed25519:";

/// Why a key cannot be made, read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The operating system gave no randomness.
    #[error("cannot get randomness for a new key: {0}")]
    Random(String),
    /// The private key PEM is not an Ed25519 PKCS#8 key.
    #[error("not an Ed25519 private key in PKCS#8 PEM: {0}")]
    Pkcs8(String),
    /// The public key text is malformed.
    #[error("public key {text:?}: {reason}")]
    Public {
        /// What was given (shortened).
        text: String,
        /// What is wrong.
        reason: String,
    },
}

/// Why a signature does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The signature file is not `{"keyid": …, "sig": …}`.
    #[error("signature file is malformed: {0}")]
    Malformed(String),
    /// Signed by another key.
    #[error("signed by key {found}, but the trusted key is {expected}")]
    WrongKey {
        /// The key id the box trusts.
        expected: String,
        /// The key id in the signature file.
        found: String,
    },
    /// The signature does not match the bytes.
    #[error("bad signature by key {0}: the file was changed or not signed by this key")]
    Bad(String),
}

/// An Ed25519 private key (builder side).
pub struct SigningKey(ed25519_dalek::SigningKey);

/// An Ed25519 public key (baked into every image with the site file).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

/// The contents of an `X.json.sig` file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// Id of the signing key (16 lower-case hex digits).
    pub keyid: String,
    /// Base64 (standard, padded) of the 64-byte Ed25519 signature.
    pub sig: String,
}

impl SigningKey {
    /// A new key from the operating system's randomness.
    pub fn generate() -> Result<SigningKey, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        seed.fill(0);
        Ok(SigningKey(key))
    }

    /// A key from its 32 secret bytes (tests and fixed fixtures).
    pub fn from_bytes(seed: &[u8; 32]) -> SigningKey {
        SigningKey(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    /// Reads a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pkcs8_pem(text: &str) -> Result<SigningKey, KeyError> {
        ed25519_dalek::SigningKey::from_pkcs8_pem(text)
            .map(SigningKey)
            .map_err(|e| KeyError::Pkcs8(e.to_string()))
    }

    /// The key as PKCS#8 PEM, as `openssl genpkey -algorithm ed25519` writes it
    /// (version 1, without the optional public key, which OpenSSL 3.0 refuses).
    pub fn to_pkcs8_pem(&self) -> Result<String, KeyError> {
        ed25519_dalek::pkcs8::KeypairBytes {
            secret_key: self.0.to_bytes(),
            public_key: None,
        }
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map(|z| z.as_str().to_owned())
        .map_err(|e| KeyError::Pkcs8(e.to_string()))
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// A detached signature over `bytes`.
    pub fn sign(&self, bytes: &[u8]) -> Signature {
        Signature {
            keyid: self.public_key().keyid(),
            sig: B64.encode(self.0.sign(bytes).to_bytes()),
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.public_key().keyid())
    }
}

impl PublicKey {
    /// Parses `ed25519:<base64 of 32 bytes>`.
    pub fn parse(text: &str) -> Result<PublicKey, KeyError> {
        let err = |reason: &str| KeyError::Public {
            text: text.chars().take(60).collect(),
            reason: reason.to_owned(),
        };
        let b64 = text
            .trim()
            .strip_prefix(PUBLIC_PREFIX)
            .ok_or_else(|| err("does not start with \"ed25519:\""))?;
        let bytes = B64
            .decode(b64)
            .map_err(|e| err(&format!("not base64: {e}")))?;
        let bytes: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| err(&format!("{} bytes, an Ed25519 key has 32", bytes.len())))?;
        ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|_| err("not a point on the Ed25519 curve"))
    }

    /// The 32 key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// The key id: first 16 hex digits of sha256 over the 32 key bytes.
    pub fn keyid(&self) -> String {
        let mut id = crate::hex::sha256(self.0.as_bytes());
        id.truncate(16);
        id
    }

    /// Checks a signature over `bytes` (key id and signature).
    pub fn verify(&self, bytes: &[u8], sig: &Signature) -> Result<(), SignatureError> {
        let keyid = self.keyid();
        if sig.keyid != keyid {
            return Err(SignatureError::WrongKey {
                expected: keyid,
                found: sig.keyid.clone(),
            });
        }
        let raw = B64
            .decode(&sig.sig)
            .map_err(|e| SignatureError::Malformed(format!("field `sig`: not base64: {e}")))?;
        let raw: [u8; 64] = raw.as_slice().try_into().map_err(|_| {
            SignatureError::Malformed(format!(
                "field `sig`: {} bytes, an Ed25519 signature has 64",
                raw.len()
            ))
        })?;
        self.0
            .verify_strict(bytes, &ed25519_dalek::Signature::from_bytes(&raw))
            .map_err(|_| SignatureError::Bad(keyid))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_PREFIX}{}", B64.encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl Signature {
    /// The signature file's text: pretty JSON with a trailing newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Parses a signature file.
    pub fn from_json(bytes: &[u8]) -> Result<Signature, SignatureError> {
        let sig: Signature =
            serde_json::from_slice(bytes).map_err(|e| SignatureError::Malformed(e.to_string()))?;
        if !crate::hex::is_lower_hex(&sig.keyid, 16) {
            return Err(SignatureError::Malformed(format!(
                "field `keyid`: {:?} is not 16 lower-case hex digits",
                sig.keyid
            )));
        }
        Ok(sig)
    }
}

/// Checks `sig_bytes` (an `X.json.sig` file) over `bytes` with `key`.
pub fn verify_detached(
    key: &PublicKey,
    bytes: &[u8],
    sig_bytes: &[u8],
) -> Result<(), SignatureError> {
    key.verify(bytes, &Signature::from_json(sig_bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    #[test]
    fn pem_round_trip_keeps_the_key() {
        let k = SigningKey::generate().unwrap();
        let pem = k.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
        let back = SigningKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(back.public_key(), k.public_key());
        // Two generated keys differ (the randomness is used).
        assert_ne!(SigningKey::generate().unwrap().public_key(), k.public_key());
    }

    #[test]
    fn openssl_reads_our_pem_and_derives_the_same_public_key() {
        let k = key(7);
        let dir = std::env::temp_dir().join(format!("cairn-update-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key.pem");
        std::fs::write(&file, k.to_pkcs8_pem().unwrap()).unwrap();
        let out = std::process::Command::new("openssl")
            .args(["pkey", "-in"])
            .arg(&file)
            .args(["-pubout", "-outform", "DER"])
            .output();
        std::fs::remove_dir_all(&dir).unwrap();
        let out = out.unwrap_or_else(|e| panic!("this test needs the `openssl` command: {e}"));
        assert!(
            out.status.success(),
            "openssl pkey refused our PEM: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // SubjectPublicKeyInfo for Ed25519: 12 bytes of header, then the 32 key bytes.
        assert_eq!(out.stdout.len(), 44);
        assert_eq!(&out.stdout[12..], k.public_key().as_bytes());
    }

    #[test]
    fn openssl_generated_keys_are_read() {
        let out = std::process::Command::new("openssl")
            .args(["genpkey", "-algorithm", "ed25519"])
            .output()
            .unwrap_or_else(|e| panic!("this test needs the `openssl` command: {e}"));
        assert!(out.status.success());
        let pem = String::from_utf8(out.stdout).unwrap();
        let k = SigningKey::from_pkcs8_pem(&pem).unwrap();
        let sig = k.sign(b"x");
        k.public_key().verify(b"x", &sig).unwrap();
    }

    #[test]
    fn public_key_text_round_trips_and_bad_text_is_named() {
        let p = key(1).public_key();
        let text = p.to_string();
        assert!(
            text.starts_with("ed25519:") && text.len() == 8 + 44,
            "{text}"
        );
        assert_eq!(PublicKey::parse(&text).unwrap(), p);
        let e = |t: &str| PublicKey::parse(t).unwrap_err().to_string();
        assert!(e("rsa:AAAA").contains("does not start with \"ed25519:\""));
        assert!(e("ed25519:!!!").contains("not base64"));
        assert!(e("ed25519:AAAA").contains("3 bytes, an Ed25519 key has 32"));
        assert!(
            SigningKey::from_pkcs8_pem(
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
            )
            .is_err()
        );
    }

    #[test]
    fn keyid_is_the_sha256_prefix_of_the_key_bytes() {
        let p = key(1).public_key();
        let id = p.keyid();
        assert_eq!(id.len(), 16);
        assert_eq!(id, crate::hex::sha256(p.as_bytes())[..16]);
        assert_ne!(id, key(2).public_key().keyid());
    }

    #[test]
    fn signatures_verify_and_every_tampering_is_caught() {
        let k = key(3);
        let p = k.public_key();
        let data = br#"{"format": 1}"#.to_vec();
        let sig_file = k.sign(&data).to_json();
        assert!(sig_file.ends_with("}\n"));
        verify_detached(&p, &data, sig_file.as_bytes()).unwrap();

        // Wrong key: refused by key id before any crypto.
        let other = key(4).public_key();
        assert!(matches!(
            verify_detached(&other, &data, sig_file.as_bytes()),
            Err(SignatureError::WrongKey { expected, found }) if expected == other.keyid() && found == p.keyid()
        ));

        // A flipped bit in the signed bytes.
        let mut bad = data.clone();
        bad[3] ^= 0x01;
        assert_eq!(
            verify_detached(&p, &bad, sig_file.as_bytes()),
            Err(SignatureError::Bad(p.keyid()))
        );

        // A flipped bit in the signature.
        let mut sig = Signature::from_json(sig_file.as_bytes()).unwrap();
        let mut raw = B64.decode(&sig.sig).unwrap();
        raw[10] ^= 0x80;
        sig.sig = B64.encode(&raw);
        assert_eq!(p.verify(&data, &sig), Err(SignatureError::Bad(p.keyid())));

        // Garbage signature files.
        for garbage in [
            &b""[..],
            b"not json",
            b"{\"keyid\": \"0011223344556677\"}",
            b"{\"keyid\": \"xyz\", \"sig\": \"\"}",
        ] {
            assert!(
                matches!(
                    verify_detached(&p, &data, garbage),
                    Err(SignatureError::Malformed(_))
                ),
                "{}",
                String::from_utf8_lossy(garbage)
            );
        }
        let extra = sig_file.replacen('{', "{\"extra\": 1,", 1);
        assert!(matches!(
            verify_detached(&p, &data, extra.as_bytes()),
            Err(SignatureError::Malformed(m)) if m.contains("unknown field `extra`")
        ));
        let short = Signature {
            keyid: p.keyid(),
            sig: B64.encode([0u8; 10]),
        };
        assert!(matches!(
            p.verify(&data, &short),
            Err(SignatureError::Malformed(m)) if m.contains("10 bytes")
        ));
    }
}
