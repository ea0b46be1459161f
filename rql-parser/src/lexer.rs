//! Source text → tokens, with nom combinators at the character level.
//!
//! Whitespace and comments are dropped here. Numbers are only recognized, not converted: the
//! parser converts them because `-9223372036854775808` is valid only when the sign is folded
//! into the literal. Every token keeps its byte span, so all later errors can point at text.

use nom::branch::alt;
use nom::bytes::complete::{tag, take_till, take_until, take_while, take_while1};
use nom::character::complete::{char, digit1, one_of};
use nom::combinator::{opt, recognize};
use nom::sequence::{pair, preceded};
use nom::{IResult, Parser};

use crate::ast::Span;
use crate::diagnostic::{Diagnostic, ErrorKind};

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    /// Identifier or keyword, as written; keywords are recognized by the parser.
    Ident(String),
    /// Digits only (the sign is a separate `Minus`).
    Int(String),
    /// `digits.digits[e[+-]digits]` or `digits e[+-]digits`.
    Float(String),
    /// String literal contents with doubled quotes already collapsed.
    Str(String),
    /// `$k`: the digits after `$`.
    Placeholder(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Semicolon,
    Dot,
    Star,
    Plus,
    Minus,
    Slash,
    Percent,
    Eq,
    EqEq,
    NotEq,
    LtGt,
    Lt,
    LtEq,
    Gt,
    GtEq,
    AndAnd,
    OrOr,
    Bang,
    Eof,
}

impl Tok {
    /// How the token is named in "expected X, found Y" messages.
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("'{s}'"),
            Tok::Int(s) | Tok::Float(s) => format!("number {s}"),
            Tok::Str(_) => "a string".to_string(),
            Tok::Placeholder(d) => format!("placeholder ${d}"),
            Tok::Eof => "end of input".to_string(),
            other => format!("'{}'", other.punct_text()),
        }
    }

    fn punct_text(&self) -> &'static str {
        match self {
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBracket => "[",
            Tok::RBracket => "]",
            Tok::Comma => ",",
            Tok::Semicolon => ";",
            Tok::Dot => ".",
            Tok::Star => "*",
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Slash => "/",
            Tok::Percent => "%",
            Tok::Eq => "=",
            Tok::EqEq => "==",
            Tok::NotEq => "!=",
            Tok::LtGt => "<>",
            Tok::Lt => "<",
            Tok::LtEq => "<=",
            Tok::Gt => ">",
            Tok::GtEq => ">=",
            Tok::AndAnd => "&&",
            Tok::OrOr => "||",
            Tok::Bang => "!",
            _ => "",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub tok: Tok,
    pub span: Span,
}

/// Tokenize the whole source. The result always ends with an `Eof` token whose span is the
/// (empty) end of input.
pub fn tokenize(src: &str) -> Result<Vec<Token>, Diagnostic> {
    let mut tokens = Vec::new();
    let mut rest = src;
    loop {
        rest = skip_trivia(src, rest)?;
        let start = src.len() - rest.len();
        if rest.is_empty() {
            tokens.push(Token {
                tok: Tok::Eof,
                span: Span::new(start, start),
            });
            return Ok(tokens);
        }
        let (next, tok) = lex_token(src, rest)?;
        let end = src.len() - next.len();
        tokens.push(Token {
            tok,
            span: Span::new(start, end),
        });
        rest = next;
    }
}

/// Skip whitespace, `-- line` and `/* block */` comments.
fn skip_trivia<'a>(src: &str, mut rest: &'a str) -> Result<&'a str, Diagnostic> {
    loop {
        let trimmed = rest.trim_start();
        if let Ok((after, _)) = line_comment(trimmed) {
            rest = after;
            continue;
        }
        if trimmed.starts_with("/*") {
            match block_comment(trimmed) {
                Ok((after, _)) => {
                    rest = after;
                    continue;
                }
                Err(_) => {
                    let start = src.len() - trimmed.len();
                    return Err(Diagnostic::new(
                        ErrorKind::UnterminatedComment,
                        Span::new(start, src.len()),
                        "unterminated block comment",
                    )
                    .with_hint("close it with */"));
                }
            }
        }
        return Ok(trimmed);
    }
}

fn line_comment(i: &str) -> IResult<&str, &str> {
    preceded(tag("--"), take_till(|c| c == '\n')).parse(i)
}

fn block_comment(i: &str) -> IResult<&str, &str> {
    recognize((tag("/*"), take_until("*/"), tag("*/"))).parse(i)
}

fn identifier(i: &str) -> IResult<&str, &str> {
    recognize(pair(
        take_while1(|c: char| c.is_ascii_alphabetic() || c == '_'),
        take_while(|c: char| c.is_ascii_alphanumeric() || c == '_'),
    ))
    .parse(i)
}

fn exponent(i: &str) -> IResult<&str, &str> {
    recognize((one_of("eE"), opt(one_of("+-")), digit1)).parse(i)
}

/// A number: returns the text and whether it is a float.
fn number(i: &str) -> IResult<&str, (&str, bool)> {
    let (rest, text) = recognize((digit1, opt(pair(char('.'), digit1)), opt(exponent))).parse(i)?;
    let is_float = text.contains(['.', 'e', 'E']);
    Ok((rest, (text, is_float)))
}

fn punct(i: &str) -> IResult<&str, Tok> {
    // Longest spellings first so `<=` is not read as `<` then `=`.
    alt((
        alt((
            tag("==").map(|_| Tok::EqEq),
            tag("!=").map(|_| Tok::NotEq),
            tag("<>").map(|_| Tok::LtGt),
            tag("<=").map(|_| Tok::LtEq),
            tag(">=").map(|_| Tok::GtEq),
            tag("&&").map(|_| Tok::AndAnd),
            tag("||").map(|_| Tok::OrOr),
        )),
        alt((
            char('(').map(|_| Tok::LParen),
            char(')').map(|_| Tok::RParen),
            char('[').map(|_| Tok::LBracket),
            char(']').map(|_| Tok::RBracket),
            char(',').map(|_| Tok::Comma),
            char(';').map(|_| Tok::Semicolon),
            char('.').map(|_| Tok::Dot),
            char('*').map(|_| Tok::Star),
            char('+').map(|_| Tok::Plus),
            char('-').map(|_| Tok::Minus),
            char('/').map(|_| Tok::Slash),
            char('%').map(|_| Tok::Percent),
            char('=').map(|_| Tok::Eq),
            char('<').map(|_| Tok::Lt),
            char('>').map(|_| Tok::Gt),
            char('!').map(|_| Tok::Bang),
        )),
    ))
    .parse(i)
}

/// A quoted string; `quote` doubled inside is one quote. `None` if it never closes.
fn string_literal(i: &str, quote: char) -> Option<(&str, String)> {
    let mut out = String::new();
    let mut rest = i.get(1..)?; // quotes are ASCII
    loop {
        let close = rest.find(quote)?;
        out.push_str(&rest[..close]);
        rest = &rest[close + 1..];
        if rest.starts_with(quote) {
            out.push(quote);
            rest = &rest[1..];
        } else {
            return Some((rest, out));
        }
    }
}

fn lex_token<'a>(src: &str, rest: &'a str) -> Result<(&'a str, Tok), Diagnostic> {
    let start = src.len() - rest.len();
    let first = rest.chars().next().unwrap_or(' ');
    if first == '\'' || first == '"' {
        return match string_literal(rest, first) {
            Some((after, s)) => Ok((after, Tok::Str(s))),
            None => Err(Diagnostic::new(
                ErrorKind::UnterminatedString,
                Span::new(start, src.len()),
                "unterminated string literal",
            )
            .with_hint(format!(
                "close the string with {first}; write {first}{first} for a {first} inside it"
            ))),
        };
    }
    if let Ok((after, (text, is_float))) = number(rest) {
        // `1abc` or `1.5x` is a typo, not a number followed by a name.
        if after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            let bad_end = src.len() - identifier(after).map(|(r, _)| r).unwrap_or(after).len();
            return Err(Diagnostic::new(
                ErrorKind::InvalidNumber,
                Span::new(start, bad_end),
                format!("invalid number literal '{}'", &src[start..bad_end]),
            )
            .with_hint(
                "numbers are digits[.digits][e[+-]digits]; names start with a letter or _",
            ));
        }
        if after.starts_with('.') && !is_float {
            let end = start + text.len() + 1;
            return Err(Diagnostic::new(
                ErrorKind::InvalidNumber,
                Span::new(start, end),
                format!("'{text}.' is not a number"),
            )
            .with_hint(format!("write {text}.0 or {text}")));
        }
        let tok = if is_float {
            Tok::Float(text.to_string())
        } else {
            Tok::Int(text.to_string())
        };
        return Ok((after, tok));
    }
    if let Ok((after, word)) = identifier(rest) {
        return Ok((after, Tok::Ident(word.to_string())));
    }
    if first == '$' {
        let digits: IResult<&str, &str> = digit1(&rest[1..]);
        return match digits {
            Ok((after, d)) => Ok((after, Tok::Placeholder(d.to_string()))),
            Err(_) => Err(Diagnostic::new(
                ErrorKind::UnexpectedToken,
                Span::new(start, start + 1),
                "'$' must be followed by a placeholder number",
            )
            .with_hint("placeholders are written $1, $2, ... as in NODE($1)")),
        };
    }
    if let Ok((after, tok)) = punct(rest) {
        return Ok((after, tok));
    }
    let len = first.len_utf8();
    Err(Diagnostic::new(
        ErrorKind::UnexpectedCharacter,
        Span::new(start, start + len),
        format!("unexpected character {first:?}"),
    )
    .with_hint(match first {
        '&' => "write && or AND",
        '|' => "write || or OR",
        '`' => "strings use 'single' or \"double\" quotes",
        _ => "remove it, or put it inside a string literal",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Vec<Tok> {
        tokenize(src).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn lexes_numbers_strings_and_punctuation() {
        assert_eq!(
            toks("a<=1.5e-3 'it''s' \"x\"\"y\" $12 <> == != && || ! %"),
            vec![
                Tok::Ident("a".into()),
                Tok::LtEq,
                Tok::Float("1.5e-3".into()),
                Tok::Str("it's".into()),
                Tok::Str("x\"y".into()),
                Tok::Placeholder("12".into()),
                Tok::LtGt,
                Tok::EqEq,
                Tok::NotEq,
                Tok::AndAnd,
                Tok::OrOr,
                Tok::Bang,
                Tok::Percent,
                Tok::Eof
            ]
        );
    }

    #[test]
    fn five_dot_and_dot_five_are_not_floats() {
        assert_eq!(
            toks(".5 1e3"),
            vec![
                Tok::Dot,
                Tok::Int("5".into()),
                Tok::Float("1e3".into()),
                Tok::Eof
            ]
        );
        assert_eq!(tokenize("5.").unwrap_err().kind, ErrorKind::InvalidNumber);
    }

    #[test]
    fn skips_comments() {
        assert_eq!(
            toks("a -- x\n/* y\n z */ b --"),
            vec![Tok::Ident("a".into()), Tok::Ident("b".into()), Tok::Eof]
        );
    }

    #[test]
    fn spans_are_byte_offsets() {
        let t = tokenize("  inv.a").unwrap();
        assert_eq!((t[0].span.start, t[0].span.end), (2, 5));
        assert_eq!((t[2].span.start, t[2].span.end), (6, 7));
        assert_eq!((t[3].span.start, t[3].span.end), (7, 7));
    }

    #[test]
    fn errors() {
        let e = tokenize("a = 'x").unwrap_err();
        assert_eq!(e.kind, ErrorKind::UnterminatedString);
        assert_eq!((e.span.start, e.span.end), (4, 6));
        assert_eq!(
            tokenize("a /* x").unwrap_err().kind,
            ErrorKind::UnterminatedComment
        );
        assert_eq!(
            tokenize("a # b").unwrap_err().kind,
            ErrorKind::UnexpectedCharacter
        );
        assert_eq!(tokenize("12ab").unwrap_err().kind, ErrorKind::InvalidNumber);
        assert_eq!(tokenize("$x").unwrap_err().kind, ErrorKind::UnexpectedToken);
        assert_eq!(tokenize("é").unwrap_err().span, Span::new(0, 2));
    }
}
