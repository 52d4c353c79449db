//! Where a party's data lives, and the local evaluation of a plan there.
//!
//! A [`LocalTable`] is one open data source: a CSV file (loaded into an
//! in-memory SQLite table), a SQLite file (opened read-only, with
//! `query_only` on) or a PostgreSQL table (every statement runs in a
//! `READ ONLY` transaction). Each phase runs one statement generated from the
//! plan (`sql.rs`) in the database's own engine; only per-cell aggregates
//! come back, never a row.

use core::fmt;
use std::path::Path;
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{AssertSqlSafe, ConnectOptions as _, Connection as _, Row as _};
use tokio::sync::Mutex;
use zeroize::Zeroize;

use super::error::QueryError;
use super::spec::QueryPlan;
use super::sql::{Dialect, Names, Renderer, ident};

/// Where one party's rows live: the node configuration's `[data.<table>]`
/// entry (CSV, SQLite or PostgreSQL; a bundled training set is not a query
/// table). Its `Debug` never shows a database password.
pub use sealroom_node::config::DataSource;

/// What the catalogue says about a column's values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Numeric {
    /// Every value is a number or NULL.
    Yes,
    /// Some value is not a number (for a CSV file: first seen at `line`).
    No { line: Option<u64> },
    /// Unknown until the data is read (SQLite's dynamic typing): checked at
    /// query time.
    Check,
}

/// A column of a party's table.
#[derive(Clone, Debug)]
pub(crate) struct ColumnInfo {
    pub(crate) name: String,
    pub(crate) numeric: Numeric,
}

enum Conn {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

/// An open data source, ready to evaluate plans.
pub struct LocalTable {
    conn: Mutex<Conn>,
    dialect: Dialect,
    /// The table, quoted for SQL.
    table_sql: String,
    columns: Vec<ColumnInfo>,
    location: String,
}

impl fmt::Debug for LocalTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalTable")
            .field("location", &self.location)
            .field("table", &self.table_sql)
            .finish_non_exhaustive()
    }
}

/// The per-cell results of one local statement: for each cell present, its
/// row count followed by its statistics. Zeroized on drop.
pub(crate) struct LocalCells {
    pub(crate) cells: Vec<usize>,
    pub(crate) width: usize,
    pub(crate) values: Vec<f64>,
}

impl LocalCells {
    /// The values of `cell`, if it has rows.
    pub(crate) fn get(&self, cell: usize) -> Option<&[f64]> {
        let i = self.cells.iter().position(|&c| c == cell)?;
        self.values.get(i * self.width..(i + 1) * self.width)
    }
}

impl Drop for LocalCells {
    fn drop(&mut self) {
        self.values.zeroize();
    }
}

impl LocalTable {
    /// Opens a data source: checks that the file or table exists and reads
    /// its column names (and types, where the database has them).
    pub async fn open(source: &DataSource) -> Result<LocalTable, QueryError> {
        match source {
            DataSource::Csv { path } => {
                let (conn, columns) = super::csv_file::load(path).await?;
                Ok(LocalTable {
                    conn: Mutex::new(Conn::Sqlite(conn)),
                    dialect: Dialect::Sqlite,
                    table_sql: ident(super::csv_file::TABLE),
                    columns,
                    location: path.display().to_string(),
                })
            }
            DataSource::Sqlite { path, table } => open_sqlite(path, table).await,
            DataSource::Postgres { url, table } => open_postgres(url, table).await,
            DataSource::Builtin { dataset, .. } => Err(QueryError::Invalid {
                what: format!("the bundled {dataset:?} data set"),
                why: "it is a training set, not a query table: give the client a CSV, SQLite \
                      or PostgreSQL table for queries"
                    .into(),
            }),
        }
    }

    /// The data source, for messages (a URL loses its password).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The table's column names.
    pub fn column_names(&self) -> Vec<&str> {
        self.columns.iter().map(|c| c.name.as_str()).collect()
    }

    /// Resolves the plan's columns against this table; returns the names and
    /// the numeric columns whose values must be checked at query time.
    fn bind(&self, plan: &QueryPlan) -> Result<(Names, Vec<String>), QueryError> {
        let mut names = Names::new();
        let mut checks = Vec::new();
        for c in &plan.columns {
            let mut matches: Vec<&ColumnInfo> =
                self.columns.iter().filter(|i| i.name == c.name).collect();
            if matches.is_empty() && !c.quoted {
                matches = self
                    .columns
                    .iter()
                    .filter(|i| i.name.eq_ignore_ascii_case(&c.name))
                    .collect();
            }
            let info = match matches.as_slice() {
                [one] => *one,
                [] => {
                    return Err(QueryError::UnknownColumn {
                        column: c.name.clone(),
                        location: self.location.clone(),
                        available: self.column_names().join(", "),
                    });
                }
                _ => {
                    return Err(QueryError::AmbiguousColumn {
                        column: c.name.clone(),
                        location: self.location.clone(),
                    });
                }
            };
            if plan.numeric.contains(c) {
                match &info.numeric {
                    Numeric::Yes => {}
                    Numeric::No { line } => {
                        return Err(QueryError::ColumnNotNumeric {
                            column: info.name.clone(),
                            location: self.location.clone(),
                            line: *line,
                        });
                    }
                    Numeric::Check => checks.push(info.name.clone()),
                }
            }
            names.insert(c.clone(), info.name.clone());
        }
        checks.sort();
        checks.dedup();
        Ok((names, checks))
    }

    /// Runs one phase's statement; `with_stats` adds the plan's statistics.
    pub(crate) async fn evaluate(
        &self,
        plan: &QueryPlan,
        with_stats: bool,
    ) -> Result<LocalCells, QueryError> {
        let (names, checks) = self.bind(plan)?;
        let renderer = Renderer {
            dialect: self.dialect,
            names: &names,
            bounds: &plan.bounds,
        };
        let sql = renderer.phase(plan, &self.table_sql, with_stats);
        let groups = plan.groups.len();
        // The row count; in phase 2 also the adjusted-row count and the
        // statistics.
        let width = 1 + if with_stats { 1 + plan.stats.len() } else { 0 };
        let operation = if with_stats {
            "the statistics query"
        } else {
            "the counts query"
        };
        let decoded = self.fetch(&checks, sql, groups, width, operation).await?;
        let mut out = LocalCells {
            cells: Vec::with_capacity(decoded.0.len()),
            width,
            values: decoded.1,
        };
        for coords in decoded.0 {
            let cell = plan.cell_index(&coords).ok_or_else(|| {
                QueryError::invalid(
                    "the local result",
                    "the database returned a group outside the domain",
                )
            })?;
            if out.cells.contains(&cell) {
                return Err(QueryError::invalid(
                    "the local result",
                    "the database returned a group twice",
                ));
            }
            out.cells.push(cell);
        }
        Ok(out)
    }

    /// The order round's local values of one item: per cell, at most
    /// `limit` non-NULL values of the item's expression, clamped to the
    /// declared bounds, the smallest first (`descending`: the largest).
    pub(crate) async fn order_values(
        &self,
        plan: &QueryPlan,
        expr: &super::expr::Expr,
        limit: u32,
        descending: bool,
    ) -> Result<LocalCells, QueryError> {
        let (names, checks) = self.bind(plan)?;
        let renderer = Renderer {
            dialect: self.dialect,
            names: &names,
            bounds: &plan.bounds,
        };
        let sql = renderer.order_values(plan, expr, &self.table_sql, limit, descending);
        let groups = plan.groups.len();
        let (coords, values) = self
            .fetch(&checks, sql, groups, 1, "the order-round query")
            .await?;
        // One value per returned row; `cells` names each row's cell.
        let mut out = LocalCells {
            cells: Vec::with_capacity(coords.len()),
            width: 1,
            values,
        };
        for c in coords {
            let cell = plan.cell_index(&c).ok_or_else(|| {
                QueryError::invalid(
                    "the local result",
                    "the database returned a group outside the domain",
                )
            })?;
            out.cells.push(cell);
        }
        Ok(out)
    }

    /// Runs one generated statement (SQLite: after the numeric-column
    /// check; PostgreSQL: in a read-only transaction) and decodes its rows.
    async fn fetch(
        &self,
        checks: &[String],
        sql: String,
        groups: usize,
        width: usize,
        operation: &'static str,
    ) -> Result<Decoded, QueryError> {
        let source = |source| QueryError::Source {
            operation,
            location: self.location.clone(),
            source,
        };
        let mut conn = self.conn.lock().await;
        let decoded = match &mut *conn {
            Conn::Sqlite(c) => {
                self.check_numeric(c, checks).await?;
                let rows = sqlx::query(AssertSqlSafe(sql))
                    .fetch_all(&mut *c)
                    .await
                    .map_err(source)?;
                decode(&rows, groups, width).map_err(source)?
            }
            Conn::Postgres(c) => {
                let mut tx = c
                    .begin_with("BEGIN TRANSACTION READ ONLY")
                    .await
                    .map_err(source)?;
                let rows = sqlx::query(AssertSqlSafe(sql))
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(source)?;
                tx.rollback().await.map_err(source)?;
                decode(&rows, groups, width).map_err(source)?
            }
        };
        drop(conn);
        Ok(decoded)
    }

    /// SQLite only: refuses a numeric column holding text or blobs.
    async fn check_numeric(
        &self,
        conn: &mut SqliteConnection,
        columns: &[String],
    ) -> Result<(), QueryError> {
        if columns.is_empty() {
            return Ok(());
        }
        let items: Vec<String> = columns
            .iter()
            .map(|c| {
                format!(
                    "COUNT(CASE WHEN typeof({}) IN ('text', 'blob') THEN 1 END)",
                    ident(c)
                )
            })
            .collect();
        let sql = format!("SELECT {} FROM {}", items.join(", "), self.table_sql);
        let row = sqlx::query(AssertSqlSafe(sql))
            .fetch_one(&mut *conn)
            .await
            .map_err(|source| QueryError::Source {
                operation: "the column type check",
                location: self.location.clone(),
                source,
            })?;
        for (i, column) in columns.iter().enumerate() {
            let bad: i64 = row.try_get(i).map_err(|source| QueryError::Source {
                operation: "the column type check",
                location: self.location.clone(),
                source,
            })?;
            if bad > 0 {
                return Err(QueryError::ColumnNotNumeric {
                    column: column.clone(),
                    location: self.location.clone(),
                    line: None,
                });
            }
        }
        Ok(())
    }
}

type Decoded = (Vec<Vec<usize>>, Vec<f64>);

/// Group coordinates and values of each result row; NULL sums are 0.
fn decode<R>(rows: &[R], groups: usize, width: usize) -> Result<Decoded, sqlx::Error>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> f64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let mut coords = Vec::with_capacity(rows.len());
    let mut values = Vec::with_capacity(rows.len() * width);
    for row in rows {
        let mut c = Vec::with_capacity(groups);
        for i in 0..groups {
            let index: i64 = row.try_get(i)?;
            // A negative index cannot come from the generated CASE; map it
            // past every domain so the caller refuses it.
            c.push(usize::try_from(index).unwrap_or(usize::MAX));
        }
        coords.push(c);
        for i in 0..width {
            let v: Option<f64> = row.try_get(groups + i)?;
            values.push(v.unwrap_or(0.0));
        }
    }
    Ok((coords, values))
}

async fn open_sqlite(path: &Path, table: &str) -> Result<LocalTable, QueryError> {
    let location = path.display().to_string();
    check_file(path).await?;
    let options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .create_if_missing(false)
        .pragma("query_only", "ON")
        .disable_statement_logging();
    let source = |operation| {
        let location = location.clone();
        move |source| QueryError::Source {
            operation,
            location,
            source,
        }
    };
    let mut conn = options
        .connect()
        .await
        .map_err(source("opening the database"))?;
    let rows = sqlx::query("SELECT name FROM pragma_table_info(?1) ORDER BY cid")
        .bind(table)
        .fetch_all(&mut conn)
        .await
        .map_err(source("reading the table's columns"))?;
    let mut columns = Vec::with_capacity(rows.len());
    for row in &rows {
        let name: String = row
            .try_get(0)
            .map_err(source("reading the table's columns"))?;
        columns.push(ColumnInfo {
            name,
            numeric: Numeric::Check,
        });
    }
    if columns.is_empty() {
        return Err(QueryError::TableNotFound {
            table: table.to_owned(),
            location,
        });
    }
    Ok(LocalTable {
        conn: Mutex::new(Conn::Sqlite(conn)),
        dialect: Dialect::Sqlite,
        table_sql: ident(table),
        columns,
        location,
    })
}

/// A clear error for a missing or unreadable file.
pub(crate) async fn check_file(path: &Path) -> Result<(), QueryError> {
    match tokio::fs::metadata(path).await {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(_) => Err(QueryError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other("not a regular file"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(QueryError::NotFound {
            path: path.to_path_buf(),
        }),
        Err(source) => Err(QueryError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// PostgreSQL types read as numbers.
const PG_NUMERIC: &[&str] = &[
    "smallint",
    "integer",
    "bigint",
    "real",
    "double precision",
    "numeric",
];

async fn open_postgres(url: &str, table: &str) -> Result<LocalTable, QueryError> {
    let location = redact_url(url);
    let source = |operation| {
        let location = location.clone();
        move |source| QueryError::Source {
            operation,
            location,
            source,
        }
    };
    let options = PgConnectOptions::from_str(url)
        .map_err(source("parsing the PostgreSQL URL"))?
        .disable_statement_logging();
    let mut conn = options.connect().await.map_err(source("connecting"))?;
    let table_sql = match table.split_once('.') {
        Some((schema, name)) => format!("{}.{}", ident(schema), ident(name)),
        None => ident(table),
    };
    let rows = sqlx::query(
        "SELECT a.attname::text, format_type(a.atttypid, NULL) \
         FROM pg_catalog.pg_attribute a \
         WHERE a.attrelid = to_regclass($1::text) AND a.attnum > 0 AND NOT a.attisdropped \
         ORDER BY a.attnum",
    )
    .bind(&table_sql)
    .fetch_all(&mut conn)
    .await
    .map_err(source("reading the table's columns"))?;
    let mut columns = Vec::with_capacity(rows.len());
    for row in &rows {
        let name: String = row
            .try_get(0)
            .map_err(source("reading the table's columns"))?;
        let ty: String = row
            .try_get(1)
            .map_err(source("reading the table's columns"))?;
        let numeric = if PG_NUMERIC
            .iter()
            .any(|t| ty == *t || ty.starts_with("numeric"))
        {
            Numeric::Yes
        } else {
            Numeric::No { line: None }
        };
        columns.push(ColumnInfo { name, numeric });
    }
    if columns.is_empty() {
        return Err(QueryError::TableNotFound {
            table: table.to_owned(),
            location,
        });
    }
    Ok(LocalTable {
        conn: Mutex::new(Conn::Postgres(conn)),
        dialect: Dialect::Postgres,
        table_sql,
        columns,
        location,
    })
}

/// A database URL without its password or query string.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<database URL>".to_owned();
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split_once(':').map_or(user, |(u, _)| u);
            format!("{user}:***@{host}")
        }
        None => authority.to_owned(),
    };
    if path.is_empty() {
        format!("{scheme}://{authority}")
    } else {
        format!("{scheme}://{authority}/{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(
            redact_url("postgres://alice:s3cret@db.example:5432/hr?sslmode=require&password=x"),
            "postgres://alice:***@db.example:5432/hr"
        );
        assert_eq!(redact_url("postgres://db/hr"), "postgres://db/hr");
        assert_eq!(redact_url("nonsense"), "<database URL>");
        let source = DataSource::Postgres {
            url: "postgres://bob:hunter2@h/d".into(),
            table: "t".into(),
        };
        assert!(!format!("{source:?}").contains("hunter2"));
    }

    #[test]
    fn sources_deserialize_from_config() {
        let s: DataSource =
            serde_json::from_str(r#"{"kind":"sqlite","path":"a.db","table":"salaries"}"#)
                .expect("parses");
        assert_eq!(
            s,
            DataSource::Sqlite {
                path: "a.db".into(),
                table: "salaries".into()
            }
        );
        assert!(
            serde_json::from_str::<DataSource>(r#"{"kind":"csv","path":"a.csv","extra":1}"#)
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_bundled_training_set_is_not_a_query_table() {
        let err = LocalTable::open(&DataSource::Builtin {
            dataset: "winequality".into(),
            part: 0,
            parts: 1,
        })
        .await
        .expect_err("refused");
        assert!(err.to_string().contains("training set"), "{err}");
    }
}
