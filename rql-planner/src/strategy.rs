//! Choice of evaluation strategy for each part of WHEN, and its per-step cost (for EXPLAIN and
//! for the executor, which runs the method chosen here).
//!
//! Today every part is evaluated by direct enumeration, the literal reading of SPEC §3.2;
//! cheaper methods for recognised shapes slot in here as new `Method`s.

use rql_parser::LinkKind;

use crate::plan::{PExprKind, Plan};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Method {
    /// Recompute over every node of P(t) at each evaluated cut.
    ScanNodes,
    /// For each outer binding, test every node of P(t) (stops at the first failure).
    ForAllNodes,
    /// Enumerate outer bindings in witness order, stopping at the first that satisfies.
    EnumerateBindings,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::ScanNodes => "scan of P(t) per evaluated cut",
            Method::ForAllNodes => "for-all over P(t) per outer binding",
            Method::EnumerateBindings => "enumeration of outer bindings with early exit",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    pub method: Method,
    /// Per evaluated cut, in terms of N = |P(t)|.
    pub cost: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Strategy {
    pub parts: Vec<Part>,
}

pub fn choose(plan: &Plan) -> Strategy {
    let mut parts = Vec::new();
    for (i, a) in plan.aggregates.iter().enumerate() {
        parts.push(Part {
            name: format!("A{} {}", i + 1, a.span.text(&plan.source)),
            method: Method::ScanNodes,
            cost: "O(N)".into(),
        });
    }
    let units = plan.units.len();
    let outer = match units {
        0 => "O(1)".to_string(),
        1 => "O(N)".to_string(),
        u => format!("O(N^{u})"),
    };
    if let Some(w) = &plan.when {
        let mut each_groups = Vec::new();
        w.walk(&mut |e| {
            if let PExprKind::Link {
                kind: LinkKind::EachNode,
                group,
                ..
            } = e.kind
            {
                each_groups.push(group);
            }
        });
        for g in each_groups {
            parts.push(Part {
                name: format!("G{} {}", g + 1, plan.groups[g].span.text(&plan.source)),
                method: Method::ForAllNodes,
                cost: match units {
                    0 => "O(N)".into(),
                    1 => "O(N^2)".into(),
                    u => format!("O(N^{})", u + 1),
                },
            });
        }
        parts.push(Part {
            name: "WHEN".into(),
            method: Method::EnumerateBindings,
            cost: outer,
        });
    }
    Strategy { parts }
}
