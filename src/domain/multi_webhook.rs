//! Extra destinations of a phone number ("multi webhook") and the rules for changing them.
//!
//! The rules live here, as one pure function, so that every backend applies them the same
//! way inside its own transaction: a rejected change leaves the configuration untouched.

use serde::Serialize;

use super::{ValidationError, WebhookHeaders, WebhookUrl};

/// The longest destination name accepted.
const MAX_NAME_CHARS: usize = 100;

/// The name that identifies an extra destination; case-sensitive, like an id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct DestinationName(String);

impl DestinationName {
    /// Accepts 1 to 100 characters without control characters or `/` (names appear in paths).
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let length = raw.chars().count();
        if length == 0 {
            return Err(ValidationError("Destination name must not be empty".into()));
        }
        if length > MAX_NAME_CHARS {
            return Err(ValidationError(format!(
                "Invalid destination name {raw:?}: at most {MAX_NAME_CHARS} characters"
            )));
        }
        if raw.chars().any(|c| c.is_control() || c == '/') {
            return Err(ValidationError(format!(
                "Invalid destination name {raw:?}: control characters and \"/\" are not allowed"
            )));
        }
        Ok(Self(raw.to_owned()))
    }

    /// Rebuilds a name that was validated when it was stored.
    pub fn from_stored(raw: String) -> Self {
        Self(raw)
    }

    /// The name, exactly as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One extra destination: a name, a URL and its own headers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Destination {
    /// Identifies the destination in PATCH and DELETE.
    pub name: DestinationName,
    /// Where the clone is sent.
    pub url: WebhookUrl,
    /// Headers sent with the clone.
    pub headers: WebhookHeaders,
}

/// A number's multi-webhook configuration; destinations are kept while it is disabled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MultiWebhook {
    /// Whether extra destinations receive clones.
    pub enabled: bool,
    /// The extra destinations, in the order they were added.
    pub destinations: Vec<Destination>,
}

/// A requested change, one per Messaging API method.
#[derive(Debug, Clone)]
pub enum MultiWebhookChange {
    /// POST `enabled: true`, with optional initial destinations.
    Enable(Vec<Destination>),
    /// POST `enabled: false`.
    Disable,
    /// PUT: append destinations.
    Append(Vec<Destination>),
    /// PATCH: replace the given properties of the named destination.
    Update {
        /// The destination to change (exact name).
        name: DestinationName,
        /// The new URL, if it changes.
        url: Option<WebhookUrl>,
        /// The new headers, if they change.
        headers: Option<WebhookHeaders>,
    },
    /// DELETE `/multi_webhook/{name}`.
    Delete(DestinationName),
}

/// Why a change was refused; the texts are the provider's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultiWebhookError {
    /// Refused: the message says why.
    #[error("Multi webhook is disabled, use POST to enable it first")]
    Disabled,
    /// Refused: the message says why.
    #[error("Multi webhook is already enabled, use PUT to add destinations")]
    AlreadyEnabled,
    /// Refused: the message says why.
    #[error("Destination names must be unique")]
    NamesNotUnique,
    /// Refused: the message says why.
    #[error("Destination with name {0} already exists")]
    AlreadyExists(String),
    /// Refused: the message says why.
    #[error("You cannot add more than {0} destinations")]
    TooMany(usize),
    /// Refused: the message says why.
    #[error("Destination with name {0} not found")]
    NotFound(String),
}

impl MultiWebhook {
    /// The configuration after `change`, or why it is refused; at most `max` destinations.
    pub fn apply(
        &self,
        change: MultiWebhookChange,
        max: usize,
    ) -> Result<MultiWebhook, MultiWebhookError> {
        match change {
            MultiWebhookChange::Enable(_) if self.enabled => Err(MultiWebhookError::AlreadyEnabled),
            MultiWebhookChange::Enable(added) => Ok(MultiWebhook {
                enabled: true,
                destinations: self.appended(added, max)?,
            }),
            MultiWebhookChange::Disable => Ok(MultiWebhook {
                enabled: false,
                destinations: self.destinations.clone(),
            }),
            _ if !self.enabled => Err(MultiWebhookError::Disabled),
            MultiWebhookChange::Append(added) => Ok(MultiWebhook {
                enabled: true,
                destinations: self.appended(added, max)?,
            }),
            MultiWebhookChange::Update { name, url, headers } => {
                let mut next = self.clone();
                let target = next
                    .destinations
                    .iter_mut()
                    .find(|d| d.name == name)
                    .ok_or_else(|| MultiWebhookError::NotFound(name.0.clone()))?;
                if let Some(url) = url {
                    target.url = url;
                }
                if let Some(headers) = headers {
                    target.headers = headers;
                }
                Ok(next)
            }
            MultiWebhookChange::Delete(name) => {
                let mut next = self.clone();
                let before = next.destinations.len();
                next.destinations.retain(|d| d.name != name);
                if next.destinations.len() == before {
                    return Err(MultiWebhookError::NotFound(name.0));
                }
                Ok(next)
            }
        }
    }

    /// The destinations with `added` appended, checking names and the maximum.
    fn appended(
        &self,
        added: Vec<Destination>,
        max: usize,
    ) -> Result<Vec<Destination>, MultiWebhookError> {
        for (i, destination) in added.iter().enumerate() {
            if added[..i].iter().any(|d| d.name == destination.name) {
                return Err(MultiWebhookError::NamesNotUnique);
            }
        }
        if let Some(clash) = added
            .iter()
            .find(|d| self.destinations.iter().any(|e| e.name == d.name))
        {
            return Err(MultiWebhookError::AlreadyExists(clash.name.0.clone()));
        }
        if self.destinations.len() + added.len() > max {
            return Err(MultiWebhookError::TooMany(max));
        }
        let mut all = self.destinations.clone();
        all.extend(added);
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::UrlPolicy;
    use MultiWebhookChange::*;

    fn dest(name: &str) -> Destination {
        Destination {
            name: DestinationName::parse(name).unwrap(),
            url: WebhookUrl::parse("https://example.com/hook", UrlPolicy::default()).unwrap(),
            headers: WebhookHeaders::default(),
        }
    }

    fn name(raw: &str) -> DestinationName {
        DestinationName::parse(raw).unwrap()
    }

    fn enabled(names: &[&str]) -> MultiWebhook {
        MultiWebhook {
            enabled: true,
            destinations: names.iter().map(|n| dest(n)).collect(),
        }
    }

    #[test]
    fn enable_with_destinations_then_disable_keeps_them() {
        let on = MultiWebhook::default()
            .apply(Enable(vec![dest("a")]), 3)
            .unwrap();
        assert_eq!(on, enabled(&["a"]));
        let off = on.apply(Disable, 3).unwrap();
        assert!(!off.enabled);
        assert_eq!(off.destinations.len(), 1);
        assert_eq!(off.apply(Disable, 3).unwrap(), off);
    }

    #[test]
    fn enabling_twice_is_refused() {
        assert_eq!(
            enabled(&[]).apply(Enable(vec![]), 3),
            Err(MultiWebhookError::AlreadyEnabled)
        );
    }

    #[test]
    fn changes_while_disabled_are_refused() {
        let off = MultiWebhook::default();
        for change in [
            Append(vec![dest("a")]),
            Update {
                name: name("a"),
                url: None,
                headers: None,
            },
            Delete(name("a")),
        ] {
            assert_eq!(off.apply(change, 3), Err(MultiWebhookError::Disabled));
        }
    }

    #[test]
    fn names_are_unique_and_case_sensitive() {
        let on = enabled(&["webhook"]);
        assert_eq!(
            on.apply(Append(vec![dest("x"), dest("x")]), 3),
            Err(MultiWebhookError::NamesNotUnique)
        );
        assert_eq!(
            on.apply(Append(vec![dest("webhook")]), 3),
            Err(MultiWebhookError::AlreadyExists("webhook".into()))
        );
        assert_eq!(
            on.apply(Append(vec![dest("WEBhook")]), 3).unwrap(),
            enabled(&["webhook", "WEBhook"])
        );
    }

    #[test]
    fn at_most_max_destinations_and_no_partial_append() {
        let on = enabled(&["a", "b"]);
        assert_eq!(
            on.apply(Append(vec![dest("c"), dest("d")]), 3),
            Err(MultiWebhookError::TooMany(3))
        );
        assert_eq!(
            MultiWebhook::default().apply(Enable(vec![dest("a"), dest("b")]), 1),
            Err(MultiWebhookError::TooMany(1))
        );
        assert!(on.apply(Append(vec![dest("c")]), 3).is_ok());
    }

    #[test]
    fn update_replaces_only_given_properties() {
        let on = enabled(&["a"]);
        let url = WebhookUrl::parse("https://new.example.com", UrlPolicy::default()).unwrap();
        let next = on
            .apply(
                Update {
                    name: name("a"),
                    url: Some(url.clone()),
                    headers: None,
                },
                3,
            )
            .unwrap();
        assert_eq!(next.destinations[0].url, url);
        assert_eq!(
            on.apply(
                Update {
                    name: name("A"),
                    url: None,
                    headers: None
                },
                3
            ),
            Err(MultiWebhookError::NotFound("A".into()))
        );
    }

    #[test]
    fn delete_by_exact_name() {
        let on = enabled(&["a", "b"]);
        assert_eq!(on.apply(Delete(name("a")), 3).unwrap(), enabled(&["b"]));
        assert_eq!(
            on.apply(Delete(name("B")), 3),
            Err(MultiWebhookError::NotFound("B".into()))
        );
    }

    #[test]
    fn destination_names_are_checked() {
        assert!(DestinationName::parse("").is_err());
        assert!(DestinationName::parse("a/b").is_err());
        assert!(DestinationName::parse("tab\there").is_err());
        assert!(DestinationName::parse(&"x".repeat(101)).is_err());
        assert!(DestinationName::parse("Webhook 2 ✓").is_ok());
    }
}
