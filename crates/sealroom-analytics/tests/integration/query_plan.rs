//! Planning: the accepted SQL subset, and every refusal with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::query_support;

use query_support::{spec, spec_without_domain};
use sealroom_analytics::query::{self, Policy, QueryError, QuerySpec};

/// Plans `sql` and returns the refusal's message.
fn refusal(sql: &str) -> String {
    match query::plan(&spec(sql)) {
        Ok(_) => panic!("{sql}: planned, expected a refusal"),
        Err(e) => e.to_string(),
    }
}

fn assert_refused(sql: &str, needles: &[&str]) {
    let msg = refusal(sql);
    for n in needles {
        assert!(msg.contains(n), "{sql}: message {msg:?} lacks {n:?}");
    }
}

#[test]
fn every_supported_shape_plans() {
    let plan = query::plan(&spec(
        "SELECT dept, COUNT(*), COUNT(salary) AS c, SUM(salary) s, AVG(salary * 1.1 - 5) AS a, \
         VAR_SAMP(salary) v1, VAR_POP(salary) v2, VARIANCE(salary) v3, STDDEV(salary) d1, \
         STDDEV_SAMP(salary) d2, STDDEV_POP(salary) d3, HISTOGRAM(age, -10, 30, 50.5) AS h, \
         REGR_SLOPE(salary, years) r1, REGR_INTERCEPT(salary, years) r2, REGR_COUNT(salary, years) r3, \
         REGR_R2(salary, years) r4, OLS(salary, years, age / 10) AS fit \
         FROM salaries WHERE (age >= 18 AND dept IS NOT NULL) OR NOT years BETWEEN 1 AND 3 GROUP BY dept",
    ))
    .unwrap();
    assert_eq!(plan.table(), "salaries");
    assert_eq!(plan.cells(), 6);
    assert_eq!(plan.group_columns(), ["dept"]);
    let cols = plan.columns();
    assert_eq!(cols[0], "COUNT(*)");
    assert!(cols.contains(&"h[<-10]".to_owned()) && cols.contains(&"h[30,50.5)".to_owned()));
    assert!(cols.ends_with(&[
        "fit.intercept".to_owned(),
        "fit.years".to_owned(),
        "fit.age / 10".to_owned(),
        "fit.r2".to_owned(),
        "fit.n".to_owned()
    ]));
    // SUM, AVG and the variances share the count and Σ of salary.
    let again = query::plan(&spec(
        "SELECT SUM(salary), AVG(salary), VAR_POP(salary) FROM t",
    ))
    .unwrap();
    assert_eq!(again.statistics(), 3);
    assert_eq!(query::counts_len(&again), 2);
    // Per cell: rows, contributed, adjusted and the three statistics.
    assert_eq!(query::stats_len(&again, &[0]), (3 + 3) * 4);
}

#[test]
fn joins_and_several_tables_are_refused() {
    for sql in [
        "SELECT COUNT(*) FROM a JOIN b ON a.id = b.id",
        "SELECT COUNT(*) FROM a, b",
        "SELECT COUNT(*) FROM a LEFT JOIN b USING (id)",
    ] {
        assert_refused(sql, &["private set intersection", "not yet available"]);
    }
}

#[test]
fn non_decomposable_aggregates_are_refused() {
    // MIN, MAX, MEDIAN and PERCENTILE_CONT run in the order round
    // (tests/integration/query_order.rs); other order statistics are refused.
    for sql in [
        "SELECT MODE(salary) FROM t",
        "SELECT PERCENTILE_DISC(0.5) WITHIN GROUP (ORDER BY salary) FROM t",
    ] {
        assert_refused(sql, &["not decomposable into sums", "MPC engine"]);
    }
    assert_refused(
        "SELECT COUNT(*) FROM t WHERE salary > MAX(age)",
        &["MAX inside an expression"],
    );
    assert_refused(
        "SELECT COUNT(DISTINCT dept) FROM t",
        &["DISTINCT", "private set union"],
    );
    assert_refused("SELECT SUM(DISTINCT salary) FROM t", &["DISTINCT"]);
}

#[test]
fn subqueries_are_refused_wherever_they_hide() {
    for sql in [
        "SELECT COUNT(*) FROM t WHERE salary > (SELECT AVG(salary) FROM t)",
        "SELECT COUNT(*) FROM t WHERE dept IN (SELECT dept FROM u)",
        "SELECT COUNT(*) FROM t WHERE EXISTS (SELECT 1 FROM u)",
        "SELECT COUNT(*) FROM (SELECT * FROM t) AS x",
        "WITH x AS (SELECT * FROM t) SELECT COUNT(*) FROM x",
    ] {
        assert_refused(sql, &["unvetted SQL"]);
    }
}

#[test]
fn clauses_that_need_post_processing_are_refused() {
    assert_refused(
        "SELECT dept, COUNT(*) FROM t GROUP BY dept HAVING COUNT(*) > 3",
        &["HAVING", "published result"],
    );
    assert_refused(
        "SELECT dept, COUNT(*) FROM t GROUP BY dept ORDER BY dept",
        &["ORDER BY", "sort"],
    );
    assert_refused("SELECT COUNT(*) FROM t LIMIT 3", &["LIMIT"]);
    assert_refused(
        "SELECT SUM(salary) OVER (PARTITION BY dept) FROM t",
        &["window function"],
    );
    assert_refused(
        "SELECT SUM(salary) FILTER (WHERE age > 3) FROM t",
        &["FILTER", "WHERE"],
    );
    assert_refused(
        "SELECT COUNT(*) FROM t UNION SELECT COUNT(*) FROM u",
        &["UNION"],
    );
    assert_refused("SELECT DISTINCT dept FROM t", &["DISTINCT", "domain"]);
}

#[test]
fn statements_other_than_one_select_are_refused() {
    for sql in [
        "DELETE FROM t",
        "INSERT INTO t VALUES (1)",
        "DROP TABLE t",
        "UPDATE t SET salary = 0",
        "ATTACH DATABASE 'x.db' AS x",
        "PRAGMA writable_schema = ON",
    ] {
        let msg = refusal(sql);
        assert!(
            msg.contains("only SELECT") || msg.contains("parse"),
            "{sql}: {msg}"
        );
    }
    assert_refused(
        "SELECT COUNT(*) FROM t; DROP TABLE t",
        &["several statements"],
    );
    assert_refused("", &["no statement"]);
    assert!(matches!(
        query::plan(&spec("SELEC COUNT(*) FROM t")),
        Err(QueryError::Parse { .. })
    ));
}

#[test]
fn group_by_needs_a_declared_domain() {
    let err = query::plan(&spec_without_domain(
        "SELECT dept, COUNT(*) FROM t GROUP BY dept",
    ))
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("without a declared domain") && msg.contains("\"domains\""),
        "{msg}"
    );
    let mut s = spec("SELECT dept, COUNT(*) FROM t GROUP BY dept");
    s.domains.insert("dept".into(), vec![]);
    assert!(
        query::plan(&s)
            .unwrap_err()
            .to_string()
            .contains("1 to 1024 values")
    );
    s.domains
        .insert("dept".into(), vec!["a".into(), "a".into()]);
    assert!(query::plan(&s).unwrap_err().to_string().contains("twice"));
    // Domain keys match unquoted columns case-insensitively.
    assert_eq!(
        query::plan(&spec("SELECT DEPT, COUNT(*) FROM t GROUP BY DEPT"))
            .unwrap()
            .cells(),
        6
    );
    assert_refused("SELECT COUNT(*) FROM t GROUP BY age + 1", &["plain column"]);
    assert_refused(
        "SELECT COUNT(*) FROM t GROUP BY a, b, c",
        &["more than two"],
    );
}

#[test]
fn raw_values_cannot_be_selected() {
    assert_refused("SELECT * FROM t", &["SELECT *", "never leave"]);
    assert_refused(
        "SELECT salary, COUNT(*) FROM t",
        &["neither in GROUP BY nor aggregated"],
    );
    assert_refused("SELECT salary + 1 FROM t", &["would reveal raw values"]);
    assert_refused(
        "SELECT SUM(salary) / COUNT(*) FROM t",
        &["arithmetic on aggregates"],
    );
    assert_refused("SELECT SUM(AVG(salary)) FROM t", &["inside an expression"]);
    assert_refused("SELECT dept FROM t GROUP BY dept", &["no aggregate"]);
    assert_refused(
        "SELECT COUNT(*) AS x, SUM(y) AS x FROM t",
        &["share this name"],
    );
}

#[test]
fn only_whitelisted_expressions_pass() {
    for (sql, needle) in [
        (
            "SELECT COUNT(*) FROM t WHERE load_extension('evil.so') = 1",
            "not on the whitelist",
        ),
        (
            "SELECT COUNT(*) FROM t WHERE upper(dept) = 'ENG'",
            "not on the whitelist",
        ),
        ("SELECT SUM(abs(salary)) FROM t", "not on the whitelist"),
        ("SELECT FOO(salary) FROM t", "not a supported aggregate"),
        (
            "SELECT COUNT(*) FROM t WHERE CAST(age AS TEXT) = '3'",
            "cast to numbers automatically",
        ),
        (
            "SELECT COUNT(*) FROM t WHERE CASE WHEN a THEN 1 END = 1",
            "CASE",
        ),
        ("SELECT COUNT(*) FROM t WHERE dept = NULL", "IS NULL"),
        ("SELECT COUNT(*) FROM t WHERE salary % 2 = 0", "operator"),
        ("SELECT COUNT(*) FROM t WHERE dept || 'x' = 'y'", "operator"),
        (
            "SELECT COUNT(*) FROM t WHERE dept LIKE dept",
            "string literal",
        ),
        ("SELECT COUNT(*) FROM t WHERE salary", "not a boolean"),
        (
            "SELECT COUNT(*) FROM t WHERE age + 1 = 'old'",
            "compared with a string",
        ),
        ("SELECT SUM('x') FROM t", "a number is needed"),
        (
            "SELECT COUNT(*) FROM t WHERE other.age > 3",
            "one table in FROM",
        ),
    ] {
        assert_refused(sql, &[needle]);
    }
}

#[test]
fn aggregate_arguments_are_checked() {
    assert_refused("SELECT HISTOGRAM(salary) FROM t", &["1 to 64 bucket edges"]);
    assert_refused(
        "SELECT HISTOGRAM(salary, 5, 5) FROM t",
        &["strictly increasing"],
    );
    assert_refused(
        "SELECT HISTOGRAM(salary, 5, age) FROM t",
        &["numeric literals"],
    );
    assert_refused("SELECT OLS(salary) FROM t", &["1 to 16 regressors"]);
    assert_refused("SELECT REGR_SLOPE(salary) FROM t", &["two arguments"]);
    assert_refused("SELECT AVG(salary, age) FROM t", &["exactly one argument"]);
    assert_refused("SELECT SUM(*) FROM t", &["argument"]);
}

#[test]
fn policies_are_range_checked_and_compared_with_a_floor() {
    let mut s = spec("SELECT COUNT(*) FROM t");
    s.min_rows = 0;
    assert!(matches!(query::plan(&s), Err(QueryError::Policy { .. })));
    s.min_rows = 1 << 24;
    assert!(matches!(query::plan(&s), Err(QueryError::Policy { .. })));
    s.min_rows = 5;
    s.min_clients = 0;
    assert!(matches!(query::plan(&s), Err(QueryError::Policy { .. })));
    s.min_clients = 1025;
    assert!(matches!(query::plan(&s), Err(QueryError::Policy { .. })));
    let asked = Policy::new(5, 3).unwrap();
    assert!(asked.check_floor(&Policy::new(5, 3).unwrap()).is_ok());
    assert!(asked.check_floor(&Policy::new(10, 2).unwrap()).is_err());
    assert!(asked.check_floor(&Policy::new(1, 4).unwrap()).is_err());
}

#[test]
fn specs_travel_as_json_and_have_a_stable_digest() {
    let s = spec("SELECT dept, AVG(salary) FROM salaries GROUP BY dept");
    let json = serde_json::to_string(&s).unwrap();
    let back: QuerySpec = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
    assert_eq!(back.digest(), s.digest());
    let mut other = s.clone();
    other.min_rows += 1;
    assert_ne!(other.digest(), s.digest());
    assert!(
        serde_json::from_str::<QuerySpec>(r#"{"sql":"x","min_rows":1,"min_clients":1,"extra":0}"#)
            .is_err()
    );
    let minimal: QuerySpec =
        serde_json::from_str(r#"{"sql":"SELECT COUNT(*) FROM t","min_rows":3,"min_clients":2}"#)
            .unwrap();
    assert!(query::plan(&minimal).is_ok());
}

/// Plans `sql` (no GROUP BY domain) with the declared column bounds.
fn plan_with_bounds(
    sql: &str,
    bounds: &[(&str, [f64; 2])],
) -> Result<query::QueryPlan, QueryError> {
    query::plan(&QuerySpec {
        bounds: bounds.iter().map(|(c, b)| (c.to_string(), *b)).collect(),
        ..spec_without_domain(sql)
    })
}

/// Finding (the unoptimised test build aborted on a stack overflow): a
/// chain of operators is one tree level per operator, and converting it
/// recursed without a bound, so a 400-fold product overflowed a test
/// thread's 2 MiB stack and 64 KiB of SQL would do the same to a release
/// node's task. A chain within [`query::MAX_OPERATORS`] but deeper than 64
/// levels is refused by the converter, a longer one from its tokens before
/// any tree exists; both say why, and a chain of 60 ORs still plans.
#[test]
fn a_deep_expression_is_refused_before_it_can_overflow_the_stack() {
    let salary = [("salary", [0.0, 500_000.0])];
    let plan_of = |sql: &str| plan_with_bounds(sql, &salary);
    let refused = |sql: &str, needle: &str| match plan_of(sql) {
        Ok(_) => panic!("planned a {}-byte query", sql.len()),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(needle), "{msg}");
            assert!(msg.len() < 400, "the message repeats the query: {msg}");
        }
    };
    let product = vec!["salary"; 400].join(" * ");
    refused(
        &format!("SELECT SUM({product}) AS s FROM t"),
        "nests deeper than 64 levels",
    );
    let ors = vec!["salary = 1"; 101].join(" OR ");
    refused(
        &format!("SELECT COUNT(*) FROM t WHERE {ors}"),
        "nests deeper than 64 levels",
    );
    let long = vec!["1"; 30_000].join("*");
    refused(
        &format!("SELECT SUM({long}) AS s FROM t"),
        "more than the 512 a query may hold",
    );
    let long_or = vec!["salary = 1"; 3_000].join(" OR ");
    refused(
        &format!("SELECT COUNT(*) FROM t WHERE {long_or}"),
        "more than the 512 a query may hold",
    );
    let fine = vec!["salary = 1"; 60].join(" OR ");
    plan_of(&format!("SELECT COUNT(*) FROM t WHERE {fine}")).expect("60 ORs plan");
}

/// Issue #12, finding 4: every column used as a number in arithmetic or an
/// aggregate needs declared bounds, and every expression must stay bounded
/// over them, so that local evaluation cannot fail on a row and no row can
/// dominate a sum.
#[test]
fn arithmetic_needs_bounds_and_stays_bounded() {
    let plan_of = plan_with_bounds;
    let refused = |sql: &str, bounds: &[(&str, [f64; 2])], needle: &str| match plan_of(sql, bounds)
    {
        Ok(_) => panic!("{sql}: planned"),
        Err(e) => assert!(e.to_string().contains(needle), "{sql}: {e}"),
    };
    let salary = [("salary", [0.0, 500_000.0])];
    // No bounds declared for a summed column.
    refused("SELECT SUM(x) FROM t", &[], "no declared bounds");
    refused(
        "SELECT COUNT(*) FROM t WHERE x * 2 > 3",
        &[],
        "no declared bounds",
    );
    // The division probe: its divisor can be zero within the bounds.
    refused(
        "SELECT SUM(1 / (salary - 95000 + 1)) AS s FROM t",
        &salary,
        "contains 0",
    );
    // ... and a literal chosen to sit next to zero.
    refused(
        "SELECT SUM(salary + 1e-300) AS s FROM t",
        &salary,
        "allowed magnitudes",
    );
    // The overflow probe: a 400-fold product, and the maximum-revealing
    // power, whatever the bounds.
    let product = vec!["salary"; 400].join(" * ");
    refused(
        &format!("SELECT SUM({product}) AS s FROM t WHERE salary >= 95000"),
        &salary,
        "nests deeper",
    );
    refused(
        "SELECT SUM((salary / 90000) * (salary / 90000) * (salary / 90000) * (salary / 90000) * (salary / 90000)) AS s FROM t",
        &salary,
        "degree 5",
    );
    // Too large within the bounds.
    refused(
        "SELECT SUM(salary * salary * salary) AS s FROM t",
        &salary,
        "can reach",
    );
    // The same in WHERE: a condition that overflows on PostgreSQL for some
    // rows is refused too.
    refused(
        &format!("SELECT COUNT(*) FROM t WHERE {product} > 0"),
        &salary,
        "nests deeper",
    );
    refused(
        &format!(
            "SELECT COUNT(*) FROM t WHERE {} > 0.5",
            ["(salary / 500000)"; 5].join(" * ")
        ),
        &salary,
        "degree 5",
    );
    // Bounds themselves are checked.
    refused(
        "SELECT SUM(salary) FROM t",
        &[("salary", [5.0, 1.0])],
        "lower end",
    );
    // Fine: bounded, low degree, divisor away from zero; a bare comparison
    // needs no bounds.
    let plan = plan_of(
        "SELECT AVG(salary / (years + 1)) AS a, VAR_POP(salary) AS v FROM t WHERE age > 30",
        &[("salary", [0.0, 500_000.0]), ("years", [0.0, 50.0])],
    )
    .expect("bounded");
    let bounds: Vec<String> = plan.bounds().into_iter().map(|(c, _)| c).collect();
    assert_eq!(bounds, ["salary", "years"]);
}
