//! Property tests: random ASTs survive print → parse unchanged, and no input crashes or hangs
//! the parser.

use proptest::prelude::*;
use rql_parser::*;

fn span() -> Span {
    Span::default()
}

fn ident_text() -> impl Strategy<Value = String> {
    "[A-Za-z_][A-Za-z0-9_]{0,6}".prop_filter("reserved", |s| !is_reserved(s))
}

/// After a dot any identifier is allowed, reserved words included.
fn any_ident_text() -> impl Strategy<Value = String> {
    prop_oneof![
        ident_text(),
        Just("time".to_string()),
        Just("NODES".to_string())
    ]
}

fn ident() -> impl Strategy<Value = Ident> {
    ident_text().prop_map(|name| Ident { name, span: span() })
}

fn node_id() -> impl Strategy<Value = NodeId> {
    prop_oneof![
        ident_text(),
        "[ -~]{1,12}",
        "\\PC{1,6}",
        Just("select".to_string())
    ]
    .prop_map(|name| NodeId { name, span: span() })
}

fn variable() -> impl Strategy<Value = Variable> {
    (
        proptest::option::of(ident()),
        any_ident_text(),
        ident_text(),
        proptest::collection::vec(any_ident_text(), 0..3),
        proptest::option::of(node_id()),
    )
        .prop_map(|(log, qualified_key, plain_key, fields, node)| {
            let key = if log.is_some() {
                qualified_key
            } else {
                plain_key
            };
            // Fields need the qualified form (SPEC §6: the first identifier is the log).
            let fields = if log.is_some() { fields } else { vec![] };
            Variable {
                log,
                key: Ident {
                    name: key,
                    span: span(),
                },
                fields: fields
                    .into_iter()
                    .map(|name| Ident { name, span: span() })
                    .collect(),
                node,
                span: span(),
            }
        })
}

fn literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        any::<i64>().prop_map(Literal::Int),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Literal::Float),
        "\\PC{0,8}".prop_map(Literal::Str),
        "[a'\"]{0,4}".prop_map(Literal::Str),
        any::<bool>().prop_map(Literal::Bool),
        Just(Literal::Null),
    ]
}

fn e(kind: ExprKind) -> Expr {
    Expr { kind, span: span() }
}

fn leaf() -> impl Strategy<Value = Expr> {
    prop_oneof![
        literal().prop_map(|l| e(ExprKind::Literal(l))),
        variable().prop_map(|v| e(ExprKind::Variable(Box::new(v)))),
        (1u32..20).prop_map(|k| e(ExprKind::Call {
            name: Ident {
                name: "NODE".into(),
                span: span()
            },
            args: CallArgs::List(vec![e(ExprKind::Placeholder(k))]),
        })),
        ident().prop_map(|name| e(ExprKind::Call {
            name,
            args: CallArgs::Star
        })),
    ]
}

fn binary_op() -> impl Strategy<Value = BinaryOp> {
    prop_oneof![
        Just(BinaryOp::Or),
        Just(BinaryOp::And),
        Just(BinaryOp::Eq),
        Just(BinaryOp::NotEq),
        Just(BinaryOp::Lt),
        Just(BinaryOp::LtEq),
        Just(BinaryOp::Gt),
        Just(BinaryOp::GtEq),
        Just(BinaryOp::Add),
        Just(BinaryOp::Sub),
        Just(BinaryOp::Mul),
        Just(BinaryOp::Div),
        Just(BinaryOp::Mod),
    ]
}

/// Expressions built from `leaves`, with every operator shape.
fn expr_from(leaves: BoxedStrategy<Expr>) -> BoxedStrategy<Expr> {
    leaves
        .prop_recursive(5, 48, 4, |inner| {
            let b = |x: Expr| Box::new(x);
            prop_oneof![
                (inner.clone(), any::<bool>()).prop_map(move |(x, not)| e(ExprKind::Unary {
                    op: if not { UnaryOp::Not } else { UnaryOp::Neg },
                    expr: b(x),
                })),
                (binary_op(), inner.clone(), inner.clone()).prop_map(move |(op, l, r)| e(
                    ExprKind::Binary {
                        op,
                        left: b(l),
                        right: b(r)
                    }
                )),
                (inner.clone(), any::<bool>()).prop_map(move |(x, negated)| e(ExprKind::IsNull {
                    expr: b(x),
                    negated
                })),
                (
                    inner.clone(),
                    proptest::collection::vec(inner.clone(), 1..4),
                    any::<bool>()
                )
                    .prop_map(move |(x, list, negated)| e(ExprKind::InList {
                        expr: b(x),
                        list,
                        negated
                    })),
                // A set operand the parser could have produced: not parenthesized.
                (inner.clone(), variable(), any::<bool>()).prop_map(move |(x, v, negated)| e(
                    ExprKind::InSet {
                        expr: b(x),
                        set: b(e(ExprKind::Variable(Box::new(v)))),
                        negated
                    }
                )),
                (ident(), proptest::collection::vec(inner, 0..3)).prop_map(|(name, args)| e(
                    ExprKind::Call {
                        name,
                        args: CallArgs::List(args)
                    }
                )),
            ]
        })
        .boxed()
}

fn expr() -> BoxedStrategy<Expr> {
    let no_link = expr_from(leaf().boxed());
    let link = (no_link, any::<bool>()).prop_map(|(x, each)| {
        e(ExprKind::Link {
            expr: Box::new(x),
            link: if each {
                LinkKind::EachNode
            } else {
                LinkKind::SameNode
            },
        })
    });
    expr_from(prop_oneof![3 => leaf(), 1 => link].boxed())
}

fn time_expr() -> impl Strategy<Value = TimeExpr> {
    prop_oneof![
        (0..=MAX_PHYSICAL_MS).prop_map(TimeExprKind::Millis),
        (0..=MAX_PHYSICAL_MS, 0..=MAX_LOGICAL)
            .prop_map(|(physical, logical)| TimeExprKind::Hlc { physical, logical }),
        proptest::option::of(0..=MAX_PHYSICAL_MS).prop_map(|minus| TimeExprKind::Now { minus }),
        (0i64..253_402_300_799_000).prop_map(|ms| {
            let t = chrono_like_rfc3339(ms);
            TimeExprKind::Timestamp {
                text: t,
                millis: ms as u64,
            }
        }),
    ]
    .prop_map(|kind| TimeExpr { kind, span: span() })
}

/// RFC 3339 text for `ms` (UTC), computed independently of the parser's conversion.
fn chrono_like_rfc3339(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

fn select_item() -> impl Strategy<Value = SelectItem> {
    prop_oneof![
        variable().prop_map(SelectItem::Variable),
        ident().prop_map(|log| SelectItem::LogStar { log, span: span() }),
        (
            ident(),
            proptest::collection::vec(expr_from(leaf().boxed()), 0..2),
            proptest::option::of(ident())
        )
            .prop_map(|(name, args, alias)| SelectItem::Aggregate {
                call: e(ExprKind::Call {
                    name,
                    args: CallArgs::List(args)
                }),
                alias,
                span: span(),
            }),
    ]
}

fn statement() -> impl Strategy<Value = Statement> {
    let select = prop_oneof![
        Just(SelectList::Star(span())),
        proptest::collection::vec(select_item(), 1..4).prop_map(SelectList::Items),
    ];
    let time = prop_oneof![
        (time_expr(), proptest::option::of(time_expr()))
            .prop_map(|(from, to)| TimeRange::OnTime { from, to }),
        time_expr().prop_map(TimeRange::Since),
    ];
    (
        any::<bool>(),
        select,
        proptest::collection::vec(ident(), 1..3),
        proptest::option::of(expr()),
        proptest::option::of(proptest::collection::vec(node_id(), 1..3)),
        proptest::option::of(time),
        proptest::option::of(prop_oneof![Just(Emit::Cuts), Just(Emit::Changes)]),
        proptest::option::of(0..=i64::MAX as u64),
    )
        .prop_map(
            |(explain, select, from, when, at_nodes, time, emit, limit)| Statement {
                explain,
                query: Query {
                    select,
                    from,
                    when,
                    at_nodes,
                    time,
                    emit,
                    limit: limit.map(|count| Limit {
                        count,
                        span: span(),
                    }),
                    span: span(),
                },
                span: span(),
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn printed_statements_parse_back_identically(s in statement()) {
        let text = print_statement(&s);
        let back = parse_single(&text)
            .map_err(|d| TestCaseError::fail(d.render(&text, "<printed>", false)))?;
        prop_assert_eq!(&back, &s, "printed as {}", text);
        // Printing is idempotent.
        prop_assert_eq!(print_statement(&back), text);
    }

    #[test]
    fn printed_expressions_parse_back_identically(x in expr()) {
        let text = print_expr(&x);
        let back = parse_expr(&text)
            .map_err(|d| TestCaseError::fail(d.render(&text, "<printed>", false)))?;
        prop_assert_eq!(back, x, "printed as {}", text);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        if let Err(ds) = parse_statements(&text) {
            for d in ds {
                d.render(&text, "<bytes>", false);
                d.render(&text, "<bytes>", true);
            }
        }
        if let Err(d) = parse_single(&text) {
            d.render(&text, "<bytes>", false);
        }
    }

    #[test]
    fn mangled_queries_never_panic(
        base in statement(),
        cut in any::<prop::sample::Index>(),
        insert in "[()'\"$;,.\\[\\]*+<>=!-]{0,3}",
    ) {
        // Near-valid input reaches deeper parser paths than random bytes do.
        let text = print_statement(&base);
        let at = cut.index(text.len() + 1);
        let at = (0..=at).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        let mangled = format!("{}{}{}", &text[..at], insert, &text[at..]);
        if let Err(d) = parse_single(&mangled) {
            // Every error points inside the input and renders.
            prop_assert!(d.span.start <= d.span.end && d.span.end <= mangled.len());
            d.render(&mangled, "<m>", false);
        }
    }
}

#[test]
fn pathological_inputs_finish() {
    // Not a benchmark: a guard against super-linear behaviour (each case is ~1 MB).
    let cases = [
        "(".repeat(1 << 20),
        "NOT ".repeat(1 << 18),
        format!("SELECT inv.a FROM inv WHEN {}", "a IN (".repeat(1 << 17)),
        format!("SELECT inv.a FROM inv WHEN {}", "1 + ".repeat(1 << 18)),
        format!("SELECT {} FROM inv", "inv.a, ".repeat(1 << 17)),
        "'".repeat(1 << 20),
        "/*".repeat(1 << 19),
        ";".repeat(1 << 20),
    ];
    for c in &cases {
        let start = std::time::Instant::now();
        let _ = parse_statements(c);
        let _ = parse_single(c);
        assert!(start.elapsed().as_secs() < 20, "took {:?}", start.elapsed());
    }
}
