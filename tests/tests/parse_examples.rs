//! Every query of ../shared/examples parses, except those whose expected error is a syntax
//! error: those fail with that error kind, at the byte span the reference implementation names.
//! (Semantic errors such as an unknown log must still parse; the planner rejects them.)

use rql_parser::{parse_single, print_statement, ErrorKind};
use rql_tests::{example_queries, examples_dir};

/// The syntax error a reference message describes, or `None` for a semantic error.
fn syntax_kind(message: &str) -> Option<ErrorKind> {
    let table = [
        (
            "LINK applies only to a parenthesized expression",
            ErrorKind::LinkNeedsParens,
        ),
        ("LINK groups may not be nested", ErrorKind::NestedLink),
        ("found end of input", ErrorKind::UnexpectedEnd),
        ("unterminated string", ErrorKind::UnterminatedString),
        (
            "is only valid as the argument of NODE",
            ErrorKind::PlaceholderOutsideNode,
        ),
        ("after the end of the statement", ErrorKind::TrailingInput),
        (
            "comparisons cannot be chained",
            ErrorKind::ChainedComparison,
        ),
        (
            "AS is only allowed after an aggregate call",
            ErrorKind::UnexpectedToken,
        ),
    ];
    table
        .iter()
        .find(|(needle, _)| message.contains(needle))
        .map(|(_, kind)| *kind)
}

/// `bytes S..E` from a reference message.
fn byte_span(message: &str) -> Option<(usize, usize)> {
    let rest = &message[message.find("bytes ")? + 6..];
    let end = rest.find(')')?;
    let (a, b) = rest[..end].split_once("..")?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

#[test]
fn every_example_query_parses_or_fails_as_expected() {
    let examples = example_queries();
    assert!(
        examples.len() >= 19,
        "expected the shared examples, found {}",
        examples.len()
    );
    let mut checked = 0;
    let mut syntax_errors = 0;
    for ex in &examples {
        for (k, query) in &ex.queries {
            let err_file = examples_dir()
                .join(&ex.folder)
                .join(format!("expected_{k}.err"));
            let expected = std::fs::read_to_string(&err_file).ok();
            let outcome = parse_single(query);
            let what = format!("{} query {k}: {query}", ex.folder);
            match (expected.as_deref().and_then(syntax_kind), outcome) {
                (None, Ok(s)) => {
                    // The normalized form is itself valid and stable.
                    let printed = print_statement(&s);
                    let again = parse_single(&printed).expect(&printed);
                    assert_eq!(again, s, "{what}");
                }
                (None, Err(d)) => panic!("{what}\n{}", d.render(query, "<query>", false)),
                (Some(kind), Ok(_)) => panic!("{what}: parsed, expected {kind:?}"),
                (Some(kind), Err(d)) => {
                    syntax_errors += 1;
                    assert_eq!(d.kind, kind, "{what}");
                    let reference = expected.as_deref().unwrap_or("");
                    if let Some((s, e)) = byte_span(reference) {
                        assert_eq!((d.span.start, d.span.end), (s, e), "{what}");
                    }
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 150, "only {checked} queries checked");
    assert!(
        syntax_errors >= 9,
        "only {syntax_errors} syntax errors checked"
    );
}
