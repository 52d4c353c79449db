//! What a node of this federation runs: the coordinator's task catalog and
//! a client's input sources, assembled from a node's config. Shared by the
//! `sealroom` CLI and the Python package so that both run the same tasks.

use std::collections::BTreeMap;
use std::sync::Arc;

use sealroom_node::config::{DataSource, NodeConfig};
use sealroom_node::tasks::{InputRouter, InputSource, SYNTHETIC, SyntheticInput, TaskCatalog};

use crate::budget::{ClientPrivacy, PrivacyLedger};
use crate::fl::DatasetKind;
use crate::joint::{self, QUERY_TASK, QueryInput};
use crate::query::Policy;
use crate::table_training::{self, TableTrainingInput};
use crate::training::{self, FEDAVG_TASK, MOMENTS_TASK, TrainingData, TrainingInput, UpdateTap};
use crate::vector_fedavg;

/// The smallest `min_rows` a client accepts in a query unless its config's
/// `[policy] min_rows` says otherwise: cells of fewer rows are never released.
pub const DEFAULT_MIN_ROWS: u64 = 5;

/// Why a client's data sources could not be assembled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// A `[data.<table>]` entry that no task can use.
    #[error("{file}: data.{table}: {why}")]
    DataSource {
        /// The node config file.
        file: String,
        /// The table's name.
        table: String,
        /// What is wrong.
        why: String,
    },
    /// The client's query policy is invalid.
    #[error("{file}: [policy]: {why}")]
    Policy {
        /// The node config file.
        file: String,
        /// What is wrong.
        why: String,
    },
}

/// The tasks every sealroom coordinator offers.
pub fn catalog() -> TaskCatalog {
    let mut c = TaskCatalog::with_builtins();
    training::register_tasks(&mut c);
    table_training::register_tasks(&mut c);
    joint::register_tasks(&mut c);
    vector_fedavg::register_tasks(&mut c);
    c
}

/// A client's data sources, from its config: the synthetic test task, its
/// bundled training data sets, its tables for queries and trainings, and
/// `extra` sources for further tasks (e.g. a framework's
/// [`vector_fedavg::VECTOR_FEDAVG_TASK`]).
pub fn client_input(
    config: &NodeConfig,
    extra: Vec<(String, Arc<dyn InputSource>)>,
) -> Result<Arc<dyn InputSource>, ServiceError> {
    let mut training_tables = BTreeMap::new();
    let mut tables = BTreeMap::new();
    for (table, source) in &config.data {
        match source {
            DataSource::Builtin {
                dataset,
                part,
                parts,
            } => {
                let dataset = match dataset.as_str() {
                    "winequality" => DatasetKind::Wine,
                    "iris" => DatasetKind::Iris,
                    other => {
                        return Err(ServiceError::DataSource {
                            file: config.file.display().to_string(),
                            table: table.clone(),
                            why: format!(
                                "the bundled {other:?} data set is not a training set (use \
                                 winequality or iris; for queries write it to a CSV file)"
                            ),
                        });
                    }
                };
                training_tables.insert(
                    table.clone(),
                    TrainingData {
                        dataset,
                        part: *part,
                        parts: *parts,
                    },
                );
            }
            DataSource::Csv { .. } | DataSource::Sqlite { .. } | DataSource::Postgres { .. } => {
                tables.insert(table.clone(), source.clone());
            }
        }
    }
    let floor = Policy::new(
        config.policy.map_or(DEFAULT_MIN_ROWS, |p| p.min_rows),
        u32::try_from(config.federation.min_clients).unwrap_or(u32::MAX),
    )
    .map_err(|e| ServiceError::Policy {
        file: config.file.display().to_string(),
        why: e.to_string(),
    })?;
    let privacy = ClientPrivacy::from_config(config).map_err(|e| ServiceError::Policy {
        file: config.file.display().to_string(),
        why: e.to_string(),
    })?;
    // One ledger for the client's DP queries and DP trainings.
    let ledger = Arc::new(PrivacyLedger::new(privacy));
    let mut router = client_router(
        &config.name,
        training_tables,
        tables.clone(),
        floor,
        Some(ledger.clone()),
        None,
    );
    let table_training: Arc<dyn InputSource> =
        Arc::new(TableTrainingInput::new(&config.name, tables).with_ledger(ledger));
    for task in table_training::TASKS {
        router = router.with(task, table_training.clone());
    }
    for (task, source) in extra {
        router = router.with(&task, source);
    }
    Ok(Arc::new(router))
}

/// The input of a client for the built-in tasks: which source serves which
/// task (the demo adds a tap that records FedAvg updates). Without
/// `privacy` the client answers no differentially private query.
pub fn client_router(
    name: &str,
    training_tables: BTreeMap<String, TrainingData>,
    query_tables: BTreeMap<String, DataSource>,
    floor: Policy,
    privacy: Option<Arc<PrivacyLedger>>,
    tap: Option<UpdateTap>,
) -> InputRouter {
    let mut training = TrainingInput::new(name, training_tables);
    if let Some(tap) = tap {
        training = training.with_tap(tap);
    }
    let training: Arc<dyn InputSource> = Arc::new(training);
    InputRouter::default()
        .with(
            SYNTHETIC,
            Arc::new(SyntheticInput {
                client: name.to_string(),
            }),
        )
        .with(MOMENTS_TASK, training.clone())
        .with(FEDAVG_TASK, training)
        .with(QUERY_TASK, {
            let input = QueryInput::new(query_tables, floor);
            Arc::new(match privacy {
                Some(p) => input.with_ledger(p),
                None => input,
            })
        })
}
