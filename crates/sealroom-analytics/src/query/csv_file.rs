//! CSV files: loaded into an in-memory SQLite table, then evaluated by the
//! same SQL path as a SQLite file.
//!
//! The header row names the columns (unique, case-insensitively, as SQLite
//! requires). Fields are trimmed; an empty field is NULL. A column whose
//! non-empty fields all parse as integers is INTEGER, as finite numbers REAL,
//! otherwise TEXT — and the line of its first non-numeric field is kept, so
//! using it as a number fails with that line. A ragged row or invalid UTF-8
//! is refused with its line; the message never quotes a field.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{AssertSqlSafe, ConnectOptions as _, Connection as _};
use zeroize::Zeroize;

use super::error::QueryError;
use super::source::{ColumnInfo, Numeric, check_file};
use super::sql::ident;

/// Name of the in-memory table a CSV file is loaded into.
pub(crate) const TABLE: &str = "data";

#[derive(Clone, Copy, PartialEq, Eq)]
enum ColumnType {
    Integer,
    Real,
    Text,
}

/// The parsed file: header, trimmed fields and each record's line.
struct Parsed {
    header: Vec<String>,
    fields: Vec<String>,
    lines: Vec<u64>,
}

impl Drop for Parsed {
    fn drop(&mut self) {
        self.fields.zeroize();
    }
}

/// Loads `path` into a fresh in-memory SQLite database, switched to
/// `query_only` once loaded.
pub(crate) async fn load(path: &Path) -> Result<(SqliteConnection, Vec<ColumnInfo>), QueryError> {
    check_file(path).await?;
    let owned = path.to_path_buf();
    let parsed = tokio::task::spawn_blocking(move || parse(&owned))
        .await
        .map_err(|e| QueryError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })??;
    let width = parsed.header.len();
    let mut types = vec![None::<ColumnType>; width];
    let mut first_text = vec![None::<u64>; width];
    for (r, record) in parsed.fields.chunks_exact(width).enumerate() {
        for (c, field) in record.iter().enumerate() {
            if field.is_empty() {
                continue;
            }
            let t = if field.parse::<i64>().is_ok() {
                ColumnType::Integer
            } else if f64::from_str(field).is_ok_and(f64::is_finite) {
                ColumnType::Real
            } else {
                ColumnType::Text
            };
            if t == ColumnType::Text && first_text[c].is_none() {
                first_text[c] = parsed.lines.get(r).copied();
            }
            types[c] = Some(match (types[c], t) {
                (None, t) => t,
                (Some(ColumnType::Text), _) | (_, ColumnType::Text) => ColumnType::Text,
                (Some(ColumnType::Real), _) | (_, ColumnType::Real) => ColumnType::Real,
                _ => ColumnType::Integer,
            });
        }
    }
    // An all-empty column holds only NULLs: numeric as far as SQL cares.
    let types: Vec<ColumnType> = types
        .into_iter()
        .map(|t| t.unwrap_or(ColumnType::Real))
        .collect();

    let source = |operation| {
        let location = path.display().to_string();
        move |source| QueryError::Source {
            operation,
            location,
            source,
        }
    };
    let options = SqliteConnectOptions::from_str("sqlite::memory:")
        .map_err(source("creating the in-memory table"))?
        .disable_statement_logging();
    let mut conn = options
        .connect()
        .await
        .map_err(source("creating the in-memory table"))?;
    let defs: Vec<String> = parsed
        .header
        .iter()
        .zip(&types)
        .map(|(name, t)| {
            let ty = match t {
                ColumnType::Integer => "INTEGER",
                ColumnType::Real => "REAL",
                ColumnType::Text => "TEXT",
            };
            format!("{} {ty}", ident(name))
        })
        .collect();
    let create = format!("CREATE TABLE {} ({})", ident(TABLE), defs.join(", "));
    sqlx::query(AssertSqlSafe(create))
        .execute(&mut conn)
        .await
        .map_err(source("creating the in-memory table"))?;
    let placeholders = vec!["?"; width].join(", ");
    let insert = format!("INSERT INTO {} VALUES ({placeholders})", ident(TABLE));
    let mut tx = conn.begin().await.map_err(source("loading the rows"))?;
    for record in parsed.fields.chunks_exact(width) {
        let mut q = sqlx::query(AssertSqlSafe(insert.as_str()));
        for (field, t) in record.iter().zip(&types) {
            q = match (field.is_empty(), t) {
                (true, _) => q.bind(None::<String>),
                (false, ColumnType::Integer) => q.bind(field.parse::<i64>().ok()),
                (false, ColumnType::Real) => q.bind(f64::from_str(field).ok()),
                (false, ColumnType::Text) => q.bind(field.as_str()),
            };
        }
        q.execute(&mut *tx)
            .await
            .map_err(source("loading the rows"))?;
    }
    tx.commit().await.map_err(source("loading the rows"))?;
    sqlx::query("PRAGMA query_only = ON")
        .execute(&mut conn)
        .await
        .map_err(source("loading the rows"))?;
    let columns = parsed
        .header
        .iter()
        .zip(types)
        .zip(first_text)
        .map(|((name, t), line)| ColumnInfo {
            name: name.clone(),
            numeric: if t == ColumnType::Text {
                Numeric::No { line }
            } else {
                Numeric::Yes
            },
        })
        .collect();
    Ok((conn, columns))
}

fn malformed(path: &Path, line: u64, reason: impl Into<String>) -> QueryError {
    QueryError::Malformed {
        path: path.to_path_buf(),
        line,
        reason: reason.into(),
    }
}

fn parse(path: &PathBuf) -> Result<Parsed, QueryError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| read_error(path, e))?;
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| read_error(path, e))?
        .iter()
        .map(str::to_owned)
        .collect();
    if header.is_empty() || header.iter().all(String::is_empty) {
        return Err(malformed(path, 1, "the file has no header row"));
    }
    let mut seen = BTreeSet::new();
    for (i, name) in header.iter().enumerate() {
        if name.is_empty() || name.contains('\0') {
            return Err(malformed(
                path,
                1,
                format!("column {} has an empty or invalid name", i + 1),
            ));
        }
        if !seen.insert(name.to_lowercase()) {
            return Err(malformed(
                path,
                1,
                format!("column name {name:?} appears twice"),
            ));
        }
    }
    let mut parsed = Parsed {
        header,
        fields: Vec::new(),
        lines: Vec::new(),
    };
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                parsed
                    .lines
                    .push(record.position().map_or(0, csv::Position::line));
                parsed.fields.extend(record.iter().map(str::to_owned));
            }
            Err(e) => return Err(read_error(path, e)),
        }
    }
    Ok(parsed)
}

fn read_error(path: &Path, e: csv::Error) -> QueryError {
    let line = e.position().map_or(0, csv::Position::line);
    match e.into_kind() {
        csv::ErrorKind::Io(source) if source.kind() == std::io::ErrorKind::NotFound => {
            QueryError::NotFound {
                path: path.to_path_buf(),
            }
        }
        csv::ErrorKind::Io(source) => QueryError::Io {
            path: path.to_path_buf(),
            source,
        },
        csv::ErrorKind::UnequalLengths {
            pos,
            expected_len,
            len,
        } => malformed(
            path,
            pos.map_or(line, |p| p.line()),
            format!("the row has {len} fields, the header has {expected_len}"),
        ),
        csv::ErrorKind::Utf8 { pos, .. } => malformed(
            path,
            pos.map_or(line, |p| p.line()),
            "the row is not valid UTF-8",
        ),
        _ => malformed(path, line, "the row cannot be read"),
    }
}
