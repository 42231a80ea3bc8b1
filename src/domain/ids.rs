//! Identifiers of the things Switchboard provisions, each parsed once at the edge.

use serde::Serialize;

use super::{random_alphanumeric, ValidationError};

/// A WhatsApp Business Account id: Meta's positive integer (the provider returns it as a number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct WabaId(i64);

impl WabaId {
    /// Accepts a positive integer, as Meta issues them.
    pub fn new(raw: i64) -> Result<Self, ValidationError> {
        if raw > 0 {
            Ok(Self(raw))
        } else {
            Err(ValidationError(format!(
                "Invalid waba_id {raw}: must be a positive integer"
            )))
        }
    }

    /// Parses an id taken from a URL path.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        raw.parse::<i64>()
            .map_err(|_| {
                ValidationError(format!(
                    "Invalid waba_id {raw:?}: must be a positive integer"
                ))
            })
            .and_then(Self::new)
    }

    /// A fresh 15-digit id, shaped like Meta's, for WABAs provisioned without one.
    pub fn generate() -> Self {
        Self(100_000_000_000_000 + random_u64() as i64 % 900_000_000_000_000)
    }

    /// The integer, for storage and JSON.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl std::fmt::Display for WabaId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Random bits for generated ids; falls back to the clock only if the OS has no entropy.
fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        return nanos as u64;
    }
    u64::from_le_bytes(bytes) >> 1
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A fresh random id.
            pub fn generate() -> Self {
                Self(random_alphanumeric($len))
            }

            /// Takes an id from a URL path or the store; unknown ids are simply not found.
            pub fn from_raw(raw: impl Into<String>) -> Self {
                Self(raw.into())
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// A partner's id, the `{partner_id}` of the Partner API paths.
    PartnerId,
    10
);
string_id!(
    /// A channel's (phone number's) id in Switchboard, used by the admin API.
    ChannelId,
    12
);

/// A phone number in international format: an optional `+` and 6 to 15 digits (E.164).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Accepts `+4915112345678` or `4915112345678`; keeps the client's spelling.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let digits = raw.strip_prefix('+').unwrap_or(raw);
        if (6..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ValidationError(format!(
                "Invalid phone_number {raw:?}: expected an optional + and 6 to 15 digits"
            )))
        }
    }

    /// Rebuilds a number that was validated when it was stored.
    pub fn from_stored(raw: String) -> Self {
        Self(raw)
    }

    /// The number as the client wrote it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The start of a phone number to search by: digits with an optional leading `+` (which is
/// ignored: numbers are stored as their clients spelled them, with or without it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhonePrefix(String);

impl PhonePrefix {
    /// Accepts `+4915`, `4915`, … (1 to 15 digits), so a search never scans on garbage; a
    /// leading space is taken for the `+` a query string decodes as one (`?phone=+4915`).
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let trimmed = raw.strip_prefix(' ').unwrap_or(raw);
        let digits = trimmed.strip_prefix('+').unwrap_or(trimmed);
        if (1..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(digits.to_owned()))
        } else {
            Err(ValidationError(format!(
                "Invalid phone {raw:?}: expected an optional + and 1 to 15 digits"
            )))
        }
    }

    /// The digits, without a `+`.
    pub fn digits(&self) -> &str {
        &self.0
    }
}

/// Meta's id for a phone number, the key that routes Meta's webhooks to a channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct PhoneNumberId(String);

impl PhoneNumberId {
    /// Accepts 1 to 32 digits, the shape of Meta's ids.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        if (1..=32).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ValidationError(format!(
                "Invalid phone_number_id {raw:?}: expected 1 to 32 digits"
            )))
        }
    }

    /// A fresh 15-digit id, for channels provisioned without Meta's.
    pub fn generate() -> Self {
        Self((100_000_000_000_000 + random_u64() % 900_000_000_000_000).to_string())
    }

    /// Rebuilds an id that was validated when it was stored.
    pub fn from_stored(raw: String) -> Self {
        Self(raw)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waba_ids_are_positive() {
        assert!(WabaId::new(0).is_err());
        assert!(WabaId::new(-5).is_err());
        assert_eq!(
            WabaId::parse("102290129340398").unwrap().get(),
            102290129340398
        );
        assert!(WabaId::parse("12x").is_err());
        let generated = WabaId::generate().get();
        assert!((100_000_000_000_000..1_000_000_000_000_000).contains(&generated));
    }

    #[test]
    fn phone_numbers_are_e164() {
        assert!(PhoneNumber::parse("+4915112345678").is_ok());
        assert!(PhoneNumber::parse("4915112345678").is_ok());
        for bad in ["", "+", "12345", "+1234567890123456", "49 151", "abc123456"] {
            assert!(PhoneNumber::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn phone_prefixes_are_digits_with_an_optional_plus() {
        assert_eq!(PhonePrefix::parse("+4915").unwrap().digits(), "4915");
        assert_eq!(PhonePrefix::parse("4").unwrap().digits(), "4");
        assert_eq!(PhonePrefix::parse(" 4915").unwrap().digits(), "4915");
        for bad in ["", "+", "49 15", "+49a", "1234567890123456"] {
            assert!(PhonePrefix::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn phone_number_ids_are_digits() {
        assert!(PhoneNumberId::parse("106540352242922").is_ok());
        assert!(PhoneNumberId::parse("").is_err());
        assert!(PhoneNumberId::parse("12a").is_err());
        assert_eq!(PhoneNumberId::generate().as_str().len(), 15);
    }

    #[test]
    fn generated_string_ids_differ() {
        assert_ne!(ChannelId::generate(), ChannelId::generate());
        assert_eq!(PartnerId::generate().as_str().len(), 10);
    }
}
