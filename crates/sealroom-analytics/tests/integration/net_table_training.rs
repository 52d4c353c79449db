//! Training on the clients' own tables over real nodes (coordinator, 3
//! helpers, 3 clients on 127.0.0.1 with mutual TLS): two clients hold CSV
//! files, one a SQLite table. Checks the pooled standardization against the
//! pooled training rows, the exported model against an independent replay of
//! FedAvg from the revealed sums (bit for bit), the test accuracy against a
//! centralized logistic regression written here, early stopping, and a spec
//! naming a column no client has.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use sealroom_analytics::fl::FedAvgSpec;
use sealroom_analytics::model_export;
use sealroom_analytics::query::DataSource;
use sealroom_analytics::service::catalog;
use sealroom_analytics::table_data::{Columns, Labels, read_rows};
use sealroom_analytics::table_training::{self, TableTrainingInput};
use sealroom_analytics::train_spec::TrainingSpec;
use sealroom_analytics::training::TrainingError;
use sealroom_mpc::robust::{ClipBounds, clipped_weighted_sum_plain};
use sealroom_node::client_node::ClientEvent;
use sealroom_node::init::InitOptions;
use sealroom_node::local::LocalFederation;
use sealroom_node::tasks::InputSource;
use sqlx::ConnectOptions as _;

const FEATURES: [&str; 3] = ["age", "dose", "score"];

/// A small deterministic generator (xorshift64*), independent of the crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.next().max(1e-12), self.next());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// Rows `(age, dose, score, label)`: features on very different scales, the
/// label "sick" with probability sigmoid(w·x).
pub(crate) fn rows(n: usize, seed: u64) -> Vec<[f64; 4]> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|_| {
            let age = 50.0 + 12.0 * rng.normal();
            let dose = 2.0 + rng.normal();
            let score = 300.0 + 80.0 * rng.normal();
            let z = 0.12 * (age - 50.0) - 1.5 * (dose - 2.0) + 0.01 * (score - 300.0);
            let p = 1.0 / (1.0 + (-z).exp());
            [age, dose, score, f64::from(u8::from(rng.next() < p))]
        })
        .collect()
}

pub(crate) fn write_csv(path: &Path, rows: &[[f64; 4]]) {
    let mut text = String::from("id,age,dose,score,outcome\n");
    for (i, r) in rows.iter().enumerate() {
        let label = if r[3] == 1.0 { "sick" } else { "healthy" };
        text.push_str(&format!("{i},{},{},{},{label}\n", r[0], r[1], r[2]));
    }
    std::fs::write(path, text).expect("write CSV");
}

async fn write_sqlite(path: &Path, rows: &[[f64; 4]]) {
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .connect()
        .await
        .expect("create SQLite");
    sqlx::query("CREATE TABLE patients (age REAL, dose REAL, score REAL, outcome TEXT)")
        .execute(&mut conn)
        .await
        .expect("create table");
    for r in rows {
        sqlx::query("INSERT INTO patients VALUES (?1, ?2, ?3, ?4)")
            .bind(r[0])
            .bind(r[1])
            .bind(r[2])
            .bind(if r[3] == 1.0 { "sick" } else { "healthy" })
            .execute(&mut conn)
            .await
            .expect("insert");
    }
}

fn spec(extra: &str) -> TrainingSpec {
    let text = format!(
        r#"{{"table": "patients", "label": "outcome", "features": ["age", "dose", "score"],
            "classes": ["healthy", "sick"], "model": "logistic", "rounds": 12,
            "validation": {{"fraction": 0.2, "seed": 3}},
            "train": {{"learning_rate": 0.2, "epochs": 2, "batch_size": 16, "l2": 0.0, "seed": 5}}
            {extra}}}"#
    );
    TrainingSpec::parse(&text, "test spec").expect("valid spec")
}

/// Centralized reference: logistic regression on the pooled, standardized
/// rows by full-batch gradient descent (written here, not the crate's model).
fn centralized_accuracy(train: &[[f64; 4]], test: &[[f64; 4]], mean: &[f64], std: &[f64]) -> f64 {
    let z = |r: &[f64; 4]| -> [f64; 3] {
        [
            (r[0] - mean[0]) / std[0],
            (r[1] - mean[1]) / std[1],
            (r[2] - mean[2]) / std[2],
        ]
    };
    let (mut w, mut b) = ([0.0f64; 3], 0.0f64);
    for _ in 0..2000 {
        let (mut gw, mut gb) = ([0.0f64; 3], 0.0f64);
        for r in train {
            let x = z(r);
            let p = 1.0 / (1.0 + (-(w[0] * x[0] + w[1] * x[1] + w[2] * x[2] + b)).exp());
            for k in 0..3 {
                gw[k] += (p - r[3]) * x[k];
            }
            gb += p - r[3];
        }
        for k in 0..3 {
            w[k] -= 0.5 * gw[k] / train.len() as f64;
        }
        b -= 0.5 * gb / train.len() as f64;
    }
    let correct = test
        .iter()
        .filter(|r| {
            let x = z(r);
            let logit = w[0] * x[0] + w[1] * x[1] + w[2] * x[2] + b;
            (logit > 0.0) == (r[3] == 1.0)
        })
        .count();
    correct as f64 / test.len() as f64
}

/// What each client (`names[i]` reading `sources[i]`) uploaded in round 1
/// of `report`'s training: its contribution for the very parameters the
/// driver signed (a deterministic function of them and its rows), as
/// integers on the wire grid. (Computed on a blocking thread, as a node
/// does.)
pub(crate) fn first_round_uploads(
    spec: &TrainingSpec,
    report: &table_training::TableTrainingReport,
    dp: Option<table_training::RoundDp>,
    sources: &[DataSource],
    names: &[String],
) -> Vec<Vec<i64>> {
    let fedavg = spec.quantization.fedavg();
    let params = table_training::FedAvgParams {
        data: table_training::TableData::of(spec),
        training_round: 1,
        model: spec.model,
        global: report.history[0].clone(),
        mean: report.mean.clone(),
        std: report.std.clone(),
        train: spec.train.config(),
        fedavg,
        error_feedback: spec.error_feedback,
        defences: spec.defences,
        dp,
    };
    let bytes = serde_json::to_vec(&params).expect("parameters");
    let step = fedavg.wire_spec().expect("wire spec").step();
    tokio::task::block_in_place(|| {
        names
            .iter()
            .zip(sources)
            .map(|(name, source)| {
                let tables = BTreeMap::from([("patients".to_string(), source.clone())]);
                TableTrainingInput::new(name.clone(), tables)
                    .contribution(table_training::TABLE_FEDAVG_TASK, &bytes)
                    .expect("an honest contribution")
                    .iter()
                    .map(|v| (v / step).round() as i64)
                    .collect()
            })
            .collect()
    })
}

struct Setup {
    _dir: tempfile::TempDir,
    fed: LocalFederation,
    events: tokio::sync::mpsc::UnboundedReceiver<(usize, ClientEvent)>,
    sources: Vec<DataSource>,
    parts: Vec<Vec<[f64; 4]>>,
    test: Vec<[f64; 4]>,
    names: Vec<String>,
}

/// A client that answers every round honestly but replaces its table
/// FedAvg update by a scaled one: every delta value at ±the delta clip,
/// claiming weight 1 (a malicious client shares whatever it likes).
struct Poisoner(TableTrainingInput);

impl InputSource for Poisoner {
    fn input(
        &self,
        descriptor: &sealroom_protocol::VerifiedDescriptor,
    ) -> Result<Vec<f64>, sealroom_node::tasks::InputError> {
        let honest = self.0.input(descriptor)?;
        if descriptor.task_name() != table_training::TABLE_FEDAVG_TASK {
            return Ok(honest);
        }
        let p: table_training::FedAvgParams =
            serde_json::from_slice(descriptor.task_params()).expect("table FedAvg parameters");
        Ok(poisoned_update(&p.fedavg, honest.len() - 1))
    }
}

/// The poisoner's update for `n` parameters (one delta quantum is one wire
/// step; the delta clip is `max_abs` quanta).
fn poisoned_update(fedavg: &FedAvgSpec, n: usize) -> Vec<f64> {
    let step = fedavg.wire_spec().expect("wire spec").step();
    let clip = fedavg.delta_spec().expect("delta spec").max_abs() as f64 * step;
    let mut evil: Vec<f64> = (0..n)
        .map(|j| if j % 2 == 0 { clip } else { -clip })
        .collect();
    evil.push(step);
    evil
}

async fn setup() -> Setup {
    setup_with(false).await
}

/// The federation; with `poisoner`, client-2 is a [`Poisoner`].
async fn setup_with(poisoner: bool) -> Setup {
    sealroom_node::tls::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let parts = [rows(260, 11), rows(140, 12), rows(200, 13)];
    let test = rows(300, 14);
    let mut sources = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        if i == 2 {
            let path = dir.path().join("site-2.sqlite");
            write_sqlite(&path, part).await;
            sources.push(DataSource::Sqlite {
                path,
                table: "patients".into(),
            });
        } else {
            let path = dir.path().join(format!("site-{i}.csv"));
            write_csv(&path, part);
            sources.push(DataSource::Csv { path });
        }
    }
    let inputs: Vec<Arc<dyn InputSource>> = sources
        .iter()
        .enumerate()
        .map(|(i, source)| {
            let tables = BTreeMap::from([("patients".to_string(), source.clone())]);
            let input = TableTrainingInput::new(format!("client-{i}"), tables);
            if poisoner && i == 2 {
                Arc::new(Poisoner(input)) as Arc<dyn InputSource>
            } else {
                Arc::new(input) as Arc<dyn InputSource>
            }
        })
        .collect();
    let options = InitOptions {
        helpers: 3,
        clients: 3,
        min_clients: Some(2),
        upload_window_ms: 3000,
        aggregation_window_ms: 4000,
        ..InitOptions::default()
    };
    let (fed, events) = LocalFederation::start(&dir.path().join("fed"), options, catalog(), inputs)
        .await
        .expect("federation starts");
    Setup {
        _dir: dir,
        fed,
        events,
        sources,
        parts: parts.to_vec(),
        test,
        names: (0..3).map(|i| format!("client-{i}")).collect(),
    }
}

impl Setup {
    /// Every client's rows, pooled.
    fn pooled_rows(&self) -> Vec<[f64; 4]> {
        self.parts.iter().flatten().copied().collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_training_exports_a_model_that_replays_bit_for_bit() {
    let s = setup().await;
    let spec = spec("");
    let test_path = s._dir.path().join("test.csv");
    write_csv(&test_path, &s.test);
    let test_rows = table_training::read_test_rows(&DataSource::Csv { path: test_path }, &spec)
        .await
        .expect("test rows");
    let report = table_training::train(&s.fed, &spec, &s.names, Some(&test_rows), |_| {})
        .await
        .expect("training runs");
    assert_eq!(report.rounds.len(), 12);
    for r in &report.rounds {
        assert_eq!(r.included, s.names, "round {}", r.round);
        assert!(r.validation.is_some());
    }

    // The standardization is the pooled mean and std of the training rows
    // (each client's split, read back through the same reader).
    let mut pooled = Vec::new();
    let columns = Columns {
        label: "outcome",
        features: &spec.features,
        classes: spec.classes.as_deref(),
    };
    for source in &s.sources {
        let rows = read_rows(source, columns).await.expect("rows");
        let (train, _) = rows.split(0.2, 3).expect("split");
        let Labels::Classes(y) = &train.labels else {
            panic!("classes expected")
        };
        for (x, &label) in train.x.rows().into_iter().zip(y) {
            pooled.push([x[0], x[1], x[2], label as f64]);
        }
    }
    assert_eq!(report.training_rows as usize, pooled.len());
    for k in 0..3 {
        let n = pooled.len() as f64;
        let mean = pooled.iter().map(|r| r[k]).sum::<f64>() / n;
        let var = pooled.iter().map(|r| (r[k] - mean).powi(2)).sum::<f64>() / n;
        assert!((report.mean[k] - mean).abs() < 1e-6, "mean {k}");
        assert!(
            (report.std[k] - var.sqrt()).abs() < 1e-6 * var.sqrt().max(1.0),
            "std {k}"
        );
    }

    // The export, read back, replays FedAvg from the revealed sums bit for bit.
    let out = s._dir.path().join("model");
    model_export::write(&report, &out).expect("export");
    let exported = model_export::read(&out).expect("read export");
    let d = &exported.description;
    assert_eq!(d.features, FEATURES.map(String::from).to_vec());
    let (_, history) = &exported.tensors["history.params"];
    let (_, sums) = &exported.tensors["history.sums"];
    let p = d.n_params;
    let step = d.quantization.wire_step;
    for r in 0..d.rounds {
        let prev = &history[r * p..(r + 1) * p];
        let sum = &sums[r * (p + 1)..(r + 1) * (p + 1)];
        let total_weight = sum[p] / step;
        for k in 0..p {
            let replayed = prev[k] + sum[k] / total_weight;
            assert_eq!(
                replayed.to_bits(),
                history[(r + 1) * p + k].to_bits(),
                "round {} parameter {k}",
                r + 1
            );
        }
    }
    let (_, params) = &exported.tensors["params"];
    assert_eq!(
        params[..],
        history[d.best_round * p..(d.best_round + 1) * p]
    );

    // The secure model's test accuracy is within 2 points of a centralized
    // logistic regression on the pooled training rows.
    let best = report.rounds[report.best_round.max(1) - 1]
        .test
        .expect("test");
    let reference = centralized_accuracy(&pooled, &s.test, &report.mean, &report.std);
    let accuracy = d.test[d.best_round]
        .and_then(|m| m.accuracy)
        .expect("accuracy");
    assert!(
        accuracy >= reference - 0.02,
        "secure {accuracy:.3} vs centralized {reference:.3} ({best:?})"
    );
    assert!(reference > 0.7, "the data are learnable: {reference}");
    s.fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_stopping_and_a_missing_column() {
    let mut s = setup().await;
    // A learning rate far too large makes the validation loss climb after
    // the first rounds: patience 2 stops the training and keeps the best.
    let spec_stop = spec(
        r#", "early_stopping": {"patience": 2}, "quantization": {"bits": 16, "clip": 8.0, "max_weight": 4096}"#,
    );
    let mut spec_stop = spec_stop;
    spec_stop.train.learning_rate = 40.0;
    spec_stop.rounds = 20;
    let report = table_training::train(&s.fed, &spec_stop, &s.names, None, |_| {})
        .await
        .expect("training runs");
    assert!(report.stopped_early, "rounds run: {}", report.rounds.len());
    let losses: Vec<f64> = std::iter::once(report.initial_validation)
        .chain(report.rounds.iter().map(|r| r.validation))
        .map(|m| m.expect("validation").loss)
        .collect();
    let best = report.best_round;
    assert!(
        losses.iter().all(|&l| l >= losses[best]),
        "{losses:?} best {best}"
    );
    assert_eq!(report.rounds.len(), best + 2, "stopped after patience 2");

    // A feature no client has: every client sits the moments round out,
    // naming the column; the round aborts.
    let mut missing = spec("");
    missing.features[1] = "weight".into();
    let err = table_training::train(&s.fed, &missing, &s.names, None, |_| {})
        .await
        .expect_err("no client can answer");
    assert!(
        matches!(&err, TrainingError::Aborted { reason, .. } if reason == "not_enough_clients"),
        "{err}"
    );
    let mut reasons = Vec::new();
    while let Ok((_, event)) = s.events.try_recv() {
        if let ClientEvent::Skipped { reason, .. } = event {
            reasons.push(reason);
        }
    }
    assert!(
        reasons.iter().any(|r| r.contains("no column \"weight\"")),
        "{reasons:?}"
    );
    s.fed.shutdown().await;
}

/// Least squares `score ~ age + dose` on the pooled rows by the normal
/// equations (a 3×3 solve written here), and its mean squared error on `test`.
fn ols_test_mse(train: &[[f64; 4]], test: &[[f64; 4]]) -> f64 {
    let row = |r: &[f64; 4]| [1.0, r[0], r[1]];
    let mut a = [[0.0f64; 3]; 3];
    let mut b = [0.0f64; 3];
    for r in train {
        let x = row(r);
        for i in 0..3 {
            for j in 0..3 {
                a[i][j] += x[i] * x[j];
            }
            b[i] += x[i] * r[2];
        }
    }
    // Gaussian elimination with partial pivoting.
    for col in 0..3 {
        let pivot = (col..3)
            .max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))
            .expect("rows");
        a.swap(col, pivot);
        b.swap(col, pivot);
        for r in col + 1..3 {
            let f = a[r][col] / a[col][col];
            let pivot_row = a[col];
            for (x, p) in a[r].iter_mut().zip(pivot_row).skip(col) {
                *x -= f * p;
            }
            b[r] -= f * b[col];
        }
    }
    let mut w = [0.0f64; 3];
    for i in (0..3).rev() {
        let s: f64 = (i + 1..3).map(|j| a[i][j] * w[j]).sum();
        w[i] = (b[i] - s) / a[i][i];
    }
    test.iter()
        .map(|r| {
            let x = row(r);
            let p = w[0] * x[0] + w[1] * x[1] + w[2] * x[2];
            (p - r[2]).powi(2)
        })
        .sum::<f64>()
        / test.len() as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linear_regression_on_tables_approaches_least_squares() {
    let s = setup().await;
    let spec = TrainingSpec::parse(
        r#"{"table": "patients", "label": "score", "features": ["age", "dose"],
            "model": "linear", "rounds": 15, "validation": {"fraction": 0.0},
            "train": {"learning_rate": 0.05, "epochs": 2, "batch_size": 16, "l2": 0.0, "seed": 2},
            "quantization": {"bits": 16, "clip": 64.0, "max_weight": 4096}}"#,
        "linear spec",
    )
    .expect("valid spec");
    let test_path = s._dir.path().join("test-linear.csv");
    write_csv(&test_path, &s.test);
    let test_rows = table_training::read_test_rows(&DataSource::Csv { path: test_path }, &spec)
        .await
        .expect("test rows");
    let report = table_training::train(&s.fed, &spec, &s.names, Some(&test_rows), |_| {})
        .await
        .expect("training runs");
    assert_eq!(report.n_params, 3);
    let initial = report.initial_test.expect("initial test").loss;
    let last = report
        .rounds
        .last()
        .and_then(|r| r.test)
        .expect("test")
        .loss;
    assert!(report.rounds.iter().all(|r| r.included == s.names));
    let pooled: Vec<[f64; 4]> = s.pooled_rows();
    let reference = ols_test_mse(&pooled, &s.test);
    assert!(
        last < initial / 5.0,
        "training lowered the MSE: {initial} -> {last}"
    );
    assert!(
        last <= reference * 1.05,
        "secure linear regression test MSE {last} vs least squares {reference}"
    );
    s.fed.shutdown().await;
}

/// Input validity and robust aggregation in a table training (issue #15),
/// over real nodes: client-2 replaces its update by a scaled one. With the
/// spec's `defences.l2_bound` the helpers leave it out inside the engine, the report
/// names it and the bound it failed, and the new model is exactly the
/// honest clients' FedAvg; with `robust: clip` below a hard bound above it,
/// it is kept but scaled, and the model is the plaintext twin's of the same
/// integers, bit for bit. Both exports replay bit for bit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_table_update_is_left_out_or_clipped_inside_the_engine() {
    let s = setup_with(true).await;
    let spec_with = |extra: &str| {
        let text = format!(
            r#"{{"table": "patients", "label": "outcome", "features": ["age", "dose", "score"],
                "classes": ["healthy", "sick"], "model": "logistic", "rounds": 1,
                "validation": {{"fraction": 0.0}},
                "train": {{"learning_rate": 0.2, "epochs": 2, "batch_size": 16, "l2": 0.0, "seed": 5}},
                "quantization": {{"bits": 16, "clip": 4.0, "max_weight": 4096}}
                {extra}}}"#
        );
        TrainingSpec::parse(&text, "test spec").expect("valid spec")
    };
    let honest = &s.names[..2];
    let attacker = &s.names[2];
    // What each honest client uploaded: its contribution for the very
    // parameters the driver signed (a deterministic function of them and
    // its rows), as integers on the wire grid. (A client computes it on a
    // blocking thread, as the node does.)
    let honest_uploads = |spec: &TrainingSpec, report: &table_training::TableTrainingReport| {
        first_round_uploads(spec, report, None, &s.sources, honest)
    };
    let replays = |report: &table_training::TableTrainingReport, name: &str| {
        let out = s._dir.path().join(name);
        model_export::write(report, &out).expect("export");
        let exported = model_export::read(&out).expect("read export");
        let step = exported.description.quantization.wire_step;
        let sums = &report.sums[0];
        let w = sums[sums.len() - 1] / step;
        let replayed: Vec<f64> = report.history[0]
            .iter()
            .zip(sums)
            .map(|(g, s)| g + s / w)
            .collect();
        assert!(
            replayed
                .iter()
                .zip(&report.history[1])
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{name}: the export replays bit for bit"
        );
    };

    // A hard L2 bound: the poisoned update (norm 4·√8 ≈ 11.3) is left out.
    let bounded = spec_with(r#", "defences": {"l2_bound": 6.0}"#);
    let report = table_training::train(&s.fed, &bounded, &s.names, None, |_| {})
        .await
        .expect("an engine-checked training");
    let round = &report.rounds[0];
    assert_eq!(round.included, s.names, "the attacker uploaded");
    assert_eq!(round.rejected, vec![attacker.clone()]);
    assert_eq!(round.rejected_checks[attacker], vec!["l2"]);
    let fedavg = bounded.quantization.fedavg();
    let wire = fedavg.wire_spec().expect("wire spec");
    let uploads = honest_uploads(&bounded, &report);
    let mut sum = vec![0i64; uploads[0].len()];
    for u in &uploads {
        let w = u[u.len() - 1] as f64;
        let norm = u[..u.len() - 1]
            .iter()
            .map(|&q| (q as f64 / w * wire.step()).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!(norm < 6.0, "an honest update is within the bound ({norm})");
        for (s, q) in sum.iter_mut().zip(u) {
            *s += q;
        }
    }
    let sum: Vec<f64> = sum.iter().map(|&q| wire.dequantize(q)).collect();
    let twin = sealroom_analytics::fl::apply_sum_to(&fedavg, &report.history[0], &sum)
        .expect("the honest FedAvg");
    assert!(
        twin.iter()
            .zip(&report.history[1])
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "the model is the honest clients' FedAvg, bit for bit"
    );
    assert_eq!(report.sums[0], sum, "the export records the revealed sum");
    replays(&report, "bounded");

    // Clipping to 0.5 under a hard bound of 12: the poisoned update is kept,
    // scaled down to the clip norm; the twin clips the same integers.
    let clipped =
        spec_with(r#", "defences": {"l2_bound": 12.0, "robust": {"kind": "clip", "norm": 0.5}}"#);
    let report = table_training::train(&s.fed, &clipped, &s.names, None, |_| {})
        .await
        .expect("a clipped training");
    let round = &report.rounds[0];
    assert_eq!(round.included, s.names);
    assert!(round.rejected.is_empty(), "{:?}", round.rejected);
    let mut ints = honest_uploads(&clipped, &report);
    let n_params = report.history[0].len();
    ints.push(
        poisoned_update(&fedavg, n_params)
            .iter()
            .map(|v| (v / wire.step()) as i64)
            .collect(),
    );
    let q = |b: f64| ((b / wire.step()).powi(2)).floor() as u128;
    let bounds = ClipBounds {
        clip_sq: q(0.5),
        l2_sq: q(12.0),
        linf_sq: None,
        max_weight: fedavg.max_weight,
    };
    let (mut numer, verdicts, _) = clipped_weighted_sum_plain(&ints, &bounds);
    assert_eq!(verdicts, vec![true, true, true]);
    let weight = numer.pop().expect("the weight") as u128;
    assert_eq!(round.total_weight as u128, weight);
    let twin =
        sealroom_analytics::fl::apply_robust_to(&fedavg, &report.history[0], &numer, weight << 16)
            .expect("the twin");
    assert!(
        twin.iter()
            .zip(&report.history[1])
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "the model is the plaintext twin's, bit for bit"
    );
    replays(&report, "clipped");

    // A robust aggregation whose hard bound is missing is refused before
    // any round starts.
    let text = r#"{"table": "patients", "label": "outcome", "features": ["age"],
        "classes": ["healthy", "sick"], "model": "logistic",
        "defences": {"robust": {"kind": "clip", "norm": 0.5}}}"#;
    let err = TrainingSpec::parse(text, "bad.json").expect_err("no hard bound");
    assert!(err.to_string().contains("`defences.robust`"), "{err}");
    assert!(err.to_string().contains("l2_bound"), "{err}");
    s.fed.shutdown().await;
}
