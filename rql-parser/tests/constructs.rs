//! One test per construct of SPEC §2: what the parser builds, and that printing it reads back.

use rql_parser::*;

fn stmt(src: &str) -> Statement {
    let s = parse_single(src).unwrap_or_else(|d| panic!("{src}: {}", d.render(src, "<q>", false)));
    let printed = print_statement(&s);
    let again = parse_single(&printed)
        .unwrap_or_else(|d| panic!("reparse of {printed}: {}", d.render(&printed, "<p>", false)));
    assert_eq!(s, again, "round trip of {src} via {printed}");
    s
}

fn when(src: &str) -> Expr {
    stmt(&format!("SELECT inv.a FROM inv WHEN {src}"))
        .query
        .when
        .expect("WHEN")
}

fn normalized(src: &str) -> String {
    print_statement(&stmt(src))
}

fn var(log: Option<&str>, key: &str) -> ExprKind {
    ExprKind::Variable(Box::new(Variable {
        log: log.map(|l| Ident {
            name: l.into(),
            span: Span::default(),
        }),
        key: Ident {
            name: key.into(),
            span: Span::default(),
        },
        fields: vec![],
        node: None,
        span: Span::default(),
    }))
}

#[test]
fn select_star_log_star_variables_and_aggregates() {
    let q = stmt("SELECT * FROM inv").query;
    assert!(matches!(q.select, SelectList::Star(_)));
    let q = stmt("SELECT inv.*, inv.a, b, COUNT(*) AS n, SUM(inv.a) FROM inv").query;
    let SelectList::Items(items) = q.select else {
        panic!()
    };
    assert!(matches!(&items[0], SelectItem::LogStar { log, .. } if log.name == "inv"));
    assert!(
        matches!(&items[1], SelectItem::Variable(v) if v.log.as_ref().unwrap().name == "inv" && v.key.name == "a")
    );
    assert!(matches!(&items[2], SelectItem::Variable(v) if v.log.is_none() && v.key.name == "b"));
    let SelectItem::Aggregate { call, alias, span } = &items[3] else {
        panic!()
    };
    assert!(
        matches!(&call.kind, ExprKind::Call { name, args: CallArgs::Star } if name.name == "COUNT")
    );
    assert_eq!(alias.as_ref().unwrap().name, "n");
    assert_eq!((span.start, span.end), (24, 37));
    assert!(matches!(
        &items[4],
        SelectItem::Aggregate { alias: None, .. }
    ));
}

#[test]
fn from_several_logs() {
    let q = stmt("SELECT inv.a FROM inv, zk, aux").query;
    let names: Vec<_> = q.from.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["inv", "zk", "aux"]);
}

#[test]
fn precedence_loosest_first() {
    assert_eq!(
        normalized("SELECT inv.a FROM inv WHEN a OR b AND NOT c = 1 + 2 * -d"),
        "SELECT inv.a FROM inv WHEN a OR b AND NOT c = 1 + 2 * -d"
    );
    let e = when("a OR b AND c");
    let ExprKind::Binary {
        op: BinaryOp::Or,
        right,
        ..
    } = e.kind
    else {
        panic!("{e:?}")
    };
    assert!(matches!(
        right.kind,
        ExprKind::Binary {
            op: BinaryOp::And,
            ..
        }
    ));
    let e = when("1 + 2 * 3 - 4 % 5 / 6");
    let ExprKind::Binary {
        op: BinaryOp::Sub,
        left,
        ..
    } = e.kind
    else {
        panic!()
    };
    assert!(matches!(
        left.kind,
        ExprKind::Binary {
            op: BinaryOp::Add,
            ..
        }
    ));
    // NOT binds looser than comparison.
    let e = when("NOT a = b");
    let ExprKind::Unary {
        op: UnaryOp::Not,
        expr,
    } = e.kind
    else {
        panic!()
    };
    assert!(matches!(
        expr.kind,
        ExprKind::Binary {
            op: BinaryOp::Eq,
            ..
        }
    ));
    // Parentheses regroup and leave no node.
    assert_eq!(
        normalized("SELECT inv.a FROM inv WHEN (a + b) * ((c))"),
        "SELECT inv.a FROM inv WHEN (a + b) * c"
    );
}

#[test]
fn alternative_spellings_fold() {
    assert_eq!(
        when("a == 1 && b <> 2 || !c"),
        when("a = 1 AND b != 2 OR NOT c")
    );
    assert_eq!(when("a and b or not c"), when("a AND b OR NOT c"));
}

#[test]
fn all_comparison_operators() {
    for (text, op) in [
        ("=", BinaryOp::Eq),
        ("==", BinaryOp::Eq),
        ("!=", BinaryOp::NotEq),
        ("<>", BinaryOp::NotEq),
        ("<", BinaryOp::Lt),
        ("<=", BinaryOp::LtEq),
        (">", BinaryOp::Gt),
        (">=", BinaryOp::GtEq),
    ] {
        let e = when(&format!("a {text} b"));
        assert!(
            matches!(e.kind, ExprKind::Binary { op: o, .. } if o == op),
            "{text}"
        );
    }
}

#[test]
fn link_same_node_and_each_node() {
    let e = when("(inv.a + inv.b <= inv.c) LINK SAME_NODE");
    assert!(matches!(
        e.kind,
        ExprKind::Link {
            link: LinkKind::SameNode,
            ..
        }
    ));
    assert_eq!((e.span.start, e.span.end), (27, 66));
    let e = when("(inv.a) link each_node");
    assert!(matches!(
        e.kind,
        ExprKind::Link {
            link: LinkKind::EachNode,
            ..
        }
    ));
    // A LINK group is a primary: it can be an operand.
    let e = when("(inv.a + inv.b) LINK SAME_NODE <= inv.c");
    let ExprKind::Binary {
        op: BinaryOp::LtEq,
        left,
        ..
    } = e.kind
    else {
        panic!()
    };
    assert!(matches!(left.kind, ExprKind::Link { .. }));
    // Sibling groups are fine.
    when("(a > 0) LINK EACH_NODE AND (b > 0) LINK SAME_NODE");
}

#[test]
fn node_placeholder() {
    let e = when("(inv.a + inv.b <= inv.c) AND NODE($1) = NODE($3)");
    let mut ks = vec![];
    e.walk(&mut |x| {
        if let ExprKind::Placeholder(k) = x.kind {
            ks.push(k)
        }
    });
    assert_eq!(ks, [1, 3]);
}

#[test]
fn is_null_and_in() {
    assert!(matches!(
        when("a IS NULL").kind,
        ExprKind::IsNull { negated: false, .. }
    ));
    assert!(matches!(
        when("a is not null").kind,
        ExprKind::IsNull { negated: true, .. }
    ));
    let ExprKind::InList { list, negated, .. } = when("a IN (1, 'x', b + 1)").kind else {
        panic!()
    };
    assert_eq!((list.len(), negated), (3, false));
    assert!(matches!(
        when("a NOT IN (1)").kind,
        ExprKind::InList { negated: true, .. }
    ));
    // A parenthesized single operand is a one-element list (SPEC §6).
    assert!(matches!(when("a IN (inv.s)").kind, ExprKind::InList { .. }));
    assert!(matches!(
        when("'n1' IN inv.s").kind,
        ExprKind::InSet { negated: false, .. }
    ));
    assert!(matches!(
        when("'n1' NOT IN inv.s").kind,
        ExprKind::InSet { negated: true, .. }
    ));
}

#[test]
fn struct_fields_and_node_selectors() {
    let ExprKind::Variable(v) = when("inv.st.f.g").kind else {
        panic!()
    };
    assert_eq!(v.log.unwrap().name, "inv");
    assert_eq!(v.key.name, "st");
    let fields: Vec<_> = v.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(fields, ["f", "g"]);
    for (src, node) in [
        ("inv.a['n1']", "n1"),
        ("inv.a[n2]", "n2"),
        ("inv.a[\"10.0.0.7:2181\"]", "10.0.0.7:2181"),
        ("inv.st.f['n3']", "n3"),
    ] {
        let ExprKind::Variable(v) = when(src).kind else {
            panic!()
        };
        assert_eq!(v.node.unwrap().name, node, "{src}");
    }
    // Any identifier may follow a dot, reserved or not.
    let ExprKind::Variable(v) = when("zk.time").kind else {
        panic!()
    };
    assert_eq!(v.key.name, "time");
    assert_eq!(
        normalized("SELECT inv.a['x y'], inv.b[n1] FROM inv"),
        "SELECT inv.a['x y'], inv.b[n1] FROM inv"
    );
}

#[test]
fn unqualified_names_and_function_calls() {
    assert_eq!(when("a").kind, var(None, "a"));
    let ExprKind::Call {
        name,
        args: CallArgs::List(args),
    } = when("coalesce(a, 1, abs(-2))").kind
    else {
        panic!()
    };
    assert_eq!((name.name.as_str(), args.len()), ("coalesce", 3));
    assert!(
        matches!(when("f()").kind, ExprKind::Call { args: CallArgs::List(a), .. } if a.is_empty())
    );
}

#[test]
fn literals() {
    let lit = |s: &str| match when(s).kind {
        ExprKind::Literal(l) => l,
        other => panic!("{other:?}"),
    };
    assert_eq!(lit("42"), Literal::Int(42));
    assert_eq!(lit("-9223372036854775808"), Literal::Int(i64::MIN));
    assert_eq!(lit("9223372036854775807"), Literal::Int(i64::MAX));
    assert_eq!(lit("2.5"), Literal::Float(2.5));
    assert_eq!(lit("1e1"), Literal::Float(10.0));
    assert_eq!(lit("1.5E-3"), Literal::Float(0.0015));
    assert_eq!(lit("-0.5"), Literal::Float(-0.5));
    assert_eq!(lit("'it''s'"), Literal::Str("it's".into()));
    assert_eq!(lit("\"say \"\"hi\"\"\""), Literal::Str("say \"hi\"".into()));
    assert_eq!(lit("TRUE"), Literal::Bool(true));
    assert_eq!(lit("false"), Literal::Bool(false));
    assert_eq!(lit("Null"), Literal::Null);
    // Unary minus on a non-literal stays an operator.
    assert!(matches!(
        when("-a").kind,
        ExprKind::Unary {
            op: UnaryOp::Neg,
            ..
        }
    ));
    assert!(matches!(
        when("- -5").kind,
        ExprKind::Unary {
            op: UnaryOp::Neg,
            ..
        }
    ));
}

#[test]
fn at_nodes_time_emit_limit() {
    let q = stmt(
        "SELECT inv.a FROM inv WHEN a > 1 AT NODES n1, 'n 2', \"10.0.0.7:2181\" \
         ON TIME 1700000000000 TO HLC(1700000000500, 3) EMIT CHANGES LIMIT 10",
    )
    .query;
    let nodes: Vec<_> = q.at_nodes.unwrap().into_iter().map(|n| n.name).collect();
    assert_eq!(nodes, ["n1", "n 2", "10.0.0.7:2181"]);
    let Some(TimeRange::OnTime { from, to: Some(to) }) = q.time else {
        panic!()
    };
    assert_eq!(from.kind, TimeExprKind::Millis(1_700_000_000_000));
    assert_eq!(
        to.kind,
        TimeExprKind::Hlc {
            physical: 1_700_000_000_500,
            logical: 3
        }
    );
    assert_eq!(q.emit, Some(Emit::Changes));
    assert_eq!(q.limit.unwrap().count, 10);
}

#[test]
fn time_forms() {
    let time = |src: &str| {
        let q = stmt(&format!("SELECT inv.a FROM inv {src}")).query;
        q.time.unwrap()
    };
    let TimeRange::OnTime { from, to: None } = time("ON TIME '2023-11-14T22:13:20.123Z'") else {
        panic!()
    };
    assert!(matches!(
        from.kind,
        TimeExprKind::Timestamp {
            millis: 1_700_000_000_123,
            ..
        }
    ));
    let TimeRange::OnTime { from, .. } = time("ON TIME '2023-11-14 23:13:20.1239+01:00'") else {
        panic!()
    };
    assert!(matches!(
        from.kind,
        TimeExprKind::Timestamp {
            millis: 1_700_000_000_123,
            ..
        }
    ));
    let TimeRange::Since(t) = time("SINCE NOW - 5000") else {
        panic!()
    };
    assert_eq!(t.kind, TimeExprKind::Now { minus: Some(5000) });
    let TimeRange::Since(t) = time("since now") else {
        panic!()
    };
    assert_eq!(t.kind, TimeExprKind::Now { minus: None });
    assert_eq!(
        stmt("SELECT inv.a FROM inv EMIT CUTS").query.emit,
        Some(Emit::Cuts)
    );
    assert_eq!(stmt("SELECT inv.a FROM inv").query.emit, None);
}

#[test]
fn explain_comments_case_and_several_statements() {
    let s = stmt("explain select INV.a from INV -- why\n");
    assert!(s.explain);
    assert_eq!(s.query.from[0].name, "INV", "identifiers keep their case");
    let all = parse_statements(
        "SELECT inv.a FROM inv; /* two */ SELECT zk.v FROM zk WHEN zk.v > 1;\n;-- done",
    )
    .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(
        print_statement(&all[1]),
        "SELECT zk.v FROM zk WHEN zk.v > 1"
    );
    assert_eq!(parse_statements("  -- nothing\n").unwrap().len(), 0);
    // -e: a trailing ';' is fine.
    parse_single("SELECT inv.a FROM inv;").unwrap();
}

#[test]
fn spans_point_at_source() {
    let src = "SELECT inv.a FROM inv WHEN inv.b['n1'] > -3";
    let s = parse_single(src).unwrap();
    let w = s.query.when.unwrap();
    assert_eq!(w.span.text(src), "inv.b['n1'] > -3");
    let ExprKind::Binary { left, right, .. } = w.kind else {
        panic!()
    };
    assert_eq!(left.span.text(src), "inv.b['n1']");
    assert_eq!(right.span.text(src), "-3");
    assert_eq!(s.span.text(src), src);
}

#[test]
fn seed_queries_of_spec_3_2_parse() {
    for w in [
        "(inv.a + inv.b <= inv.c) LINK SAME_NODE",
        "inv.a + inv.b <= inv.c",
        "(inv.a + inv.b <= inv.c) LINK EACH_NODE",
        "(inv.a + inv.b) LINK SAME_NODE <= inv.c",
        "(inv.a + inv.b <= inv.c) AND NODE($1) = NODE($3)",
    ] {
        stmt(&format!("SELECT inv.a, inv.b, inv.c FROM inv WHEN {w}"));
    }
    stmt("SELECT MAX(zk.version) AS newest FROM zk WHEN MAX(zk.version) - MIN(zk.version) >= 2");
}
