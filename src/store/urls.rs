//! Attempt rows name their URL by reference (`attempt_urls`): a URL is stored once, and
//! every attempt to it stores its id, not the URL again.
//!
//! The ids a store has seen are kept here, so the hot path (settling an attempt) costs one
//! lookup in memory; a URL not seen yet is stored in a small transaction of its own, which
//! has committed before its id is remembered or used. Rows of `attempt_urls` are never
//! deleted, so a remembered id stays valid.
//!
//! Each row also names the URL's destination ([`destination_of`]), so deliveries can be
//! found by the receiver their attempts went to (recovery's destination filter).

use std::collections::HashMap;
use std::sync::RwLock;

use crate::domain::DestinationId;

/// URLs remembered at most; the memo is emptied when full (ids are then read again).
const MAX_REMEMBERED: usize = 100_000;

/// The ids of the URLs in `attempt_urls` this process has seen.
#[derive(Default)]
pub struct UrlIds(RwLock<HashMap<String, i64>>);

impl UrlIds {
    /// The id of `url`, if it is known.
    pub fn get(&self, url: &str) -> Option<i64> {
        let known = self.0.read().unwrap_or_else(|p| p.into_inner());
        known.get(url).copied()
    }

    /// Remembers the id of a URL stored (committed) in `attempt_urls`.
    pub fn remember(&self, url: &str, id: i64) {
        let mut known = self.0.write().unwrap_or_else(|p| p.into_inner());
        if known.len() >= MAX_REMEMBERED {
            known.clear();
        }
        known.insert(url.to_owned(), id);
    }
}

/// The destination stored beside `url` in `attempt_urls` (its `DestinationId`), computed here
/// for both backends so the column means the same everywhere; `None` for text that is not an
/// absolute URL.
pub fn destination_of(url: &str) -> Option<String> {
    DestinationId::of(url).map(|id| id.as_str().to_owned())
}
