//! The query spec that travels in a round descriptor, and its plan.
//!
//! [`plan`] parses the SQL with `sqlparser` and accepts exactly one shape:
//! `SELECT items FROM one_table [WHERE condition] [GROUP BY col [, col]]`.
//! Everything else is refused with a [`QueryError`] that says why and what to
//! do instead.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sqlparser::ast::{self, GroupByExpr, SelectItem, SetExpr, Statement, TableFactor};
use sqlparser::dialect::GenericDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer, Word};

use super::aggregate::{Aggregate, Output, StatSet};
use super::bounds::{self, Bounds, Interval};
use super::error::QueryError;
use super::expr::{ColumnRef, Converter, Expr, SUBQUERY_WHY};
use super::order::{DEFAULT_MAX_ROWS_PER_CLIENT, OrderItem};
pub use super::policy::Policy;

pub(crate) use super::aggregate::{AGGREGATES, Stat};

/// The longest SQL text accepted.
const MAX_SQL_LEN: usize = 64 * 1024;
/// The most operator tokens (every symbol and keyword other than commas,
/// parentheses and the names and literals they join) a query may hold.
/// `sqlparser` builds a chain such as `a * a * … * a` in a loop, but
/// dropping, printing and converting that tree recurse once per level: a
/// 64 KiB chain is some 30,000 levels, enough to overflow a thread's stack
/// and abort the process. Bounding the operators bounds that depth before
/// the tree exists; the expression converter then refuses anything deeper than
/// `expr::MAX_NESTING` with a clear error.
pub const MAX_OPERATORS: usize = 512;
/// The most values one GROUP BY domain may declare.
pub const MAX_DOMAIN: usize = 1024;
/// The most cells (combinations of domain values, "other" included) a query
/// may have.
pub const MAX_CELLS: usize = 16 * 1024;
/// The most elements a phase-2 vector may hold when every cell is released.
pub const MAX_VECTOR_LEN: usize = 1 << 22;

/// A joint query as the coordinator publishes it (inside the signed round
/// descriptor): the SQL, the GROUP BY domains and the privacy policy, which
/// every client checks against its own floor before it answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuerySpec {
    /// The query, in the subset [`plan`] accepts.
    pub sql: String,
    /// For every GROUP BY column, the values that get a cell of their own;
    /// any other value (and NULL) falls into one "(other)" cell.
    #[serde(default)]
    pub domains: BTreeMap<String, Vec<String>>,
    /// A cell is released only if it holds at least this many rows in total.
    pub min_rows: u64,
    /// A cell is released only if at least this many clients have rows in it.
    pub min_clients: u32,
    /// For every column used as a number in arithmetic or an aggregate, the
    /// range `[lo, hi]` its values are clamped to (see [`super::bounds`]):
    /// no row can move a statistic by more than its bounds allow, and no
    /// row can make evaluation fail. Rows with a value outside are counted
    /// per cell and published with the result ("adjusted").
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub bounds: BTreeMap<String, [f64; 2]>,
    /// MIN, MAX, MEDIAN and PERCENTILE_CONT: the most values of a cell one
    /// client sends to the MPC engine (1 to 1024; default 64). A cell where
    /// some client holds more gets NULL for those items, with the reason.
    /// Larger values cost more: the engine sorts clients × this many values
    /// per cell and item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rows_per_client: Option<u32>,
    /// Differential privacy: when set, the query runs as one engine round
    /// whose every released value — and every suppression decision — comes
    /// from sums noised inside the MPC engine, `(ε, δ)`-DP for one row of a
    /// client's table (see [`super::dp`]). Each client charges it to the
    /// table's privacy budget before it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dp: Option<super::dp::DpSpec>,
}

impl QuerySpec {
    /// The policy the spec carries, range-checked.
    pub fn policy(&self) -> Result<Policy, QueryError> {
        Policy::new(self.min_rows, self.min_clients)
    }

    /// A BLAKE3 digest of the spec's canonical JSON (domains are a sorted
    /// map), domain-separated, for binding a query to a round descriptor or an
    /// audit entry.
    pub fn digest(&self) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new_derive_key("sealroom analytics query spec v1");
        // Serializing plain strings, integers and maps cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        hasher.update(&json);
        *hasher.finalize().as_bytes()
    }
}

/// A validated query: what each party computes locally and how the
/// coordinator turns the sums into a result.
#[derive(Clone, Debug)]
pub struct QueryPlan {
    pub(crate) table: String,
    pub(crate) filter: Option<Expr>,
    pub(crate) groups: Vec<Group>,
    pub(crate) outputs: Vec<Output>,
    pub(crate) stats: Vec<Stat>,
    pub(crate) columns: BTreeSet<ColumnRef>,
    pub(crate) numeric: BTreeSet<ColumnRef>,
    /// Declared bounds of the columns the query uses as numbers.
    pub(crate) bounds: Bounds,
    /// MIN/MAX/MEDIAN/PERCENTILE_CONT items, computed by the order round.
    pub(crate) order: Vec<OrderItem>,
    /// L: the most non-NULL values per client, cell and order item that the
    /// order round takes (see `order.rs`).
    pub(crate) max_rows_per_client: u32,
}

/// One GROUP BY column and its declared domain.
#[derive(Clone, Debug)]
pub(crate) struct Group {
    pub(crate) column: ColumnRef,
    pub(crate) label: String,
    pub(crate) domain: Vec<String>,
}

impl QueryPlan {
    /// The logical table name of the query (each party maps it to its own
    /// data source).
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Number of cells: the product over GROUP BY columns of domain size + 1
    /// (the "(other)" cell), or 1 without GROUP BY.
    pub fn cells(&self) -> usize {
        self.groups.iter().map(|g| g.domain.len() + 1).product()
    }

    /// Names of the GROUP BY columns (their SELECT alias if one was given).
    pub fn group_columns(&self) -> Vec<String> {
        self.groups.iter().map(|g| g.label.clone()).collect()
    }

    /// Names of the result's value columns, in SELECT order.
    pub fn columns(&self) -> Vec<String> {
        self.outputs.iter().flat_map(Output::column_names).collect()
    }

    /// Number of local statistics per released cell (besides the row count,
    /// the contributed flag and the adjusted-row count).
    pub fn statistics(&self) -> usize {
        self.stats.len()
    }

    /// L, the most values of one order item (MIN/MAX/MEDIAN/PERCENTILE_CONT)
    /// one client contributes to one cell; a cell where a client holds more
    /// gets NULL for that item ([`super::NullReason::TooManyRowsPerClient`]).
    pub fn max_rows_per_client(&self) -> u32 {
        self.max_rows_per_client
    }

    /// The same plan with another L (1 to
    /// [`super::MAX_ROWS_PER_CLIENT_LIMIT`]). Every party of a query must use
    /// the same L (it shapes the statistics and order vectors): until the
    /// spec carries it, only tests and benchmarks should change it.
    pub fn with_max_rows_per_client(mut self, l: u32) -> Result<QueryPlan, QueryError> {
        self.max_rows_per_client = super::order::check_max_rows(l)?;
        check_names_and_size(&self)?;
        Ok(self)
    }

    /// The declared bounds the query applies, by column name.
    pub fn bounds(&self) -> Vec<(String, Interval)> {
        self.bounds
            .iter()
            .map(|(c, i)| (c.name.clone(), *i))
            .collect()
    }

    /// The domain position of `cell` along each GROUP BY column
    /// (`domain.len()` meaning "(other)").
    pub(crate) fn cell_coordinates(&self, cell: usize) -> Vec<usize> {
        let mut rest = cell;
        let mut coords = vec![0; self.groups.len()];
        for (i, g) in self.groups.iter().enumerate().rev() {
            let size = g.domain.len() + 1;
            coords[i] = rest % size;
            rest /= size;
        }
        coords
    }

    /// The domain values of `cell`, `None` for "(other)".
    pub(crate) fn cell_labels(&self, cell: usize) -> Vec<Option<&str>> {
        let coords = self.cell_coordinates(cell);
        self.groups
            .iter()
            .zip(coords)
            .map(|(g, i)| g.domain.get(i).map(String::as_str))
            .collect()
    }

    /// The cell a row with these domain positions falls in.
    pub(crate) fn cell_index(&self, coords: &[usize]) -> Option<usize> {
        if coords.len() != self.groups.len() {
            return None;
        }
        let mut cell = 0usize;
        for (g, &i) in self.groups.iter().zip(coords) {
            if i > g.domain.len() {
                return None;
            }
            cell = cell * (g.domain.len() + 1) + i;
        }
        Some(cell)
    }
}

/// Parses and validates a query spec.
pub fn plan(spec: &QuerySpec) -> Result<QueryPlan, QueryError> {
    spec.policy()?;
    if spec.sql.len() > MAX_SQL_LEN {
        return Err(QueryError::invalid(
            "the SQL text",
            format!("longer than {MAX_SQL_LEN} bytes"),
        ));
    }
    let operators = operator_count(&spec.sql)?;
    if operators > MAX_OPERATORS {
        return Err(QueryError::unsupported(
            "the SQL text",
            format!(
                "it holds {operators} operators and keywords, more than the {MAX_OPERATORS} a query may hold (a list of values goes in IN (...))"
            ),
        ));
    }
    let statements =
        Parser::parse_sql(&GenericDialect {}, &spec.sql).map_err(|e| QueryError::Parse {
            message: e.to_string(),
        })?;
    let statement = match statements.as_slice() {
        [one] => one,
        [] => return Err(QueryError::invalid("the SQL text", "it holds no statement")),
        _ => {
            return Err(QueryError::unsupported(
                "several statements",
                "send exactly one SELECT statement",
            ));
        }
    };
    let Statement::Query(query) = statement else {
        return Err(QueryError::unsupported(
            "a statement other than SELECT",
            "only SELECT queries run; every party's data is opened read-only",
        ));
    };
    let select = select_of(query)?;
    let plan = plan_select(select, spec)?;
    if let Some(dp) = &spec.dp {
        super::dp::noise_plan(&plan, dp)?;
    }
    Ok(plan)
}

/// How many tokens of `sql` are operators or keywords: everything but
/// whitespace, commas, parentheses, periods, semicolons, literals and plain
/// names. The tokenizer works in one pass without recursion.
fn operator_count(sql: &str) -> Result<usize, QueryError> {
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize()
        .map_err(|e| QueryError::Parse {
            message: e.to_string(),
        })?;
    Ok(tokens
        .iter()
        .filter(|t| {
            !matches!(
                t,
                Token::Whitespace(_)
                    | Token::Comma
                    | Token::LParen
                    | Token::RParen
                    | Token::Period
                    | Token::SemiColon
                    | Token::EOF
                    | Token::Number(..)
                    | Token::SingleQuotedString(_)
                    | Token::Word(Word {
                        keyword: Keyword::NoKeyword,
                        ..
                    })
            )
        })
        .count())
}

/// The single SELECT of a query, refusing everything around it.
fn select_of(query: &ast::Query) -> Result<&ast::Select, QueryError> {
    let ast::Query {
        with,
        body,
        order_by,
        limit_clause,
        fetch,
        locks,
        for_clause,
        settings,
        format_clause,
        pipe_operators,
    } = query;
    if with.is_some() {
        return Err(QueryError::unsupported(
            "WITH (common table expressions)",
            SUBQUERY_WHY,
        ));
    }
    if order_by.is_some() || limit_clause.is_some() || fetch.is_some() {
        return Err(QueryError::unsupported(
            "ORDER BY / LIMIT / FETCH",
            "the result lists every cell of the declared domains in domain order; sort or cut the published result instead",
        ));
    }
    if !locks.is_empty()
        || for_clause.is_some()
        || settings.is_some()
        || format_clause.is_some()
        || !pipe_operators.is_empty()
    {
        return Err(QueryError::unsupported(
            "dialect-specific clauses (FOR, SETTINGS, FORMAT, pipes)",
            "write a plain SELECT … FROM … WHERE … GROUP BY …",
        ));
    }
    match body.as_ref() {
        SetExpr::Select(select) => Ok(select),
        SetExpr::Query(_) => Err(QueryError::unsupported(
            "a parenthesised query",
            SUBQUERY_WHY,
        )),
        SetExpr::SetOperation { .. } => Err(QueryError::unsupported(
            "UNION / INTERSECT / EXCEPT",
            "run the queries separately",
        )),
        _ => Err(QueryError::unsupported(
            "a statement other than SELECT",
            "only SELECT queries run; every party's data is opened read-only",
        )),
    }
}

fn plan_select(select: &ast::Select, spec: &QuerySpec) -> Result<QueryPlan, QueryError> {
    let ast::Select {
        select_token: _,
        optimizer_hints,
        distinct,
        select_modifiers,
        top,
        top_before_distinct: _,
        projection,
        exclude,
        into,
        from,
        lateral_views,
        prewhere,
        selection,
        connect_by,
        group_by,
        cluster_by,
        distribute_by,
        sort_by,
        having,
        named_window,
        qualify,
        window_before_qualify: _,
        value_table_mode,
        flavor,
    } = select;
    if distinct.is_some() {
        return Err(QueryError::unsupported(
            "SELECT DISTINCT",
            "it would list raw values; GROUP BY a declared domain instead",
        ));
    }
    if having.is_some() {
        return Err(QueryError::unsupported(
            "HAVING",
            "conditions on aggregates apply to the published result; filter it after the query",
        ));
    }
    if !named_window.is_empty() || qualify.is_some() {
        return Err(QueryError::unsupported(
            "window functions",
            "they need other parties' rows next to each row; only whole-cell aggregates are available",
        ));
    }
    if !optimizer_hints.is_empty()
        || select_modifiers.is_some()
        || top.is_some()
        || exclude.is_some()
        || into.is_some()
        || !lateral_views.is_empty()
        || prewhere.is_some()
        || !connect_by.is_empty()
        || !cluster_by.is_empty()
        || !distribute_by.is_empty()
        || !sort_by.is_empty()
        || value_table_mode.is_some()
        || *flavor != ast::SelectFlavor::Standard
    {
        return Err(QueryError::unsupported(
            "dialect-specific SELECT clauses",
            "write a plain SELECT … FROM … WHERE … GROUP BY …",
        ));
    }
    let (table, qualifiers) = single_table(from)?;
    let mut conv = Converter {
        qualifiers,
        ..Converter::default()
    };
    let filter = selection.as_ref().map(|w| conv.condition(w)).transpose()?;
    let mut groups = group_columns(group_by, &conv, spec)?;
    for g in &groups {
        conv.columns.insert(g.column.clone());
    }

    let mut stats = StatSet::default();
    let mut order = Vec::new();
    let mut outputs = Vec::new();
    for item in projection {
        let (expr, alias) = match item {
            SelectItem::UnnamedExpr(e) => (e, None),
            SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.value.clone())),
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                return Err(QueryError::unsupported(
                    "SELECT *",
                    "raw rows never leave a party; select aggregates such as COUNT(*) or AVG(col)",
                ));
            }
            other => {
                return Err(QueryError::unsupported(
                    format!("select item {other}"),
                    "use expr [AS alias]",
                ));
            }
        };
        if let Some(c) = conv.column_ref(expr) {
            let Some(g) = groups.iter_mut().find(|g| same_column(&g.column, &c)) else {
                return Err(QueryError::unsupported(
                    format!("bare column {expr}"),
                    "a column that is neither in GROUP BY nor aggregated would reveal raw values",
                ));
            };
            if let Some(alias) = alias {
                g.label = alias;
            }
            continue;
        }
        let name = alias.unwrap_or_else(|| expr.to_string());
        outputs.push(Output {
            agg: Aggregate::parse(expr, &name, &mut conv, &mut stats, &mut order)?,
            name,
        });
    }
    if outputs.is_empty() {
        return Err(QueryError::invalid(
            "the SELECT list",
            "it holds no aggregate",
        ));
    }
    let bounds = declared_bounds(spec, &conv.columns)?;
    let mut plan = QueryPlan {
        table,
        filter,
        groups,
        outputs,
        stats: stats.into_vec(),
        // Only the bounds of columns used as numbers apply (every column in
        // arithmetic or an aggregate's argument is one).
        bounds: bounds
            .into_iter()
            .filter(|(c, _)| conv.numeric.contains(c))
            .collect(),
        columns: conv.columns,
        numeric: conv.numeric,
        order,
        max_rows_per_client: super::order::check_max_rows(
            spec.max_rows_per_client
                .unwrap_or(DEFAULT_MAX_ROWS_PER_CLIENT),
        )?,
    };
    super::order::finish_items(&mut plan.order, &plan.bounds)?;
    check_names_and_size(&plan)?;
    // Every statistic's term, every WHERE and every per-statistic filter
    // must be bounded (issue #12, finding 4).
    for stat in &plan.stats {
        bounds::term(&stat.factors, &plan.bounds, &stat.label)?;
        if let Some(f) = &stat.filter {
            bounds::condition(f, &plan.bounds, &stat.label)?;
        }
    }
    if let Some(f) = &plan.filter {
        bounds::condition(f, &plan.bounds, "WHERE")?;
    }
    Ok(plan)
}

/// The spec's bounds of the query's columns (matched like domains: exactly,
/// or case-insensitively when unambiguous for an unquoted name). Every
/// declared bound is checked, used or not.
fn declared_bounds(spec: &QuerySpec, columns: &BTreeSet<ColumnRef>) -> Result<Bounds, QueryError> {
    let mut checked = BTreeMap::new();
    for (name, bound) in &spec.bounds {
        checked.insert(name.as_str(), bounds::check_declared(name, *bound)?);
    }
    let mut out = Bounds::new();
    for c in columns {
        let found = checked.get(c.name.as_str()).copied().or_else(|| {
            let mut matches = checked
                .iter()
                .filter(|(k, _)| !c.quoted && k.eq_ignore_ascii_case(&c.name));
            matches
                .next()
                .filter(|_| matches.next().is_none())
                .map(|(_, v)| *v)
        });
        if let Some(interval) = found {
            out.insert(c.clone(), interval);
        }
    }
    Ok(out)
}

/// The one plain table of FROM, and the names a `t.col` may qualify with.
fn single_table(from: &[ast::TableWithJoins]) -> Result<(String, Vec<String>), QueryError> {
    const JOIN_WHY: &str = "each party's rows stay with it; joins across parties need private set intersection, not yet available";
    let [only] = from else {
        if from.is_empty() {
            return Err(QueryError::invalid("the query", "it has no FROM table"));
        }
        return Err(QueryError::unsupported("several tables in FROM", JOIN_WHY));
    };
    if !only.joins.is_empty() {
        return Err(QueryError::unsupported("JOIN", JOIN_WHY));
    }
    match &only.relation {
        TableFactor::Table {
            name,
            alias,
            args: None,
            with_hints,
            version: None,
            with_ordinality: false,
            partitions,
            json_path: None,
            sample: None,
            index_directives,
            inheritance: None,
        } if with_hints.is_empty() && partitions.is_empty() && index_directives.is_empty() => {
            let [part] = name.0.as_slice() else {
                return Err(QueryError::unsupported(
                    format!("qualified table name {name}"),
                    "name the logical table plainly; each party maps it to its own data source",
                ));
            };
            let table = part
                .as_ident()
                .ok_or_else(|| {
                    QueryError::unsupported(format!("table {name}"), "name a plain table")
                })?
                .value
                .clone();
            let mut qualifiers = vec![table.to_lowercase()];
            if let Some(alias) = alias {
                if !alias.columns.is_empty() {
                    return Err(QueryError::unsupported(
                        "column aliases on a table",
                        "alias the table only",
                    ));
                }
                qualifiers.push(alias.name.value.to_lowercase());
            }
            Ok((table, qualifiers))
        }
        TableFactor::Derived { .. } => {
            Err(QueryError::unsupported("a subquery in FROM", SUBQUERY_WHY))
        }
        TableFactor::Table { args: Some(_), .. }
        | TableFactor::TableFunction { .. }
        | TableFactor::Function { .. } => Err(QueryError::unsupported(
            "a table function",
            "name one plain table; each party maps it to its own data source",
        )),
        other => Err(QueryError::unsupported(
            format!("FROM {other}"),
            "name one plain table",
        )),
    }
}

fn group_columns(
    group_by: &GroupByExpr,
    conv: &Converter,
    spec: &QuerySpec,
) -> Result<Vec<Group>, QueryError> {
    let exprs = match group_by {
        GroupByExpr::Expressions(exprs, modifiers) if modifiers.is_empty() => exprs,
        _ => {
            return Err(QueryError::unsupported(
                "GROUP BY ALL / ROLLUP / CUBE / GROUPING SETS",
                "group by one or two plain columns with declared domains",
            ));
        }
    };
    if exprs.len() > 2 {
        return Err(QueryError::unsupported(
            "GROUP BY over more than two columns",
            "group by one or two columns",
        ));
    }
    let mut groups: Vec<Group> = Vec::new();
    for e in exprs {
        let column = conv.column_ref(e).ok_or_else(|| {
            QueryError::unsupported(
                format!("GROUP BY {e}"),
                "group by a plain column with a declared domain",
            )
        })?;
        if groups.iter().any(|g| same_column(&g.column, &column)) {
            return Err(QueryError::invalid(
                format!("GROUP BY {e}"),
                "the column is listed twice",
            ));
        }
        let (key, domain) = spec
            .domains
            .get_key_value(&column.name)
            .or_else(|| {
                let mut matches = spec
                    .domains
                    .iter()
                    .filter(|(k, _)| !column.quoted && k.eq_ignore_ascii_case(&column.name));
                matches.next().filter(|_| matches.next().is_none())
            })
            .ok_or_else(|| {
                QueryError::unsupported(
                    format!("GROUP BY {} without a declared domain", column.name),
                    format!(
                        "declare its values in the spec (\"domains\": {{\"{}\": [\"a\", \"b\"]}}); values outside the domain fall into an \"(other)\" cell, while a domain read from the data would reveal the values",
                        column.name
                    ),
                )
            })?;
        check_domain(key, domain)?;
        groups.push(Group {
            label: column.name.clone(),
            column,
            domain: domain.clone(),
        });
    }
    Ok(groups)
}

fn check_domain(column: &str, domain: &[String]) -> Result<(), QueryError> {
    let what = || format!("domain of {column:?}");
    if domain.is_empty() || domain.len() > MAX_DOMAIN {
        return Err(QueryError::invalid(
            what(),
            format!("it must list 1 to {MAX_DOMAIN} values"),
        ));
    }
    let mut seen = BTreeSet::new();
    for v in domain {
        if v.contains('\0') || v.len() > 1024 {
            return Err(QueryError::invalid(
                what(),
                "a value holds a NUL character or exceeds 1024 bytes",
            ));
        }
        if !seen.insert(v) {
            return Err(QueryError::invalid(what(), "a value is listed twice"));
        }
    }
    Ok(())
}

/// Two references name the same column (case-insensitively unless quoted).
pub(crate) fn same_column(a: &ColumnRef, b: &ColumnRef) -> bool {
    if a.quoted && b.quoted {
        a.name == b.name
    } else {
        a.name.eq_ignore_ascii_case(&b.name)
    }
}

fn check_names_and_size(plan: &QueryPlan) -> Result<(), QueryError> {
    let mut names: Vec<String> = plan.group_columns();
    names.extend(plan.columns());
    let mut seen = BTreeSet::new();
    for n in &names {
        if !seen.insert(n.to_lowercase()) {
            return Err(QueryError::invalid(
                format!("output column {n:?}"),
                "two outputs share this name; give one an alias (AS name)",
            ));
        }
    }
    let cells = plan.cells();
    let per_cell = super::finish::per_cell(plan);
    let order_per_cell = super::order::max_len_per_cell(plan);
    if cells > MAX_CELLS
        || cells.saturating_mul(per_cell) > MAX_VECTOR_LEN
        || cells.saturating_mul(order_per_cell) > MAX_VECTOR_LEN
    {
        return Err(QueryError::unsupported(
            format!(
                "a query with {cells} cells and {} statistics",
                plan.stats.len()
            ),
            "it exceeds the vector size of one round; declare smaller domains or fewer aggregates",
        ));
    }
    Ok(())
}
