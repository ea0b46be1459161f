//! Errors a person can act on: what went wrong, where (a byte span), and how to fix it.
//!
//! One type serves the parser and the planner so every static error of a query renders the
//! same way: rustc-style, with the source line, a caret under the offending text and the hint
//! below (rendering is delegated to `annotate-snippets`, the renderer rustc itself uses).

use std::fmt;

use annotate_snippets::{AnnotationKind, Level, Renderer, Snippet};

use crate::ast::Span;

/// The kind of a static error, so tests and tools can tell errors apart without matching on
/// wording. Syntax kinds come from this crate; semantic kinds from the planner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    // Lexical.
    UnterminatedString,
    UnterminatedComment,
    UnexpectedCharacter,
    InvalidNumber,
    // Syntax.
    UnexpectedToken,
    UnexpectedEnd,
    TrailingInput,
    MissingFrom,
    LinkNeedsParens,
    NestedLink,
    ChainedComparison,
    PlaceholderOutsideNode,
    IntegerOutOfRange,
    FloatOutOfRange,
    NestingTooDeep,
    ReservedWord,
    InvalidTime,
    EmptyInput,
    MultipleStatements,
    // Semantic (planner).
    UnknownLog,
    UnknownVariable,
    AmbiguousName,
    UnknownFunction,
    WrongArity,
    NotAnAggregate,
    NestedAggregate,
    AggregateStar,
    NodeOutsideWhen,
    PlaceholderOutOfRange,
    PlaceholderInEachNode,
    LinkInAggregate,
    NotBoolean,
    DuplicateOutputName,
    SinceOnTraceFile,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub kind: ErrorKind,
    pub span: Span,
    pub message: String,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn new(kind: ErrorKind, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            kind,
            span,
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }

    /// 1-based line and column (in characters) of the span start within `src`.
    pub fn line_col(&self, src: &str) -> (usize, usize) {
        let start = clamp_to_char_boundary(src, self.span.start);
        let before = &src[..start];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, before[line_start..].chars().count() + 1)
    }

    /// Render rustc-style: `error: message`, the location, the source line with a caret under
    /// the span, and the hint. `origin` names the source (`<query>`, a file name, `<stdin>`).
    pub fn render(&self, src: &str, origin: &str, color: bool) -> String {
        let shown = printable(src);
        let start = clamp_to_char_boundary(&shown, self.span.start);
        let mut end = clamp_to_char_boundary(&shown, self.span.end.max(start));
        // An empty span (end of input) still needs something to point at.
        if end == start && start < shown.len() {
            end = start + shown[start..].chars().next().map_or(1, char::len_utf8);
        }
        let mut group = Level::ERROR.primary_title(&self.message).element(
            Snippet::source(shown.as_str())
                .line_start(1)
                .path(origin)
                .fold(true)
                .annotation(AnnotationKind::Primary.span(start..end)),
        );
        if let Some(h) = &self.hint {
            group = group.element(Level::HELP.message(h));
        }
        let renderer = if color {
            Renderer::styled()
        } else {
            Renderer::plain()
        };
        renderer.render(&[group])
    }

    /// A one-line form: `message (line L, column C, bytes S..E); hint: H`.
    pub fn one_line(&self, src: &str) -> String {
        let (line, col) = self.line_col(src);
        let mut s = format!(
            "{} (line {line}, column {col}, bytes {}..{})",
            self.message, self.span.start, self.span.end
        );
        if let Some(h) = &self.hint {
            s.push_str("; hint: ");
            s.push_str(h);
        }
        s
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}

/// The source as shown in a diagnostic: control characters (other than newlines) become `?`
/// byte for byte, so spans still line up and nothing in a query can drive the terminal
/// (escape sequences) or confuse the renderer's column arithmetic (tabs, NULs).
fn printable(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    for c in src.chars() {
        if c == '\n' || !c.is_control() {
            out.push(c);
        } else {
            out.extend(std::iter::repeat_n('?', c.len_utf8()));
        }
    }
    out
}

fn clamp_to_char_boundary(src: &str, mut i: usize) -> usize {
    i = i.min(src.len());
    while !src.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_caret_under_span_and_hint() {
        let src = "SELECT inv.a FROM inv WHEN inv.a > inv.b LINK SAME_NODE";
        let d = Diagnostic::new(
            ErrorKind::LinkNeedsParens,
            Span::new(41, 45),
            "LINK applies only to a parenthesized expression",
        )
        .with_hint("write (inv.a > inv.b) LINK SAME_NODE");
        let out = d.render(src, "<query>", false);
        assert!(out.starts_with("error: LINK applies only"), "{out}");
        assert!(out.contains("<query>:1:42"), "{out}");
        let caret_line = out.lines().find(|l| l.contains('^')).unwrap();
        let source_line = out.lines().find(|l| l.contains("SELECT")).unwrap();
        let caret_col = caret_line.find('^').unwrap();
        assert_eq!(&source_line[caret_col..caret_col + 4], "LINK", "{out}");
        assert_eq!(caret_line.matches('^').count(), 4);
        assert!(
            out.contains("= help: write (inv.a > inv.b) LINK SAME_NODE"),
            "{out}"
        );
    }

    #[test]
    fn renders_at_end_of_input_and_on_later_lines() {
        let src = "SELECT a\nFROM inv WHEN a >";
        let d = Diagnostic::new(
            ErrorKind::UnexpectedEnd,
            Span::new(26, 26),
            "expected an expression",
        );
        assert_eq!(d.line_col(src), (2, 18));
        let out = d.render(src, "q.rql", false);
        assert!(out.contains("q.rql:2:18"), "{out}");
        assert!(out.contains('^'), "{out}");
    }

    #[test]
    fn survives_spans_off_char_boundaries() {
        let src = "é";
        let d = Diagnostic::new(ErrorKind::UnexpectedCharacter, Span::new(1, 9), "x");
        d.render(src, "<q>", false);
        assert_eq!(d.line_col(src), (1, 1));
    }
}
