//! A `rows` transform planned once and run over one group of rows after another, as the
//! stream job runs it over each slice of a micro-batch.

use std::sync::Arc;

use arrow::array::{Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use silt_transform::{Mode, Reference, RowsSession, Transform};

fn events(ids: &[i64], products: &[&str]) -> RecordBatch {
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("product", DataType::Utf8, false),
        ])),
        vec![
            Arc::new(Int64Array::from(ids.to_vec())),
            Arc::new(StringArray::from(products.to_vec())),
        ],
    )
    .unwrap()
}

fn column<'a, T: 'static>(out: &'a [RecordBatch], name: &str) -> Vec<&'a T> {
    out.iter()
        .map(|b| {
            b.column(b.schema().index_of(name).unwrap())
                .as_any()
                .downcast_ref::<T>()
                .unwrap()
        })
        .collect()
}

fn ids(out: &[RecordBatch]) -> Vec<i64> {
    column::<Int64Array>(out, "id")
        .into_iter()
        .flat_map(|a| a.values().to_vec())
        .collect()
}

#[tokio::test]
async fn each_run_reads_the_rows_it_is_given_and_only_those() {
    let session = RowsSession::new(&[]).await.unwrap();
    let t = Transform::new(
        "big",
        "SELECT id, upper(product) AS product FROM events WHERE id > 1",
        Mode::Rows,
    );
    let first = events(&[1, 2, 3], &["a", "b", "c"]);
    let prepared = session.prepare(&t, first.schema()).await.unwrap();
    assert_eq!(
        ids(&prepared.run(vec![first.clone()]).await.unwrap()),
        [2, 3]
    );
    let second = events(&[5, 0, 7], &["x", "y", "z"]);
    let out = prepared.run(vec![second.clone(), first]).await.unwrap();
    assert_eq!(ids(&out), [5, 7, 2, 3]);
    let names: Vec<String> = column::<StringArray>(&out, "product")
        .into_iter()
        .flat_map(|a| {
            (0..a.len())
                .map(|i| a.value(i).to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(names, ["X", "Z", "B", "C"]);
    // Nothing given, nothing out: the last run's rows are not kept.
    assert_eq!(ids(&prepared.run(vec![]).await.unwrap()), Vec::<i64>::new());
}

/// A SQL file saved by a Windows editor starts with a byte order mark: not SQL, and
/// DataFusion's parser refused it ("found: u{feff}").
#[tokio::test]
async fn sql_saved_with_a_byte_order_mark_runs_as_without() {
    let session = RowsSession::new(&[]).await.unwrap();
    let t = Transform::new(
        "marked",
        "\u{feff}SELECT id FROM events WHERE id > 1",
        Mode::Rows,
    );
    let first = events(&[1, 2, 3], &["a", "b", "c"]);
    let prepared = session.prepare(&t, first.schema()).await.unwrap();
    assert_eq!(ids(&prepared.run(vec![first]).await.unwrap()), [2, 3]);
}

#[tokio::test]
async fn a_join_with_a_reference_table_is_built_again_for_each_run() {
    let dir = std::env::temp_dir().join(format!("silt-prepared-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("names.csv");
    std::fs::write(&csv, "product,name\na,apple\nb,banana\nx,xigua\n").unwrap();
    let session = RowsSession::new(&[Reference {
        name: "names".into(),
        path: csv,
    }])
    .await
    .unwrap();
    let t = Transform::new(
        "named",
        "SELECT e.id, n.name FROM events e JOIN names n ON e.product = n.product ORDER BY e.id",
        Mode::Rows,
    );
    let first = events(&[1, 2, 3], &["a", "b", "c"]);
    let prepared = session.prepare(&t, first.schema()).await.unwrap();
    for _ in 0..2 {
        assert_eq!(
            ids(&prepared.run(vec![first.clone()]).await.unwrap()),
            [1, 2]
        );
        let out = prepared
            .run(vec![events(&[9, 8], &["x", "a"])])
            .await
            .unwrap();
        assert_eq!(ids(&out), [8, 9]);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_rows_transform_that_aggregates_is_refused_when_prepared() {
    let session = RowsSession::new(&[]).await.unwrap();
    let t = Transform::new("n", "SELECT count(*) FROM events", Mode::Rows);
    let err = session
        .prepare(&t, events(&[1], &["a"]).schema())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("mode = \"partitions\""), "{err}");
}

#[tokio::test]
async fn a_transform_reading_a_table_it_lacks_is_told_which_it_has() {
    let dir = std::env::temp_dir().join(format!("silt-prepared-lacks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("sales.csv");
    std::fs::write(&csv, "saleId,brand\n1,Acme\n").unwrap();
    let refs = [Reference {
        name: "sales".into(),
        path: csv,
    }];
    let session = RowsSession::new(&refs).await.unwrap();
    let t = Transform::new("t", "SELECT * FROM clickstream", Mode::Rows);
    let err = session
        .prepare(&t, events(&[1], &["a"]).schema())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("transform `t`: reads a table `clickstream` that transforms do not have"),
        "{err}"
    );
    assert!(err.ends_with("tables: events, sales"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn camel_case_columns_are_read_unquoted() {
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new(
            "productId",
            DataType::Int64,
            false,
        )])),
        vec![Arc::new(Int64Array::from(vec![3, 4]))],
    )
    .unwrap();
    let session = RowsSession::new(&[]).await.unwrap();
    let t = Transform::new(
        "t",
        "SELECT productId AS id FROM events WHERE productId > 3",
        Mode::Rows,
    );
    let prepared = session.prepare(&t, batch.schema()).await.unwrap();
    let out = prepared.run(vec![batch]).await.unwrap();
    assert_eq!(ids(&out), [4]);
}

#[tokio::test]
async fn a_transform_that_passes_columns_through_says_which() {
    let session = RowsSession::new(&[]).await.unwrap();
    let schema = events(&[1], &["a"]).schema();
    let passed = |sql: &'static str| {
        let session = session.clone();
        let schema = schema.clone();
        async move {
            let t = Transform::new("t", sql, Mode::Rows);
            let prepared = session.prepare(&t, schema).await.unwrap();
            let names: Vec<String> = prepared
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            (prepared.passed_through(), names)
        }
    };
    assert_eq!(
        passed("SELECT * FROM events").await,
        (Some(vec![0, 1]), vec!["id".into(), "product".into()])
    );
    assert_eq!(
        passed("SELECT product, id FROM events").await,
        (Some(vec![1, 0]), vec!["product".into(), "id".into()])
    );
    assert_eq!(passed("SELECT product FROM events").await.0, Some(vec![1]));
    // Renamed: passed through, under another name (the output schema says so).
    assert_eq!(
        passed("SELECT id AS n FROM events").await,
        (Some(vec![0]), vec!["n".into()])
    );
    for sql in [
        "SELECT * FROM events WHERE id > 1",
        "SELECT id, upper(product) AS product FROM events",
        "SELECT id, product, 1 AS one FROM events",
        "SELECT id, product FROM events UNION ALL SELECT id, product FROM events",
        "SELECT id + 0 AS id, product FROM events",
        "SELECT * FROM events ORDER BY id",
        "SELECT e.id, e.product FROM events e CROSS JOIN (SELECT 1 AS one) o",
    ] {
        assert_eq!(passed(sql).await.0, None, "{sql}");
    }
}
