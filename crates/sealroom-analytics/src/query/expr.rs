//! The whitelisted expression language of WHERE clauses and aggregate
//! arguments.
//!
//! A `sqlparser` expression is converted into [`Expr`] or refused; local SQL
//! is only ever rendered from this tree (see `sql.rs`), so user text never
//! reaches a database verbatim. Allowed: column references, numeric and
//! string literals, TRUE/FALSE, `+ - * /`, unary minus, parentheses,
//! comparisons, AND/OR/NOT, `IN (literal, …)`, `BETWEEN`, `IS [NOT] NULL`
//! and `LIKE 'pattern'` (case-sensitive, no escape character, on every
//! backend).

use std::collections::BTreeSet;

use sqlparser::ast::{self, BinaryOperator, UnaryOperator, Value};

use super::error::QueryError;

/// A column as written in the query: unquoted names match the table's
/// columns case-insensitively, quoted ones exactly.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ColumnRef {
    pub(crate) name: String,
    pub(crate) quoted: bool,
}

/// Arithmetic operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
}

/// Comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

/// A validated expression.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Expr {
    Column(ColumnRef),
    /// A finite numeric literal; `int` when it is written as an integer.
    Number {
        value: f64,
        int: Option<i64>,
    },
    Text(String),
    Bool(bool),
    Neg(Box<Expr>),
    Arith {
        op: ArithOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    Cmp {
        op: CmpOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    InList {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    Between {
        expr: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
        negated: bool,
    },
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    Like {
        expr: Box<Expr>,
        pattern: String,
        negated: bool,
    },
}

/// What an expression evaluates to, as far as the planner can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Number,
    Text,
    Bool,
    /// A bare column: numeric or text depending on the party's table.
    Column,
}

/// Aggregates and functions that exist in SQL but cannot be computed from
/// sums, and that the order round (`order.rs`: MIN, MAX, MEDIAN,
/// PERCENTILE_CONT) does not offer.
pub(crate) const NON_DECOMPOSABLE: &[&str] = &[
    "MODE",
    "PERCENTILE",
    "PERCENTILE_DISC",
    "QUANTILE",
    "APPROX_PERCENTILE",
    "APPROX_MEDIAN",
    "APPROX_QUANTILES",
    "ARG_MIN",
    "ARG_MAX",
    "ANY_VALUE",
    "FIRST_VALUE",
    "LAST_VALUE",
];

/// Why MODE, PERCENTILE_DISC and friends are refused.
pub(crate) const NON_DECOMPOSABLE_WHY: &str = "it is not decomposable into sums, and the MPC engine's order round offers only MIN, MAX, MEDIAN and PERCENTILE_CONT(p) WITHIN GROUP (ORDER BY e)";

/// Why a subquery is refused.
pub(crate) const SUBQUERY_WHY: &str =
    "a subquery would run unvetted SQL at every party; filter with plain column conditions instead";

/// The longest literal string accepted (domains, IN lists, LIKE patterns).
const MAX_TEXT: usize = 1024;

/// The deepest expression accepted: a chain of 64 ANDs, ORs or arithmetic
/// operators nests 64 levels. Converting recurses once per level, so the
/// bound keeps a deep tree from overflowing the stack (an unoptimised build
/// uses some 13 KiB of stack per level); arithmetic is held to a tighter
/// bound afterwards (`bounds::MAX_DEPTH`).
pub(crate) const MAX_NESTING: usize = 64;

/// Converts `sqlparser` expressions, recording which columns are used and
/// which of them must be numeric.
#[derive(Default)]
pub(crate) struct Converter {
    /// Table name and alias a `t.col` reference may use, lowercased.
    pub(crate) qualifiers: Vec<String>,
    pub(crate) columns: BTreeSet<ColumnRef>,
    pub(crate) numeric: BTreeSet<ColumnRef>,
    /// How deep the expression being converted is nested so far.
    pub(crate) depth: usize,
}

impl Converter {
    /// A condition (WHERE): must be boolean.
    pub(crate) fn condition(&mut self, e: &ast::Expr) -> Result<Expr, QueryError> {
        let (expr, kind) = self.convert(e)?;
        if kind != Kind::Bool {
            return Err(QueryError::invalid(
                format!("condition {e}"),
                "it is not a boolean expression (compare it with something)",
            ));
        }
        Ok(expr)
    }

    /// An aggregate argument that must be a number.
    pub(crate) fn numeric(&mut self, e: &ast::Expr) -> Result<Expr, QueryError> {
        let (expr, kind) = self.convert(e)?;
        self.require_numeric(&expr, kind, e)?;
        Ok(expr)
    }

    /// An argument that may be a number or text (`COUNT(e)`).
    pub(crate) fn value(&mut self, e: &ast::Expr) -> Result<Expr, QueryError> {
        let (expr, kind) = self.convert(e)?;
        if kind == Kind::Bool {
            return Err(QueryError::invalid(
                format!("argument {e}"),
                "a boolean condition is not a value; move it to WHERE",
            ));
        }
        Ok(expr)
    }

    /// A plain column reference (GROUP BY, or a grouped column in SELECT).
    pub(crate) fn column_ref(&self, e: &ast::Expr) -> Option<ColumnRef> {
        match e {
            ast::Expr::Identifier(ident) => Some(column_of(ident)),
            ast::Expr::CompoundIdentifier(parts) => match parts.as_slice() {
                [table, column] if self.qualifiers.contains(&table.value.to_lowercase()) => {
                    Some(column_of(column))
                }
                _ => None,
            },
            ast::Expr::Nested(inner) => self.column_ref(inner),
            _ => None,
        }
    }

    fn require_numeric(
        &mut self,
        expr: &Expr,
        kind: Kind,
        e: &ast::Expr,
    ) -> Result<(), QueryError> {
        match kind {
            Kind::Number => Ok(()),
            Kind::Column => {
                if let Expr::Column(c) = expr {
                    self.numeric.insert(c.clone());
                }
                Ok(())
            }
            Kind::Text | Kind::Bool => Err(QueryError::invalid(
                format!("expression {e}"),
                "a number is needed here",
            )),
        }
    }

    fn convert(&mut self, e: &ast::Expr) -> Result<(Expr, Kind), QueryError> {
        if self.depth >= MAX_NESTING {
            // Not the expression itself in the message: it can be 64 KiB.
            return Err(QueryError::unsupported(
                "an expression",
                format!(
                    "it nests deeper than {MAX_NESTING} levels (each AND, OR and arithmetic operator of a chain is a level; a list of values goes in IN (...))"
                ),
            ));
        }
        self.depth += 1;
        let converted = self.convert_node(e);
        self.depth -= 1;
        converted
    }

    fn convert_node(&mut self, e: &ast::Expr) -> Result<(Expr, Kind), QueryError> {
        if let Some(c) = self.column_ref(e) {
            self.columns.insert(c.clone());
            return Ok((Expr::Column(c), Kind::Column));
        }
        match e {
            ast::Expr::Nested(inner) => self.convert(inner),
            ast::Expr::Value(v) => literal(&v.value, e),
            ast::Expr::UnaryOp { op, expr } => match op {
                UnaryOperator::Minus | UnaryOperator::Plus => {
                    let (inner, kind) = self.convert(expr)?;
                    self.require_numeric(&inner, kind, expr)?;
                    Ok(match (op, inner) {
                        (UnaryOperator::Plus, inner) => (inner, Kind::Number),
                        (_, inner) => (Expr::Neg(Box::new(inner)), Kind::Number),
                    })
                }
                UnaryOperator::Not => Ok((Expr::Not(Box::new(self.condition(expr)?)), Kind::Bool)),
                other => Err(QueryError::unsupported(
                    format!("operator {other}"),
                    "only unary minus and NOT are allowed",
                )),
            },
            ast::Expr::BinaryOp { left, op, right } => self.binary(left, op, right, e),
            ast::Expr::IsNull(inner) | ast::Expr::IsNotNull(inner) => {
                let expr = Box::new(self.value(inner)?);
                let negated = matches!(e, ast::Expr::IsNotNull(_));
                Ok((Expr::IsNull { expr, negated }, Kind::Bool))
            }
            ast::Expr::In {
                expr,
                target,
                negated,
                global: false,
            } => match target {
                ast::InTarget::List(list) => self.in_list(expr, list, *negated, e),
                ast::InTarget::Subquery(_) => {
                    Err(QueryError::unsupported("a subquery", SUBQUERY_WHY))
                }
                _ => Err(QueryError::unsupported(
                    format!("{e}"),
                    "IN takes a list of number or string literals",
                )),
            },
            ast::Expr::Subquery(_) | ast::Expr::Exists { .. } => {
                Err(QueryError::unsupported("a subquery", SUBQUERY_WHY))
            }
            ast::Expr::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let (x, kx) = self.convert(expr)?;
                let (lo, klo) = self.convert(low)?;
                let (hi, khi) = self.convert(high)?;
                self.comparable(&x, kx, &lo, klo, e)?;
                self.comparable(&x, kx, &hi, khi, e)?;
                let b = Box::new;
                Ok((
                    Expr::Between {
                        expr: b(x),
                        low: b(lo),
                        high: b(hi),
                        negated: *negated,
                    },
                    Kind::Bool,
                ))
            }
            ast::Expr::Like {
                negated,
                any,
                expr,
                pattern,
                escape_char,
            } => {
                if *any || escape_char.is_some() {
                    return Err(QueryError::unsupported(
                        "LIKE ANY / LIKE … ESCAPE",
                        "use a plain LIKE 'pattern' (no escape character)",
                    ));
                }
                let (x, kind) = self.convert(expr)?;
                if !matches!(kind, Kind::Text | Kind::Column) {
                    return Err(QueryError::invalid(format!("{e}"), "LIKE applies to text"));
                }
                let pattern = match pattern.as_ref() {
                    ast::Expr::Value(v) => match &v.value {
                        Value::SingleQuotedString(s) => checked_text(s)?,
                        _ => None,
                    },
                    _ => None,
                }
                .ok_or_else(|| {
                    QueryError::unsupported(
                        format!("LIKE pattern {pattern}"),
                        "the pattern must be a string literal",
                    )
                })?;
                Ok((
                    Expr::Like {
                        expr: Box::new(x),
                        pattern,
                        negated: *negated,
                    },
                    Kind::Bool,
                ))
            }
            ast::Expr::Function(f) => Err(refuse_function(f)),
            ast::Expr::Cast { .. } => Err(QueryError::unsupported(
                format!("CAST in {e}"),
                "columns are cast to numbers automatically where a number is needed",
            )),
            ast::Expr::Case { .. } => Err(QueryError::unsupported(
                format!("CASE in {e}"),
                "use WHERE or GROUP BY over a declared domain instead",
            )),
            ast::Expr::Identifier(_) | ast::Expr::CompoundIdentifier(_) => {
                Err(QueryError::unsupported(
                    format!("reference {e}"),
                    "columns are named plainly or as table.column of the one table in FROM",
                ))
            }
            other => Err(QueryError::unsupported(
                format!("expression {other}"),
                "only columns, literals, + - * /, comparisons, AND/OR/NOT, IN (list), BETWEEN, IS NULL and LIKE are allowed",
            )),
        }
    }

    fn binary(
        &mut self,
        left: &ast::Expr,
        op: &BinaryOperator,
        right: &ast::Expr,
        whole: &ast::Expr,
    ) -> Result<(Expr, Kind), QueryError> {
        let arith = match op {
            BinaryOperator::Plus => Some(ArithOp::Add),
            BinaryOperator::Minus => Some(ArithOp::Sub),
            BinaryOperator::Multiply => Some(ArithOp::Mul),
            BinaryOperator::Divide => Some(ArithOp::Div),
            _ => None,
        };
        if let Some(op) = arith {
            let l = self.numeric(left)?;
            let r = self.numeric(right)?;
            let (left, right) = (Box::new(l), Box::new(r));
            return Ok((Expr::Arith { op, left, right }, Kind::Number));
        }
        let cmp = match op {
            BinaryOperator::Eq => Some(CmpOp::Eq),
            BinaryOperator::NotEq => Some(CmpOp::NotEq),
            BinaryOperator::Lt => Some(CmpOp::Lt),
            BinaryOperator::LtEq => Some(CmpOp::LtEq),
            BinaryOperator::Gt => Some(CmpOp::Gt),
            BinaryOperator::GtEq => Some(CmpOp::GtEq),
            _ => None,
        };
        if let Some(op) = cmp {
            let (l, kl) = self.convert(left)?;
            let (r, kr) = self.convert(right)?;
            self.comparable(&l, kl, &r, kr, whole)?;
            let (left, right) = (Box::new(l), Box::new(r));
            return Ok((Expr::Cmp { op, left, right }, Kind::Bool));
        }
        match op {
            BinaryOperator::And | BinaryOperator::Or => {
                let l = Box::new(self.condition(left)?);
                let r = Box::new(self.condition(right)?);
                let expr = if *op == BinaryOperator::And {
                    Expr::And(l, r)
                } else {
                    Expr::Or(l, r)
                };
                Ok((expr, Kind::Bool))
            }
            other => Err(QueryError::unsupported(
                format!("operator {other}"),
                "only + - * /, comparisons, AND and OR are allowed",
            )),
        }
    }

    /// Both sides of a comparison must be values of one kind; a column
    /// compared with a number is numeric.
    fn comparable(
        &mut self,
        l: &Expr,
        kl: Kind,
        r: &Expr,
        kr: Kind,
        whole: &ast::Expr,
    ) -> Result<(), QueryError> {
        use Kind::*;
        match (kl, kr) {
            (Bool, _) | (_, Bool) => Err(QueryError::invalid(
                format!("{whole}"),
                "booleans cannot be compared; combine conditions with AND/OR",
            )),
            (Number, Text) | (Text, Number) => Err(QueryError::invalid(
                format!("{whole}"),
                "a number is compared with a string",
            )),
            (Column, Number) => self.require_numeric(l, kl, whole),
            (Number, Column) => self.require_numeric(r, kr, whole),
            _ => Ok(()),
        }
    }

    fn in_list(
        &mut self,
        expr: &ast::Expr,
        list: &[ast::Expr],
        negated: bool,
        whole: &ast::Expr,
    ) -> Result<(Expr, Kind), QueryError> {
        let (x, kx) = self.convert(expr)?;
        let mut items = Vec::with_capacity(list.len());
        for item in list {
            let converted = match item {
                ast::Expr::Value(v) => literal(&v.value, item).ok(),
                ast::Expr::UnaryOp {
                    op: UnaryOperator::Minus,
                    expr: inner,
                } => match inner.as_ref() {
                    ast::Expr::Value(v) => literal(&v.value, inner)
                        .ok()
                        .map(|(e, k)| (Expr::Neg(Box::new(e)), k)),
                    _ => None,
                },
                _ => None,
            };
            let (value, kind) = converted
                .filter(|(_, k)| matches!(k, Kind::Number | Kind::Text))
                .ok_or_else(|| {
                    QueryError::unsupported(
                        format!("IN list item {item}"),
                        "IN takes a list of number or string literals",
                    )
                })?;
            self.comparable(&x, kx, &value, kind, whole)?;
            items.push(value);
        }
        if items.is_empty() {
            return Err(QueryError::invalid(
                format!("{whole}"),
                "the IN list is empty",
            ));
        }
        Ok((
            Expr::InList {
                expr: Box::new(x),
                list: items,
                negated,
            },
            Kind::Bool,
        ))
    }
}

fn column_of(ident: &ast::Ident) -> ColumnRef {
    ColumnRef {
        name: ident.value.clone(),
        quoted: ident.quote_style.is_some(),
    }
}

fn literal(v: &Value, e: &ast::Expr) -> Result<(Expr, Kind), QueryError> {
    match v {
        Value::Number(text, _) => {
            let value = parse_number(text)
                .ok_or_else(|| QueryError::invalid(format!("number {e}"), "not a finite number"))?;
            Ok((
                Expr::Number {
                    value,
                    int: text.parse::<i64>().ok(),
                },
                Kind::Number,
            ))
        }
        Value::SingleQuotedString(s) => {
            let s = checked_text(s)?
                .ok_or_else(|| QueryError::invalid("string literal", "too long"))?;
            Ok((Expr::Text(s), Kind::Text))
        }
        Value::Boolean(b) => Ok((Expr::Bool(*b), Kind::Bool)),
        Value::Null => Err(QueryError::unsupported(
            "the NULL literal",
            "comparisons with NULL are never true; use IS NULL or IS NOT NULL",
        )),
        other => Err(QueryError::unsupported(
            format!("literal {other}"),
            "only numbers, 'single-quoted strings', TRUE and FALSE are allowed",
        )),
    }
}

/// A finite number from its SQL spelling.
pub(crate) fn parse_number(text: &str) -> Option<f64> {
    text.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// A string literal safe to render on every backend: no NUL, bounded length.
fn checked_text(s: &str) -> Result<Option<String>, QueryError> {
    if s.contains('\0') {
        return Err(QueryError::invalid(
            "string literal",
            "it contains a NUL character",
        ));
    }
    Ok((s.len() <= MAX_TEXT).then(|| s.to_owned()))
}

/// Why a function call inside an expression is refused.
pub(crate) fn refuse_function(f: &ast::Function) -> QueryError {
    let name = f.name.to_string().to_uppercase();
    if NON_DECOMPOSABLE.contains(&name.as_str()) {
        return QueryError::unsupported(name, NON_DECOMPOSABLE_WHY);
    }
    if super::spec::AGGREGATES.contains(&name.as_str()) {
        return QueryError::unsupported(
            format!("{name} inside an expression"),
            "aggregates may only appear as whole SELECT items (not nested, not in WHERE, not in arithmetic); compute ratios from the published result",
        );
    }
    QueryError::unsupported(
        format!("function {}", f.name),
        "it is not on the whitelist: expressions may use columns, numeric literals, + - * / and parentheses",
    )
}
