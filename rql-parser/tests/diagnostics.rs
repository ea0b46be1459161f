//! Every syntax diagnostic the parser promises: its kind, where the caret goes, and the hint.

use rql_parser::*;

fn err(src: &str) -> Diagnostic {
    match parse_single(src) {
        Ok(s) => panic!("{src} parsed as {}", print_statement(&s)),
        Err(d) => {
            // Every diagnostic renders without panicking and, if there is text, shows a caret.
            let r = d.render(src, "<q>", false);
            assert!(r.contains('^') || d.kind == ErrorKind::EmptyInput, "{r}");
            d
        }
    }
}

fn at<'a>(src: &'a str, d: &Diagnostic) -> &'a str {
    d.span.text(src)
}

#[test]
fn unexpected_token_says_what_was_expected() {
    let src = "SELECT inv.a FROM inv WHEN inv.a > )";
    let d = err(src);
    assert_eq!(d.kind, ErrorKind::UnexpectedToken);
    assert_eq!(d.message, "expected an expression, found ')'");
    assert_eq!(at(src, &d), ")");
    let d = err("SELECT inv.a FROM inv EMIT SOMETIMES");
    assert_eq!(
        d.message,
        "expected CUTS or CHANGES after EMIT, found 'SOMETIMES'"
    );
    let d = err("SELECT FROM inv");
    assert_eq!(d.kind, ErrorKind::ReservedWord);
}

#[test]
fn unexpected_end_of_input() {
    let src = "SELECT inv.a FROM inv WHEN inv.a >";
    let d = err(src);
    assert_eq!(d.kind, ErrorKind::UnexpectedEnd);
    assert_eq!(d.message, "expected an expression, found end of input");
    assert_eq!((d.span.start, d.span.end), (34, 34));
}

#[test]
fn unterminated_string_and_comment() {
    let src = "SELECT inv.a FROM inv WHEN inv.a = 'n1";
    let d = err(src);
    assert_eq!(d.kind, ErrorKind::UnterminatedString);
    assert_eq!((d.span.start, d.span.end), (35, 38));
    assert!(d.hint.unwrap().contains("''"));
    let d = err("SELECT inv.a FROM inv /* WHEN inv.a = 1");
    assert_eq!(d.kind, ErrorKind::UnterminatedComment);
    assert_eq!(d.span.start, 22);
}

#[test]
fn link_on_unparenthesized_expression_shows_the_fix() {
    let src = "SELECT inv.a FROM inv WHEN inv.a > inv.b LINK SAME_NODE";
    let d = err(src);
    assert_eq!(d.kind, ErrorKind::LinkNeedsParens);
    assert_eq!((d.span.start, d.span.end), (41, 45));
    assert_eq!(
        d.hint.as_deref(),
        Some("write (inv.a > inv.b) LINK SAME_NODE")
    );
    let d = err("SELECT inv.a FROM inv WHEN inv.a + 1 LINK EACH_NODE");
    assert_eq!(d.hint.as_deref(), Some("write (inv.a + 1) LINK EACH_NODE"));
}

#[test]
fn nested_link_groups() {
    let src =
        "SELECT inv.a FROM inv WHEN ((inv.a > 0) LINK SAME_NODE AND inv.b > 0) LINK EACH_NODE";
    let d = err(src);
    assert_eq!(d.kind, ErrorKind::NestedLink);
    assert_eq!(at(src, &d), "(inv.a > 0) LINK SAME_NODE");
    assert_eq!((d.span.start, d.span.end), (28, 54));
    // Nested through plain parentheses and function calls too.
    let d = err("SELECT inv.a FROM inv WHEN (ABS(((inv.a) LINK SAME_NODE))) LINK SAME_NODE");
    assert_eq!(d.kind, ErrorKind::NestedLink);
}

#[test]
fn missing_from() {
    let d = err("SELECT inv.a WHEN inv.a > 0");
    assert_eq!(d.kind, ErrorKind::MissingFrom);
    assert!(d.hint.unwrap().contains("FROM"));
    let src = "SELECT inv.a";
    let d = err(src);
    assert_eq!(d.kind, ErrorKind::MissingFrom);
    assert_eq!(d.span.start, src.len());
    // Not a missing FROM but an expression in SELECT: say what SELECT takes.
    let d = err("SELECT inv.a + 1 FROM inv");
    assert_eq!(d.kind, ErrorKind::UnexpectedToken);
    assert!(d.hint.unwrap().contains("WHEN"));
}

#[test]
fn trailing_input_and_clause_order() {
    let src = "SELECT inv.a FROM inv LIMIT 5 WHEN inv.a > 0";
    let d = err(src);
    assert_eq!(d.kind, ErrorKind::TrailingInput);
    assert_eq!(at(src, &d), "WHEN");
    assert!(d
        .hint
        .unwrap()
        .contains("WHEN, AT NODES, ON TIME/SINCE, EMIT, LIMIT"));
    let d = err("SELECT inv.a FROM inv WHEN (inv.a > 0))");
    assert_eq!(d.kind, ErrorKind::TrailingInput);
    let d = err("SELECT inv.a FROM inv; SELECT inv.b FROM inv");
    assert_eq!(d.kind, ErrorKind::MultipleStatements);
}

#[test]
fn integer_and_float_out_of_range() {
    let src = "SELECT inv.a FROM inv WHEN inv.a > 9223372036854775808";
    let d = err(src);
    assert_eq!(d.kind, ErrorKind::IntegerOutOfRange);
    assert_eq!(at(src, &d), "9223372036854775808");
    assert_eq!(
        err("SELECT inv.a FROM inv WHEN a = -9223372036854775809").kind,
        ErrorKind::IntegerOutOfRange
    );
    assert_eq!(
        err("SELECT inv.a FROM inv LIMIT 99999999999999999999").kind,
        ErrorKind::IntegerOutOfRange
    );
    assert_eq!(
        err("SELECT inv.a FROM inv WHEN a = 1e999").kind,
        ErrorKind::FloatOutOfRange
    );
}

#[test]
fn nesting_deeper_than_the_limit() {
    let deep = format!(
        "SELECT inv.a FROM inv WHEN {}1{}",
        "(".repeat(200),
        ")".repeat(200)
    );
    assert_eq!(err(&deep).kind, ErrorKind::NestingTooDeep);
    let deep = format!("SELECT inv.a FROM inv WHEN {}a", "NOT ".repeat(500));
    assert_eq!(err(&deep).kind, ErrorKind::NestingTooDeep);
    let deep = format!("SELECT inv.a FROM inv WHEN a{}", " + a".repeat(500));
    assert_eq!(err(&deep).kind, ErrorKind::NestingTooDeep);
    let deep = format!(
        "SELECT inv.a FROM inv WHEN {}a{}",
        "ABS(".repeat(300),
        ")".repeat(300)
    );
    assert_eq!(err(&deep).kind, ErrorKind::NestingTooDeep);
    // Within the limit is fine.
    let ok = format!(
        "SELECT inv.a FROM inv WHEN {}1{}",
        "(".repeat(100),
        ")".repeat(100)
    );
    parse_single(&ok).unwrap();
}

#[test]
fn a_megabyte_of_parentheses_is_an_error_not_a_crash() {
    // Run on a small stack to prove the parser does not recurse with the input size.
    let handle = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(|| {
            let src = format!("SELECT inv.a FROM inv WHEN {}", "(".repeat(1 << 20));
            parse_single(&src).unwrap_err().kind
        })
        .unwrap();
    assert_eq!(handle.join().unwrap(), ErrorKind::NestingTooDeep);
}

#[test]
fn chained_comparisons() {
    let src = "SELECT inv.a FROM inv WHEN 1 < inv.a < 5";
    let d = err(src);
    assert_eq!(d.kind, ErrorKind::ChainedComparison);
    assert_eq!((d.span.start, d.span.end), (37, 38));
    assert_eq!(
        err("SELECT inv.a FROM inv WHEN a IS NULL = TRUE").kind,
        ErrorKind::ChainedComparison
    );
    assert_eq!(
        err("SELECT inv.a FROM inv WHEN a = b IN (1)").kind,
        ErrorKind::ChainedComparison
    );
}

#[test]
fn placeholder_outside_node() {
    let src = "SELECT inv.a FROM inv WHEN $1 > 0";
    let d = err(src);
    assert_eq!(d.kind, ErrorKind::PlaceholderOutsideNode);
    assert_eq!((d.span.start, d.span.end), (27, 29));
    assert_eq!(d.hint.as_deref(), Some("write NODE($1)"));
    assert_eq!(
        err("SELECT inv.a FROM inv WHEN ABS($1) > 0").kind,
        ErrorKind::PlaceholderOutsideNode
    );
}

#[test]
fn alias_only_after_aggregates() {
    let src = "SELECT inv.a AS x FROM inv";
    let d = err(src);
    assert_eq!(at(src, &d), "AS");
    assert_eq!(d.message, "AS is only allowed after an aggregate call");
}

#[test]
fn bad_times() {
    for (q, kind) in [
        ("ON TIME 281474976710656", ErrorKind::InvalidTime),
        ("ON TIME HLC(1, 65536)", ErrorKind::InvalidTime),
        ("ON TIME '2023-13-01T00:00:00Z'", ErrorKind::InvalidTime),
        ("ON TIME '1969-12-31T23:59:59Z'", ErrorKind::InvalidTime),
        ("ON TIME 5 TO", ErrorKind::UnexpectedEnd),
        ("ON 5", ErrorKind::UnexpectedToken),
    ] {
        assert_eq!(err(&format!("SELECT inv.a FROM inv {q}")).kind, kind, "{q}");
    }
}

#[test]
fn lexical_errors() {
    assert_eq!(
        err("SELECT inv.a FROM inv WHEN a # 1").kind,
        ErrorKind::UnexpectedCharacter
    );
    assert_eq!(
        err("SELECT inv.a FROM inv WHEN a = 5.").kind,
        ErrorKind::InvalidNumber
    );
    assert_eq!(
        err("SELECT inv.a FROM inv WHEN a = .5").kind,
        ErrorKind::UnexpectedToken
    );
    assert_eq!(
        err("SELECT inv.a FROM inv WHEN a = 1x").kind,
        ErrorKind::InvalidNumber
    );
    assert_eq!(err("").kind, ErrorKind::EmptyInput);
    assert_eq!(err(" -- only a comment").kind, ErrorKind::EmptyInput);
}

#[test]
fn statements_report_errors_independently() {
    let errs =
        parse_statements("SELECT a FROM; SELECT inv.a FROM inv; SELECT b FROM x WHEN").unwrap_err();
    assert_eq!(errs.len(), 2);
    assert_eq!(errs[0].kind, ErrorKind::UnexpectedEnd);
    assert_eq!(errs[1].kind, ErrorKind::UnexpectedEnd);
}

#[test]
fn rendering_survives_control_characters_and_tabs() {
    // Found by the fuzzer: tabs, NULs and DEL in the source once broke the renderer.
    let mut src = String::from("\t\t\t\t\t\t\t!!&&");
    src.push_str(&"\0".repeat(129));
    src.push_str("\u{7f}\0\0\0\n&");
    let d = parse_statements(&src).unwrap_err();
    for d in d {
        let out = d.render(&src, "<fuzz>", false);
        assert!(out.contains("error"), "{out}");
    }
    let d = Diagnostic::new(ErrorKind::UnexpectedCharacter, Span::new(3, 4), "x");
    d.render("\t\t\t\u{0}\u{0}", "<q>", true);
}
