//! Cutting what the user types (or pipes in) into statements and meta-commands, and the light
//! scanner that the cutting, completion and highlighting share.
//!
//! The scanner knows just enough of RQL's lexical rules (SPEC §2, §6) to find the `;` that end
//! statements: strings in single or double quotes with a doubled quote for a quote, `--`
//! comments to the end of the line and `/* */` comments (not nested), as `rql-parser`'s lexer
//! has them. Everything else is left to the parser, which reports errors with a caret. SQL's
//! strings, quoted identifiers and comments are the same, so `\sql`, the one meta-command that
//! may span lines, ends at its `;` the same way.

/// What a piece of text is, for the shell's purposes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Space,
    Comment,
    /// An identifier or keyword: `[A-Za-z_][A-Za-z0-9_]*`.
    Word,
    Number,
    /// A string literal, possibly unterminated (then it runs to the end of the text).
    Str,
    /// `$k`.
    Placeholder,
    Semicolon,
    /// Any other character (operators, brackets, dots, and characters RQL does not know).
    Punct,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Piece {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

/// Where the text ends: normally, or inside a string or a block comment (it goes on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    Normal,
    InString,
    InComment,
}

/// Splits `text` into pieces covering it entirely, in order.
pub(crate) fn scan(text: &str) -> (Vec<Piece>, End) {
    let bytes = text.as_bytes();
    let mut pieces = Vec::new();
    let mut end_state = End::Normal;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        let b = bytes[i];
        let kind = if b.is_ascii_whitespace() {
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            Kind::Space
        } else if text[i..].starts_with("--") {
            i = text[i..].find('\n').map_or(bytes.len(), |n| i + n);
            Kind::Comment
        } else if text[i..].starts_with("/*") {
            match text[i + 2..].find("*/") {
                Some(n) => i += 2 + n + 2,
                None => {
                    i = bytes.len();
                    end_state = End::InComment;
                }
            }
            Kind::Comment
        } else if b == b'\'' || b == b'"' {
            i += 1;
            loop {
                match bytes[i..].iter().position(|&c| c == b) {
                    // A doubled quote is a quote inside the string.
                    Some(n) if bytes.get(i + n + 1) == Some(&b) => i += n + 2,
                    Some(n) => {
                        i += n + 1;
                        break;
                    }
                    None => {
                        i = bytes.len();
                        end_state = End::InString;
                        break;
                    }
                }
            }
            Kind::Str
        } else if b.is_ascii_alphabetic() || b == b'_' {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            Kind::Word
        } else if b.is_ascii_digit() {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.') {
                i += 1;
            }
            Kind::Number
        } else if b == b'$' {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            Kind::Placeholder
        } else if b == b';' {
            i += 1;
            Kind::Semicolon
        } else {
            // One whole character, never half of a multi-byte one.
            i += text[i..].chars().next().map_or(1, char::len_utf8);
            Kind::Punct
        };
        pieces.push(Piece {
            kind,
            start,
            end: i,
        });
    }
    (pieces, end_state)
}

/// True if `text` (trimmed at the start) is the meta-command `\sql`, which, unlike the others,
/// ends at a `;` as statements do.
pub(crate) fn is_sql_command(text: &str) -> bool {
    text.strip_prefix("\\sql").is_some_and(|rest| {
        rest.chars()
            .next()
            .is_none_or(|c| c.is_whitespace() || c == ';')
    })
}

/// True if `text` holds nothing but whitespace and finished comments.
pub(crate) fn is_blank(text: &str) -> bool {
    let (pieces, end) = scan(text);
    end == End::Normal
        && pieces
            .iter()
            .all(|p| matches!(p.kind, Kind::Space | Kind::Comment))
}

/// One statement, with where it starts in the input (1-based line and column), so errors
/// point at the right place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Statement {
    pub text: String,
    pub line: usize,
    pub column: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Item {
    Statement(Statement),
    /// A line starting with `\` (or one of the words `help`, `quit`, `exit` alone on a line);
    /// for `\sql`, everything up to its `;`, which may be lines later.
    Meta {
        text: String,
        line: usize,
        /// Unfinished statement text before it was dropped (no `;` came).
        discarded: bool,
    },
}

/// Takes input a line at a time and hands out each statement once its `;` arrives, and each
/// meta-command line at once (`\sql` at its `;`).
pub(crate) struct Splitter {
    pending: String,
    /// Line and column where `pending` starts.
    start: (usize, usize),
    next_line: usize,
    /// A `\sql` started while a statement was unfinished: that statement was dropped.
    sql_discarded: bool,
}

impl Default for Splitter {
    fn default() -> Self {
        Splitter {
            pending: String::new(),
            start: (1, 1),
            next_line: 1,
            sql_discarded: false,
        }
    }
}

impl Splitter {
    /// Unfinished statement text is waiting for its `;` (the continuation prompt).
    pub(crate) fn is_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Drops unfinished text (Ctrl-C at the prompt).
    pub(crate) fn clear(&mut self) {
        self.pending.clear();
        self.sql_discarded = false;
    }

    /// Numbers the next line 1 (the interactive shell counts lines per statement).
    pub(crate) fn restart_lines(&mut self) {
        if self.pending.is_empty() {
            self.next_line = 1;
        }
    }

    /// Takes one line (without its line break).
    pub(crate) fn push_line(&mut self, line: &str) -> Vec<Item> {
        let number = self.next_line;
        self.next_line += 1;
        // A backslash can only start a meta-command: it is no RQL token, except inside a
        // string or comment that is still open.
        let open = scan(&self.pending).1 != End::Normal;
        let trimmed = line.trim();
        if !open && is_sql_command(trimmed) {
            // `\sql` takes lines up to its `;`, as a statement does.
            self.sql_discarded = self.is_pending();
            self.pending.clear();
        } else if !open {
            let word = trimmed.trim_end_matches(';').trim_end();
            let meta = if trimmed.starts_with('\\') {
                Some(trimmed.to_string())
            } else if self.pending.is_empty() {
                // What people type when they do not know the shell yet (psql does the same).
                match word.to_ascii_lowercase().as_str() {
                    "help" => Some("\\help".to_string()),
                    "quit" | "exit" => Some("\\q".to_string()),
                    _ => None,
                }
            } else {
                None
            };
            if let Some(text) = meta {
                let discarded = self.is_pending();
                self.pending.clear();
                self.sql_discarded = false;
                return vec![Item::Meta {
                    text,
                    line: number,
                    discarded,
                }];
            }
        }
        if self.pending.is_empty() {
            self.start = (number, 1);
        }
        self.pending.push_str(line);
        self.pending.push('\n');
        self.take_statements()
    }

    /// What is left at the end of the input: a last statement (or `\sql`) without its `;`.
    pub(crate) fn finish(&mut self) -> Option<Item> {
        if self.pending.is_empty() {
            return None;
        }
        let text = std::mem::take(&mut self.pending);
        let text = text.trim_end().to_string();
        Some(self.item(text, self.start.0, self.start.1))
    }

    /// `text` as a statement, or as the meta-command `\sql`.
    fn item(&mut self, text: String, line: usize, column: usize) -> Item {
        if is_sql_command(text.trim_start()) {
            Item::Meta {
                text: text.trim().to_string(),
                line,
                discarded: std::mem::take(&mut self.sql_discarded),
            }
        } else {
            Item::Statement(Statement { text, line, column })
        }
    }

    /// Hands out every statement `pending` ends with a `;`; keeps the rest.
    fn take_statements(&mut self) -> Vec<Item> {
        let (pieces, end) = scan(&self.pending);
        let mut items = Vec::new();
        let mut from = 0;
        for p in pieces.iter().filter(|p| p.kind == Kind::Semicolon) {
            let text = &self.pending[from..p.end];
            if !is_blank(&text[..text.len() - 1]) {
                let (line, column) = self.position(from);
                let text = text.trim_start().to_string();
                items.push(self.item(text, line, column));
            }
            from = p.end;
        }
        let rest = &self.pending[from..];
        if end == End::Normal && is_blank(rest) {
            self.pending.clear();
        } else if from > 0 {
            self.start = self.position(from);
            self.pending = rest.to_string();
        }
        items
    }

    /// Line and column of the first non-blank character at or after byte `offset` of
    /// `pending`.
    fn position(&self, offset: usize) -> (usize, usize) {
        let lead = self.pending[offset..].len() - self.pending[offset..].trim_start().len();
        let at = offset + lead;
        let before = &self.pending[..at];
        let newlines = before.matches('\n').count();
        match before.rfind('\n') {
            Some(n) => (self.start.0 + newlines, before[n + 1..].chars().count() + 1),
            None => (self.start.0, self.start.1 + before.chars().count()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(Kind, &str)> {
        scan(text)
            .0
            .iter()
            .map(|p| (p.kind, &text[p.start..p.end]))
            .filter(|(k, _)| *k != Kind::Space)
            .collect()
    }

    fn statements(lines: &[&str]) -> Vec<Item> {
        let mut s = Splitter::default();
        let mut items: Vec<Item> = lines.iter().flat_map(|l| s.push_line(l)).collect();
        items.extend(s.finish());
        items
    }

    fn stmt(text: &str, line: usize, column: usize) -> Item {
        Item::Statement(Statement {
            text: text.into(),
            line,
            column,
        })
    }

    #[test]
    fn scans_strings_comments_and_semicolons() {
        assert_eq!(
            kinds("a 'x;''y' -- c;\n/* d; */ $1;"),
            vec![
                (Kind::Word, "a"),
                (Kind::Str, "'x;''y'"),
                (Kind::Comment, "-- c;"),
                (Kind::Comment, "/* d; */"),
                (Kind::Placeholder, "$1"),
                (Kind::Semicolon, ";"),
            ]
        );
        assert_eq!(scan("a 'b").1, End::InString);
        assert_eq!(scan("a /* b").1, End::InComment);
        assert_eq!(scan("é;").0.len(), 2);
    }

    #[test]
    fn statements_end_at_semicolons_outside_strings_and_comments() {
        assert_eq!(
            statements(&[
                "SELECT inv.a",
                "FROM inv WHEN inv.a = ';' -- ;",
                "; SELECT 1; "
            ]),
            vec![
                stmt("SELECT inv.a\nFROM inv WHEN inv.a = ';' -- ;\n;", 1, 1),
                stmt("SELECT 1;", 3, 3),
            ]
        );
        // A string may span lines; the last statement needs no `;` at the end of the input.
        assert_eq!(
            statements(&["SELECT 'a", "b;' FROM x"]),
            vec![stmt("SELECT 'a\nb;' FROM x", 1, 1)]
        );
        assert_eq!(statements(&["-- only a comment", ";", "  "]), vec![]);
    }

    #[test]
    fn meta_commands_take_whole_lines() {
        assert_eq!(
            statements(&["\\timing on", "SELECT", "\\q"]),
            vec![
                Item::Meta {
                    text: "\\timing on".into(),
                    line: 1,
                    discarded: false
                },
                Item::Meta {
                    text: "\\q".into(),
                    line: 3,
                    discarded: true
                },
            ]
        );
        // Inside an open string a backslash is text; `quit` alone is a meta-command.
        assert_eq!(
            statements(&["SELECT 'a", "\\b';", "quit"]),
            vec![
                stmt("SELECT 'a\n\\b';", 1, 1),
                Item::Meta {
                    text: "\\q".into(),
                    line: 3,
                    discarded: false
                },
            ]
        );
    }

    fn meta(text: &str, line: usize, discarded: bool) -> Item {
        Item::Meta {
            text: text.into(),
            line,
            discarded,
        }
    }

    #[test]
    fn sql_runs_to_its_semicolon() {
        assert!(is_sql_command("\\sql SELECT 1"));
        assert!(is_sql_command("\\sql;"));
        assert!(is_sql_command("\\sql"));
        assert!(!is_sql_command("\\sqlx"));
        assert_eq!(
            statements(&[
                "\\sql SELECT node, count(*) FROM results",
                "  WHERE value = ';' -- ;",
                "  GROUP BY node; SELECT 1;",
                "\\sql SELECT 2;",
            ]),
            vec![
                meta(
                    "\\sql SELECT node, count(*) FROM results\n  WHERE value = ';' -- ;\n  GROUP BY node;",
                    1,
                    false
                ),
                stmt("SELECT 1;", 3, 18),
                meta("\\sql SELECT 2;", 4, false),
            ]
        );
        // An unfinished statement before it is dropped; another command drops an unfinished
        // `\sql`; the last one needs no `;`.
        assert_eq!(
            statements(&["SELECT", "\\sql SELECT", "\\logs", "\\sql SELECT 3"]),
            vec![meta("\\logs", 3, true), meta("\\sql SELECT 3", 4, false),]
        );
        assert_eq!(
            statements(&["SELECT", "\\sql SELECT 4;"]),
            vec![meta("\\sql SELECT 4;", 2, true)]
        );
    }
}
