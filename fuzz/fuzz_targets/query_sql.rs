//! The SQL planner on arbitrary text and domains: every input is planned or
//! refused with an error, never a panic; a planned query has cells.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealroom_analytics::query::{QuerySpec, plan};

fuzz_target!(|input: (&str, Vec<String>)| {
    let (sql, domain) = input;
    let spec = QuerySpec {
        sql: sql.to_string(),
        domains: [("dept".to_string(), domain.clone()), ("g".to_string(), domain)].into(),
        min_rows: 5,
        min_clients: 2,
    };
    if let Ok(plan) = plan(&spec) {
        assert!(plan.cells() >= 1);
    }
});
