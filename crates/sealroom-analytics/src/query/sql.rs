//! Local SQL generation: one statement per phase, rendered from the
//! validated plan for the party's own database.
//!
//! Identifiers are double-quoted with embedded quotes doubled, and come from
//! the table's catalogue; string literals are escaped for the dialect
//! (PostgreSQL gets `E'…'` literals, whose meaning does not depend on
//! `standard_conforming_strings`); numbers are re-printed from their parsed
//! value. Nothing the user typed is spliced into the statement.
//!
//! Numeric semantics are made identical on every backend: a column used as a
//! number is cast to a double (so integer sums cannot overflow and `/` never
//! truncates), division by zero yields NULL (`x / NULLIF(y, 0)`), LIKE is
//! case-sensitive with no escape character (SQLite renders it as `GLOB`), and
//! a group key is the index of the column's text form in the declared domain,
//! so the database never returns a raw value.
//!
//! A column with declared bounds is read as `clamp(value, lo, hi)` wherever
//! it is a number (a `CASE`, identical on both backends; NULL stays NULL),
//! and the statistics statement counts per cell the rows where such a
//! value was outside its bounds (NaN included: PostgreSQL orders it above
//! every number).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::bounds::Bounds;
use super::expr::{ArithOp, CmpOp, ColumnRef, Expr};
use super::spec::{QueryPlan, Stat};

/// The SQL flavour of a party's database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// Column references of a plan resolved to a table's real column names.
pub(crate) type Names = BTreeMap<ColumnRef, String>;

/// Renders expressions for one dialect and table.
pub(crate) struct Renderer<'a> {
    pub(crate) dialect: Dialect,
    pub(crate) names: &'a Names,
    /// The plan's declared bounds: these columns are clamped.
    pub(crate) bounds: &'a Bounds,
}

/// A double-quoted identifier.
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Renderer<'_> {
    fn real(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "REAL",
            Dialect::Postgres => "DOUBLE PRECISION",
        }
    }

    fn integer(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "INTEGER",
            Dialect::Postgres => "BIGINT",
        }
    }

    /// A string literal.
    pub(crate) fn text(&self, s: &str) -> String {
        match self.dialect {
            Dialect::Sqlite => format!("'{}'", s.replace('\'', "''")),
            Dialect::Postgres => format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''")),
        }
    }

    fn column(&self, c: &ColumnRef) -> String {
        // Every column reference of a plan is resolved before rendering
        // (`source::bind`); an unresolved name renders as its own spelling,
        // which the database then reports as unknown.
        ident(self.names.get(c).map_or(c.name.as_str(), String::as_str))
    }

    /// A column as a double, unclamped.
    fn raw(&self, c: &ColumnRef) -> String {
        format!("CAST({} AS {})", self.column(c), self.real())
    }

    /// A column as a double, clamped to its declared bounds if it has any.
    fn number(&self, c: &ColumnRef) -> String {
        let x = self.raw(c);
        match self.bounds.get(c) {
            Some(b) => {
                let (lo, hi) = (float(b.lo), float(b.hi));
                format!("(CASE WHEN {x} < {lo} THEN {lo} WHEN {x} > {hi} THEN {hi} ELSE {x} END)")
            }
            None => x,
        }
    }

    /// Per row: 1.0 if a bounded column's value is outside its bounds.
    fn adjusted(&self) -> String {
        let outside: Vec<String> = self
            .bounds
            .iter()
            .map(|(c, b)| {
                let x = self.raw(c);
                format!("{x} < {} OR {x} > {}", float(b.lo), float(b.hi))
            })
            .collect();
        if outside.is_empty() {
            return format!("CAST(0.0 AS {})", self.real());
        }
        format!(
            "CAST(SUM(CASE WHEN {} THEN 1.0 ELSE 0.0 END) AS {})",
            outside.join(" OR "),
            self.real()
        )
    }

    /// An expression where a number is expected: columns are cast to double
    /// (and clamped to their bounds).
    pub(crate) fn numeric(&self, e: &Expr) -> String {
        match e {
            Expr::Column(c) => self.number(c),
            Expr::Number { value, .. } => float(*value),
            Expr::Neg(x) => format!("(- {})", self.numeric(x)),
            Expr::Arith { op, left, right } => {
                let (l, r) = (self.numeric(left), self.numeric(right));
                match op {
                    ArithOp::Add => format!("({l} + {r})"),
                    ArithOp::Sub => format!("({l} - {r})"),
                    ArithOp::Mul => format!("({l} * {r})"),
                    ArithOp::Div => format!("({l} / NULLIF({r}, 0.0))"),
                }
            }
            other => self.value(other),
        }
    }

    /// An expression in a comparison or `IS NULL`: columns keep their type.
    pub(crate) fn value(&self, e: &Expr) -> String {
        match e {
            Expr::Column(c) if self.bounds.contains_key(c) => self.number(c),
            Expr::Column(c) => self.column(c),
            Expr::Number { value, int } => match int {
                Some(i) if *i < 0 => format!("({i})"),
                Some(i) => i.to_string(),
                None => float(*value),
            },
            Expr::Text(s) => self.text(s),
            Expr::Neg(_) | Expr::Arith { .. } => self.numeric(e),
            other => self.condition(other),
        }
    }

    /// A boolean expression.
    pub(crate) fn condition(&self, e: &Expr) -> String {
        match e {
            Expr::Bool(true) => "(1 = 1)".to_owned(),
            Expr::Bool(false) => "(1 = 0)".to_owned(),
            Expr::Cmp { op, left, right } => {
                let op = match op {
                    CmpOp::Eq => "=",
                    CmpOp::NotEq => "<>",
                    CmpOp::Lt => "<",
                    CmpOp::LtEq => "<=",
                    CmpOp::Gt => ">",
                    CmpOp::GtEq => ">=",
                };
                format!("({} {op} {})", self.value(left), self.value(right))
            }
            Expr::And(l, r) => format!("({} AND {})", self.condition(l), self.condition(r)),
            Expr::Or(l, r) => format!("({} OR {})", self.condition(l), self.condition(r)),
            Expr::Not(x) => format!("(NOT {})", self.condition(x)),
            Expr::InList {
                expr,
                list,
                negated,
            } => {
                let items: Vec<String> = list.iter().map(|x| self.value(x)).collect();
                let not = if *negated { "NOT " } else { "" };
                format!("({} {not}IN ({}))", self.value(expr), items.join(", "))
            }
            Expr::Between {
                expr,
                low,
                high,
                negated,
            } => {
                let not = if *negated { "NOT " } else { "" };
                format!(
                    "({} {not}BETWEEN {} AND {})",
                    self.value(expr),
                    self.value(low),
                    self.value(high)
                )
            }
            Expr::IsNull { expr, negated } => {
                let not = if *negated { "NOT " } else { "" };
                format!("({} IS {not}NULL)", self.value(expr))
            }
            Expr::Like {
                expr,
                pattern,
                negated,
            } => {
                let not = if *negated { "NOT " } else { "" };
                let x = format!("CAST({} AS TEXT)", self.value(expr));
                match self.dialect {
                    Dialect::Sqlite => {
                        format!("({x} {not}GLOB {})", self.text(&like_to_glob(pattern)))
                    }
                    Dialect::Postgres => {
                        format!("({x} {not}LIKE {} ESCAPE '')", self.text(pattern))
                    }
                }
            }
            // Values never stand where a condition is expected: the planner
            // checks kinds. Render them as a comparison that is never true,
            // so a planner bug cannot widen a filter.
            Expr::Column(_)
            | Expr::Number { .. }
            | Expr::Text(_)
            | Expr::Neg(_)
            | Expr::Arith { .. } => "(1 = 0)".to_owned(),
        }
    }

    /// One local statistic as a double-valued aggregate.
    pub(crate) fn stat(&self, s: &Stat) -> String {
        let product = if s.factors.is_empty() {
            "1.0".to_owned()
        } else {
            let parts: Vec<String> = s.factors.iter().map(|f| self.numeric(f)).collect();
            parts.join(" * ")
        };
        let inner = match &s.filter {
            None if s.factors.is_empty() => "COUNT(*)".to_owned(),
            None => format!("SUM({product})"),
            Some(filter) => format!(
                "SUM(CASE WHEN {} THEN {product} END)",
                self.condition(filter)
            ),
        };
        format!("CAST({inner} AS {})", self.real())
    }

    /// The index of a row's cell along one GROUP BY column: the position of
    /// the column's text form in the domain, or the domain's length ("other",
    /// including NULL).
    fn group_key(&self, column: &ColumnRef, domain: &[String]) -> String {
        let mut out = format!("CAST(CASE CAST({} AS TEXT)", self.column(column));
        for (i, value) in domain.iter().enumerate() {
            let _ = write!(out, " WHEN {} THEN {i}", self.text(value));
        }
        let _ = write!(out, " ELSE {} END AS {})", domain.len(), self.integer());
        out
    }

    /// The statement of one phase: group keys, `COUNT(*)` and, in phase 2,
    /// the adjusted-row count and every statistic of the plan.
    pub(crate) fn phase(&self, plan: &QueryPlan, table: &str, with_stats: bool) -> String {
        let mut items: Vec<String> = plan
            .groups
            .iter()
            .map(|g| self.group_key(&g.column, &g.domain))
            .collect();
        items.push(format!("CAST(COUNT(*) AS {})", self.real()));
        if with_stats {
            items.push(self.adjusted());
            items.extend(plan.stats.iter().map(|s| self.stat(s)));
        }
        let mut sql = format!("SELECT {} FROM {}", items.join(", "), table);
        if let Some(filter) = &plan.filter {
            let _ = write!(sql, " WHERE {}", self.condition(filter));
        }
        if !plan.groups.is_empty() {
            let positions: Vec<String> = (1..=plan.groups.len()).map(|i| i.to_string()).collect();
            let _ = write!(sql, " GROUP BY {}", positions.join(", "));
        }
        sql
    }

    /// The order round's statement for one item: per cell, the `limit`
    /// smallest (`descending`: largest) non-NULL values of `expr` (clamped
    /// like everywhere else), with the cell's group keys. `ROW_NUMBER()`
    /// over each cell bounds what leaves the database at `limit` rows per
    /// cell, whatever the table's size.
    pub(crate) fn order_values(
        &self,
        plan: &QueryPlan,
        expr: &Expr,
        table: &str,
        limit: u32,
        descending: bool,
    ) -> String {
        let keys: Vec<String> = plan
            .groups
            .iter()
            .map(|g| self.group_key(&g.column, &g.domain))
            .collect();
        let v = self.numeric(expr);
        let partition = if keys.is_empty() {
            String::new()
        } else {
            format!("PARTITION BY {} ", keys.join(", "))
        };
        let dir = if descending { "DESC" } else { "ASC" };
        let mut inner: Vec<String> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| format!("{k} AS k{i}"))
            .collect();
        inner.push(format!("{v} AS v"));
        inner.push(format!(
            "ROW_NUMBER() OVER ({partition}ORDER BY {v} {dir}) AS rn"
        ));
        let mut condition = format!("({v} IS NOT NULL)");
        if let Some(filter) = &plan.filter {
            condition = format!("{} AND {condition}", self.condition(filter));
        }
        let mut outer: Vec<String> = (0..keys.len()).map(|i| format!("k{i}")).collect();
        outer.push("v".to_owned());
        format!(
            "SELECT {} FROM (SELECT {} FROM {table} WHERE {condition}) AS o WHERE rn <= {limit}",
            outer.join(", "),
            inner.join(", ")
        )
    }
}

/// A double literal both dialects read the same way (`Debug` always prints a
/// decimal point or an exponent).
fn float(v: f64) -> String {
    // A sign is always parenthesised so that no rendering can produce `--`
    // (a comment) next to another minus.
    if v.is_sign_negative() {
        format!("({v:?})")
    } else {
        format!("{v:?}")
    }
}

/// The GLOB pattern matching exactly what a LIKE pattern without escape
/// character matches, case-sensitively.
pub(crate) fn like_to_glob(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 8);
    for c in pattern.chars() {
        match c {
            '%' => out.push('*'),
            '_' => out.push('?'),
            '*' => out.push_str("[*]"),
            '?' => out.push_str("[?]"),
            '[' => out.push_str("[[]"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_escaped_per_dialect() {
        let names = Names::new();
        let bounds = Bounds::new();
        let sqlite = Renderer {
            dialect: Dialect::Sqlite,
            names: &names,
            bounds: &bounds,
        };
        let pg = Renderer {
            dialect: Dialect::Postgres,
            names: &names,
            bounds: &bounds,
        };
        assert_eq!(sqlite.text("o'clock\\"), "'o''clock\\'");
        assert_eq!(pg.text("o'clock\\"), "E'o''clock\\\\'");
        assert_eq!(ident("we\"ird"), "\"we\"\"ird\"");
    }

    #[test]
    fn like_patterns_become_equivalent_globs() {
        assert_eq!(like_to_glob("a%b_c"), "a*b?c");
        assert_eq!(like_to_glob("*?[x]"), "[*][?][[]x]");
    }

    fn render(sql: &str, dialect: Dialect, with_stats: bool) -> String {
        let spec = super::super::QuerySpec {
            max_rows_per_client: None,
            sql: sql.to_owned(),
            domains: [(
                "dept".to_owned(),
                vec!["eng".to_owned(), "r&d's".to_owned()],
            )]
            .into(),
            min_rows: 5,
            min_clients: 2,
            bounds: [
                ("salary".to_owned(), [0.0, 1e6]),
                ("years".to_owned(), [0.0, 60.0]),
                ("x".to_owned(), [-100.0, 100.0]),
            ]
            .into(),
            dp: None,
        };
        let plan = super::super::plan(&spec).expect("plans");
        let names: Names = plan
            .columns
            .iter()
            .map(|c| (c.clone(), c.name.clone()))
            .collect();
        Renderer {
            dialect,
            names: &names,
            bounds: &plan.bounds,
        }
        .phase(&plan, "\"tbl\"", with_stats)
    }

    #[test]
    fn phase_statements_are_pinned() {
        let sql = "SELECT dept, AVG(salary), REGR_SLOPE(salary, years) FROM t \
                   WHERE age BETWEEN 30 AND 50 AND note LIKE 'a_%' AND -x / 2 <> 1.5 GROUP BY dept";
        assert_eq!(
            render(sql, Dialect::Sqlite, false),
            "SELECT CAST(CASE CAST(\"dept\" AS TEXT) WHEN 'eng' THEN 0 WHEN 'r&d''s' THEN 1 ELSE 2 END AS INTEGER), \
             CAST(COUNT(*) AS REAL) FROM \"tbl\" WHERE (((\"age\" BETWEEN 30 AND 50) AND \
             (CAST(\"note\" AS TEXT) GLOB 'a?*')) AND (((- (CASE WHEN CAST(\"x\" AS REAL) < (-100.0) THEN (-100.0) \
             WHEN CAST(\"x\" AS REAL) > 100.0 THEN 100.0 ELSE CAST(\"x\" AS REAL) END)) / NULLIF(2.0, 0.0)) <> 1.5)) GROUP BY 1"
        );
        let pg = render(sql, Dialect::Postgres, true);
        let salary = "(CASE WHEN CAST(\"salary\" AS DOUBLE PRECISION) < 0.0 THEN 0.0 \
                      WHEN CAST(\"salary\" AS DOUBLE PRECISION) > 1000000.0 THEN 1000000.0 \
                      ELSE CAST(\"salary\" AS DOUBLE PRECISION) END)";
        assert!(pg.starts_with(&format!(
            "SELECT CAST(CASE CAST(\"dept\" AS TEXT) WHEN E'eng' THEN 0 WHEN E'r&d''s' THEN 1 ELSE 2 END AS BIGINT), \
             CAST(COUNT(*) AS DOUBLE PRECISION), \
             CAST(SUM(CASE WHEN CAST(\"salary\" AS DOUBLE PRECISION) < 0.0 OR CAST(\"salary\" AS DOUBLE PRECISION) > 1000000.0 \
             OR CAST(\"x\" AS DOUBLE PRECISION) < (-100.0) OR CAST(\"x\" AS DOUBLE PRECISION) > 100.0 \
             OR CAST(\"years\" AS DOUBLE PRECISION) < 0.0 OR CAST(\"years\" AS DOUBLE PRECISION) > 60.0 \
             THEN 1.0 ELSE 0.0 END) AS DOUBLE PRECISION), \
             CAST(SUM(CASE WHEN ({salary} IS NOT NULL) THEN 1.0 END) AS DOUBLE PRECISION), \
             CAST(SUM({salary}) AS DOUBLE PRECISION), "
        )), "{pg}");
        assert!(
            pg.contains("(CAST(\"note\" AS TEXT) LIKE E'a_%' ESCAPE '')"),
            "{pg}"
        );
        // The adjusted-row count, then eight statistics: AVG's count and
        // sum, REGR's six moments, with none shared (REGR filters on both
        // variables).
        assert_eq!(pg.matches("CAST(SUM(").count(), 9);
    }

    #[test]
    fn order_statement_is_pinned() {
        let spec = super::super::QuerySpec {
            max_rows_per_client: None,
            sql: "SELECT dept, MEDIAN(x) FROM t WHERE age > 30 GROUP BY dept".to_owned(),
            domains: [("dept".to_owned(), vec!["eng".to_owned()])].into(),
            min_rows: 5,
            min_clients: 2,
            bounds: [("x".to_owned(), [-1.0, 2.0])].into(),
            dp: None,
        };
        let plan = super::super::plan(&spec).expect("plans");
        let names: Names = plan
            .columns
            .iter()
            .map(|c| (c.clone(), c.name.clone()))
            .collect();
        let r = Renderer {
            dialect: Dialect::Sqlite,
            names: &names,
            bounds: &plan.bounds,
        };
        let x = "(CASE WHEN CAST(\"x\" AS REAL) < (-1.0) THEN (-1.0) WHEN CAST(\"x\" AS REAL) > 2.0 \
                 THEN 2.0 ELSE CAST(\"x\" AS REAL) END)";
        let key = "CAST(CASE CAST(\"dept\" AS TEXT) WHEN 'eng' THEN 0 ELSE 1 END AS INTEGER)";
        assert_eq!(
            r.order_values(&plan, &plan.order[0].expr, "\"tbl\"", 4, false),
            format!(
                "SELECT k0, v FROM (SELECT {key} AS k0, {x} AS v, ROW_NUMBER() OVER \
                 (PARTITION BY {key} ORDER BY {x} ASC) AS rn FROM \"tbl\" WHERE \
                 (\"age\" > 30) AND ({x} IS NOT NULL)) AS o WHERE rn <= 4"
            )
        );
    }

    #[test]
    fn floats_always_read_as_doubles() {
        assert_eq!(float(50000.0), "50000.0");
        assert_eq!(float(-2.5), "(-2.5)");
        assert_eq!(float(1e-7), "1e-7");
    }
}
