//! The line editor's helper: Tab completion (keywords, functions, meta-commands, and the logs,
//! variables and nodes of the open source), hints (the rest of the only completion, the
//! arguments of a meta-command) and syntax highlighting. Hints and colours only appear when the
//! terminal supports colour.

use std::borrow::Cow;

use rql_planner::ops::{AggFn, ScalarFn};
use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::{Hint, Hinter};
use rustyline::validate::Validator;
use rustyline::{Context, Helper};

use super::input::{scan, End, Kind};
use super::meta::COMMANDS;

/// What completion knows of the open source.
#[derive(Clone, Debug, Default)]
pub(crate) struct Names {
    /// Log names, sorted.
    pub logs: Vec<String>,
    /// `log.key`, sorted.
    pub vars: Vec<String>,
    /// Node ids, sorted.
    pub nodes: Vec<String>,
}

pub(crate) struct ShellHelper {
    pub names: Names,
    color: bool,
    files: FilenameCompleter,
}

impl ShellHelper {
    pub(crate) fn new(color: bool) -> ShellHelper {
        ShellHelper {
            names: Names::default(),
            color,
            files: FilenameCompleter::new(),
        }
    }
}

/// The functions a query may call, upper-case.
fn function_names() -> impl Iterator<Item = &'static str> {
    AggFn::ALL
        .iter()
        .map(|f| f.name())
        .chain(ScalarFn::ALL.iter().map(|f| f.name()))
        .chain(["NODE"])
}

fn is_function(word: &str) -> bool {
    function_names().any(|f| f.eq_ignore_ascii_case(word))
}

/// A keyword or function name in the case the user is typing in (lower if the prefix is all
/// lower case).
fn in_case(name: &str, prefix: &str) -> String {
    if !prefix.is_empty() && !prefix.chars().any(|c| c.is_ascii_uppercase()) {
        name.to_ascii_lowercase()
    } else {
        name.to_string()
    }
}

/// What Tab would offer at `pos` of `line`: where the replaced word starts, and the candidates.
fn candidates(helper: &ShellHelper, line: &str, pos: usize) -> (usize, Vec<Pair>) {
    let line_start = line[..pos].rfind('\n').map_or(0, |i| i + 1);
    let current = &line[line_start..pos];
    let lead = current.len() - current.trim_start().len();
    if current.trim_start().starts_with('\\') {
        let command_start = line_start + lead;
        let typed = &line[command_start..pos];
        match typed.find(char::is_whitespace) {
            // Still typing the command name.
            None => {
                // A command that takes arguments comes with the space before them.
                let found = COMMANDS
                    .iter()
                    .filter(|c| c.name.starts_with(typed))
                    .map(|c| Pair {
                        display: c.name.to_string(),
                        replacement: if c.args.is_empty() {
                            c.name.to_string()
                        } else {
                            format!("{} ", c.name)
                        },
                    })
                    .collect();
                return (command_start, found);
            }
            Some(end) => {
                let args_start = command_start + end;
                return match &typed[..end] {
                    "\\format" => words(line, pos, &["table", "json", "csv"]),
                    "\\timing" => words(line, pos, &["on", "off"]),
                    "\\open" => helper
                        .files
                        .complete_path(line, pos)
                        .unwrap_or((pos, Vec::new())),
                    "\\sql" => {
                        let (start, found) = table_candidates(&line[args_start..pos]);
                        (args_start + start, found)
                    }
                    "\\explain" | "\\watch" => {
                        let (start, found) = query_candidates(helper, &line[args_start..pos]);
                        (args_start + start, found)
                    }
                    _ => (pos, Vec::new()),
                };
            }
        }
    }
    let (start, found) = query_candidates(helper, &line[line_start..pos]);
    (line_start + start, found)
}

/// Candidates for the end of `text` (query text up to the cursor).
fn query_candidates(helper: &ShellHelper, text: &str) -> (usize, Vec<Pair>) {
    let (pieces, end) = scan(text);
    match end {
        End::InComment => return (text.len(), Vec::new()),
        // A string being typed: a node id (`AT NODES 'n-1'`, `inv.a['n-1']`), closed for you.
        End::InString => {
            let Some(open) = pieces.last() else {
                return (text.len(), Vec::new());
            };
            let quote = &text[open.start..open.start + 1];
            let typed = &text[open.start + 1..];
            let found = helper
                .names
                .nodes
                .iter()
                .filter(|n| n.starts_with(typed))
                .map(|n| Pair {
                    display: n.clone(),
                    replacement: format!("{n}{quote}"),
                })
                .collect();
            return (open.start + 1, found);
        }
        End::Normal => {}
    }
    // A `--` comment runs to the end of the line, so the cursor is in it.
    if pieces.last().is_some_and(|p| {
        p.kind == Kind::Comment && p.end == text.len() && text[p.start..].starts_with("--")
    }) {
        return (text.len(), Vec::new());
    }
    let word_start = text
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
        .last()
        .map_or(text.len(), |(i, _)| i);
    let word = &text[word_start..];
    let mut found: Vec<String> = Vec::new();
    if word.contains('.') {
        // The first identifier of a dotted name is always the log (SPEC §6).
        found.extend(
            helper
                .names
                .vars
                .iter()
                .filter(|v| v.starts_with(word))
                .cloned(),
        );
        found.extend(
            helper
                .names
                .logs
                .iter()
                .map(|l| format!("{l}.*"))
                .filter(|v| v.starts_with(word)),
        );
    } else if after_at_nodes(text, &pieces, word_start) {
        for n in &helper.names.nodes {
            if n.starts_with(word) {
                // A node id that is not a plain identifier has to be quoted.
                found.push(if rql_parser::is_plain_identifier(n) {
                    n.clone()
                } else {
                    format!("'{n}'")
                });
            }
        }
    } else {
        let upper = word.to_ascii_uppercase();
        for k in rql_parser::RESERVED_WORDS {
            if k.starts_with(&upper) {
                found.push(in_case(k, word));
            }
        }
        for f in function_names() {
            if f.starts_with(&upper) {
                found.push(format!("{}(", in_case(f, word)));
            }
        }
        found.extend(
            helper
                .names
                .logs
                .iter()
                .filter(|l| l.starts_with(word))
                .cloned(),
        );
    }
    found.sort();
    found.dedup();
    (word_start, found.into_iter().map(pair).collect())
}

/// `\sql`'s tables, after `FROM` or `JOIN`.
fn table_candidates(text: &str) -> (usize, Vec<Pair>) {
    let (pieces, end) = scan(text);
    let word_start = text
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_ascii_alphanumeric() || *c == '_')
        .last()
        .map_or(text.len(), |(i, _)| i);
    let before = pieces
        .iter()
        .rfind(|p| p.end <= word_start && !matches!(p.kind, Kind::Space | Kind::Comment))
        .map(|p| &text[p.start..p.end]);
    let after_from =
        before.is_some_and(|w| w.eq_ignore_ascii_case("FROM") || w.eq_ignore_ascii_case("JOIN"));
    if end != End::Normal || !after_from {
        return (text.len(), Vec::new());
    }
    let typed = &text[word_start..];
    let found = ["results", "trace"]
        .iter()
        .filter(|t| t.starts_with(typed))
        .map(|t| pair(t.to_string()))
        .collect();
    (word_start, found)
}

/// Whether the word at `word_start` is in an `AT NODES` list.
fn after_at_nodes(text: &str, pieces: &[super::input::Piece], word_start: usize) -> bool {
    let last_keyword = pieces
        .iter()
        .filter(|p| p.end <= word_start && p.kind == Kind::Word)
        .map(|p| &text[p.start..p.end])
        .rfind(|w| rql_parser::is_reserved(w));
    last_keyword.is_some_and(|k| k.eq_ignore_ascii_case("NODES"))
}

/// Candidates from a fixed list for the word before `pos`.
fn words(line: &str, pos: usize, list: &[&str]) -> (usize, Vec<Pair>) {
    let start = line[..pos]
        .char_indices()
        .rfind(|(_, c)| c.is_whitespace())
        .map_or(0, |(i, c)| i + c.len_utf8());
    let typed = &line[start..pos];
    let found = list
        .iter()
        .filter(|w| w.starts_with(typed))
        .map(|w| pair(w.to_string()))
        .collect();
    (start, found)
}

fn pair(s: String) -> Pair {
    Pair {
        display: s.clone(),
        replacement: s,
    }
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        Ok(candidates(self, line, pos))
    }
}

/// A hint: grey text after the cursor; `complete` says whether → takes it into the line.
pub(crate) struct ShellHint {
    display: String,
    complete: bool,
}

impl Hint for ShellHint {
    fn display(&self) -> &str {
        &self.display
    }

    fn completion(&self) -> Option<&str> {
        self.complete.then_some(self.display.as_str())
    }
}

impl Hinter for ShellHelper {
    type Hint = ShellHint;

    fn hint(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> Option<ShellHint> {
        if !self.color || pos < line.len() || line.is_empty() {
            return None;
        }
        // A whole meta-command name: what it takes.
        let current = line[line.rfind('\n').map_or(0, |i| i + 1)..].trim_start();
        if let Some(command) = COMMANDS
            .iter()
            .find(|c| current == c.name || (current.trim_end() == c.name && current.ends_with(' ')))
        {
            if !command.args.is_empty() {
                let space = if current.ends_with(' ') { "" } else { " " };
                return Some(ShellHint {
                    display: format!("{space}{}", command.args),
                    complete: false,
                });
            }
            return None;
        }
        let (start, found) = candidates(self, line, pos);
        let typed = &line[start..pos];
        match found.as_slice() {
            [only] if !typed.is_empty() && only.replacement.len() > typed.len() => {
                only.replacement.strip_prefix(typed).map(|rest| ShellHint {
                    display: rest.to_string(),
                    complete: true,
                })
            }
            _ => None,
        }
    }
}

const RESET: &str = "\x1b[0m";
const KEYWORD: &str = "\x1b[1;34m";
const FUNCTION: &str = "\x1b[36m";
const STRING: &str = "\x1b[32m";
const NUMBER: &str = "\x1b[33m";
const COMMENT: &str = "\x1b[90m";
const META: &str = "\x1b[35m";
const HINT: &str = "\x1b[90m";

impl Highlighter for ShellHelper {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        if !self.color {
            return Cow::Borrowed(line);
        }
        // Colour codes only: the display width must stay that of the text.
        let mut out = String::with_capacity(line.len() * 2);
        let mut from = 0;
        for l in line.split_inclusive('\n') {
            let trimmed = l.trim_start();
            if let Some(rest) = trimmed.strip_prefix('\\') {
                let lead = l.len() - trimmed.len();
                let name_end = lead + 1 + rest.find(char::is_whitespace).unwrap_or(rest.len());
                out.push_str(&l[..lead]);
                out.push_str(META);
                out.push_str(&l[lead..name_end]);
                out.push_str(RESET);
                out.push_str(&highlight_query(&l[name_end..]));
            } else {
                out.push_str(&highlight_query(l));
            }
            from += l.len();
        }
        debug_assert_eq!(from, line.len());
        Cow::Owned(out)
    }

    fn highlight_hint<'h>(&self, hint: &'h str) -> Cow<'h, str> {
        if !self.color {
            return Cow::Borrowed(hint);
        }
        Cow::Owned(format!("{HINT}{hint}{RESET}"))
    }

    fn highlight_char(&self, _line: &str, _pos: usize, kind: CmdKind) -> bool {
        // Colours depend on the text only, not on where the cursor is.
        self.color && kind != CmdKind::MoveCursor
    }
}

fn highlight_query(text: &str) -> String {
    let (pieces, _) = scan(text);
    let mut out = String::with_capacity(text.len() * 2);
    for (i, p) in pieces.iter().enumerate() {
        let piece = &text[p.start..p.end];
        let next_is_paren = pieces
            .get(i + 1)
            .is_some_and(|n| &text[n.start..n.end] == "(");
        let color = match p.kind {
            Kind::Word if rql_parser::is_reserved(piece) => Some(KEYWORD),
            Kind::Word if next_is_paren && is_function(piece) => Some(FUNCTION),
            Kind::Str => Some(STRING),
            Kind::Number => Some(NUMBER),
            Kind::Comment => Some(COMMENT),
            Kind::Placeholder => Some(META),
            _ => None,
        };
        match color {
            Some(c) => {
                out.push_str(c);
                out.push_str(piece);
                out.push_str(RESET);
            }
            None => out.push_str(piece),
        }
    }
    out
}

/// Input is checked when it is run, not while typing: a statement that lacks its `;` gets the
/// continuation prompt on the next line instead.
impl Validator for ShellHelper {}

impl Helper for ShellHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    fn helper() -> ShellHelper {
        let mut h = ShellHelper::new(true);
        h.names = Names {
            logs: vec!["inv".into(), "zk".into()],
            vars: vec!["inv.a".into(), "inv.b".into(), "zk.version".into()],
            nodes: vec!["n1".into(), "n-2".into()],
        };
        h
    }

    fn offered(line: &str) -> (usize, Vec<String>) {
        let (start, found) = candidates(&helper(), line, line.len());
        (start, found.into_iter().map(|p| p.replacement).collect())
    }

    #[test]
    fn completes_names_keywords_functions_and_commands() {
        assert_eq!(
            offered("SELECT MAX(zk.ver"),
            (11, vec!["zk.version".into()])
        );
        assert_eq!(
            offered("select inv."),
            (7, vec!["inv.*".into(), "inv.a".into(), "inv.b".into()])
        );
        assert_eq!(offered("sel"), (0, vec!["select".into()]));
        assert_eq!(
            offered("SELECT CO").1,
            ["COALESCE(", "COS(", "COUNT(", "COUNT_DISTINCT("]
        );
        assert_eq!(offered("SELECT * FROM z").1, ["zk"]);
        assert_eq!(offered("\\fo"), (0, vec!["\\format ".into()]));
        assert_eq!(offered("\\q"), (0, vec!["\\q".into()]));
        assert_eq!(offered("\\format j"), (8, vec!["json".into()]));
        assert_eq!(offered("\\format\u{3000}c"), (10, vec!["csv".into()]));
        assert_eq!(offered("\\watch SELECT zk.v").1, ["zk.version"]);
        assert_eq!(offered("SELECT * FROM inv AT NODES n").1, ["'n-2'", "n1"]);
        assert_eq!(offered("SELECT inv.a['n-").1, ["n-2'"]);
        assert!(offered("SELECT 1 -- inv.").1.is_empty());
        assert_eq!(offered("\\sq"), (0, vec!["\\sql ".into()]));
        assert_eq!(
            offered("\\sql SELECT * FROM "),
            (19, vec!["results".into(), "trace".into()])
        );
        assert_eq!(offered("\\sql SELECT * FROM t JOIN r").1, ["results"]);
        assert!(offered("\\sql SELECT r").1.is_empty());
    }

    #[test]
    fn hints_and_colours_keep_the_text() {
        let h = helper();
        let history = rustyline::history::DefaultHistory::new();
        let ctx = Context::new(&history);
        let hint = h.hint("SELECT zk.vers", 14, &ctx).expect("a hint");
        assert_eq!((hint.display(), hint.completion()), ("ion", Some("ion")));
        let usage = h.hint("\\format", 7, &ctx).expect("usage");
        assert_eq!(usage.completion(), None);
        let line = "SELECT COUNT(*) FROM inv WHEN inv.a = 'x' -- c";
        let colored = h.highlight(line, 0);
        let plain: String = strip_ansi(&colored);
        assert_eq!(plain, line);
        assert!(colored.contains(KEYWORD));
    }

    fn strip_ansi(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }
}
