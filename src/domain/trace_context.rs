//! The W3C trace context (`traceparent`, `tracestate`) that came with a notification: kept
//! with its event and carried onto every delivery of it, so a receiver (and a tracing
//! backend) can follow one notification from the sender's POST to the receiver's 200.
//!
//! Parsed once at the door ("parse, don't validate"): a malformed `traceparent` is no trace
//! context at all (it is ignored, as the W3C recommendation asks, and never an error), and a
//! `tracestate` is kept only beside a valid `traceparent`.

use std::fmt::Write as _;

/// Longest `tracestate` kept: the 512 characters the W3C recommendation asks vendors to
/// propagate at least; a longer one is dropped (the `traceparent` still counts).
pub const MAX_TRACESTATE_LEN: usize = 512;

/// Length of a version-00 `traceparent`: `00-<32 hex>-<16 hex>-<2 hex>`.
const TRACEPARENT_LEN: usize = 55;

/// A valid trace context: the trace, the span that is the parent of what follows, the flags
/// (bit 0: sampled) and the vendors' `tracestate`, if one came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: [u8; 16],
    parent_id: [u8; 8],
    flags: u8,
    state: Option<Box<str>>,
}

impl TraceContext {
    /// A context from its parts; `None` when an id is all zeros (invalid in W3C terms).
    pub fn new(
        trace_id: [u8; 16],
        parent_id: [u8; 8],
        flags: u8,
        state: Option<&str>,
    ) -> Option<Self> {
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            parent_id,
            flags,
            state: state.and_then(valid_state).map(Into::into),
        })
    }

    /// Reads a `traceparent` header (and the `tracestate` beside it); `None` if the
    /// `traceparent` is malformed. Versions above 00 are read as 00 (their first four
    /// fields), as the recommendation says; version `ff` is invalid.
    pub fn parse(traceparent: &[u8], tracestate: Option<&[u8]>) -> Option<Self> {
        let text = std::str::from_utf8(traceparent).ok()?.trim();
        if text.len() < TRACEPARENT_LEN {
            return None;
        }
        let (head, rest) = text.split_at(TRACEPARENT_LEN);
        let mut parts = head.split('-');
        let version = parts.next().filter(|v| v.len() == 2)?;
        let version = u8::from_str_radix(lower_hex(version)?, 16).ok()?;
        let exact = version == 0 && rest.is_empty();
        let later = version != 0 && version != 0xff && (rest.is_empty() || rest.starts_with('-'));
        if !(exact || later) {
            return None;
        }
        let trace_id = hex_array::<16>(parts.next()?)?;
        let parent_id = hex_array::<8>(parts.next()?)?;
        let [flags] = hex_array::<1>(parts.next()?)?;
        let state = tracestate.and_then(|raw| std::str::from_utf8(raw).ok());
        Self::new(trace_id, parent_id, flags, state)
    }

    /// The trace's id.
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The id of the span that is the parent of what follows.
    pub fn parent_id(&self) -> [u8; 8] {
        self.parent_id
    }

    /// The trace flags (bit 0: the sender samples this trace).
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// The vendors' `tracestate`, carried as it came.
    pub fn state(&self) -> Option<&str> {
        self.state.as_deref()
    }

    /// The `traceparent` of this context, in version 00.
    pub fn traceparent(&self) -> String {
        self.traceparent_with_parent(self.parent_id)
    }

    /// The `traceparent` of a child of this trace whose parent is `parent` (the attempt's
    /// span when Switchboard exports its own spans).
    pub fn traceparent_with_parent(&self, parent: [u8; 8]) -> String {
        let mut text = String::with_capacity(TRACEPARENT_LEN);
        text.push_str("00-");
        push_hex(&mut text, &self.trace_id);
        text.push('-');
        push_hex(&mut text, &parent);
        let _ = write!(text, "-{:02x}", self.flags);
        text
    }

    /// The form kept in the store's one column: the `traceparent`, then a space and the
    /// `tracestate` if there is one.
    pub fn to_stored(&self) -> String {
        match &self.state {
            Some(state) => format!("{} {state}", self.traceparent()),
            None => self.traceparent(),
        }
    }

    /// Reads [`TraceContext::to_stored`]'s form back; `None` for anything else.
    pub fn from_stored(stored: &str) -> Option<Self> {
        let (traceparent, state) = match stored.split_at_checked(TRACEPARENT_LEN)? {
            (traceparent, "") => (traceparent, None),
            (traceparent, rest) => (traceparent, Some(rest.strip_prefix(' ')?)),
        };
        Self::parse(traceparent.as_bytes(), state.map(str::as_bytes))
    }
}

/// A `tracestate` worth carrying: non-empty, visible ASCII and spaces only (no control
/// characters that could split a header), at most [`MAX_TRACESTATE_LEN`] bytes.
fn valid_state(state: &str) -> Option<&str> {
    let state = state.trim();
    let printable = state.bytes().all(|b| (0x20..=0x7e).contains(&b));
    (!state.is_empty() && printable && state.len() <= MAX_TRACESTATE_LEN).then_some(state)
}

/// `text` if it is lowercase hex only (the recommendation forbids uppercase).
fn lower_hex(text: &str) -> Option<&str> {
    text.bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        .then_some(text)
}

/// Exactly `N` bytes written as `2 × N` lowercase hex digits.
fn hex_array<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = lower_hex(text).filter(|t| t.len() == 2 * N)?;
    let mut out = [0; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn push_hex(text: &mut String, bytes: &[u8]) {
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_read_and_written_back_the_same() {
        let context = TraceContext::parse(GOOD.as_bytes(), None).unwrap();
        assert_eq!(context.traceparent(), GOOD);
        assert_eq!(context.flags(), 1);
        assert_eq!(
            context.parent_id(),
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert_eq!(
            context.traceparent_with_parent([1, 2, 3, 4, 5, 6, 7, 8]),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-01"
        );
    }

    #[test]
    fn malformed_traceparents_are_no_context() {
        for bad in [
            "",
            "garbage",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad.as_bytes(), None), None, "{bad:?}");
        }
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes";
        let read = TraceContext::parse(later.as_bytes(), None).unwrap();
        assert_eq!(read.traceparent(), GOOD, "a later version is read as 00");
    }

    #[test]
    fn tracestate_is_kept_only_when_it_is_safe_to_carry() {
        let with = |state: &str| TraceContext::parse(GOOD.as_bytes(), Some(state.as_bytes()));
        assert_eq!(
            with("congo=t61rcWkgMzE").unwrap().state(),
            Some("congo=t61rcWkgMzE")
        );
        assert_eq!(with("a=1\r\nx: y").unwrap().state(), None);
        assert_eq!(
            with(&"a".repeat(MAX_TRACESTATE_LEN + 1)).unwrap().state(),
            None
        );
        assert_eq!(with("  ").unwrap().state(), None);
    }

    #[test]
    fn the_stored_form_reads_back() {
        for state in [None, Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")] {
            let context = TraceContext::parse(GOOD.as_bytes(), state.map(str::as_bytes)).unwrap();
            let stored = context.to_stored();
            assert_eq!(TraceContext::from_stored(&stored), Some(context));
        }
        assert_eq!(TraceContext::from_stored("junk"), None);
        assert_eq!(TraceContext::from_stored(&format!("{GOOD}x")), None);
    }
}
