//! `rql check` end to end: normalized output, caret diagnostics and exit statuses.

mod cli_support;

use cli_support::{rql, text};

#[test]
fn prints_the_normalized_statement() {
    let out = rql(
        &[
            "check",
            "-e",
            "select inv.a from inv when (inv.a+inv.b <= inv.c) link same_node",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "SELECT inv.a FROM inv WHEN (inv.a + inv.b <= inv.c) LINK SAME_NODE;\n"
    );
    assert!(out.stderr.is_empty());
}

#[test]
fn renders_diagnostics_with_caret_and_exits_2() {
    let out = rql(
        &[
            "check",
            "-e",
            "SELECT inv.a FROM inv WHEN inv.a > inv.b LINK SAME_NODE",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = text(&out.stderr);
    assert!(
        err.contains("error: LINK applies only to a parenthesized expression"),
        "{err}"
    );
    assert!(err.contains("<query>:1:42"), "{err}");
    assert!(err.contains("^^^^"), "{err}");
    assert!(
        err.contains("write (inv.a > inv.b) LINK SAME_NODE"),
        "{err}"
    );
}

#[test]
fn reads_a_file_with_several_statements() {
    let dir = std::env::temp_dir().join(format!("rql-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("q.rql");
    std::fs::write(
        &file,
        "-- two queries\nSELECT inv.a FROM inv;\nselect zk.v from zk limit 3;\n",
    )
    .unwrap();
    let out = rql(&["check", "-f", file.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "SELECT inv.a FROM inv;\nSELECT zk.v FROM zk LIMIT 3;\n"
    );
    // Errors in a file name the file and the line, one diagnostic per bad statement.
    std::fs::write(
        &file,
        "SELECT inv.a FROM inv;\nSELECT inv.a\nFROM inv WHEN;\nSELECT ) FROM x;\n",
    )
    .unwrap();
    let out = rql(&["check", "-f", file.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("q.rql:3:14"), "{err}");
    assert!(err.contains("q.rql:4:8"), "{err}");
    assert_eq!(err.matches("error:").count(), 2, "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn reads_stdin() {
    let out = rql(&["check", "-f", "-"], Some("SELECT * FROM inv WHEN a > 1;"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "SELECT * FROM inv WHEN a > 1;\n");
    let out = rql(&["check", "-f", "-"], Some("SELECT * FROM inv WHEN 'x"));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("<stdin>:1:24"));
}

#[test]
fn usage_and_io_errors() {
    // Neither -e nor -f: clap's usage error.
    let out = rql(&["check"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("Usage"));
    let out = rql(&["check", "-f", "/nonexistent/q.rql"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot read query file /nonexistent/q.rql"));
    // Several statements with -e are refused.
    let out = rql(&["check", "-e", "SELECT a FROM x; SELECT b FROM y"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("only one statement"));
}
