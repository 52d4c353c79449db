//! Shared fixtures of the query tests: three parties' synthetic employee
//! tables (two CSV files and one SQLite file), the pooled table, the secure
//! pipeline with a plaintext sum in place of the network, and comparisons.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::needless_range_loop
)]

use std::path::{Path, PathBuf};
use std::str::FromStr;

use sealroom_analytics::query::{
    self, Cell, DataSource, GroupKey, LocalTable, Policy, QueryPlan, QueryResult, QuerySpec,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};

/// One employee.
#[derive(Clone, Debug)]
pub struct Emp {
    pub id: String,
    pub dept: Option<&'static str>,
    pub salary: Option<f64>,
    pub age: i64,
    pub years: Option<i64>,
}

/// The domain the tests group by.
pub const DEPTS: [&str; 5] = ["eng", "sales", "ops", "hr", "legal"];

/// Deterministic pseudo-random numbers in [0, 1).
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn employees(
    rng: &mut Lcg,
    prefix: char,
    counts: &[(Option<&'static str>, usize)],
    level: f64,
) -> Vec<Emp> {
    let mut out = Vec::new();
    for &(dept, n) in counts {
        for i in 0..n {
            let age = 22 + (rng.next() * 43.0) as i64;
            let years = ((rng.next() * 0.9 * (age - 21) as f64) as i64).max(0);
            let base = match dept {
                Some("eng") => 90_000.0,
                Some("sales") => 65_000.0,
                Some("ops") => 55_000.0,
                _ => 60_000.0,
            };
            let noise = (rng.next() - 0.5) * 20_000.0;
            // Cents make the sums non-integral.
            let salary =
                ((base + 2_000.0 * years as f64 + 300.0 * age as f64 + noise) * level * 100.0)
                    .round()
                    / 100.0;
            out.push(Emp {
                id: format!("{prefix}{:04}", out.len()),
                dept,
                salary: (i % 17 != 3).then_some(salary),
                age,
                years: (i % 13 != 5).then_some(years),
            });
        }
    }
    out
}

/// Three parties. Cells under `min_clients = 2, min_rows = 5`:
/// eng, sales: all three; ops: A and C; hr: only C (too few clients);
/// legal: A (1 row) and B (2 rows), too few rows; other: A's "marketing"
/// and B's NULL departments, released.
pub fn parties() -> [Vec<Emp>; 3] {
    let mut rng = Lcg(2024);
    let a = employees(
        &mut rng,
        'A',
        &[
            (Some("eng"), 30),
            (Some("sales"), 20),
            (Some("ops"), 9),
            (Some("legal"), 1),
            (Some("marketing"), 4),
        ],
        1.0,
    );
    let b = employees(
        &mut rng,
        'B',
        &[
            (Some("eng"), 25),
            (Some("sales"), 14),
            (Some("legal"), 2),
            (None, 3),
        ],
        1.07,
    );
    let c = employees(
        &mut rng,
        'C',
        &[
            (Some("eng"), 18),
            (Some("sales"), 11),
            (Some("ops"), 7),
            (Some("hr"), 6),
        ],
        0.94,
    );
    [a, b, c]
}

/// The tests' policy.
pub fn policy() -> Policy {
    Policy::new(5, 2).unwrap()
}

pub fn spec(sql: &str) -> QuerySpec {
    QuerySpec {
        max_rows_per_client: None,
        sql: sql.to_owned(),
        domains: [(
            "dept".to_owned(),
            DEPTS.iter().map(|d| d.to_string()).collect(),
        )]
        .into(),
        min_rows: 5,
        min_clients: 2,
        bounds: bounds(),
        dp: None,
    }
}

/// Bounds wide enough that no test row is clamped, so results equal pooled
/// SQLite exactly.
pub fn bounds() -> std::collections::BTreeMap<String, [f64; 2]> {
    [
        ("salary".to_owned(), [0.0, 1e6]),
        ("age".to_owned(), [0.0, 150.0]),
        ("years".to_owned(), [0.0, 100.0]),
        // A column no table has (unknown-column tests).
        ("wage".to_owned(), [0.0, 1e6]),
    ]
    .into()
}

pub fn spec_without_domain(sql: &str) -> QuerySpec {
    QuerySpec {
        domains: Default::default(),
        ..spec(sql)
    }
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(ToString::to_string).unwrap_or_default()
}

pub fn write_csv(path: &Path, rows: &[Emp]) {
    let mut text = String::from("employee_id,dept,salary,age,years\n");
    for e in rows {
        text.push_str(&format!(
            "{},{},{},{},{}\n",
            e.id,
            e.dept.unwrap_or(""),
            opt(&e.salary),
            e.age,
            opt(&e.years)
        ));
    }
    std::fs::write(path, text).unwrap();
}

pub async fn sqlite_conn(path: &Path) -> SqliteConnection {
    SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .unwrap()
        .create_if_missing(true)
        .connect()
        .await
        .unwrap()
}

pub async fn exec(conn: &mut SqliteConnection, sql: &str) {
    sqlx::query(AssertSqlSafe(sql.to_owned()))
        .execute(&mut *conn)
        .await
        .unwrap();
}

pub async fn write_sqlite(path: &Path, table: &str, rows: &[Emp]) {
    let mut conn = sqlite_conn(path).await;
    exec(
        &mut conn,
        &format!("CREATE TABLE {table} (employee_id TEXT, dept TEXT, salary REAL, age INTEGER, years INTEGER)"),
    )
    .await;
    for e in rows {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {table} VALUES (?, ?, ?, ?, ?)"
        )))
        .bind(&e.id)
        .bind(e.dept)
        .bind(e.salary)
        .bind(e.age)
        .bind(e.years)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    conn.close().await.unwrap();
}

/// The three parties' sources in `dir`, and the pooled table.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub sources: Vec<DataSource>,
    pub tables: Vec<LocalTable>,
    pub pooled: SqliteConnection,
}

impl Fixture {
    pub async fn new() -> Fixture {
        Fixture::with_parties(parties()).await
    }

    pub async fn with_parties(parties: [Vec<Emp>; 3]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.csv");
        let b = dir.path().join("b.csv");
        let c = dir.path().join("c.sqlite");
        write_csv(&a, &parties[0]);
        write_csv(&b, &parties[1]);
        write_sqlite(&c, "salaries", &parties[2]).await;
        let pooled_path = dir.path().join("pooled.sqlite");
        let all: Vec<Emp> = parties.iter().flatten().cloned().collect();
        write_sqlite(&pooled_path, "pooled", &all).await;
        let sources = vec![
            DataSource::Csv { path: a },
            DataSource::Csv { path: b },
            DataSource::Sqlite {
                path: c,
                table: "salaries".into(),
            },
        ];
        let mut tables = Vec::new();
        for s in &sources {
            tables.push(LocalTable::open(s).await.unwrap());
        }
        let pooled = sqlite_conn(&pooled_path).await;
        Fixture {
            dir,
            sources,
            tables,
            pooled,
        }
    }

    pub fn table_refs(&self) -> Vec<&LocalTable> {
        self.tables.iter().collect()
    }

    /// Runs `sql` on the pooled table: one row of optional floats per row.
    pub async fn pooled_rows(&mut self, sql: &str) -> Vec<Vec<Option<f64>>> {
        use sqlx::Row;
        let rows = sqlx::query(AssertSqlSafe(sql.to_owned()))
            .fetch_all(&mut self.pooled)
            .await
            .unwrap();
        rows.iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| match r.try_get::<Option<f64>, _>(i) {
                        Ok(v) => v,
                        Err(_) => r.try_get::<Option<i64>, _>(i).unwrap().map(|v| v as f64),
                    })
                    .collect()
            })
            .collect()
    }
}

/// The sum of the clients' wire vectors as the secure layer computes it:
/// each vector is encoded in Z_2^64 with the wire spec (nothing may be
/// clipped), split into three additive shares (`sealroom_core::additive`,
/// seeds expanded by the PRG), accumulated per helper, and reconstructed
/// from the three helpers' aggregates. No single helper's aggregate equals
/// the sum (each is masked).
pub fn secure_sum(vectors: &[query::WireVector], seed: u64) -> Vec<f64> {
    use rand::SeedableRng as _;
    use sealroom_core::{RingKind, RoundEncoding, additive};
    const HELPERS: usize = 3;
    let len = vectors.first().map_or(0, |v| v.len());
    let encoding =
        RoundEncoding::new(RingKind::Z2_64, vectors.len() as u64, query::wire_spec()).unwrap();
    let mut rng = rand::rngs::ChaCha20Rng::seed_from_u64(seed);
    let context = [7u8; 32];
    let mut aggregates = vec![vec![0u64; len]; HELPERS];
    for (client, v) in vectors.iter().enumerate() {
        assert_eq!(v.len(), len);
        let (ring, clipped) = encoding.encode::<u64>(v.expose_values()).unwrap();
        assert_eq!(clipped, 0, "a wire element was clipped");
        let shares = additive::share(&ring, HELPERS, client as u32, context, &mut rng).unwrap();
        for (helper, share) in shares.iter().enumerate() {
            share
                .accumulate_into(&mut aggregates[helper], context, client as u32, helper)
                .unwrap();
        }
    }
    let refs: Vec<&[u64]> = aggregates.iter().map(Vec::as_slice).collect();
    let sum = additive::reconstruct(&refs, HELPERS).unwrap();
    if len > 0 && sum.iter().any(|&x| x != 0) {
        for (helper, agg) in aggregates.iter().enumerate() {
            assert_ne!(agg, &sum, "helper {helper}'s aggregate is not masked");
        }
    }
    encoding.decode_sum(&sum).unwrap()
}

/// The secure flow with the network replaced by in-process secret sharing
/// ([`secure_sum`]); `plaintext` is its twin that adds the vectors in the
/// clear, so comparing the two checks the encoding end to end.
pub async fn pipeline(plan: &QueryPlan, tables: &[&LocalTable], policy: &Policy) -> QueryResult {
    let mut counts = Vec::new();
    for t in tables {
        counts.push(query::local_counts(plan, t, policy).await.unwrap());
    }
    let counts = secure_sum(&counts, 1);
    let released = query::released_cells(plan, &counts, policy).unwrap();
    let mut stats = Vec::new();
    for t in tables {
        let v = query::local_stats(plan, t, &released).await.unwrap();
        assert_eq!(v.len(), query::stats_len(plan, &released));
        stats.push(v);
    }
    let stats = secure_sum(&stats, 2);
    let mut result = query::finish(plan, &counts, &released, &stats, policy).unwrap();
    // The order phase: the program's plaintext twin over the clients' order
    // vectors (the engine itself runs in `query_order.rs` in process and in
    // `net_query.rs` between real helpers).
    if query::has_order(plan) {
        let params = query::order_params(plan, policy, &released, &stats).unwrap();
        if query::order_len(plan, &params) > 0 {
            let mut inputs = Vec::new();
            for t in tables {
                let v = query::local_order(plan, t, &params).await.unwrap();
                inputs.push(v.expose_values().iter().map(|&x| x as i64).collect());
            }
            let outputs = query::order_plain(plan, &params, &inputs).unwrap();
            query::finish_order(plan, &params, &outputs, &mut result).unwrap();
        }
    }
    result
}

/// Plans `spec`, runs the pipeline, and checks the plaintext twin agrees bit
/// for bit.
pub async fn run(fx: &Fixture, spec: &QuerySpec) -> QueryResult {
    let plan = query::plan(spec).unwrap();
    let policy = spec.policy().unwrap();
    let secure = pipeline(&plan, &fx.table_refs(), &policy).await;
    let twin = query::plaintext(&plan, &fx.table_refs(), &policy)
        .await
        .unwrap();
    assert_bit_equal(&secure, &twin);
    secure
}

pub fn assert_bit_equal(a: &QueryResult, b: &QueryResult) {
    assert_eq!(a.columns, b.columns);
    assert_eq!(a.rows.len(), b.rows.len());
    for (ra, rb) in a.rows.iter().zip(&b.rows) {
        assert_eq!(ra.group, rb.group);
        for (ca, cb) in ra.cells.iter().zip(&rb.cells) {
            match (ca, cb) {
                (Cell::Value(x), Cell::Value(y)) => assert_eq!(x.to_bits(), y.to_bits()),
                _ => assert_eq!(ca, cb),
            }
        }
        assert_eq!(ra.adjusted, rb.adjusted);
    }
    assert_eq!(a.bounds, b.bounds);
}

pub fn key(dept: &str) -> Vec<GroupKey> {
    if dept == "(other)" {
        vec![GroupKey::Other]
    } else {
        vec![GroupKey::value(dept)]
    }
}

/// The value of a released cell.
pub fn value(r: &QueryResult, dept: &str, column: &str) -> f64 {
    match r.cell(&key(dept), column) {
        Some(Cell::Value(v)) => *v,
        other => panic!("{dept}/{column}: expected a value, got {other:?}"),
    }
}

pub fn assert_close(got: f64, want: f64, rel: f64, what: &str) {
    let tol = rel * want.abs().max(1.0);
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got}, want {want} (tolerance {tol})"
    );
}

/// SQL mapping `dept` to its cell label, for pooled reference queries.
pub fn cell_sql() -> String {
    let list: Vec<String> = DEPTS.iter().map(|d| format!("'{d}'")).collect();
    format!(
        "CASE WHEN dept IN ({}) THEN dept ELSE '(other)' END",
        list.join(", ")
    )
}

/// Every cell label, "(other)" last.
pub fn labels() -> Vec<&'static str> {
    let mut l = DEPTS.to_vec();
    l.push("(other)");
    l
}

/// Rows of the pooled table as (cell label, salary, age, years), filtered.
pub async fn pooled_by_cell(
    fx: &mut Fixture,
    filter: &str,
) -> Vec<(String, Option<f64>, f64, Option<f64>)> {
    use sqlx::Row;
    let sql = format!(
        "SELECT {} AS g, salary, age, years FROM pooled WHERE {filter}",
        cell_sql()
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .fetch_all(&mut fx.pooled)
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            (
                r.get::<String, _>(0),
                r.get::<Option<f64>, _>(1),
                r.get::<i64, _>(2) as f64,
                r.get::<Option<i64>, _>(3).map(|v| v as f64),
            )
        })
        .collect()
}

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Mean and centred sum of squares, two-pass.
pub fn moments(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    (mean, v.iter().map(|x| (x - mean) * (x - mean)).sum())
}

/// Least squares by Householder QR: the coefficients of `y ~ 1 + x`.
pub fn lstsq(x: &[Vec<f64>], y: &[f64]) -> Vec<f64> {
    let n = x.len();
    let p = x[0].len() + 1;
    let mut a: Vec<Vec<f64>> = x
        .iter()
        .map(|r| {
            let mut row = vec![1.0];
            row.extend(r);
            row
        })
        .collect();
    let mut b = y.to_vec();
    for k in 0..p {
        let norm = (k..n).map(|i| a[i][k] * a[i][k]).sum::<f64>().sqrt();
        let alpha = if a[k][k] > 0.0 { -norm } else { norm };
        let mut v: Vec<f64> = (k..n).map(|i| a[i][k]).collect();
        v[0] -= alpha;
        let vv: f64 = v.iter().map(|x| x * x).sum();
        if vv == 0.0 {
            continue;
        }
        for j in k..p {
            let d: f64 = (k..n).map(|i| v[i - k] * a[i][j]).sum::<f64>() * 2.0 / vv;
            for i in k..n {
                a[i][j] -= d * v[i - k];
            }
        }
        let d: f64 = (k..n).map(|i| v[i - k] * b[i]).sum::<f64>() * 2.0 / vv;
        for i in k..n {
            b[i] -= d * v[i - k];
        }
    }
    let mut beta = vec![0.0; p];
    for i in (0..p).rev() {
        let s: f64 = (i + 1..p).map(|j| a[i][j] * beta[j]).sum();
        beta[i] = (b[i] - s) / a[i][i];
    }
    beta
}

/// A round's real descriptor as helper-0 stored it, with what a test needs
/// to act as a malicious coordinator holding the signing key: re-sign the
/// descriptor with edited parameters or fields.
pub struct Forger {
    pub body: sealroom_protocol::pb::RoundDescriptor,
    pub params: sealroom_analytics::joint::QueryParams,
    pub keys: sealroom_protocol::evidence::FederationKeys,
    coordinator: sealroom_protocol::SigningKey,
}

impl Forger {
    /// Round `round` of `fed`, as helper-0 stored it.
    pub async fn of_round(fed: &sealroom_node::local::LocalFederation, round: u64) -> Forger {
        use prost::Message as _;
        use sealroom_protocol::pb;
        let helper = &fed.configs["helper-0"];
        let store = sealroom_store::Store::open_sqlite(&helper.data_dir.join("sealroom.db"))
            .await
            .expect("helper store");
        let envelope = store
            .helper_state()
            .await
            .expect("helper state")
            .rounds
            .into_iter()
            .map(|r| r.descriptor)
            .find(|d| {
                pb::RoundDescriptor::decode(d.body.as_slice()).map(|d| d.round_id) == Ok(round)
            })
            .expect("the helper holds the round");
        let keys = sealroom_node::directory::Directory::new(&helper.federation)
            .expect("directory")
            .keys();
        let body = pb::RoundDescriptor::decode(envelope.body.as_slice()).expect("descriptor");
        let params = serde_json::from_slice(&body.task.as_ref().expect("task").params)
            .expect("query parameters");
        Forger {
            body,
            params,
            keys,
            coordinator: fed.configs["coordinator"]
                .signing_key
                .clone()
                .expect("coordinator key"),
        }
    }

    /// The descriptor re-signed with `edit` applied to its parameters and
    /// fields, as a coordinator holding the key could.
    pub fn resign(
        &self,
        edit: &dyn Fn(
            &mut sealroom_analytics::joint::QueryParams,
            &mut sealroom_protocol::pb::RoundDescriptor,
        ),
    ) -> sealroom_protocol::VerifiedDescriptor {
        let (mut p, mut d) = (self.params.clone(), self.body.clone());
        edit(&mut p, &mut d);
        d.task.as_mut().expect("task").params = serde_json::to_vec(&p).expect("json");
        let envelope = self.coordinator.sign(&d);
        sealroom_protocol::VerifiedDescriptor::verify(&envelope, &self.keys.trust)
            .expect("the coordinator's key signs it")
    }

    /// Runs `input`'s computation for `descriptor` as a client node does:
    /// on a blocking thread of the runtime.
    pub async fn ask(
        &self,
        input: &std::sync::Arc<sealroom_analytics::joint::QueryInput>,
        descriptor: sealroom_protocol::VerifiedDescriptor,
    ) -> Result<Vec<f64>, sealroom_node::tasks::InputError> {
        use sealroom_node::tasks::InputSource as _;
        let (input, keys) = (input.clone(), self.keys.clone());
        tokio::task::spawn_blocking(move || input.input_with_keys(&descriptor, &keys))
            .await
            .expect("the computation ran")
    }
}
