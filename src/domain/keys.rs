//! API keys: random, shown once, stored only as a hash, compared in constant time.
//!
//! Keys carry at least 128 bits of entropy, so a plain SHA-256 is a sufficient one-way hash
//! (a slow password hash only helps against guessable secrets) and lets the store find the
//! owner of a presented key by an index lookup on the hash.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Characters in a generated key: 32 × log2(62) ≈ 190 bits.
const KEY_LEN: usize = 32;

/// A random string over `[0-9A-Za-z]`, drawn without modulo bias.
///
/// The OS random source never fails on the platforms Switchboard supports; if it did, the
/// process could not issue safe keys at all, so it stops instead of issuing weak ones.
pub fn random_alphanumeric(len: usize) -> String {
    let mut out = String::with_capacity(len);
    let mut buffer = [0u8; 64];
    while out.len() < len {
        #[allow(clippy::expect_used)]
        getrandom::fill(&mut buffer).expect("the OS random source failed"); // ok: see the doc comment
        for byte in buffer {
            // 248 = 4 × 62: bytes above it would favour the first characters.
            if byte < 248 && out.len() < len {
                out.push(char::from(ALPHABET[usize::from(byte) % ALPHABET.len()]));
            }
        }
    }
    out
}

/// `bytes` random bytes as lowercase hex: session ids and CSRF tokens of the console.
///
/// Like [`random_alphanumeric`], it stops the process rather than issue a weak secret if
/// the OS random source fails.
pub fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut buffer).expect("the OS random source failed"); // ok: see the doc comment
    hex(&buffer)
}

/// Lowercase hex of `bytes`, without a formatter call per byte (it runs on every request).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// A freshly issued API key, in clear text only until it is shown to its owner once.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Issues a new random key.
    pub fn generate() -> Self {
        Self(random_alphanumeric(KEY_LEN))
    }

    /// The key as shown to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The hash that the store keeps instead of the key.
    pub fn hash(&self) -> KeyHash {
        KeyHash::of(&self.0)
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// SHA-256 of a key, hex-encoded: what the store keeps and looks keys up by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyHash(String);

impl KeyHash {
    /// Hashes a key as presented by a client.
    pub fn of(key: &str) -> Self {
        let digest = Sha256::digest(key.as_bytes());
        Self(hex(&digest))
    }

    /// Rebuilds a hash read from the store.
    pub fn from_stored(raw: String) -> Self {
        Self(raw)
    }

    /// The hex text, for storage.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Compares two hashes without leaking where they differ.
    pub fn matches(&self, other: &KeyHash) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_long_random_and_alphanumeric() {
        let a = ApiKey::generate();
        let b = ApiKey::generate();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), KEY_LEN);
        assert!(a.expose().bytes().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn hashes_match_only_their_key() {
        let key = ApiKey::generate();
        assert!(key.hash().matches(&KeyHash::of(key.expose())));
        assert!(!key.hash().matches(&KeyHash::of("something else")));
        assert_eq!(key.hash().as_str().len(), 64);
    }

    #[test]
    fn hex_is_lowercase_two_digits_per_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = ApiKey::generate();
        assert!(!format!("{key:?}").contains(key.expose()));
    }
}
