//! Server-sent events, read by hand: `id:`, `event:`, `data:` lines, a blank line ends a
//! message, `:` lines are comments (the server's pings). A few lines do not need a crate.

/// One message of the stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    /// The `id:` (the stream's cursor), if the message had one.
    pub id: Option<String>,
    /// The `event:` name; `message` when absent, as the format says.
    pub event: String,
    /// The `data:` lines, joined by newlines.
    pub data: String,
}

/// Turns the bytes of a stream, in chunks of any size, into messages.
#[derive(Debug, Default)]
pub struct Parser {
    line: Vec<u8>,
    pending: Message,
    has_data: bool,
}

impl Parser {
    /// Feeds a chunk; returns the messages it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Message> {
        let mut done = Vec::new();
        for &byte in chunk {
            if byte == b'\n' {
                let line = std::mem::take(&mut self.line);
                let text = String::from_utf8_lossy(&line);
                if let Some(message) = self.line_done(text.trim_end_matches('\r')) {
                    done.push(message);
                }
            } else {
                self.line.push(byte);
            }
        }
        done
    }

    /// Applies one line; a blank one completes the message being read.
    fn line_done(&mut self, line: &str) -> Option<Message> {
        if line.is_empty() {
            let mut message = std::mem::take(&mut self.pending);
            let had_data = std::mem::take(&mut self.has_data);
            if !had_data && message.event.is_empty() {
                return None;
            }
            if message.event.is_empty() {
                message.event = "message".to_owned();
            }
            return Some(message);
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => self.pending.id = Some(value.to_owned()),
            "event" => self.pending.event = value.to_owned(),
            "data" => {
                if self.has_data {
                    self.pending.data.push('\n');
                }
                self.pending.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_end_at_a_blank_line_in_chunks_of_any_size() {
        let stream = b": ping\n\nid: 3.0\nevent: event\ndata: {\"a\":1}\n\nid: 3.1\r\nevent: attempt\r\ndata: x\r\ndata: y\r\n\r\n";
        let mut parser = Parser::default();
        let mut messages = Vec::new();
        for byte in stream.chunks(3) {
            messages.extend(parser.feed(byte));
        }
        assert_eq!(
            messages,
            [
                Message {
                    id: Some("3.0".into()),
                    event: "event".into(),
                    data: "{\"a\":1}".into()
                },
                Message {
                    id: Some("3.1".into()),
                    event: "attempt".into(),
                    data: "x\ny".into()
                },
            ]
        );
    }
}
