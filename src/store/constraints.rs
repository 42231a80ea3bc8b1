//! The schema's constraints in the API's words: one table for both backends.
//!
//! Existence and uniqueness are the database's to enforce (primary keys, `UNIQUE`, foreign
//! keys), not re-checked by hand before each insert: a check-then-insert races with other
//! nodes, and writes each rule twice. Each backend turns its driver's report of a broken
//! constraint into a [`Violation`]; [`RULES`] says what that violation means to a client,
//! with the values the write was about ([`Subject`]).

use crate::domain::{Partner, PartnerId, WabaId};
use crate::store::{NewChannel, StoreError};

/// What kind of constraint a write broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViolationKind {
    /// A primary key or `UNIQUE` column already holds the value.
    Unique,
    /// A reference to a row that does not exist.
    ForeignKey,
}

/// A broken constraint as a backend reports it: the table and, where the driver names it,
/// the column (SQLite does not name the column of a foreign key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Unique or foreign key.
    pub kind: ViolationKind,
    /// The table written, when the driver names it.
    pub table: Option<String>,
    /// The column, when the driver names it.
    pub column: Option<String>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            ViolationKind::Unique => f.write_str("A record with these values already exists"),
            ViolationKind::ForeignKey => {
                f.write_str("The record refers to one that does not exist")
            }
        }
    }
}

/// The values a write was about, which the API's messages name.
#[derive(Debug, Clone, Copy, Default)]
pub struct Subject<'a> {
    /// The table written (the violation may not name it).
    pub table: &'a str,
    /// The partner created, or the one a WABA is added to.
    pub partner: Option<&'a str>,
    /// The WABA created, or the one a channel is added to.
    pub waba: Option<WabaId>,
    /// The channel's number.
    pub phone_number: Option<&'a str>,
    /// The channel's Meta id.
    pub phone_number_id: Option<&'a str>,
}

impl<'a> Subject<'a> {
    /// A new partner.
    pub fn partner(partner: &'a Partner) -> Self {
        Subject {
            table: "partners",
            partner: Some(partner.id.as_str()),
            ..Subject::default()
        }
    }

    /// A new WABA of `partner`.
    pub fn waba(partner: &'a PartnerId, waba: WabaId) -> Self {
        Subject {
            table: "wabas",
            partner: Some(partner.as_str()),
            waba: Some(waba),
            ..Subject::default()
        }
    }

    /// A new channel.
    pub fn channel(channel: &'a NewChannel) -> Self {
        Subject {
            table: "channels",
            waba: Some(channel.waba_id),
            phone_number: Some(channel.phone_number.as_str()),
            phone_number_id: Some(channel.phone_number_id.as_str()),
            ..Subject::default()
        }
    }
}

/// One constraint and what its violation tells the client.
struct Rule {
    table: &'static str,
    column: &'static str,
    kind: ViolationKind,
    error: fn(&Subject<'_>) -> StoreError,
}

/// Every constraint whose violation a client can cause, and its message; the others are a
/// generic conflict ([`Violation`]'s text).
const RULES: &[Rule] = &[
    Rule {
        table: "partners",
        column: "id",
        kind: ViolationKind::Unique,
        error: |s| StoreError::Conflict(format!("Partner {} already exists", show(s.partner))),
    },
    Rule {
        table: "wabas",
        column: "id",
        kind: ViolationKind::Unique,
        error: |s| StoreError::Conflict(format!("WABA {} already exists", show(s.waba))),
    },
    Rule {
        table: "wabas",
        column: "partner_id",
        kind: ViolationKind::ForeignKey,
        error: |s| StoreError::NotFound {
            what: "partner",
            id: show(s.partner),
        },
    },
    Rule {
        table: "channels",
        column: "waba_id",
        kind: ViolationKind::ForeignKey,
        error: |s| StoreError::NotFound {
            what: "WABA",
            id: show(s.waba),
        },
    },
    Rule {
        table: "channels",
        column: "phone_number",
        kind: ViolationKind::Unique,
        error: |s| {
            let number = show(s.phone_number);
            StoreError::Conflict(format!(
                "A channel with phone_number {number} already exists"
            ))
        },
    },
    Rule {
        table: "channels",
        column: "phone_number_id",
        kind: ViolationKind::Unique,
        error: |s| {
            let id = show(s.phone_number_id);
            StoreError::Conflict(format!(
                "A channel with phone_number_id {id} already exists"
            ))
        },
    },
];

fn show(value: Option<impl ToString>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

impl Violation {
    /// What the violation tells the client about `subject`: the rule's error, or a generic
    /// conflict for a constraint no rule names.
    pub fn explain(self, subject: &Subject<'_>) -> StoreError {
        let table = self.table.as_deref().unwrap_or(subject.table);
        let rule = RULES.iter().find(|rule| {
            rule.kind == self.kind
                && rule.table == table
                && self
                    .column
                    .as_deref()
                    .is_none_or(|column| column == rule.column)
        });
        match rule {
            Some(rule) => (rule.error)(subject),
            None => StoreError::Conflict(self.to_string()),
        }
    }
}

impl StoreError {
    /// This error with a broken constraint told in the API's words for `subject`; any other
    /// error unchanged.
    pub fn explained(self, subject: &Subject<'_>) -> StoreError {
        match self {
            StoreError::Constraint(violation) => violation.explain(subject),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violation(kind: ViolationKind, table: Option<&str>, column: Option<&str>) -> Violation {
        Violation {
            kind,
            table: table.map(str::to_owned),
            column: column.map(str::to_owned),
        }
    }

    fn channel<'a>() -> Subject<'a> {
        Subject {
            table: "channels",
            waba: Some(WabaId::parse("1234").unwrap()),
            phone_number: Some("+4915112345678"),
            phone_number_id: Some("1099"),
            ..Subject::default()
        }
    }

    #[test]
    fn a_taken_number_or_meta_id_is_a_conflict_naming_it() {
        let taken = violation(
            ViolationKind::Unique,
            Some("channels"),
            Some("phone_number"),
        );
        assert_eq!(
            taken.explain(&channel()).to_string(),
            "A channel with phone_number +4915112345678 already exists"
        );
        let taken = violation(
            ViolationKind::Unique,
            Some("channels"),
            Some("phone_number_id"),
        );
        assert_eq!(
            taken.explain(&channel()).to_string(),
            "A channel with phone_number_id 1099 already exists"
        );
    }

    #[test]
    fn a_missing_parent_is_not_found_even_when_the_driver_names_no_column() {
        // SQLite reports "FOREIGN KEY constraint failed" and nothing else.
        let missing = violation(ViolationKind::ForeignKey, None, None);
        assert!(matches!(
            missing.explain(&channel()),
            StoreError::NotFound { what: "WABA", id } if id == "1234"
        ));
        let waba = Subject {
            table: "wabas",
            partner: Some("p-1"),
            waba: Some(WabaId::parse("77").unwrap()),
            ..Subject::default()
        };
        let missing = violation(ViolationKind::ForeignKey, Some("wabas"), Some("partner_id"));
        assert!(matches!(
            missing.explain(&waba),
            StoreError::NotFound { what: "partner", id } if id == "p-1"
        ));
        let taken = violation(ViolationKind::Unique, Some("wabas"), Some("id"));
        assert_eq!(taken.explain(&waba).to_string(), "WABA 77 already exists");
    }

    #[test]
    fn a_constraint_no_rule_names_stays_a_generic_conflict() {
        let other = violation(
            ViolationKind::Unique,
            Some("channels"),
            Some("api_key_hash"),
        );
        let error = other.explain(&channel());
        assert!(matches!(error, StoreError::Conflict(_)));
        assert_eq!(
            error.to_string(),
            "A record with these values already exists"
        );
    }
}
