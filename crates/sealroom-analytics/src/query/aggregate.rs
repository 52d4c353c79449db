//! Aggregates: how each SELECT item decomposes into local sums, and how the
//! coordinator turns the summed statistics of a cell back into values.
//!
//! Every aggregate is a function of a few sums over a cell's rows:
//!
//! | aggregate | local statistics |
//! |---|---|
//! | `COUNT(*)` | the row count (always sent) |
//! | `COUNT(e)` | n = #non-NULL e |
//! | `SUM(e)`, `AVG(e)` | n, Σe |
//! | `VAR_*`, `STDDEV_*` | n, Σe, Σe² |
//! | `HISTOGRAM(e, e1, …, ek)` | one count per bucket |
//! | `REGR_*(y, x)`, `CORR`, `COVAR_*` | n, Σx, Σy, Σx², Σy², Σxy over rows with both non-NULL |
//! | `OLS(y, x1, …, xk)` | n, Σxᵢ, Σy, Σxᵢxⱼ, Σxᵢy, Σy² over rows with all non-NULL |
//! | `MIN`, `MAX`, `MEDIAN`, `PERCENTILE_CONT` | n, then the order round (`order.rs`) |
//!
//! NULL semantics follow SQL: SUM/AVG/VAR ignore NULLs and are NULL over no
//! values; the two-variable aggregates and OLS skip a row with a NULL in any
//! of their variables, as SQL's `REGR_*` do.

use sqlparser::ast::{self, FunctionArg, FunctionArgExpr, FunctionArguments};

use super::error::QueryError;
use super::expr::{CmpOp, Converter, Expr, NON_DECOMPOSABLE, NON_DECOMPOSABLE_WHY, SUBQUERY_WHY};
use super::order::{OrderItem, OrderKind};

/// Names of the supported aggregates (upper case).
pub(crate) const AGGREGATES: &[&str] = &[
    "COUNT",
    "SUM",
    "AVG",
    "VAR_SAMP",
    "VAR_POP",
    "VARIANCE",
    "STDDEV",
    "STDDEV_SAMP",
    "STDDEV_POP",
    "HISTOGRAM",
    "REGR_SLOPE",
    "REGR_INTERCEPT",
    "REGR_COUNT",
    "REGR_R2",
    "CORR",
    "COVAR_SAMP",
    "COVAR_POP",
    "OLS",
    "MIN",
    "MAX",
    "MEDIAN",
    "PERCENTILE_CONT",
];

/// The most bucket edges of one HISTOGRAM.
const MAX_EDGES: usize = 64;
/// The most regressors of one OLS.
const MAX_REGRESSORS: usize = 16;

/// One local statistic: `SUM(product of factors)` over the rows where
/// `filter` holds, or a row count when there are no factors.
#[derive(Clone, Debug)]
pub(crate) struct Stat {
    pub(crate) factors: Vec<Expr>,
    pub(crate) filter: Option<Expr>,
    /// What it is, for error messages (never its value).
    pub(crate) label: String,
}

/// The statistics of a plan, de-duplicated (AVG(x) and SUM(x) share Σx).
#[derive(Default)]
pub(crate) struct StatSet(Vec<Stat>);

impl StatSet {
    fn add(&mut self, factors: Vec<Expr>, filter: Option<Expr>, label: String) -> usize {
        if let Some(i) = self
            .0
            .iter()
            .position(|s| s.factors == factors && s.filter == filter)
        {
            return i;
        }
        self.0.push(Stat {
            factors,
            filter,
            label,
        });
        self.0.len() - 1
    }

    /// The number of rows where `e` is not NULL.
    fn count(&mut self, e: &Expr, label: String) -> usize {
        self.add(Vec::new(), Some(not_null(e)), label)
    }

    pub(crate) fn into_vec(self) -> Vec<Stat> {
        self.0
    }
}

fn not_null(e: &Expr) -> Expr {
    Expr::IsNull {
        expr: Box::new(e.clone()),
        negated: true,
    }
}

fn all_not_null(vars: &[Expr]) -> Option<Expr> {
    vars.iter()
        .map(not_null)
        .reduce(|a, b| Expr::And(Box::new(a), Box::new(b)))
}

/// A SELECT item that is an aggregate.
#[derive(Clone, Debug)]
pub(crate) struct Output {
    pub(crate) name: String,
    pub(crate) agg: Aggregate,
}

/// The variance family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Spread {
    VarSamp,
    VarPop,
    StddevSamp,
    StddevPop,
}

/// The two-variable family over (y, x).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PairKind {
    Slope,
    Intercept,
    Count,
    R2,
    Corr,
    CovarSamp,
    CovarPop,
}

/// Indices of the second moments of (y, x) in a plan's statistics.
#[derive(Clone, Debug)]
pub(crate) struct Moments {
    pub(crate) n: usize,
    pub(crate) sx: usize,
    pub(crate) sy: usize,
    pub(crate) sxx: usize,
    pub(crate) syy: usize,
    pub(crate) sxy: usize,
}

/// An aggregate and the indices of the statistics it needs.
#[derive(Clone, Debug)]
pub(crate) enum Aggregate {
    CountRows,
    Count {
        n: usize,
    },
    Sum {
        n: usize,
        s: usize,
    },
    Avg {
        n: usize,
        s: usize,
    },
    Spread {
        kind: Spread,
        n: usize,
        s: usize,
        s2: usize,
    },
    Histogram {
        edges: Vec<f64>,
        buckets: Vec<usize>,
    },
    Pair {
        kind: PairKind,
        m: Moments,
    },
    Ols {
        regressors: Vec<String>,
        n: usize,
        sy: usize,
        syy: usize,
        sx: Vec<usize>,
        /// Upper triangle of Σxᵢxⱼ, row by row.
        sxx: Vec<usize>,
        sxy: Vec<usize>,
    },
    /// MIN, MAX, MEDIAN or PERCENTILE_CONT: the plan's order item `item`,
    /// computed by the order round.
    Order {
        item: usize,
    },
}

enum Arg<'a> {
    Star,
    Expr(&'a ast::Expr),
}

impl Aggregate {
    /// Plans one SELECT item.
    pub(crate) fn parse(
        e: &ast::Expr,
        name: &str,
        conv: &mut Converter,
        stats: &mut StatSet,
        order: &mut Vec<OrderItem>,
    ) -> Result<Aggregate, QueryError> {
        let f = match e {
            ast::Expr::Function(f) => f,
            ast::Expr::Nested(inner) => return Aggregate::parse(inner, name, conv, stats, order),
            other if mentions_function(other) => {
                return Err(QueryError::unsupported(
                    format!("arithmetic on aggregates ({other})"),
                    "select each aggregate on its own and combine them from the published result",
                ));
            }
            other => {
                return Err(QueryError::unsupported(
                    format!("select item {other}"),
                    "only aggregates and GROUP BY columns may be selected; anything else would reveal raw values",
                ));
            }
        };
        let fname = f.name.to_string().to_uppercase();
        let args = function_args(f, &fname)?;
        let label = |part: &str| format!("{part} of {name}");
        let one = |conv: &mut Converter, numeric: bool| -> Result<Expr, QueryError> {
            match args.as_slice() {
                [Arg::Expr(x)] if numeric => conv.numeric(x),
                [Arg::Expr(x)] => conv.value(x),
                _ => Err(QueryError::invalid(
                    format!("{fname}(…)"),
                    "it takes exactly one argument",
                )),
            }
        };
        Ok(match fname.as_str() {
            "COUNT" => match args.as_slice() {
                [Arg::Star] => Aggregate::CountRows,
                _ => {
                    let x = one(conv, false)?;
                    Aggregate::Count {
                        n: stats.count(&x, label("count")),
                    }
                }
            },
            "SUM" | "AVG" => {
                let x = one(conv, true)?;
                let n = stats.count(&x, label("count"));
                let s = stats.add(vec![x], None, label("sum"));
                if fname == "SUM" {
                    Aggregate::Sum { n, s }
                } else {
                    Aggregate::Avg { n, s }
                }
            }
            "VAR_SAMP" | "VARIANCE" | "VAR_POP" | "STDDEV" | "STDDEV_SAMP" | "STDDEV_POP" => {
                let kind = match fname.as_str() {
                    "VAR_POP" => Spread::VarPop,
                    "STDDEV" | "STDDEV_SAMP" => Spread::StddevSamp,
                    "STDDEV_POP" => Spread::StddevPop,
                    _ => Spread::VarSamp,
                };
                let x = one(conv, true)?;
                Aggregate::Spread {
                    kind,
                    n: stats.count(&x, label("count")),
                    s: stats.add(vec![x.clone()], None, label("sum")),
                    s2: stats.add(vec![x.clone(), x], None, label("sum of squares")),
                }
            }
            "HISTOGRAM" => histogram(&args, name, conv, stats)?,
            "REGR_SLOPE" | "REGR_INTERCEPT" | "REGR_COUNT" | "REGR_R2" | "CORR" | "COVAR_SAMP"
            | "COVAR_POP" => {
                let kind = match fname.as_str() {
                    "REGR_SLOPE" => PairKind::Slope,
                    "REGR_INTERCEPT" => PairKind::Intercept,
                    "REGR_COUNT" => PairKind::Count,
                    "REGR_R2" => PairKind::R2,
                    "CORR" => PairKind::Corr,
                    "COVAR_SAMP" => PairKind::CovarSamp,
                    _ => PairKind::CovarPop,
                };
                let [Arg::Expr(y), Arg::Expr(x)] = args.as_slice() else {
                    return Err(QueryError::invalid(
                        format!("{fname}(…)"),
                        "it takes two arguments (y, x)",
                    ));
                };
                let (y, x) = (conv.numeric(y)?, conv.numeric(x)?);
                let filter = all_not_null(&[y.clone(), x.clone()]);
                let mut add = |factors: Vec<Expr>, part: &str| {
                    stats.add(factors, filter.clone(), label(part))
                };
                let m = Moments {
                    n: add(Vec::new(), "count"),
                    sx: add(vec![x.clone()], "Σx"),
                    sy: add(vec![y.clone()], "Σy"),
                    sxx: add(vec![x.clone(), x.clone()], "Σx²"),
                    syy: add(vec![y.clone(), y.clone()], "Σy²"),
                    sxy: add(vec![x, y], "Σxy"),
                };
                Aggregate::Pair { kind, m }
            }
            "OLS" => ols(&args, name, conv, stats)?,
            "MIN" | "MAX" | "MEDIAN" => {
                let kind = match fname.as_str() {
                    "MIN" => OrderKind::Min,
                    "MAX" => OrderKind::Max,
                    _ => OrderKind::Percentile(0.5),
                };
                let x = one(conv, true)?;
                order_item(kind, x, name, stats, order)
            }
            "PERCENTILE_CONT" => percentile_cont(f, &args, name, conv, stats, order)?,
            // `function_args` refused every other name.
            _ => return Err(super::expr::refuse_function(f)),
        })
    }

    /// Names of the result columns this aggregate fills.
    pub(crate) fn column_names(&self, name: &str) -> Vec<String> {
        match self {
            Aggregate::Histogram { edges, .. } => {
                let mut names = Vec::with_capacity(edges.len() + 1);
                if let Some(first) = edges.first() {
                    names.push(format!("{name}[<{first}]"));
                }
                for w in edges.windows(2) {
                    names.push(format!("{name}[{},{})", w[0], w[1]));
                }
                if let Some(last) = edges.last() {
                    names.push(format!("{name}[>={last}]"));
                }
                names
            }
            Aggregate::Ols { regressors, .. } => {
                let mut names = vec![format!("{name}.intercept")];
                names.extend(regressors.iter().map(|r| format!("{name}.{r}")));
                names.push(format!("{name}.r2"));
                names.push(format!("{name}.n"));
                names
            }
            _ => vec![name.to_owned()],
        }
    }
}

impl Output {
    /// Names of the result columns of this output.
    pub(crate) fn column_names(&self) -> Vec<String> {
        self.agg.column_names(&self.name)
    }
}

fn mentions_function(e: &ast::Expr) -> bool {
    match e {
        ast::Expr::Function(_) => true,
        ast::Expr::BinaryOp { left, right, .. } => {
            mentions_function(left) || mentions_function(right)
        }
        ast::Expr::UnaryOp { expr, .. } | ast::Expr::Nested(expr) => mentions_function(expr),
        _ => false,
    }
}

/// The plain argument list of an aggregate call, refusing window clauses,
/// FILTER, DISTINCT and the like.
fn function_args<'a>(f: &'a ast::Function, name: &str) -> Result<Vec<Arg<'a>>, QueryError> {
    if f.over.is_some() {
        return Err(QueryError::unsupported(
            format!("window function {name}(…) OVER"),
            "it needs other parties' rows next to each row; only whole-cell aggregates are available",
        ));
    }
    if NON_DECOMPOSABLE.contains(&name) || (!f.within_group.is_empty() && name != "PERCENTILE_CONT")
    {
        return Err(QueryError::unsupported(name, NON_DECOMPOSABLE_WHY));
    }
    if !AGGREGATES.contains(&name) {
        return Err(QueryError::unsupported(
            format!("function {}", f.name),
            format!(
                "it is not a supported aggregate (supported: {})",
                AGGREGATES.join(", ")
            ),
        ));
    }
    if f.filter.is_some() {
        return Err(QueryError::unsupported(
            format!("{name}(…) FILTER (WHERE …)"),
            "put the condition in the query's WHERE clause",
        ));
    }
    if f.null_treatment.is_some()
        || f.uses_odbc_syntax
        || !matches!(f.parameters, FunctionArguments::None)
    {
        return Err(QueryError::unsupported(
            format!("{name} with modifiers"),
            "call it as NAME(args)",
        ));
    }
    let list = match &f.args {
        FunctionArguments::List(list) => list,
        FunctionArguments::Subquery(_) => {
            return Err(QueryError::unsupported("a subquery argument", SUBQUERY_WHY));
        }
        FunctionArguments::None => {
            return Err(QueryError::invalid(
                name,
                "an aggregate needs an argument list",
            ));
        }
    };
    if matches!(
        list.duplicate_treatment,
        Some(ast::DuplicateTreatment::Distinct)
    ) {
        return Err(QueryError::unsupported(
            format!("{name}(DISTINCT …)"),
            "de-duplicating values across parties needs private set union (the MPC engine), not yet available",
        ));
    }
    if !list.clauses.is_empty() {
        return Err(QueryError::unsupported(
            format!("clauses inside {name}(…)"),
            "pass plain arguments",
        ));
    }
    list.args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(Arg::Expr(e)),
            FunctionArg::Unnamed(FunctionArgExpr::Wildcard) if name == "COUNT" => Ok(Arg::Star),
            other => Err(QueryError::unsupported(
                format!("argument {other} of {name}"),
                "pass expressions (or * to COUNT)",
            )),
        })
        .collect()
}

/// A numeric literal, possibly negated.
fn number_literal(e: &ast::Expr) -> Option<f64> {
    match e {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::Number(text, _) => super::expr::parse_number(text),
            _ => None,
        },
        ast::Expr::UnaryOp {
            op: ast::UnaryOperator::Minus,
            expr,
        } => number_literal(expr).map(|v| -v),
        ast::Expr::Nested(inner) => number_literal(inner),
        _ => None,
    }
}

/// Registers an order item over `x` (its non-NULL count is a phase-2
/// statistic, shared with COUNT/AVG of the same expression).
fn order_item(
    kind: OrderKind,
    x: Expr,
    name: &str,
    stats: &mut StatSet,
    order: &mut Vec<OrderItem>,
) -> Aggregate {
    let count = stats.count(&x, format!("count of {name}"));
    order.push(OrderItem::new(kind, x, count, name));
    Aggregate::Order {
        item: order.len() - 1,
    }
}

/// `PERCENTILE_CONT(p) WITHIN GROUP (ORDER BY e [ASC])`, p a literal in [0, 1].
fn percentile_cont(
    f: &ast::Function,
    args: &[Arg<'_>],
    name: &str,
    conv: &mut Converter,
    stats: &mut StatSet,
    order: &mut Vec<OrderItem>,
) -> Result<Aggregate, QueryError> {
    const FORM: &str = "write PERCENTILE_CONT(p) WITHIN GROUP (ORDER BY e), p a number in [0, 1]";
    let what = || format!("PERCENTILE_CONT in {name}");
    let p = match args {
        [Arg::Expr(p)] => number_literal(p),
        _ => None,
    }
    .filter(|p| (0.0..=1.0).contains(p))
    .ok_or_else(|| QueryError::invalid(what(), FORM))?;
    let [ordering] = f.within_group.as_slice() else {
        return Err(QueryError::invalid(what(), FORM));
    };
    let plain_ascending = matches!(ordering.options.sort, None | Some(ast::OrderBySort::Asc))
        && ordering.options.nulls_first.is_none()
        && ordering.with_fill.is_none();
    if !plain_ascending {
        return Err(QueryError::unsupported(
            format!("the ordering of {name}"),
            "order ascending (for DESC, use PERCENTILE_CONT(1 - p)); NULLs are always ignored",
        ));
    }
    let x = conv.numeric(&ordering.expr)?;
    // `+ 0.0` turns a literal −0 into 0.
    Ok(order_item(
        OrderKind::Percentile(p + 0.0),
        x,
        name,
        stats,
        order,
    ))
}

fn histogram(
    args: &[Arg<'_>],
    name: &str,
    conv: &mut Converter,
    stats: &mut StatSet,
) -> Result<Aggregate, QueryError> {
    let what = || format!("HISTOGRAM in {name}");
    let [Arg::Expr(x), edge_args @ ..] = args else {
        return Err(QueryError::invalid(
            what(),
            "write HISTOGRAM(expr, edge1, edge2, …)",
        ));
    };
    if edge_args.is_empty() || edge_args.len() > MAX_EDGES {
        return Err(QueryError::invalid(
            what(),
            format!("give 1 to {MAX_EDGES} bucket edges"),
        ));
    }
    let mut edges = Vec::with_capacity(edge_args.len());
    for a in edge_args {
        let edge = match a {
            Arg::Expr(e) => number_literal(e),
            Arg::Star => None,
        }
        .ok_or_else(|| QueryError::invalid(what(), "bucket edges must be numeric literals"))?;
        if edges.last().is_some_and(|&last| edge <= last) {
            return Err(QueryError::invalid(
                what(),
                "bucket edges must be strictly increasing",
            ));
        }
        edges.push(edge);
    }
    let x = conv.numeric(x)?;
    let cmp = |op, edge: f64| Expr::Cmp {
        op,
        left: Box::new(x.clone()),
        right: Box::new(Expr::Number {
            value: edge,
            int: None,
        }),
    };
    let mut filters = Vec::with_capacity(edges.len() + 1);
    filters.push(cmp(CmpOp::Lt, edges[0]));
    for w in edges.windows(2) {
        filters.push(Expr::And(
            Box::new(cmp(CmpOp::GtEq, w[0])),
            Box::new(cmp(CmpOp::Lt, w[1])),
        ));
    }
    if let Some(&last) = edges.last() {
        filters.push(cmp(CmpOp::GtEq, last));
    }
    let buckets = filters
        .into_iter()
        .enumerate()
        .map(|(i, f)| stats.add(Vec::new(), Some(f), format!("bucket {i} of {name}")))
        .collect();
    Ok(Aggregate::Histogram { edges, buckets })
}

fn ols(
    args: &[Arg<'_>],
    name: &str,
    conv: &mut Converter,
    stats: &mut StatSet,
) -> Result<Aggregate, QueryError> {
    let what = || format!("OLS in {name}");
    let [Arg::Expr(y), xs @ ..] = args else {
        return Err(QueryError::invalid(what(), "write OLS(y, x1, …, xk)"));
    };
    if xs.is_empty() || xs.len() > MAX_REGRESSORS {
        return Err(QueryError::invalid(
            what(),
            format!("give 1 to {MAX_REGRESSORS} regressors"),
        ));
    }
    let mut regressors = Vec::with_capacity(xs.len());
    let mut vars = Vec::with_capacity(xs.len());
    for a in xs {
        let Arg::Expr(e) = a else {
            return Err(QueryError::invalid(what(), "regressors are expressions"));
        };
        regressors.push(e.to_string());
        vars.push(conv.numeric(e)?);
    }
    let y = conv.numeric(y)?;
    let mut all = vars.clone();
    all.push(y.clone());
    let filter = all_not_null(&all);
    let mut add = |factors: Vec<Expr>, part: String| {
        stats.add(factors, filter.clone(), format!("{part} of {name}"))
    };
    let n = add(Vec::new(), "count".into());
    let sy = add(vec![y.clone()], "Σy".into());
    let syy = add(vec![y.clone(), y.clone()], "Σy²".into());
    let sx = (0..vars.len())
        .map(|i| add(vec![vars[i].clone()], format!("Σx{i}")))
        .collect();
    let mut sxx = Vec::new();
    for i in 0..vars.len() {
        for j in i..vars.len() {
            sxx.push(add(
                vec![vars[i].clone(), vars[j].clone()],
                format!("Σx{i}x{j}"),
            ));
        }
    }
    let sxy = (0..vars.len())
        .map(|i| add(vec![vars[i].clone(), y.clone()], format!("Σx{i}y")))
        .collect();
    Ok(Aggregate::Ols {
        regressors,
        n,
        sy,
        syy,
        sx,
        sxx,
        sxy,
    })
}
