//! The integration tests of `sealroom-analytics`, as one test binary (the
//! `integration` target): each file of this directory is one module. One
//! binary links once instead of once per file, and `cargo test` runs its
//! tests side by side (libtest's threads) instead of one binary after the
//! other, so rounds that wait on their windows overlap. Run one file's tests
//! with a module filter: `cargo test -p sealroom-analytics --test integration
//! net_query::`.

#[path = "../query_support/mod.rs"]
mod query_support;

mod fl_fedavg;
mod fl_simulate;
mod fl_split;
mod fl_training;
mod net_dp_query;
mod net_dp_training;
mod net_query;
mod net_table_training;
mod net_training;
mod query_diabetes;
mod query_example;
mod query_order;
mod query_pipeline;
mod query_plan;
mod query_postgres;
mod query_rounds;
mod query_sources;
mod red_team_query;
mod table_postgres;
mod task_params;
