//! A client's durable differential-privacy budget ledger, one budget per
//! table (issue #15).
//!
//! **Privacy unit.** One row of the client's table: a table's budget
//! `(ε, δ)` bounds how much everything released about that table, together,
//! can depend on any single row of it.
//!
//! **Composition.** Basic (sequential) composition: the releases charged
//! against a table cost `Σε` and `Σδ` together (Dwork & Roth, *The
//! Algorithmic Foundations of Differential Privacy*, 2014, Theorem 3.16). It
//! is conservative (advanced composition or Rényi accounting would admit
//! more releases) and valid for any mix of `(ε, δ)`-DP mechanisms, so the
//! ledger needs to know nothing about the mechanism beyond its name, which
//! it records for the audit.
//!
//! **When a release is charged.** Before the client shares anything for it:
//! [`Ledger::charge`] commits the charge durably (SQLite, WAL,
//! `synchronous = FULL`) and only then may the client's shares leave. A
//! release that later aborts still counts, since its shares may already be
//! with the helpers, and a crash between the charge and the upload costs
//! budget rather than privacy.
//!
//! **Idempotency.** A release is named by a unique id (the round and the
//! digest of its signed descriptor). Charging the same id twice for a table,
//! as a retried or re-sent round does, costs once; charging it again at
//! other `(ε, δ)` is refused ([`BudgetError::ReleaseMismatch`]).
//!
//! **Rounding.** Floating sums of small ε do not add up exactly (ten
//! releases of 0.1 sum to 0.9999999999999999, other sequences to a hair
//! above the total), so a charge is refused only when `spent + asked` exceeds
//! the limit by more than the relative [`TOLERANCE`] of `1e-9`: at most a
//! billionth of the budget, far below any privacy meaning, and far above the
//! rounding error of even millions of additions (about `2⁻⁵³` each).
//!
//! Every value read back from the file is checked (finite, within range);
//! an edited or damaged ledger is a [`BudgetError::Corrupt`], never a panic
//! and never an accepted NaN. The ledger holds no row data: only table
//! names, release ids, mechanism names, round ids, times and `(ε, δ)`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sealroom_node::config::{NodeConfig, TableBudget};
use sealroom_node::tasks::InputError;
use sealroom_protocol::VerifiedDescriptor;
use sealroom_protocol::pb::SitOutReason;
use serde::{Deserialize, Serialize};
use sqlx::Row as _;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

/// Relative slack of the budget check: a charge is refused when
/// `spent + asked > limit · (1 + TOLERANCE)`, in ε or in δ (see the module
/// doc, "Rounding").
pub const TOLERANCE: f64 = 1e-9;

/// The file name of a client's ledger in its `data_dir`.
pub const LEDGER_FILE: &str = "privacy-ledger.db";

/// Longest release id and mechanism name accepted, in bytes.
pub const MAX_LABEL_LEN: usize = 256;

/// A table's total budget: `ε` finite and above 0, `δ` finite in `[0, 1)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Total ε.
    pub epsilon: f64,
    /// Total δ.
    pub delta: f64,
}

impl Budget {
    /// A budget, if `epsilon` is finite and above 0 and `delta` finite in
    /// `[0, 1)`.
    pub fn new(epsilon: f64, delta: f64) -> Result<Budget, BudgetError> {
        TableBudget { epsilon, delta }
            .check()
            .map_err(|(field, problem)| BudgetError::InvalidBudget { field, problem })?;
        Ok(Budget { epsilon, delta })
    }
}

/// One release to charge against a table.
#[derive(Clone, Debug, PartialEq)]
pub struct Charge {
    /// Unique id of the release, e.g. `round 17 <descriptor digest hex>`
    /// (at most [`MAX_LABEL_LEN`] bytes, not empty).
    pub release: String,
    /// The round that makes the release.
    pub round_id: u64,
    /// The mechanism, for people, e.g. `binomial (Dwork et al. 2006)`.
    pub mechanism: String,
    /// ε the release spends (finite, at least 0).
    pub epsilon: f64,
    /// δ the release spends (finite, in `[0, 1)`).
    pub delta: f64,
}

/// What a table has spent so far.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Spend {
    /// The table.
    pub table: String,
    /// Σε of its releases.
    pub epsilon: f64,
    /// Σδ of its releases.
    pub delta: f64,
    /// How many releases were charged.
    pub releases: u64,
}

/// One charged release, as recorded.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Release {
    /// The table charged.
    pub table: String,
    /// The release id.
    pub release: String,
    /// The round.
    pub round_id: u64,
    /// The mechanism.
    pub mechanism: String,
    /// ε charged.
    pub epsilon: f64,
    /// δ charged.
    pub delta: f64,
    /// When it was charged, Unix milliseconds.
    pub at_ms: u64,
}

/// The outcome of [`Ledger::charge`].
#[derive(Clone, Debug, PartialEq)]
pub enum Charged {
    /// The release was charged; the table's spend now.
    Charged(Spend),
    /// The release had been charged already and costs nothing more; the
    /// table's spend.
    AlreadyCharged(Spend),
}

impl Charged {
    /// The table's spend after the charge.
    pub fn spend(&self) -> &Spend {
        match self {
            Charged::Charged(s) | Charged::AlreadyCharged(s) => s,
        }
    }
}

/// What a client's queries need to enforce differential privacy: its
/// ledger file, its tables' budgets, and whether the federation requires DP.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientPrivacy {
    /// The ledger, `data_dir/privacy-ledger.db`.
    pub ledger: PathBuf,
    /// Each table's budget (`[privacy_budget.<table>]`); a table without
    /// one answers no DP query.
    pub budgets: BTreeMap<String, Budget>,
    /// `federation.toml` `[privacy] require_dp`: every SQL query must carry
    /// DP noise; the client refuses one without it.
    pub require_dp: bool,
}

impl ClientPrivacy {
    /// From a loaded node config (which has checked the budgets already;
    /// they are checked again here).
    pub fn from_config(config: &NodeConfig) -> Result<ClientPrivacy, BudgetError> {
        let budgets = config
            .privacy_budget
            .iter()
            .map(|(table, b)| Ok((table.clone(), Budget::new(b.epsilon, b.delta)?)))
            .collect::<Result<BTreeMap<_, _>, BudgetError>>()?;
        Ok(ClientPrivacy {
            ledger: config.data_dir.join(LEDGER_FILE),
            budgets,
            require_dp: config.federation.privacy.require_dp,
        })
    }
}

/// A client's ledger as its inputs share it: the budgets, the ledger file
/// (opened on the first charge and kept) and the federation's DP policy.
/// DP queries and DP table trainings charge the same budgets through it.
#[derive(Debug)]
pub struct PrivacyLedger {
    privacy: ClientPrivacy,
    ledger: tokio::sync::Mutex<Option<Ledger>>,
}

impl PrivacyLedger {
    /// The handle for `privacy` (nothing is opened yet).
    pub fn new(privacy: ClientPrivacy) -> PrivacyLedger {
        PrivacyLedger {
            privacy,
            ledger: tokio::sync::Mutex::new(None),
        }
    }

    /// Whether the federation requires every release to be DP.
    pub fn require_dp(&self) -> bool {
        self.privacy.require_dp
    }

    /// The refusal of a client that keeps no ledger.
    pub fn no_ledger(table: &str) -> InputError {
        InputError::new(
            SitOutReason::BudgetExhausted,
            table,
            "this client keeps no privacy ledger, so it takes part in no differentially private release",
        )
    }

    /// Charges a DP release's `(ε, δ)` to `table`, durably, before
    /// anything is shared (the release id is the round and its descriptor's
    /// digest); refuses it over the table's budget or on a table without a
    /// budget. The same round charged again (a retried upload) costs once.
    pub async fn charge(
        &self,
        descriptor: &VerifiedDescriptor,
        table: &str,
        mechanism: &str,
        epsilon: f64,
        delta: f64,
    ) -> Result<(), InputError> {
        let exhausted =
            |detail: String| InputError::new(SitOutReason::BudgetExhausted, table, detail);
        let limit = *self.privacy.budgets.get(table).ok_or_else(|| {
            exhausted(format!(
                "table {table:?} has no privacy budget; set [privacy_budget.{table}] epsilon and delta in this client's config to take part in differentially private releases over it"
            ))
        })?;
        let failed =
            |e: BudgetError| InputError::new(SitOutReason::InputFailed, table, e.to_string());
        let mut ledger = self.ledger.lock().await;
        if ledger.is_none() {
            *ledger = Some(Ledger::open(&self.privacy.ledger).await.map_err(failed)?);
        }
        let Some(ledger) = ledger.as_ref() else {
            return Err(InputError::new(
                SitOutReason::InputFailed,
                table,
                "the privacy ledger is not open",
            ));
        };
        let charge = Charge {
            release: format!(
                "round {} {}",
                descriptor.round_id(),
                hex::encode(descriptor.hash().0)
            ),
            round_id: descriptor.round_id(),
            mechanism: mechanism.into(),
            epsilon,
            delta,
        };
        match ledger.charge(table, limit, &charge).await {
            Ok(_) => Ok(()),
            Err(e @ (BudgetError::Exhausted { .. } | BudgetError::ReleaseMismatch { .. })) => {
                Err(exhausted(e.to_string()))
            }
            Err(e) => Err(failed(e)),
        }
    }
}

/// Why the ledger refused a charge or could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BudgetError {
    /// A budget out of range.
    #[error("privacy budget: {field} {problem}")]
    InvalidBudget {
        /// `epsilon` or `delta`.
        field: &'static str,
        /// What is wrong.
        problem: &'static str,
    },
    /// A charge out of range, or with an empty or over-long id or mechanism.
    #[error("release {release:?}: {why}")]
    InvalidCharge {
        /// The release id (truncated to [`MAX_LABEL_LEN`] bytes).
        release: String,
        /// What is wrong.
        why: String,
    },
    /// The release would take the table over its budget; nothing was
    /// recorded.
    #[error(
        "table {table:?}: this release needs ε = {}, δ = {}, but {} of ε = {} (δ {} of {}) is \
         already spent; the table's budget is exhausted for releases this size (see `sealroom \
         audit budget`; only the data owner's policy can raise [privacy_budget.{table}])",
        Num(*.asked_epsilon), Num(*.asked_delta), Num(*.spent_epsilon), Num(.limit.epsilon),
        Num(*.spent_delta), Num(.limit.delta)
    )]
    Exhausted {
        /// The table.
        table: String,
        /// ε spent before this release.
        spent_epsilon: f64,
        /// δ spent before this release.
        spent_delta: f64,
        /// ε this release asks.
        asked_epsilon: f64,
        /// δ this release asks.
        asked_delta: f64,
        /// The table's budget.
        limit: Budget,
    },
    /// The release id was charged before at other values: an id names one
    /// release, which cannot be re-charged at another ε or δ.
    #[error(
        "table {table:?}: release {release:?} was charged at ε = {}, δ = {}, and cannot be \
         charged again at ε = {}, δ = {}",
        Num(*.recorded_epsilon), Num(*.recorded_delta), Num(*.asked_epsilon), Num(*.asked_delta)
    )]
    ReleaseMismatch {
        /// The table.
        table: String,
        /// The release id.
        release: String,
        /// ε recorded for it.
        recorded_epsilon: f64,
        /// δ recorded for it.
        recorded_delta: f64,
        /// ε asked now.
        asked_epsilon: f64,
        /// δ asked now.
        asked_delta: f64,
    },
    /// The ledger file holds something no ledger writes: edited or damaged.
    /// Nothing is charged until it is repaired or restored.
    #[error("{}: the privacy ledger is corrupt: {why}", path.display())]
    Corrupt {
        /// The ledger file.
        path: PathBuf,
        /// What was found.
        why: String,
    },
    /// The ledger file cannot be created, opened, read or written.
    #[error("{}: privacy ledger: cannot {operation}: {source}", path.display())]
    Database {
        /// The ledger file.
        path: PathBuf,
        /// What was being done.
        operation: &'static str,
        /// The database error.
        source: sqlx::Error,
    },
    /// The ledger file cannot be created.
    #[error("{}: privacy ledger: cannot create: {source}", path.display())]
    Create {
        /// The ledger file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A client's ledger: one SQLite file, charged in `BEGIN IMMEDIATE`
/// transactions so that two charges never interleave.
#[derive(Clone, Debug)]
pub struct Ledger {
    pool: SqlitePool,
    path: PathBuf,
}

/// The ledger's schema version (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS dp_releases (
    table_name TEXT NOT NULL,
    release TEXT NOT NULL,
    round_id INTEGER NOT NULL CHECK (round_id >= 0),
    mechanism TEXT NOT NULL,
    epsilon REAL NOT NULL CHECK (epsilon >= 0),
    delta REAL NOT NULL CHECK (delta >= 0 AND delta < 1),
    at_ms INTEGER NOT NULL CHECK (at_ms >= 0),
    PRIMARY KEY (table_name, release)
) STRICT";

const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

impl Ledger {
    /// Opens the ledger at `path`, creating the file (mode 0600, parent
    /// directories too) and its schema if absent.
    pub async fn open(path: &Path) -> Result<Ledger, BudgetError> {
        create_private_file(path)?;
        let db = |operation| {
            let path = path.to_path_buf();
            move |source| BudgetError::Database {
                path,
                operation,
                source,
            }
        };
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(false)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .map_err(db("open"))?;
        let ledger = Ledger {
            pool,
            path: path.to_path_buf(),
        };
        let mut tx = ledger
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db("create the schema"))?;
        let version: i64 = sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(&mut *tx)
            .await
            .map_err(db("read the schema version"))?;
        match version {
            0 => {
                sqlx::query(SCHEMA)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("create the schema"))?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "PRAGMA user_version = {SCHEMA_VERSION}"
                )))
                .execute(&mut *tx)
                .await
                .map_err(db("create the schema"))?;
            }
            SCHEMA_VERSION => {}
            other => {
                return Err(ledger.corrupt(format!(
                    "schema version {other}, this sealroom knows {SCHEMA_VERSION}"
                )));
            }
        }
        tx.commit().await.map_err(db("create the schema"))?;
        Ok(ledger)
    }

    /// The ledger file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes the ledger's connections.
    pub async fn close(self) {
        self.pool.close().await;
    }

    /// Charges `charge` against `table`, whose budget is `limit`, in one
    /// `BEGIN IMMEDIATE` transaction:
    ///
    /// * a release id already recorded for `table` is not charged again:
    ///   [`Charged::AlreadyCharged`], or [`BudgetError::ReleaseMismatch`] if
    ///   it was recorded at another ε or δ;
    /// * a release that would take the table's Σε or Σδ over `limit` (beyond
    ///   [`TOLERANCE`]) is refused with [`BudgetError::Exhausted`] and
    ///   nothing is recorded;
    /// * otherwise it is recorded and committed durably before this returns
    ///   [`Charged::Charged`].
    pub async fn charge(
        &self,
        table: &str,
        limit: Budget,
        charge: &Charge,
    ) -> Result<Charged, BudgetError> {
        check_charge(charge)?;
        let round_id = i64::try_from(charge.round_id).map_err(|_| BudgetError::InvalidCharge {
            release: charge.release.clone(),
            why: format!("round id {} is beyond the ledger's range", charge.round_id),
        })?;
        let db = |operation| self.db(operation);
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db("begin a charge"))?;
        let rows = sqlx::query(
            "SELECT table_name, release, round_id, mechanism, epsilon, delta, at_ms \
             FROM dp_releases WHERE table_name = ?1",
        )
        .bind(table)
        .fetch_all(&mut *tx)
        .await
        .map_err(db("read the table's releases"))?;
        let releases = rows
            .iter()
            .map(|row| self.release_of(row))
            .collect::<Result<Vec<_>, _>>()?;
        let spent = self.sum(table, &releases)?;
        if let Some(recorded) = releases.iter().find(|r| r.release == charge.release) {
            if recorded.epsilon != charge.epsilon || recorded.delta != charge.delta {
                return Err(BudgetError::ReleaseMismatch {
                    table: table.to_string(),
                    release: charge.release.clone(),
                    recorded_epsilon: recorded.epsilon,
                    recorded_delta: recorded.delta,
                    asked_epsilon: charge.epsilon,
                    asked_delta: charge.delta,
                });
            }
            return Ok(Charged::AlreadyCharged(spent));
        }
        let epsilon = spent.epsilon + charge.epsilon;
        let delta = spent.delta + charge.delta;
        if epsilon > limit.epsilon * (1.0 + TOLERANCE) || delta > limit.delta * (1.0 + TOLERANCE) {
            return Err(BudgetError::Exhausted {
                table: table.to_string(),
                spent_epsilon: spent.epsilon,
                spent_delta: spent.delta,
                asked_epsilon: charge.epsilon,
                asked_delta: charge.delta,
                limit,
            });
        }
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        sqlx::query(
            "INSERT INTO dp_releases \
             (table_name, release, round_id, mechanism, epsilon, delta, at_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .bind(table)
        .bind(&charge.release)
        .bind(round_id)
        .bind(&charge.mechanism)
        .bind(charge.epsilon)
        .bind(charge.delta)
        .bind(at_ms)
        .execute(&mut *tx)
        .await
        .map_err(db("record the charge"))?;
        tx.commit().await.map_err(db("commit the charge"))?;
        Ok(Charged::Charged(Spend {
            table: table.to_string(),
            epsilon,
            delta,
            releases: spent.releases + 1,
        }))
    }

    /// What each table with at least one release has spent, by table name.
    pub async fn spent(&self) -> Result<Vec<Spend>, BudgetError> {
        let releases = self.releases(None).await?;
        let mut by_table: BTreeMap<&str, Vec<Release>> = BTreeMap::new();
        for r in &releases {
            by_table.entry(&r.table).or_default().push(r.clone());
        }
        by_table
            .into_iter()
            .map(|(table, releases)| self.sum(table, &releases))
            .collect()
    }

    /// Every recorded release (of `table`, if given), oldest first.
    pub async fn releases(&self, table: Option<&str>) -> Result<Vec<Release>, BudgetError> {
        let rows = sqlx::query(
            "SELECT table_name, release, round_id, mechanism, epsilon, delta, at_ms \
             FROM dp_releases WHERE ?1 IS NULL OR table_name = ?1 \
             ORDER BY at_ms, round_id, table_name, release",
        )
        .bind(table)
        .fetch_all(&self.pool)
        .await
        .map_err(self.db("read the releases"))?;
        rows.iter().map(|row| self.release_of(row)).collect()
    }

    fn db(&self, operation: &'static str) -> impl FnOnce(sqlx::Error) -> BudgetError + use<> {
        let path = self.path.clone();
        move |source| BudgetError::Database {
            path,
            operation,
            source,
        }
    }

    fn corrupt(&self, why: String) -> BudgetError {
        BudgetError::Corrupt {
            path: self.path.clone(),
            why,
        }
    }

    /// A row, checked: every value in the range a ledger writes.
    fn release_of(&self, row: &SqliteRow) -> Result<Release, BudgetError> {
        let get_text = |column: &str| {
            row.try_get::<String, _>(column)
                .map_err(|e| self.corrupt(format!("column {column}: {e}")))
        };
        let get_int = |column: &str| {
            row.try_get::<i64, _>(column)
                .map_err(|e| self.corrupt(format!("column {column}: {e}")))
                .and_then(|v| {
                    u64::try_from(v).map_err(|_| self.corrupt(format!("{column} {v} is negative")))
                })
        };
        let get_real = |column: &str| {
            row.try_get::<f64, _>(column)
                .map_err(|e| self.corrupt(format!("column {column}: {e}")))
        };
        let release = Release {
            table: get_text("table_name")?,
            release: get_text("release")?,
            round_id: get_int("round_id")?,
            mechanism: get_text("mechanism")?,
            epsilon: get_real("epsilon")?,
            delta: get_real("delta")?,
            at_ms: get_int("at_ms")?,
        };
        if !is_charge(release.epsilon, release.delta) {
            return Err(self.corrupt(format!(
                "table {:?}, release {:?}: ε = {}, δ = {} is not a charge (ε ≥ 0, 0 ≤ δ < 1)",
                release.table, release.release, release.epsilon, release.delta
            )));
        }
        Ok(release)
    }

    /// Σε and Σδ of `releases`, all of `table`.
    fn sum(&self, table: &str, releases: &[Release]) -> Result<Spend, BudgetError> {
        let spend = Spend {
            table: table.to_string(),
            epsilon: releases.iter().map(|r| r.epsilon).sum(),
            delta: releases.iter().map(|r| r.delta).sum(),
            releases: u64::try_from(releases.len()).unwrap_or(u64::MAX),
        };
        if !spend.epsilon.is_finite() || !spend.delta.is_finite() {
            return Err(self.corrupt(format!(
                "table {table:?}: the releases sum to ε = {}, δ = {}",
                spend.epsilon, spend.delta
            )));
        }
        Ok(spend)
    }
}

/// A charge's own values in range, before the ledger is touched.
fn check_charge(charge: &Charge) -> Result<(), BudgetError> {
    let invalid = |why: String| BudgetError::InvalidCharge {
        release: truncate(&charge.release),
        why,
    };
    if charge.release.is_empty() || charge.release.len() > MAX_LABEL_LEN {
        return Err(invalid(format!(
            "the release id must have 1 to {MAX_LABEL_LEN} bytes"
        )));
    }
    if charge.mechanism.is_empty() || charge.mechanism.len() > MAX_LABEL_LEN {
        return Err(invalid(format!(
            "the mechanism name must have 1 to {MAX_LABEL_LEN} bytes"
        )));
    }
    if !(charge.epsilon.is_finite() && charge.epsilon >= 0.0) {
        return Err(invalid(format!(
            "ε = {} (a release spends a finite ε of at least 0)",
            charge.epsilon
        )));
    }
    if !(charge.delta.is_finite() && (0.0..1.0).contains(&charge.delta)) {
        return Err(invalid(format!(
            "δ = {} (a release spends a finite δ in [0, 1))",
            charge.delta
        )));
    }
    Ok(())
}

/// Whether `(epsilon, delta)` is a charge a ledger can hold: ε finite and
/// at least 0, δ finite in `[0, 1)`.
fn is_charge(epsilon: f64, delta: f64) -> bool {
    epsilon.is_finite() && epsilon >= 0.0 && delta.is_finite() && (0.0..1.0).contains(&delta)
}

fn truncate(text: &str) -> String {
    let mut end = text.len().min(MAX_LABEL_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// Creates `path` (and its parents) as an empty file readable by its owner
/// only, unless it exists.
fn create_private_file(path: &Path) -> Result<(), BudgetError> {
    let error = |source| BudgetError::Create {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(error)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(error(e)),
    }
}

/// A number as people write it: `4.5`, `0.25`, `1e-6`.
pub struct Num(pub f64);

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let x = self.0;
        if x == 0.0 || !x.is_finite() || (1e-4..1e15).contains(&x.abs()) {
            write!(f, "{x}")
        } else {
            write!(f, "{x:e}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge(release: &str, epsilon: f64, delta: f64) -> Charge {
        Charge {
            release: release.into(),
            round_id: 7,
            mechanism: "binomial (Dwork et al. 2006)".into(),
            epsilon,
            delta,
        }
    }

    async fn fresh() -> (tempfile::TempDir, Ledger) {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = Ledger::open(&dir.path().join("data").join(LEDGER_FILE))
            .await
            .expect("opens");
        (dir, ledger)
    }

    fn budget(epsilon: f64, delta: f64) -> Budget {
        Budget::new(epsilon, delta).expect("valid budget")
    }

    #[tokio::test]
    async fn charges_accumulate_per_table() {
        let (_dir, ledger) = fresh().await;
        let limit = budget(5.0, 1e-5);
        let first = ledger
            .charge("patients", limit, &charge("round 1 aa", 1.5, 1e-6))
            .await
            .expect("fits");
        assert!(matches!(first, Charged::Charged(_)), "{first:?}");
        let second = ledger
            .charge("patients", limit, &charge("round 2 bb", 0.5, 2e-6))
            .await
            .expect("fits");
        assert_eq!(
            second,
            Charged::Charged(Spend {
                table: "patients".into(),
                epsilon: 2.0,
                delta: 3e-6,
                releases: 2
            })
        );
        ledger
            .charge("visits", limit, &charge("round 2 bb", 4.0, 0.0))
            .await
            .expect("another table has its own budget");
        let spent = ledger.spent().await.expect("reads");
        assert_eq!(
            spent
                .iter()
                .map(|s| (s.table.as_str(), s.epsilon, s.releases))
                .collect::<Vec<_>>(),
            [("patients", 2.0, 2), ("visits", 4.0, 1)]
        );
        let releases = ledger.releases(Some("patients")).await.expect("reads");
        assert_eq!(
            releases
                .iter()
                .map(|r| r.release.as_str())
                .collect::<Vec<_>>(),
            ["round 1 aa", "round 2 bb"]
        );
        assert!(releases.iter().all(|r| r.round_id == 7 && r.at_ms > 0));
        assert_eq!(ledger.releases(None).await.expect("reads").len(), 3);
    }

    #[tokio::test]
    async fn an_over_budget_charge_is_refused_and_records_nothing() {
        let (_dir, ledger) = fresh().await;
        let limit = budget(5.0, 1e-5);
        ledger
            .charge("patients", limit, &charge("a", 4.5, 4e-6))
            .await
            .expect("fits");
        let err = ledger
            .charge("patients", limit, &charge("b", 1.0, 1e-6))
            .await
            .expect_err("4.5 + 1 > 5");
        match &err {
            BudgetError::Exhausted {
                table,
                spent_epsilon,
                asked_epsilon,
                limit: l,
                ..
            } => {
                assert_eq!(table, "patients");
                assert_eq!((*spent_epsilon, *asked_epsilon, *l), (4.5, 1.0, limit));
            }
            other => panic!("expected Exhausted, got {other:?}"),
        }
        assert!(
            err.to_string().starts_with(
                "table \"patients\": this release needs ε = 1, δ = 1e-6, but 4.5 of ε = 5 \
                 (δ 4e-6 of 1e-5) is already spent; the table's budget is exhausted"
            ),
            "{err}"
        );
        // δ alone can exhaust a budget too.
        let err = ledger
            .charge("patients", limit, &charge("c", 0.1, 7e-6))
            .await
            .expect_err("4e-6 + 7e-6 > 1e-5");
        assert!(matches!(err, BudgetError::Exhausted { .. }), "{err:?}");
        let spent = ledger.spent().await.expect("reads");
        assert_eq!(spent.len(), 1);
        assert_eq!((spent[0].epsilon, spent[0].releases), (4.5, 1));
        // What still fits is charged.
        ledger
            .charge("patients", limit, &charge("d", 0.5, 6e-6))
            .await
            .expect("exactly the rest fits");
    }

    #[tokio::test]
    async fn the_same_release_costs_once_and_cannot_change_its_price() {
        let (_dir, ledger) = fresh().await;
        let limit = budget(1.0, 0.0);
        let once = ledger
            .charge("t", limit, &charge("round 3 cc", 0.75, 0.0))
            .await
            .expect("fits");
        let again = ledger
            .charge("t", limit, &charge("round 3 cc", 0.75, 0.0))
            .await
            .expect("a re-sent round is not refused");
        assert_eq!(again, Charged::AlreadyCharged(once.spend().clone()));
        assert_eq!(again.spend().releases, 1);
        let err = ledger
            .charge("t", limit, &charge("round 3 cc", 0.1, 0.0))
            .await
            .expect_err("same id, other ε");
        assert!(
            matches!(
                err,
                BudgetError::ReleaseMismatch { recorded_epsilon, asked_epsilon, .. }
                    if recorded_epsilon == 0.75 && asked_epsilon == 0.1
            ),
            "{err:?}"
        );
        assert_eq!(ledger.spent().await.expect("reads")[0].epsilon, 0.75);
    }

    /// Two ledgers on one file (two processes, or two rounds at once): of
    /// two charges that fit alone but not together, exactly one is made.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_charges_never_overspend() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(LEDGER_FILE);
        let first = Ledger::open(&path).await.expect("opens");
        let second = Ledger::open(&path).await.expect("opens");
        let limit = budget(1.0, 0.0);
        for round in 0..20 {
            let table = format!("t{round}");
            let (charge_a, charge_b) = (charge("a", 0.6, 0.0), charge("b", 0.6, 0.0));
            let (a, b) = tokio::join!(
                first.charge(&table, limit, &charge_a),
                second.charge(&table, limit, &charge_b),
            );
            assert!(a.is_ok() != b.is_ok(), "{a:?} {b:?}");
            let refused = a.err().or(b.err());
            assert!(
                matches!(refused, Some(BudgetError::Exhausted { .. })),
                "{refused:?}"
            );
            assert_eq!(first.releases(Some(&table)).await.expect("reads").len(), 1);
        }
    }

    #[tokio::test]
    async fn the_ledger_survives_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(LEDGER_FILE);
        let limit = budget(1.0, 1e-6);
        let ledger = Ledger::open(&path).await.expect("opens");
        ledger
            .charge("t", limit, &charge("a", 0.6, 0.0))
            .await
            .expect("fits");
        ledger.close().await;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path)
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        }
        let ledger = Ledger::open(&path).await.expect("re-opens");
        let err = ledger
            .charge("t", limit, &charge("b", 0.6, 0.0))
            .await
            .expect_err("0.6 was spent before the restart");
        assert!(
            matches!(err, BudgetError::Exhausted { spent_epsilon, .. } if spent_epsilon == 0.6)
        );
        assert!(matches!(
            ledger.charge("t", limit, &charge("a", 0.6, 0.0)).await,
            Ok(Charged::AlreadyCharged(_))
        ));
    }

    #[tokio::test]
    async fn a_corrupted_value_is_a_typed_error() {
        let (dir, ledger) = fresh().await;
        let limit = budget(1.0, 0.0);
        ledger
            .charge("t", limit, &charge("a", 0.25, 0.0))
            .await
            .expect("fits");
        let path = dir.path().join("data").join(LEDGER_FILE);
        for (edit, label) in [
            ("UPDATE dp_releases SET epsilon = -1.0", "negative ε"),
            ("UPDATE dp_releases SET delta = 2.0", "δ ≥ 1"),
            ("UPDATE dp_releases SET epsilon = 1e308 * 10", "infinite ε"),
            ("UPDATE dp_releases SET round_id = -3", "negative round"),
        ] {
            let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .pragma("ignore_check_constraints", "ON");
            conn = conn.busy_timeout(BUSY_TIMEOUT);
            let pool = SqlitePool::connect_with(conn).await.expect("opens");
            sqlx::query("UPDATE dp_releases SET epsilon = 0.25, delta = 0.0, round_id = 7")
                .execute(&pool)
                .await
                .expect("restores");
            sqlx::query(sqlx::AssertSqlSafe(edit))
                .execute(&pool)
                .await
                .expect("edits");
            pool.close().await;
            for result in [
                ledger
                    .charge("t", limit, &charge("b", 0.1, 0.0))
                    .await
                    .map(|_| ()),
                ledger.spent().await.map(|_| ()),
                ledger.releases(None).await.map(|_| ()),
            ] {
                assert!(
                    matches!(&result, Err(BudgetError::Corrupt { path: p, .. }) if *p == path),
                    "{label}: {result:?}"
                );
            }
        }
        assert_eq!(ledger.releases(None).await.map(|r| r.len()).ok(), None);
    }

    #[tokio::test]
    async fn five_charges_of_a_fifth_fit_one_and_a_sixth_does_not() {
        let (_dir, ledger) = fresh().await;
        let limit = budget(1.0, 1e-6);
        for i in 0..5 {
            ledger
                .charge("t", limit, &charge(&format!("r{i}"), 0.2, 2e-7))
                .await
                .expect("fits");
        }
        let err = ledger
            .charge("t", limit, &charge("r5", 0.2, 0.0))
            .await
            .expect_err("the budget is spent");
        assert!(matches!(err, BudgetError::Exhausted { .. }), "{err:?}");
        // Ten of 0.1 sum to 0.9999999999999999 in floating point.
        let limit = budget(1.0, 0.0);
        for i in 0..10 {
            ledger
                .charge("u", limit, &charge(&format!("r{i}"), 0.1, 0.0))
                .await
                .expect("fits");
        }
        // Nothing above the tolerance slips through.
        assert!(
            ledger
                .charge("u", limit, &charge("r10", 1e-6, 0.0))
                .await
                .is_err()
        );
        // Three of 0.1 sum to 0.30000000000000004, above 0.3: only the
        // tolerance lets the third in.
        let limit = budget(0.3, 0.0);
        for i in 0..3 {
            ledger
                .charge("v", limit, &charge(&format!("r{i}"), 0.1, 0.0))
                .await
                .expect("fits within the tolerance");
        }
        let spent = ledger.releases(Some("v")).await.expect("reads");
        assert!(spent.iter().map(|r| r.epsilon).sum::<f64>() > 0.3);
    }

    #[tokio::test]
    async fn out_of_range_charges_are_refused() {
        let (_dir, ledger) = fresh().await;
        let limit = budget(1.0, 1e-6);
        for c in [
            charge("a", f64::NAN, 0.0),
            charge("a", -0.1, 0.0),
            charge("a", f64::INFINITY, 0.0),
            charge("a", 0.1, -1e-9),
            charge("a", 0.1, 1.0),
            charge("", 0.1, 0.0),
            charge(&"x".repeat(MAX_LABEL_LEN + 1), 0.1, 0.0),
        ] {
            let result = ledger.charge("t", limit, &c).await;
            assert!(
                matches!(result, Err(BudgetError::InvalidCharge { .. })),
                "{c:?}: {result:?}"
            );
        }
        assert!(ledger.spent().await.expect("reads").is_empty());
    }

    #[test]
    fn budgets_out_of_range_are_refused() {
        for (epsilon, delta) in [
            (0.0, 0.0),
            (-1.0, 0.0),
            (f64::NAN, 0.0),
            (f64::INFINITY, 0.0),
            (1.0, -1e-9),
            (1.0, 1.0),
            (1.0, f64::NAN),
        ] {
            assert!(
                matches!(
                    Budget::new(epsilon, delta),
                    Err(BudgetError::InvalidBudget { .. })
                ),
                "({epsilon}, {delta})"
            );
        }
        assert_eq!(
            Budget::new(0.5, 0.0).ok(),
            Some(Budget {
                epsilon: 0.5,
                delta: 0.0
            })
        );
    }

    #[test]
    fn client_privacy_comes_from_the_node_config() {
        use sealroom_node::init::{InitOptions, init_federation};
        let dir = tempfile::tempdir().expect("tempdir");
        init_federation(dir.path(), &InitOptions::default()).expect("init");
        let append = |file: &str, text: &str| {
            let path = dir.path().join(file);
            let before = std::fs::read_to_string(&path).expect("read");
            std::fs::write(&path, format!("{before}\n{text}\n")).expect("write");
        };
        append(
            "client-0.toml",
            "[privacy_budget.wine]\nepsilon = 3.0\ndelta = 1e-7",
        );
        let load = |name: &str| {
            sealroom_node::config::load_node_config(&dir.path().join(name)).expect("loads")
        };
        let config = load("client-0.toml");
        let privacy = ClientPrivacy::from_config(&config).expect("valid");
        assert_eq!(
            privacy,
            ClientPrivacy {
                ledger: config.data_dir.join("privacy-ledger.db"),
                budgets: BTreeMap::from([("wine".to_string(), budget(3.0, 1e-7))]),
                require_dp: false,
            }
        );
        assert!(
            ClientPrivacy::from_config(&load("client-1.toml"))
                .expect("valid")
                .budgets
                .is_empty()
        );
        append("federation.toml", "[privacy]\nrequire_dp = true");
        assert!(
            ClientPrivacy::from_config(&load("client-0.toml"))
                .expect("valid")
                .require_dp
        );
    }

    #[test]
    fn numbers_print_as_people_write_them() {
        let shown: Vec<String> = [1.0, 4.5, 0.25, 1e-6, 4e-6, 0.0, 1e20]
            .into_iter()
            .map(|x| Num(x).to_string())
            .collect();
        assert_eq!(shown, ["1", "4.5", "0.25", "1e-6", "4e-6", "0", "1e20"]);
    }
}
