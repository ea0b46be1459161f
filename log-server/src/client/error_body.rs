//! The server's one error shape, `{"error":{"code":..,"message":..,"lines":[..]}}` (see
//! `server/error.rs`), read back by the client: the recorder needs the bad line numbers of a
//! rejected batch, the subscriber the code and message.

use serde::Deserialize;

/// What the client uses of an error answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ErrorBody {
    pub code: String,
    pub message: String,
    /// 1-based line numbers of the bad lines of an ingest batch (at most 100 are listed).
    pub lines: Vec<usize>,
}

#[derive(Deserialize)]
struct Wire {
    error: WireDetail,
}

#[derive(Deserialize)]
struct WireDetail {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    lines: Vec<WireLine>,
}

#[derive(Deserialize)]
struct WireLine {
    line: usize,
}

/// Longest part of a non-JSON body quoted in a message (a proxy's HTML page, say).
const MAX_QUOTED: usize = 300;

impl ErrorBody {
    /// Reads an error body; a body that is not the server's JSON (from a proxy, or a server of
    /// another kind) becomes the message, shortened, with an empty code.
    pub fn parse(body: &[u8]) -> ErrorBody {
        match serde_json::from_slice::<Wire>(body) {
            Ok(wire) => ErrorBody {
                code: wire.error.code,
                message: wire.error.message,
                lines: wire.error.lines.into_iter().map(|l| l.line).collect(),
            },
            Err(_) => {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                let mut end = text.len().min(MAX_QUOTED);
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                let mut message = text[..end].to_string();
                if end < text.len() {
                    message.push_str("...");
                }
                ErrorBody {
                    code: String::new(),
                    message,
                    lines: Vec::new(),
                }
            }
        }
    }

    /// `code: message`, or whichever of them is there.
    pub fn describe(&self) -> String {
        match (self.code.is_empty(), self.message.is_empty()) {
            (false, false) => format!("{}: {}", self.code, self.message),
            (false, true) => self.code.clone(),
            (true, false) => self.message.clone(),
            (true, true) => "no error message".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_servers_shape() {
        let body = br#"{"error":{"code":"out_of_order","message":"2 lines rejected","lines":[{"line":1,"node":"n1","reason":"out_of_order","message":"older"},{"line":3,"reason":"x","message":"y"}]}}"#;
        let e = ErrorBody::parse(body);
        assert_eq!(e.code, "out_of_order");
        assert_eq!(e.message, "2 lines rejected");
        assert_eq!(e.lines, [1, 3]);
        assert_eq!(e.describe(), "out_of_order: 2 lines rejected");
        let e = ErrorBody::parse(br#"{"error":{"code":"since_too_old","message":"m"}}"#);
        assert!(e.lines.is_empty());
    }

    #[test]
    fn other_bodies_become_the_message() {
        let e = ErrorBody::parse(b"  <html>bad gateway</html>\n");
        assert_eq!(e.code, "");
        assert_eq!(e.message, "<html>bad gateway</html>");
        assert_eq!(e.describe(), "<html>bad gateway</html>");
        let long = "é".repeat(400);
        let e = ErrorBody::parse(long.as_bytes());
        assert!(e.message.ends_with("..."));
        assert!(e.message.len() <= MAX_QUOTED + 3);
        assert_eq!(ErrorBody::parse(b"").describe(), "no error message");
    }
}
