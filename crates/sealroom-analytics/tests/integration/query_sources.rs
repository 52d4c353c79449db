//! Data sources: typed errors for missing and malformed inputs, read-only
//! access, safe rendering of hostile names and literals.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::query_support;

use std::path::Path;

use query_support::*;
use sealroom_analytics::query::{
    self, Cell, DataSource, LocalTable, Policy, QueryError, QuerySpec,
};

fn csv(path: &Path) -> DataSource {
    DataSource::Csv {
        path: path.to_path_buf(),
    }
}

async fn open_err(source: &DataSource) -> QueryError {
    LocalTable::open(source)
        .await
        .expect_err("expected the source to be refused")
}

#[tokio::test]
async fn missing_files_and_tables_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.csv");
    match open_err(&csv(&missing)).await {
        QueryError::NotFound { path } => assert_eq!(path, missing),
        other => panic!("{other:?}"),
    }
    let missing_db = dir.path().join("nope.sqlite");
    let err = open_err(&DataSource::Sqlite {
        path: missing_db.clone(),
        table: "t".into(),
    })
    .await;
    assert!(
        matches!(err, QueryError::NotFound { ref path } if *path == missing_db),
        "{err:?}"
    );
    // Opening read-only never creates the file.
    assert!(!missing_db.exists());

    let db = dir.path().join("c.sqlite");
    write_sqlite(&db, "salaries", &parties()[2]).await;
    let err = open_err(&DataSource::Sqlite {
        path: db,
        table: "employees".into(),
    })
    .await;
    assert!(
        matches!(err, QueryError::TableNotFound { ref table, .. } if table == "employees"),
        "{err:?}"
    );
    assert!(err.to_string().contains("employees"));
}

#[tokio::test]
async fn malformed_csv_files_name_their_line_and_never_a_value() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8], u64, &str); 4] = [
        (
            "ragged.csv",
            b"a,b\n1,2\n3,SECRET-42,5\n",
            3,
            "3 fields, the header has 2",
        ),
        ("utf8.csv", b"a,b\n1,2\n3,4\n\xff\xfeSECRET,1\n", 4, "UTF-8"),
        ("empty.csv", b"", 1, "no header"),
        ("dup.csv", b"a,A\n1,2\n", 1, "appears twice"),
    ];
    for (name, bytes, line, needle) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = open_err(&csv(&path)).await;
        match &err {
            QueryError::Malformed {
                path: p,
                line: l,
                reason,
            } => {
                assert_eq!((p.as_path(), *l), (path.as_path(), line), "{name}: {err}");
                assert!(reason.contains(needle), "{name}: {reason}");
            }
            other => panic!("{name}: {other:?}"),
        }
        assert!(!err.to_string().contains("SECRET"), "{name}: {err}");
    }
}

#[tokio::test]
async fn unknown_and_non_numeric_columns_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.csv");
    std::fs::write(&path, "dept,salary,note\neng,100,\nops,SECRET-7,x\nhr,,y\n").unwrap();
    let table = LocalTable::open(&csv(&path)).await.unwrap();
    let policy = Policy::new(1, 1).unwrap();

    let plan = query::plan(&spec("SELECT AVG(wage) FROM t")).unwrap();
    let err = query::local_counts(&plan, &table, &policy)
        .await
        .unwrap_err();
    match &err {
        QueryError::UnknownColumn {
            column, available, ..
        } => {
            assert_eq!(column, "wage");
            assert_eq!(available, "dept, salary, note");
        }
        other => panic!("{other:?}"),
    }

    let plan = query::plan(&spec("SELECT AVG(salary) FROM t")).unwrap();
    let err = query::local_counts(&plan, &table, &policy)
        .await
        .unwrap_err();
    assert!(
        matches!(err, QueryError::ColumnNotNumeric { ref column, line: Some(3), .. } if column == "salary"),
        "{err:?}"
    );
    assert!(!err.to_string().contains("SECRET"));
    // Counting or grouping a text column is fine; so is comparing it to text.
    let plan = query::plan(&spec("SELECT COUNT(salary) AS n FROM t WHERE note <> 'x'")).unwrap();
    let r = query::plaintext(&plan, &[&table], &policy).await.unwrap();
    assert_eq!(r.cell(&[], "n"), Some(&Cell::Value(0.0)));

    // A SQLite REAL column holding text is caught at query time.
    let db = dir.path().join("d.sqlite");
    let mut conn = sqlite_conn(&db).await;
    exec(&mut conn, "CREATE TABLE t (salary REAL)").await;
    exec(&mut conn, "INSERT INTO t VALUES (1.5), ('SECRET')").await;
    let table = LocalTable::open(&DataSource::Sqlite {
        path: db,
        table: "T".into(),
    })
    .await
    .unwrap();
    let plan = query::plan(&spec("SELECT SUM(salary) FROM t")).unwrap();
    let err = query::local_counts(&plan, &table, &policy)
        .await
        .unwrap_err();
    assert!(
        matches!(err, QueryError::ColumnNotNumeric { line: None, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn sqlite_files_are_only_read() {
    let fx = Fixture::new().await;
    let DataSource::Sqlite { path, .. } = &fx.sources[2] else {
        panic!("party C is SQLite")
    };
    let before = std::fs::read(path).unwrap();
    let r = run(
        &fx,
        &spec("SELECT dept, COUNT(*) AS n FROM salaries GROUP BY dept"),
    )
    .await;
    assert!(r.cell(&key("eng"), "n").and_then(Cell::value).is_some());
    assert_eq!(std::fs::read(path).unwrap(), before);
    let dir = path.parent().unwrap();
    let journals = std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("-wal")
        })
        .count();
    assert_eq!(journals, 0);
}

#[tokio::test]
async fn hostile_literals_and_names_are_rendered_safely() {
    let dir = tempfile::tempdir().unwrap();
    let mut tables = Vec::new();
    for i in 0..3 {
        let path = dir.path().join(format!("p{i}.csv"));
        std::fs::write(
            &path,
            "\"we\"\"ird col\",dept\n1,r&d's\n2,r&d's\n3,eng\n4,\"x' OR '1'='1\"\n5,a%b\n",
        )
        .unwrap();
        tables.push(LocalTable::open(&csv(&path)).await.unwrap());
    }
    let refs: Vec<&LocalTable> = tables.iter().collect();
    let policy = Policy::new(1, 1).unwrap();
    let count = |sql: &str| {
        let spec = QuerySpec {
            max_rows_per_client: None,
            sql: sql.to_owned(),
            domains: Default::default(),
            min_rows: 1,
            min_clients: 1,
            bounds: [("we\"ird col".to_owned(), [0.0, 10.0])].into(),
            dp: None,
        };
        let plan = query::plan(&spec).unwrap();
        let refs = refs.clone();
        async move { query::plaintext(&plan, &refs, &policy).await.unwrap() }
    };
    let r = count("SELECT COUNT(*) AS n, SUM(\"we\"\"ird col\") AS s FROM t WHERE dept = 'r&d''s'")
        .await;
    assert_eq!(r.cell(&[], "n"), Some(&Cell::Value(6.0)));
    assert_eq!(r.cell(&[], "s"), Some(&Cell::Value(9.0)));
    // A classic injection payload is a plain string: it matches only itself.
    let r = count("SELECT COUNT(*) AS n FROM t WHERE dept = 'x'' OR ''1''=''1'").await;
    assert_eq!(r.cell(&[], "n"), Some(&Cell::Value(3.0)));
    let r = count("SELECT COUNT(*) AS n FROM t WHERE dept = 'nobody'' OR 1=1 --'").await;
    assert!(matches!(r.cell(&[], "n"), Some(Cell::Suppressed { .. })));
    // LIKE is case-sensitive with no escape character on every backend.
    let r = count("SELECT COUNT(*) AS n FROM t WHERE dept LIKE 'R&D%' OR dept LIKE 'a\\%b'").await;
    assert!(matches!(r.cell(&[], "n"), Some(Cell::Suppressed { .. })));
    let r = count("SELECT COUNT(*) AS n FROM t WHERE dept LIKE 'a%b' AND dept LIKE 'a_b'").await;
    assert_eq!(r.cell(&[], "n"), Some(&Cell::Value(3.0)));
    // A negative literal cannot turn into a comment.
    let r =
        count("SELECT COUNT(*) AS n FROM t WHERE - -1 = 1 AND \"we\"\"ird col\" - -1 > 5").await;
    assert_eq!(r.cell(&[], "n"), Some(&Cell::Value(3.0)));
}

#[tokio::test]
async fn wire_vectors_are_redacted() {
    let fx = Fixture::new().await;
    let plan = query::plan(&spec("SELECT AVG(salary) FROM t")).unwrap();
    let v = query::local_stats(&plan, &fx.tables[0], &[0])
        .await
        .unwrap();
    assert_eq!(
        format!("{v:?}"),
        format!("WireVector(len={}, <redacted>)", v.len())
    );
    let source = DataSource::Postgres {
        url: "postgres://u:hunter2@localhost/db".into(),
        table: "t".into(),
    };
    assert!(!format!("{source:?}").contains("hunter2"));
}
