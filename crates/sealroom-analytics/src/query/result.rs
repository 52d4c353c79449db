//! The published result of a joint query: one row per cell, every cell a
//! value, a SQL NULL with its reason, or suppressed with its reason.

use core::fmt;

use serde::Serialize;

/// A joint query's result. Rows come in domain order (the "(other)" cell of a
/// GROUP BY column last); group columns come before value columns.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QueryResult {
    /// Names of the GROUP BY columns (empty without GROUP BY).
    pub group_columns: Vec<String>,
    /// Names of the value columns, in SELECT order.
    pub columns: Vec<String>,
    /// One row per cell.
    pub rows: Vec<ResultRow>,
    /// The declared bounds the query applied: each client clamped these
    /// columns' values to them, so every statistic is a function of values
    /// within them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bounds: Vec<ColumnBounds>,
    /// Set when every value carries differential-privacy noise (the
    /// values are estimates; see `query::dp`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privacy: Option<PrivacyNote>,
}

/// The differential-privacy guarantee a result was released under.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PrivacyNote {
    /// ε of the whole release, for one row of a client's table.
    pub epsilon: f64,
    /// δ of the whole release.
    pub delta: f64,
    /// How the noise was generated and accounted.
    pub mechanism: String,
}

/// A column's declared bounds, as the result states them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ColumnBounds {
    /// The column.
    pub column: String,
    /// Lower bound.
    pub lo: f64,
    /// Upper bound.
    pub hi: f64,
}

/// One cell of the GROUP BY domains and its values.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ResultRow {
    /// The cell's value along each GROUP BY column.
    pub group: Vec<GroupKey>,
    /// One entry per value column.
    pub cells: Vec<Cell>,
    /// Released cells: how many of the cell's rows had a value outside its
    /// column's declared bounds (clamped), plus local sums that reached the
    /// encoding's range (saturated). `None` for a suppressed cell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adjusted: Option<u64>,
}

/// A cell's position along one GROUP BY column.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupKey {
    /// A value declared in the domain.
    Value(String),
    /// Every value outside the domain, and NULL. Never names what it holds.
    Other,
}

impl GroupKey {
    /// A declared domain value.
    pub fn value(v: impl Into<String>) -> GroupKey {
        GroupKey::Value(v.into())
    }
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupKey::Value(v) => f.write_str(v),
            GroupKey::Other => f.write_str("(other)"),
        }
    }
}

/// One value of the result.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cell {
    /// The aggregate's value.
    Value(f64),
    /// SQL NULL: the cell was released but the aggregate is undefined there.
    Null {
        /// Why it is undefined.
        reason: NullReason,
    },
    /// The cell failed the privacy threshold; nothing about its values is
    /// published.
    Suppressed {
        /// Which threshold failed.
        reason: SuppressReason,
    },
}

impl Cell {
    /// The value, if the cell has one.
    pub fn value(&self) -> Option<f64> {
        match self {
            Cell::Value(v) => Some(*v),
            _ => None,
        }
    }
}

/// Why a released aggregate is NULL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NullReason {
    /// No non-NULL value in the cell (SUM, AVG, VAR over nothing).
    NoValues,
    /// Too few values (a sample variance of one value).
    TooFewValues,
    /// A variable does not vary (within the encoding's resolution), so a
    /// slope or correlation is undefined.
    ZeroVariance,
    /// OLS: the regressors are collinear, or the cell has fewer rows than
    /// coefficients.
    Singular,
    /// MIN/MAX/MEDIAN/PERCENTILE_CONT: a client holds more than
    /// `max_rows_per_client` non-NULL values of the expression in this cell,
    /// so the order round would not see all of them.
    TooManyRowsPerClient,
    /// MIN/MAX/MEDIAN/PERCENTILE_CONT: the order round has not run (yet) for
    /// this cell.
    OrderPending,
    /// MIN/MAX/MEDIAN/PERCENTILE_CONT: the order round's result lies outside
    /// the expression's bounds, so its inputs did not match the counts of
    /// the statistics round (the data changed between the rounds, a client
    /// dropped out, or a client sent values outside the bounds).
    OrderInconsistent,
}

impl NullReason {
    fn short(&self) -> &'static str {
        match self {
            NullReason::NoValues => "NULL",
            NullReason::TooFewValues => "NULL (too few values)",
            NullReason::ZeroVariance => "NULL (no variance)",
            NullReason::Singular => "NULL (singular)",
            NullReason::TooManyRowsPerClient => {
                "NULL (a client holds more than max_rows_per_client values)"
            }
            NullReason::OrderPending => "NULL (order round not run)",
            NullReason::OrderInconsistent => "NULL (order round inconsistent with the counts)",
        }
    }
}

/// Which release threshold a cell failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "threshold", rename_all = "snake_case")]
pub enum SuppressReason {
    /// Fewer than `min_clients` clients have rows in the cell.
    TooFewClients {
        /// The threshold.
        min_clients: u32,
    },
    /// Fewer than `min_rows` rows in the cell.
    TooFewRows {
        /// The threshold.
        min_rows: u64,
    },
}

impl fmt::Display for SuppressReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SuppressReason::TooFewClients { min_clients } => {
                write!(f, "suppressed (<{min_clients} clients)")
            }
            SuppressReason::TooFewRows { min_rows } => write!(f, "suppressed (<{min_rows} rows)"),
        }
    }
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cell::Value(v) => write!(f, "{}", format_number(*v)),
            Cell::Null { reason } => f.write_str(reason.short()),
            Cell::Suppressed { reason } => write!(f, "{reason}"),
        }
    }
}

/// Integers without decimals, other values with four.
fn format_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.4}")
    }
}

impl QueryResult {
    /// The cell at the row whose group keys are `group` and the column named
    /// `column`.
    pub fn cell(&self, group: &[GroupKey], column: &str) -> Option<&Cell> {
        let col = self.columns.iter().position(|c| c == column)?;
        self.rows.iter().find(|r| r.group == group)?.cells.get(col)
    }

    /// A plain-text table with aligned columns: labels left-aligned, values
    /// right-aligned, suppressed cells shown as e.g. `suppressed (<3 clients)`.
    /// When a released cell had values outside the declared bounds, an
    /// `(adjusted)` column counts them; the bounds follow the table.
    pub fn render_table(&self) -> String {
        let show_adjusted = self.rows.iter().any(|r| r.adjusted.is_some_and(|a| a > 0));
        let mut header: Vec<String> = self
            .group_columns
            .iter()
            .chain(&self.columns)
            .cloned()
            .collect();
        if show_adjusted {
            header.push("(adjusted)".into());
        }
        let groups = self.group_columns.len();
        let body: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                let adjusted = show_adjusted
                    .then(|| r.adjusted.map_or_else(|| "-".to_owned(), |a| a.to_string()));
                r.group
                    .iter()
                    .map(ToString::to_string)
                    .chain(r.cells.iter().map(ToString::to_string))
                    .chain(adjusted)
                    .collect()
            })
            .collect();
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for row in &body {
            for (w, v) in widths.iter_mut().zip(row) {
                *w = (*w).max(v.chars().count());
            }
        }
        let line = |cells: &[String], out: &mut String| {
            let parts: Vec<String> = cells
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(i, (c, &w))| {
                    if i < groups {
                        format!("{c:<w$}")
                    } else {
                        format!("{c:>w$}")
                    }
                })
                .collect();
            out.push_str(parts.join("  ").trim_end());
            out.push('\n');
        };
        let mut out = String::new();
        line(&header, &mut out);
        let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
        line(&rule, &mut out);
        for row in &body {
            line(row, &mut out);
        }
        if !self.bounds.is_empty() {
            let bounds: Vec<String> = self
                .bounds
                .iter()
                .map(|b| format!("{} in [{}, {}]", b.column, b.lo, b.hi))
                .collect();
            out.push_str(&format!(
                "bounds: {} (values outside were clamped)\n",
                bounds.join(", ")
            ));
        }
        if let Some(p) = &self.privacy {
            out.push_str(&format!(
                "differential privacy: ε = {}, δ = {:e} per row of each client's table; every value and every suppression decision comes from noised sums (noise generated inside the MPC engine)\n",
                p.epsilon, p.delta
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_aligned_and_shows_suppression() {
        let result = QueryResult {
            privacy: None,
            group_columns: vec!["dept".into()],
            columns: vec!["n".into(), "avg".into()],
            rows: vec![
                ResultRow {
                    group: vec![GroupKey::value("eng")],
                    cells: vec![Cell::Value(12.0), Cell::Value(101_234.567_8)],
                    adjusted: Some(0),
                },
                ResultRow {
                    group: vec![GroupKey::Other],
                    cells: vec![
                        Cell::Suppressed {
                            reason: SuppressReason::TooFewClients { min_clients: 3 },
                        },
                        Cell::Null {
                            reason: NullReason::NoValues,
                        },
                    ],
                    adjusted: None,
                },
            ],
            bounds: Vec::new(),
        };
        let table = result.render_table();
        let expected = "\
dept                           n          avg
-------  -----------------------  -----------
eng                           12  101234.5678
(other)  suppressed (<3 clients)         NULL
";
        assert_eq!(table, expected);
        assert_eq!(
            result.cell(&[GroupKey::value("eng")], "avg"),
            Some(&Cell::Value(101_234.567_8))
        );
        assert_eq!(result.cell(&[GroupKey::value("hr")], "avg"), None);
    }

    #[test]
    fn json_names_every_state() {
        let row = ResultRow {
            group: vec![GroupKey::Other],
            cells: vec![
                Cell::Value(1.5),
                Cell::Null {
                    reason: NullReason::Singular,
                },
                Cell::Suppressed {
                    reason: SuppressReason::TooFewRows { min_rows: 5 },
                },
            ],
            adjusted: None,
        };
        let json = serde_json::to_string(&row).expect("serializes");
        assert_eq!(
            json,
            r#"{"group":["other"],"cells":[{"value":1.5},{"null":{"reason":"singular"}},{"suppressed":{"reason":{"threshold":"too_few_rows","min_rows":5}}}]}"#
        );
    }
}
