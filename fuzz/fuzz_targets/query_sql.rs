//! The SQL planner on arbitrary text, domains and declared column bounds
//! (NaN, infinite, reversed included) and differential-privacy parameters
//! (any ε, δ): every input is planned or refused with an error, never a
//! panic; a planned query has cells, and a planned DP query a noise plan.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealroom_analytics::query::dp::{DpSpec, noise_plan};
use sealroom_analytics::query::{QuerySpec, plan};

fuzz_target!(|input: (&str, Vec<String>, [f64; 2], [f64; 2], Option<(f64, f64)>)| {
    let (sql, domain, x, y, dp) = input;
    let spec = QuerySpec {
        max_rows_per_client: None,
        sql: sql.to_string(),
        domains: [
            ("dept".to_string(), domain.clone()),
            ("g".to_string(), domain),
        ]
        .into(),
        bounds: [("x".to_string(), x), ("y".to_string(), y)].into(),
        min_rows: 5,
        min_clients: 2,
        dp: dp.map(|(epsilon, delta)| DpSpec { epsilon, delta }),
    };
    if let Ok(plan) = plan(&spec) {
        assert!(plan.cells() >= 1);
        if let Some(dp) = &spec.dp {
            let noise = noise_plan(&plan, dp).expect("a planned DP query has a noise plan");
            assert_eq!(noise.cells, plan.cells());
        }
    }
});
