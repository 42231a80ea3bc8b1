//! JSON text as Meta writes it: ASCII only, every other character as a lowercase `\uXXXX`
//! escape (a surrogate pair beyond the Basic Multilingual Plane).
//!
//! Meta signs that "escaped unicode" form, and some receiver libraries (whatsapp-api-js)
//! escape a body that way before they check its HMAC; others (pywa, Meta's Node SDK) hash
//! the raw bytes. A body that is already in that form satisfies both, so every body
//! Switchboard builds is written in it.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `json` (valid JSON text) with every non-ASCII character escaped. Outside strings valid
/// JSON is ASCII already, so the text is rewritten character by character, and the value it
/// denotes is unchanged: key order, numbers and every other byte stay as they are.
pub fn ascii_escaped(json: &str) -> Cow<'_, str> {
    if json.is_ascii() {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + json.len() / 2);
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
            continue;
        }
        let mut units = [0u16; 2];
        for unit in c.encode_utf16(&mut units) {
            let _ = write!(out, "\\u{unit:04x}");
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_ascii_becomes_lowercase_escapes_and_the_value_is_unchanged() {
        let text = r#"{"b":"café 中文 😀","a":1.50,"n":"plain"}"#;
        let escaped = ascii_escaped(text);
        assert_eq!(
            escaped,
            r#"{"b":"caf\u00e9 \u4e2d\u6587 \ud83d\ude00","a":1.50,"n":"plain"}"#
        );
        assert!(escaped.is_ascii());
        let before: serde_json::Value = serde_json::from_str(text).unwrap();
        let after: serde_json::Value = serde_json::from_str(&escaped).unwrap();
        assert_eq!(before, after);
        assert!(matches!(ascii_escaped("{\"a\":1}"), Cow::Borrowed(_)));
    }
}
