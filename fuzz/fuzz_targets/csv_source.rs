//! A client's CSV data source with arbitrary file contents: loading and
//! evaluating a query over it succeeds or fails with a typed error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealroom_analytics::query::{DataSource, LocalTable, Policy, local_counts};
use sealroom_fuzz::{csv_plan, runtime};

fuzz_target!(|contents: &[u8]| {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("t.csv");
    std::fs::write(&path, contents).expect("write the file");
    runtime().block_on(async {
        if let Ok(table) = LocalTable::open(&DataSource::Csv { path }).await {
            let policy = Policy::new(5, 2).expect("a valid policy");
            let _ = local_counts(csv_plan(), &table, &policy).await;
        }
    });
});
