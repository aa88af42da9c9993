//! A transform's partition columns must be the raw table's, passed through as they are: its
//! output is partitioned by the raw partitions it reads.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use silt_transform::{check_partition_columns, session, Mode, Transform};

async fn check(sql: &str, mode: Mode) -> Result<(), String> {
    let ctx = session();
    let events = Arc::new(Schema::new(vec![
        Field::new("uuid", DataType::Utf8, false),
        Field::new("product", DataType::Utf8, false),
        Field::new("dt", DataType::Utf8, false),
        Field::new("hr", DataType::Utf8, false),
    ]));
    let products = Arc::new(Schema::new(vec![
        Field::new("product", DataType::Utf8, false),
        Field::new("dt", DataType::Utf8, false),
    ]));
    for (name, schema) in [("events", events), ("products", products)] {
        let table = MemTable::try_new(schema, vec![vec![]]).unwrap();
        ctx.register_table(name, Arc::new(table)).unwrap();
    }
    let t = Transform::new("t", sql, mode);
    let df = silt_transform::plan(&ctx, &t).await.unwrap();
    let parts = ["dt".to_string(), "hr".to_string()];
    check_partition_columns(&t, df.logical_plan(), &parts).map_err(|e| e.to_string())
}

#[tokio::test]
async fn partition_columns_passed_through_are_accepted() {
    for (sql, mode) in [
        ("SELECT * FROM events", Mode::Rows),
        ("SELECT uuid AS id, dt, hr FROM events WHERE product <> 'x'", Mode::Rows),
        ("SELECT upper(product) AS p, e.hr, e.dt FROM events e", Mode::Rows),
        ("SELECT dt AS day, hr FROM events", Mode::Rows),
        ("WITH x AS (SELECT * FROM events) SELECT dt, hr FROM x ORDER BY uuid LIMIT 3", Mode::Rows),
        ("SELECT e.uuid, e.dt, e.hr, p.dt AS listed FROM events e JOIN products p ON e.product = p.product", Mode::Rows),
        ("SELECT dt, hr FROM events UNION ALL SELECT dt, hr FROM events", Mode::Rows),
        ("SELECT dt, hr, product, count(*) AS n FROM events GROUP BY dt, hr, product", Mode::Partitions),
        ("SELECT uuid, dt, row_number() OVER (PARTITION BY dt ORDER BY uuid) AS n FROM events", Mode::Partitions),
        ("SELECT DISTINCT dt FROM events", Mode::Partitions),
    ] {
        assert_eq!(check(sql, mode).await, Ok(()), "{sql}");
    }
}

#[tokio::test]
async fn partition_columns_computed_or_taken_from_another_column_are_refused() {
    for (sql, mode, column, is) in [
        (
            "SELECT uuid, hr AS dt, dt AS hr FROM events",
            Mode::Rows,
            "dt",
            "`events.hr`",
        ),
        (
            "SELECT uuid, dt, '00' AS hr FROM events",
            Mode::Rows,
            "hr",
            "computed",
        ),
        (
            "SELECT uuid, substr(dt, 1, 7) AS dt FROM events",
            Mode::Rows,
            "dt",
            "computed",
        ),
        (
            "SELECT e.uuid, p.dt FROM events e JOIN products p ON e.product = p.product",
            Mode::Rows,
            "dt",
            "computed",
        ),
        (
            "SELECT dt, hr FROM events UNION ALL SELECT hr, dt FROM events",
            Mode::Rows,
            "dt",
            "computed",
        ),
        (
            "SELECT substr(dt, 1, 7) AS dt, count(*) AS n FROM events GROUP BY substr(dt, 1, 7)",
            Mode::Partitions,
            "dt",
            "computed",
        ),
        (
            "SELECT max(dt) AS dt, product FROM events GROUP BY product",
            Mode::Partitions,
            "dt",
            "computed",
        ),
    ] {
        let e = check(sql, mode).await.expect_err(sql);
        assert!(
            e.contains(&format!(
                "output column `{column}` is named as a partition column"
            )) && e.contains(is),
            "{sql}: {e}"
        );
    }
}
