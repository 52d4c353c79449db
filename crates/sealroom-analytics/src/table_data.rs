//! A client's training rows, read from its own table: the label and
//! feature columns a [`crate::train_spec::TrainingSpec`] names, from a CSV
//! file, a SQLite table (opened read-only) or a PostgreSQL table (in a
//! read-only transaction) — the sources a client's config already gives
//! its queries.
//!
//! Features must be numbers; a classifier's label must be one of the
//! declared classes (compared as trimmed text), a regression's a number.
//! A missing value, a non-number or a label outside the domain is refused
//! naming the source, the column and the row — **never the value**, which
//! is private. The rows stay on the client: only the sums of
//! [`crate::table_training`] leave it.

use core::fmt;
use std::path::Path;
use std::str::FromStr;

use ndarray::{Array1, Array2, Axis};
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _, Row as _};
use zeroize::Zeroize;

use crate::fl::split::{SplitRng, shuffle};
use crate::fl::{FlError, derive_seed};
use crate::query::DataSource;

/// Most rows one client may train on.
pub const MAX_ROWS: usize = 10_000_000;

/// What the rows' labels are.
#[derive(Clone, PartialEq)]
pub enum Labels {
    /// Class indices into the declared domain.
    Classes(Array1<usize>),
    /// Real targets of a regression.
    Values(Array1<f64>),
}

impl Labels {
    fn len(&self) -> usize {
        match self {
            Labels::Classes(y) => y.len(),
            Labels::Values(y) => y.len(),
        }
    }

    fn select(&self, rows: &[usize]) -> Labels {
        match self {
            Labels::Classes(y) => Labels::Classes(y.select(Axis(0), rows)),
            Labels::Values(y) => Labels::Values(y.select(Axis(0), rows)),
        }
    }
}

/// One party's rows: features and labels. Private: zeroized on drop,
/// `Debug` shows the shape only.
#[derive(Clone, PartialEq)]
pub struct TableRows {
    /// Features, one row per record, columns in the spec's order.
    pub x: Array2<f64>,
    /// Labels.
    pub labels: Labels,
}

impl fmt::Debug for TableRows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TableRows(rows={}, features={}, <redacted>)",
            self.x.nrows(),
            self.x.ncols()
        )
    }
}

impl Drop for TableRows {
    fn drop(&mut self) {
        if let Some(x) = self.x.as_slice_mut() {
            x.zeroize();
        }
        match &mut self.labels {
            Labels::Classes(y) => y.iter_mut().for_each(|v| *v = 0),
            Labels::Values(y) => y.iter_mut().for_each(|v| *v = 0.0),
        }
    }
}

impl TableRows {
    /// Rows.
    pub fn n_rows(&self) -> usize {
        self.x.nrows()
    }

    /// The rows at `rows`, in that order.
    pub fn select(&self, rows: &[usize]) -> TableRows {
        TableRows {
            x: self.x.select(Axis(0), rows),
            labels: self.labels.select(rows),
        }
    }

    /// Splits the rows into (train, validation): a shuffle of the row
    /// indices seeded by `seed` (public), the first `floor(n · fraction)`
    /// validate; both keep the original row order.
    pub fn split(&self, fraction: f64, seed: u64) -> Result<(TableRows, TableRows), FlError> {
        if !(fraction.is_finite() && (0.0..1.0).contains(&fraction)) {
            return Err(FlError::InvalidParameter {
                name: "validation fraction",
                value: fraction,
                expected: "in [0, 1)",
            });
        }
        let n = self.n_rows();
        let mut order: Vec<usize> = (0..n).collect();
        let mut rng = SplitRng::new(derive_seed(seed, "validation split", &[]));
        shuffle(&mut rng, &mut order);
        let n_val = (n as f64 * fraction).floor() as usize;
        let mut is_val = vec![false; n];
        for &r in order.iter().take(n_val) {
            is_val[r] = true;
        }
        let train: Vec<usize> = (0..n).filter(|&r| !is_val[r]).collect();
        let val: Vec<usize> = (0..n).filter(|&r| is_val[r]).collect();
        if train.is_empty() {
            return Err(FlError::Empty {
                what: "training rows after the validation split",
            });
        }
        Ok((self.select(&train), self.select(&val)))
    }
}

/// Which columns to read and how to read the label.
#[derive(Clone, Copy, Debug)]
pub struct Columns<'a> {
    /// The label column.
    pub label: &'a str,
    /// The feature columns, in order.
    pub features: &'a [String],
    /// The declared classes (a classifier), or `None` (a regression).
    pub classes: Option<&'a [String]>,
}

/// Why a client's rows could not be read. Names the source, column and
/// row; never a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TableError {
    /// The file or database could not be opened or read.
    #[error("{location}: {operation} failed: {why}")]
    Source {
        /// The file, or the database URL without its password.
        location: String,
        /// What was being done.
        operation: &'static str,
        /// The cause (never row data).
        why: String,
    },
    /// A column the spec names is not in the table.
    #[error("{location}: no column {column:?} (the table has: {available})")]
    MissingColumn {
        /// The source.
        location: String,
        /// The column asked for.
        column: String,
        /// The columns present, comma separated.
        available: String,
    },
    /// A value is missing, not a number, or (a label) outside the domain.
    #[error("{location}: {row_kind} {row}: column {column:?} {problem}")]
    BadValue {
        /// The source.
        location: String,
        /// "line" (CSV) or "row" (databases).
        row_kind: &'static str,
        /// Line of the CSV file, or 1-based row of the result.
        row: u64,
        /// The column.
        column: String,
        /// What is wrong (never the value).
        problem: &'static str,
    },
    /// The table holds no rows, or more than [`MAX_ROWS`].
    #[error("{location}: {rows} rows; between 1 and {MAX_ROWS} are needed")]
    RowCount {
        /// The source.
        location: String,
        /// Rows found.
        rows: usize,
    },
    /// A bundled data set cannot be a training table here.
    #[error("{what}: {why}")]
    Unsupported {
        /// The source.
        what: String,
        /// Why, and what to do.
        why: String,
    },
}

const MISSING: &str = "is empty (missing values are not supported: drop or impute those rows)";
const NOT_A_NUMBER: &str = "is not a finite number";
const OUTSIDE_DOMAIN: &str = "holds a label outside the declared classes";

/// Reads the label and feature columns of every row of `source`. Async for
/// the databases; a CSV file is read on the calling thread.
pub async fn read_rows(source: &DataSource, columns: Columns<'_>) -> Result<TableRows, TableError> {
    match source {
        DataSource::Csv { path } => read_csv(path, columns),
        DataSource::Sqlite { path, table } => read_sqlite(path, table, columns).await,
        DataSource::Postgres { url, table } => read_postgres(url, table, columns).await,
        DataSource::Builtin { dataset, .. } => Err(TableError::Unsupported {
            what: format!("the bundled {dataset:?} data set"),
            why: "a training spec reads the client's own CSV, SQLite or PostgreSQL table; \
                  bundled sets train with `sealroom train --dataset`"
                .into(),
        }),
    }
}

/// Collects rows as they are read, then builds [`TableRows`].
struct Builder<'a> {
    columns: Columns<'a>,
    location: String,
    row_kind: &'static str,
    x: Vec<f64>,
    classes: Vec<usize>,
    values: Vec<f64>,
}

impl Drop for Builder<'_> {
    fn drop(&mut self) {
        self.x.zeroize();
        self.values.zeroize();
        self.classes.iter_mut().for_each(|v| *v = 0);
    }
}

impl<'a> Builder<'a> {
    fn new(columns: Columns<'a>, location: String, row_kind: &'static str) -> Self {
        Builder {
            columns,
            location,
            row_kind,
            x: Vec::new(),
            classes: Vec::new(),
            values: Vec::new(),
        }
    }

    fn bad(&self, row: u64, column: &str, problem: &'static str) -> TableError {
        TableError::BadValue {
            location: self.location.clone(),
            row_kind: self.row_kind,
            row,
            column: column.to_string(),
            problem,
        }
    }

    fn rows(&self) -> usize {
        self.classes.len().max(self.values.len())
    }

    /// Adds one row: the label as text (a classifier) or number, then the
    /// features in order (`None` for a missing value).
    fn push(
        &mut self,
        row: u64,
        label: Option<&str>,
        label_value: Option<f64>,
        features: impl Iterator<Item = Option<f64>>,
    ) -> Result<(), TableError> {
        if self.rows() >= MAX_ROWS {
            return Err(TableError::RowCount {
                location: self.location.clone(),
                rows: MAX_ROWS + 1,
            });
        }
        let label_column = self.columns.label;
        match self.columns.classes {
            Some(domain) => {
                let text = label.ok_or_else(|| self.bad(row, label_column, MISSING))?;
                let class = domain
                    .iter()
                    .position(|c| c.trim() == text.trim())
                    .ok_or_else(|| self.bad(row, label_column, OUTSIDE_DOMAIN))?;
                self.classes.push(class);
            }
            None => {
                let v = label_value.ok_or_else(|| self.bad(row, label_column, MISSING))?;
                if !v.is_finite() {
                    return Err(self.bad(row, label_column, NOT_A_NUMBER));
                }
                self.values.push(v);
            }
        }
        for (i, value) in features.enumerate() {
            let column = &self.columns.features[i];
            let v = value.ok_or_else(|| self.bad(row, column, MISSING))?;
            if !v.is_finite() {
                return Err(self.bad(row, column, NOT_A_NUMBER));
            }
            self.x.push(v);
        }
        Ok(())
    }

    fn finish(mut self) -> Result<TableRows, TableError> {
        let rows = self.rows();
        if rows == 0 {
            return Err(TableError::RowCount {
                location: self.location.clone(),
                rows,
            });
        }
        let width = self.columns.features.len();
        let x =
            Array2::from_shape_vec((rows, width), std::mem::take(&mut self.x)).map_err(|_| {
                TableError::Source {
                    location: self.location.clone(),
                    operation: "assembling the rows",
                    why: "rows of unequal width".into(),
                }
            })?;
        let labels = match self.columns.classes {
            Some(_) => Labels::Classes(Array1::from(std::mem::take(&mut self.classes))),
            None => Labels::Values(Array1::from(std::mem::take(&mut self.values))),
        };
        let out = TableRows { x, labels };
        debug_assert_eq!(out.labels.len(), out.n_rows());
        Ok(out)
    }
}

fn missing_column(location: &str, column: &str, header: &[String]) -> TableError {
    TableError::MissingColumn {
        location: location.to_string(),
        column: column.to_string(),
        available: header.join(", "),
    }
}

/// Position of each wanted column in `header` (exact match first, then
/// ASCII case-insensitive, as SQL identifiers in the query layer).
fn positions(location: &str, header: &[String], wanted: &[&str]) -> Result<Vec<usize>, TableError> {
    wanted
        .iter()
        .map(|&w| {
            header
                .iter()
                .position(|h| h == w)
                .or_else(|| header.iter().position(|h| h.eq_ignore_ascii_case(w)))
                .ok_or_else(|| missing_column(location, w, header))
        })
        .collect()
}

fn wanted<'a>(columns: &Columns<'a>) -> Vec<&'a str> {
    std::iter::once(columns.label)
        .chain(columns.features.iter().map(String::as_str))
        .collect()
}

fn read_csv(path: &Path, columns: Columns<'_>) -> Result<TableRows, TableError> {
    let location = path.display().to_string();
    let source = |operation: &'static str| {
        let location = location.clone();
        move |e: csv::Error| TableError::Source {
            location,
            operation,
            // csv's messages name positions and UTF-8 problems, never fields.
            why: match e.kind() {
                csv::ErrorKind::Io(io) => io.to_string(),
                csv::ErrorKind::Utf8 { pos, .. } => format!(
                    "invalid UTF-8 at line {}",
                    pos.as_ref().map_or(0, |p| p.line())
                ),
                csv::ErrorKind::UnequalLengths {
                    pos,
                    expected_len,
                    len,
                } => format!(
                    "line {} has {len} fields, the header {expected_len}",
                    pos.as_ref().map_or(0, |p| p.line())
                ),
                _ => "malformed CSV".into(),
            },
        }
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(source("opening the file"))?;
    let header: Vec<String> = reader
        .headers()
        .map_err(source("reading the header"))?
        .iter()
        .map(str::to_string)
        .collect();
    let at = positions(&location, &header, &wanted(&columns))?;
    let mut builder = Builder::new(columns, location.clone(), "line");
    let mut record = csv::StringRecord::new();
    while reader
        .read_record(&mut record)
        .map_err(source("reading a row"))?
    {
        let line = record.position().map_or(0, |p| p.line());
        let field = |i: usize| record.get(i).filter(|f| !f.is_empty());
        let number = |i: usize| field(i).map(|f| f64::from_str(f).unwrap_or(f64::NAN));
        let label = field(at[0]);
        let label_value = number(at[0]);
        let features: Vec<Option<f64>> = at[1..].iter().map(|&i| number(i)).collect();
        let pushed = builder.push(line, label, label_value, features.iter().copied());
        record.clear();
        pushed?;
    }
    builder.finish()
}

/// Quotes an SQL identifier (`"` doubled), as the query layer does.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

async fn read_sqlite(
    path: &Path,
    table: &str,
    columns: Columns<'_>,
) -> Result<TableRows, TableError> {
    let location = path.display().to_string();
    let source = |operation: &'static str| {
        let location = location.clone();
        move |e: sqlx::Error| TableError::Source {
            location,
            operation,
            why: e.to_string(),
        }
    };
    if !path.is_file() {
        return Err(TableError::Source {
            location,
            operation: "opening the database",
            why: "no such file".into(),
        });
    }
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .create_if_missing(false)
        .pragma("query_only", "ON")
        .disable_statement_logging()
        .connect()
        .await
        .map_err(source("opening the database"))?;
    let header: Vec<String> = sqlx::query("SELECT name FROM pragma_table_info(?1) ORDER BY cid")
        .bind(table)
        .fetch_all(&mut conn)
        .await
        .map_err(source("reading the table's columns"))?
        .iter()
        .map(|r| r.try_get::<String, _>(0))
        .collect::<Result<_, _>>()
        .map_err(source("reading the table's columns"))?;
    if header.is_empty() {
        return Err(TableError::Source {
            location: location.clone(),
            operation: "opening the table",
            why: format!("no table {table:?}"),
        });
    }
    let names = wanted(&columns);
    let at = positions(&location, &header, &names)?;
    let resolved: Vec<&str> = at.iter().map(|&i| header[i].as_str()).collect();
    // SQLite's CAST turns text into 0 silently, so numbers are selected with
    // typeof: a value that is not an integer or real comes back NULL.
    let list = resolved
        .iter()
        .map(|c| {
            let c = ident(c);
            format!(
                "CASE WHEN typeof({c}) IN ('integer', 'real') THEN CAST({c} AS REAL) END, \
                 CASE WHEN typeof({c}) = 'null' THEN NULL ELSE CAST({c} AS TEXT) END"
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!("SELECT {list} FROM {}", ident(table));
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(&mut conn)
        .await
        .map_err(source("reading the rows"))?;
    let _ = conn.close().await;
    let mut builder = Builder::new(columns, location.clone(), "row");
    for (r, row) in rows.iter().enumerate() {
        let real = |i: usize| row.try_get::<Option<f64>, _>(2 * i).ok().flatten();
        let text = |i: usize| row.try_get::<Option<String>, _>(2 * i + 1).ok().flatten();
        let number = |i: usize| match (real(i), text(i)) {
            (Some(v), _) => Some(v),
            (None, Some(_)) => Some(f64::NAN),
            (None, None) => None,
        };
        let label = text(0);
        let features: Vec<Option<f64>> = (1..resolved.len()).map(number).collect();
        builder.push(
            r as u64 + 1,
            label.as_deref(),
            number(0),
            features.into_iter(),
        )?;
    }
    builder.finish()
}

async fn read_postgres(
    url: &str,
    table: &str,
    columns: Columns<'_>,
) -> Result<TableRows, TableError> {
    let location = redact_url(url);
    let source = |operation: &'static str| {
        let location = location.clone();
        // PostgreSQL's messages can quote a value (a failed cast): only the
        // error's kind is kept.
        move |e: sqlx::Error| TableError::Source {
            location,
            operation,
            why: match &e {
                sqlx::Error::Database(db) => format!(
                    "the database refused the statement (SQLSTATE {})",
                    db.code().unwrap_or_default()
                ),
                other => other.to_string(),
            },
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
    let header: Vec<String> = sqlx::query(
        "SELECT a.attname::text FROM pg_catalog.pg_attribute a \
         WHERE a.attrelid = to_regclass($1::text) AND a.attnum > 0 AND NOT a.attisdropped \
         ORDER BY a.attnum",
    )
    .bind(&table_sql)
    .fetch_all(&mut conn)
    .await
    .map_err(source("reading the table's columns"))?
    .iter()
    .map(|r| r.try_get::<String, _>(0))
    .collect::<Result<_, _>>()
    .map_err(source("reading the table's columns"))?;
    if header.is_empty() {
        return Err(TableError::Source {
            location: location.clone(),
            operation: "opening the table",
            why: format!("no table {table:?}"),
        });
    }
    let names = wanted(&columns);
    let at = positions(&location, &header, &names)?;
    let resolved: Vec<&str> = at.iter().map(|&i| header[i].as_str()).collect();
    // The label as text (classifiers) or a number; features as numbers. A
    // text column that holds a non-number fails the cast: only the error
    // code comes back (see `source`).
    let label_type = if columns.classes.is_some() {
        "text"
    } else {
        "double precision"
    };
    let list = std::iter::once(format!("CAST({} AS {label_type})", ident(resolved[0])))
        .chain(
            resolved[1..]
                .iter()
                .map(|c| format!("CAST({} AS double precision)", ident(c))),
        )
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!("SELECT {list} FROM {table_sql}");
    let mut tx = conn
        .begin()
        .await
        .map_err(source("starting a transaction"))?;
    sqlx::query("SET TRANSACTION READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(source("starting a read-only transaction"))?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(&mut *tx)
        .await
        .map_err(source(
            "reading the rows (are the feature columns numeric?)",
        ))?;
    let _ = tx.rollback().await;
    let mut builder = Builder::new(columns, location.clone(), "row");
    for (r, row) in rows.iter().enumerate() {
        let real = |i: usize| row.try_get::<Option<f64>, _>(i).ok().flatten();
        let label = match columns.classes {
            Some(_) => row.try_get::<Option<String>, _>(0).ok().flatten(),
            None => None,
        };
        let features: Vec<Option<f64>> = (1..resolved.len()).map(real).collect();
        builder.push(
            r as u64 + 1,
            label.as_deref(),
            real(0),
            features.into_iter(),
        )?;
    }
    builder.finish()
}

/// `postgres://user:secret@host/db` → `postgres://user@host/db`.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{}{}", &url[..scheme + 3], user, &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(text: &str) -> (tempfile::TempDir, DataSource) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, text).unwrap();
        (dir, DataSource::Csv { path })
    }

    fn features(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    async fn read(text: &str, classes: Option<&[String]>) -> Result<TableRows, TableError> {
        let (_dir, source) = csv(text);
        let f = features(&["a", "b"]);
        read_rows(
            &source,
            Columns {
                label: "y",
                features: &f,
                classes,
            },
        )
        .await
    }

    #[tokio::test]
    async fn csv_rows_and_classes() {
        let classes = features(&["no", "yes"]);
        let rows = read("b,y,a\n1,yes,2\n3.5, no ,4\n", Some(&classes))
            .await
            .unwrap();
        assert_eq!(rows.x, ndarray::array![[2.0, 1.0], [4.0, 3.5]]);
        assert!(rows.labels == Labels::Classes(ndarray::array![1, 0]));
        let rows = read("a,b,y\n1,2,0.5\n", None).await.unwrap();
        assert!(rows.labels == Labels::Values(ndarray::array![0.5]));
        assert!(!format!("{rows:?}").contains("0.5"));
    }

    /// Bad tables are refused naming the column and line, never a value.
    #[tokio::test]
    async fn bad_tables_name_column_and_line() {
        let classes = features(&["no", "yes"]);
        let cases: &[(&str, Option<&[String]>, &str)] = &[
            ("a,b\n1,2\n", Some(&classes), "no column \"y\""),
            (
                "a,b,y\n1,,yes\n",
                Some(&classes),
                "line 2: column \"b\" is empty",
            ),
            (
                "a,b,y\n1,2,yes\n7,secret,no\n",
                Some(&classes),
                "line 3: column \"b\" is not a finite number",
            ),
            (
                "a,b,y\n1,NaN,yes\n",
                Some(&classes),
                "column \"b\" is not a finite number",
            ),
            (
                "a,b,y\n1,inf,yes\n",
                Some(&classes),
                "column \"b\" is not a finite number",
            ),
            (
                "a,b,y\n1,2,maybe\n",
                Some(&classes),
                "column \"y\" holds a label outside",
            ),
            (
                "a,b,y\n1,2,yes\n",
                None,
                "column \"y\" is not a finite number",
            ),
            ("a,b,y\n1,2\n", Some(&classes), "line 2 has 2 fields"),
            ("a,b,y\n", Some(&classes), "0 rows"),
        ];
        for (text, classes, expected) in cases {
            let err = read(text, *classes).await.unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
            assert!(!err.contains("secret") && !err.contains("maybe"), "{err}");
        }
        let missing = read_rows(
            &DataSource::Csv {
                path: "/nonexistent/t.csv".into(),
            },
            Columns {
                label: "y",
                features: &features(&["a"]),
                classes: None,
            },
        )
        .await
        .unwrap_err();
        assert!(
            missing.to_string().contains("/nonexistent/t.csv"),
            "{missing}"
        );
    }

    #[tokio::test]
    async fn sqlite_rows_refuse_text_in_a_number_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut conn = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .connect()
            .await
            .unwrap();
        for sql in [
            "CREATE TABLE t (a REAL, b INTEGER, y TEXT)",
            "INSERT INTO t VALUES (1.5, 2, 'yes'), (3, 4, 'no')",
        ] {
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
        let classes = features(&["no", "yes"]);
        let f = features(&["a", "b"]);
        let source = DataSource::Sqlite {
            path: path.clone(),
            table: "t".into(),
        };
        let cols = Columns {
            label: "y",
            features: &f,
            classes: Some(&classes),
        };
        let rows = read_rows(&source, cols).await.unwrap();
        assert_eq!(rows.x, ndarray::array![[1.5, 2.0], [3.0, 4.0]]);
        assert!(rows.labels == Labels::Classes(ndarray::array![1, 0]));
        sqlx::query("INSERT INTO t VALUES ('secret', 1, 'no'), (NULL, 1, 'no')")
            .execute(&mut conn)
            .await
            .unwrap();
        let err = read_rows(&source, cols).await.unwrap_err().to_string();
        assert!(
            err.contains("row 3: column \"a\" is not a finite number"),
            "{err}"
        );
        assert!(!err.contains("secret"));
        let err = read_rows(
            &DataSource::Sqlite {
                path,
                table: "nope".into(),
            },
            cols,
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("no table \"nope\""), "{err}");
    }

    #[test]
    fn split_is_deterministic_and_disjoint() {
        let rows = TableRows {
            x: Array2::from_shape_fn((10, 1), |(r, _)| r as f64),
            labels: Labels::Values(Array1::from_iter((0..10).map(f64::from))),
        };
        let (train, val) = rows.split(0.3, 5).unwrap();
        assert_eq!((train.n_rows(), val.n_rows()), (7, 3));
        let mut all: Vec<f64> = train.x.iter().chain(val.x.iter()).copied().collect();
        all.sort_by(f64::total_cmp);
        assert_eq!(all, (0..10).map(f64::from).collect::<Vec<_>>());
        let (train2, _) = rows.split(0.3, 5).unwrap();
        assert!(train == train2);
        assert!(rows.split(1.0, 5).is_err());
        let (train, val) = rows.split(0.0, 5).unwrap();
        assert_eq!((train.n_rows(), val.n_rows()), (10, 0));
    }
}
