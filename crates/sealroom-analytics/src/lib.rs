//! What runs on top of secure aggregation (DESIGN.md §8).
//!
//! * [`fl`]: federated learning: multinomial logistic regression and a small
//!   MLP over `ndarray`, local mini-batch SGD with a fixed seed, non-IID data
//!   splits, and FedAvg of quantized model deltas whose weighted sum and
//!   sample count go through one secure-aggregation round.
//! * [`query`]: joint analytics: a SQL subset parsed with `sqlparser`, each
//!   client's local part evaluated where its data lives (CSV, SQLite or
//!   PostgreSQL), exact fixed-point encoding of the local statistics, and the
//!   public post-processing of their secure sum with small-cell suppression.
//! * [`budget`]: a client's durable per-table differential-privacy budget
//!   ledger, charged before the client shares anything for a DP release.
//!
//! This crate owns models, data handling and query planning. It never sees
//! another party's raw input: everything it combines across parties arrives
//! as a secure sum. It must never log an input value, a local statistic or a
//! model delta of one client.

#![forbid(unsafe_code)]

pub mod budget;
pub mod fl;
pub mod joint;
pub mod model_export;
pub mod query;
mod round;
pub mod service;
pub mod table_data;
pub mod table_training;
pub mod train_spec;
pub mod training;
pub mod vector_fedavg;
