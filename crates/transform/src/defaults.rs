//! What a reader of a lake table puts in a column that some of its files lack.
//!
//! A field added to an event schema (the BACKWARD change: a new field with a default) is a
//! column of the files written after it and not of the files before. Avro reads an old event
//! with the new schema as the field's default, and so does the job decoding the stream; a
//! reader of the lake's files does the same for the old files when the default is known
//! ([`ColumnDefaults`], from the reader schema or the table's catalog entry) and of a type a
//! JSON value names exactly ([`default_scalar`]). Other missing columns read as null, their
//! fields made nullable for the read, never an error. [`evolved_schema`] is the other half:
//! the one schema of files written with several versions of their columns.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr_adapter::{
    replace_columns_with_literals, DefaultPhysicalExprAdapterFactory, PhysicalExprAdapter,
    PhysicalExprAdapterFactory,
};
use serde_json::Value;

use crate::nulls::NullsDown;

/// Column name to the Avro default of its field (JSON, as the schema writes it).
pub type ColumnDefaults = BTreeMap<String, Value>;

/// The value of `default` as a scalar of type `ty`, when the JSON names one exactly: a
/// string, an enum symbol, a number, a boolean; a date (days), a timestamp or a time (in the
/// column's unit, which is the Avro logical type's); a decimal (Avro's bytes as a string of
/// code points 0-255, its unscaled two's-complement value).
pub fn default_scalar(default: &Value, ty: &DataType) -> Option<ScalarValue> {
    use arrow::datatypes::TimeUnit;
    let value = match (ty, default) {
        (
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(..),
            Value::String(s),
        ) => ScalarValue::Utf8(Some(s.clone())),
        (DataType::Boolean, Value::Bool(b)) => ScalarValue::Boolean(Some(*b)),
        (t, Value::Number(n)) if t.is_integer() => ScalarValue::Int64(Some(n.as_i64()?)),
        (t, Value::Number(n)) if t.is_floating() => ScalarValue::Float64(Some(n.as_f64()?)),
        (DataType::Date32, Value::Number(n)) => {
            return Some(ScalarValue::Date32(Some(n.as_i64()?.try_into().ok()?)))
        }
        (DataType::Timestamp(unit, tz), Value::Number(n)) => {
            let (v, tz) = (Some(n.as_i64()?), tz.clone());
            return Some(match unit {
                TimeUnit::Second => ScalarValue::TimestampSecond(v, tz),
                TimeUnit::Millisecond => ScalarValue::TimestampMillisecond(v, tz),
                TimeUnit::Microsecond => ScalarValue::TimestampMicrosecond(v, tz),
                TimeUnit::Nanosecond => ScalarValue::TimestampNanosecond(v, tz),
            });
        }
        (DataType::Time32(TimeUnit::Millisecond), Value::Number(n)) => {
            return Some(ScalarValue::Time32Millisecond(Some(
                n.as_i64()?.try_into().ok()?,
            )))
        }
        (DataType::Time64(TimeUnit::Microsecond), Value::Number(n)) => {
            return Some(ScalarValue::Time64Microsecond(Some(n.as_i64()?)))
        }
        (DataType::Decimal128(precision, scale), Value::String(s)) => {
            let bytes: Vec<u8> = s
                .chars()
                .map(|c| u8::try_from(c).ok())
                .collect::<Option<_>>()?;
            if bytes.is_empty() || bytes.len() > 16 {
                return None;
            }
            let fill = if bytes[0] & 0x80 != 0 { 0xff } else { 0 };
            let mut be = [fill; 16];
            be[16 - bytes.len()..].copy_from_slice(&bytes);
            return Some(ScalarValue::Decimal128(
                Some(i128::from_be_bytes(be)),
                *precision,
                *scale,
            ));
        }
        _ => return None,
    };
    value.cast_to(ty).ok().filter(|v| !v.is_null())
}

/// How a table is read: its schema, with the columns that can be missing from a file and have
/// no usable default made nullable, and the defaults of the others; the adapter of its files'
/// reads, which fills those defaults and takes the nulls of records into their fields
/// ([`crate::nulls`]), when it has either. The flag: whether defaults are filled.
pub(crate) fn reading(
    schema: SchemaRef,
    defaults: &ColumnDefaults,
) -> (SchemaRef, Option<Arc<dyn PhysicalExprAdapterFactory>>, bool) {
    let mut fill = HashMap::new();
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let default = defaults.get(f.name());
            match default.and_then(|d| default_scalar(d, f.data_type())) {
                Some(v) => {
                    fill.insert(f.name().clone(), v);
                    f.as_ref().clone()
                }
                None => f
                    .as_ref()
                    .clone()
                    .with_nullable(f.is_nullable() || default.is_some()),
            }
        })
        .collect();
    // A column that may hold a null record is read with every field within it nullable:
    // files whose fields of such records may not be null (before silt's lake made them
    // nullable) then differ from the table, and the scan of each asks the adapter, which
    // takes the records' nulls into their fields ([`crate::nulls`]).
    let mut records = HashSet::new();
    let fields: Vec<Field> = fields
        .into_iter()
        .map(|f| match crate::nulls::needs(&f) {
            true => {
                records.insert(f.name().clone());
                let ty = relaxed(f.data_type());
                f.with_data_type(ty)
            }
            false => f,
        })
        .collect();
    let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    let filled = !fill.is_empty();
    let factory = (filled || !records.is_empty()).then(|| {
        Arc::new(TableReads {
            fill: Arc::new(fill),
            records: Arc::new(records),
        }) as Arc<dyn PhysicalExprAdapterFactory>
    });
    (schema, factory, filled)
}

/// Rewrites a file's reads of the columns it lacks to their defaults, and of the columns that
/// may hold a null record to [`NullsDown`] over them, then as DataFusion does.
#[derive(Debug)]
struct TableReads {
    fill: Arc<HashMap<String, ScalarValue>>,
    records: Arc<HashSet<String>>,
}

impl PhysicalExprAdapterFactory for TableReads {
    fn create(
        &self,
        logical_file_schema: SchemaRef,
        physical_file_schema: SchemaRef,
    ) -> Result<Arc<dyn PhysicalExprAdapter>> {
        let missing: HashMap<String, ScalarValue> = self
            .fill
            .iter()
            .filter(|(name, _)| physical_file_schema.index_of(name).is_err())
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        let inner =
            DefaultPhysicalExprAdapterFactory.create(logical_file_schema, physical_file_schema)?;
        Ok(Arc::new(FileReads {
            missing,
            records: self.records.clone(),
            inner,
        }))
    }
}

#[derive(Debug)]
struct FileReads {
    missing: HashMap<String, ScalarValue>,
    records: Arc<HashSet<String>>,
    inner: Arc<dyn PhysicalExprAdapter>,
}

impl PhysicalExprAdapter for FileReads {
    fn rewrite(&self, expr: Arc<dyn PhysicalExpr>) -> Result<Arc<dyn PhysicalExpr>> {
        use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
        use datafusion::physical_expr::expressions::Column;
        let expr = match self.missing.is_empty() {
            true => expr,
            false => replace_columns_with_literals(expr, &self.missing)?,
        };
        let expr = match self.records.is_empty() {
            true => expr,
            false => {
                expr.transform_down(|e| match e.downcast_ref::<Column>() {
                    Some(c) if self.records.contains(c.name()) => Ok(Transformed::new(
                        Arc::new(NullsDown(e)) as Arc<dyn PhysicalExpr>,
                        true,
                        TreeNodeRecursion::Jump,
                    )),
                    _ => Ok(Transformed::no(e)),
                })?
                .data
            }
        };
        self.inner.rewrite(expr)
    }
}

/// The schema of a table whose files were written with several versions of its columns,
/// given one schema of each version, oldest first: the newest's columns in its order, then
/// the columns only older files have; a column's type is its newest (older files' values
/// are converted, as Avro promotes an `int` to a `long` or a `float` to a `double`), and a
/// column that some version lacks or has nullable is nullable. Refused, naming the column,
/// when an older type does not convert to the newer one.
pub fn evolved_schema(versions: &[SchemaRef]) -> Result<SchemaRef> {
    let Some(newest) = versions.last() else {
        return Ok(Arc::new(Schema::empty()));
    };
    let mut fields: Vec<Field> = newest.fields().iter().map(|f| f.as_ref().clone()).collect();
    for older in versions.iter().rev().skip(1) {
        for f in older.fields() {
            if !fields.iter().any(|g| g.name() == f.name()) {
                fields.push(f.as_ref().clone());
            }
        }
    }
    for field in &mut fields {
        let mut nullable = field.is_nullable();
        for version in versions {
            let Ok(had) = version.field_with_name(field.name()) else {
                nullable = true;
                continue;
            };
            nullable |= had.is_nullable();
            let merged = merge_type(had.data_type(), field.data_type());
            datafusion::common::nested_struct::validate_data_type_compatibility(
                field.name(),
                had.data_type(),
                &merged,
            )
            .map_err(|_| {
                datafusion::error::DataFusionError::Plan(format!(
                    "column `{}` is {} in some files and {} in newer ones, which do not convert",
                    field.name(),
                    had.data_type(),
                    field.data_type()
                ))
            })?;
            *field = field.clone().with_data_type(merged);
        }
        field.set_nullable(nullable);
    }
    Ok(Arc::new(Schema::new_with_metadata(
        fields,
        newest.metadata().clone(),
    )))
}

/// `schema` with every field within its columns (a record's fields, a list's items, a map's
/// entries) nullable, the columns as they are: how a job reads raw files of older schemas
/// with its newest, whose nested fields those files may lack ([`evolved_schema`] does it
/// field by field, from the files' own schemas).
pub fn nested_nullable(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new_with_metadata(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_data_type(relaxed(f.data_type())))
            .collect::<Vec<_>>(),
        schema.metadata().clone(),
    ))
}

/// `ty` with every field within it nullable (a map's keys excepted).
fn relaxed(ty: &DataType) -> DataType {
    let field = |f: &Field| {
        f.clone()
            .with_data_type(relaxed(f.data_type()))
            .with_nullable(true)
    };
    match ty {
        DataType::Struct(fields) => {
            DataType::Struct(fields.iter().map(|f| field(f)).collect::<Vec<_>>().into())
        }
        DataType::List(f) => DataType::List(Arc::new(field(f))),
        DataType::LargeList(f) => DataType::LargeList(Arc::new(field(f))),
        // A map's entries and keys are never null; its values may be records.
        DataType::Map(entries, sorted) => {
            let DataType::Struct(kv) = entries.data_type() else {
                return ty.clone();
            };
            let kv: Vec<Field> = kv
                .iter()
                .enumerate()
                .map(|(i, f)| match i {
                    0 => f.as_ref().clone(),
                    _ => field(f),
                })
                .collect();
            DataType::Map(
                Arc::new(
                    entries
                        .as_ref()
                        .clone()
                        .with_data_type(DataType::Struct(kv.into())),
                ),
                *sorted,
            )
        }
        other => other.clone(),
    }
}

/// A column's type across an older and a newer version: the newer's, where the fields of a
/// record (within lists and maps too) that the older lacks are nullable (they read as null in
/// its rows) and the fields only the older has are kept, nullable.
fn merge_type(older: &DataType, newer: &DataType) -> DataType {
    let field = |older: &Field, newer: &Field| {
        newer
            .clone()
            .with_data_type(merge_type(older.data_type(), newer.data_type()))
            .with_nullable(newer.is_nullable() || older.is_nullable())
    };
    match (older, newer) {
        (DataType::Struct(old), DataType::Struct(new)) => {
            let mut fields: Vec<Field> = new
                .iter()
                .map(|n| match old.iter().find(|o| o.name() == n.name()) {
                    Some(o) => field(o, n),
                    None => n.as_ref().clone().with_nullable(true),
                })
                .collect();
            for o in old
                .iter()
                .filter(|o| !new.iter().any(|n| n.name() == o.name()))
            {
                fields.push(o.as_ref().clone().with_nullable(true));
            }
            DataType::Struct(fields.into())
        }
        (DataType::List(o), DataType::List(n)) => DataType::List(Arc::new(field(o, n))),
        (DataType::LargeList(o), DataType::LargeList(n)) => {
            DataType::LargeList(Arc::new(field(o, n)))
        }
        (DataType::Map(o, _), DataType::Map(n, sorted)) => {
            DataType::Map(Arc::new(field(o, n)), *sorted)
        }
        _ => newer.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_defaults_become_scalars_of_the_columns_type_or_nothing() {
        let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        assert_eq!(
            default_scalar(&json!("web"), &DataType::Utf8),
            Some(ScalarValue::Utf8(Some("web".into())))
        );
        assert_eq!(
            default_scalar(&json!(7), &DataType::Int32),
            Some(ScalarValue::Int32(Some(7)))
        );
        assert_eq!(
            default_scalar(&json!(1.5), &DataType::Float32),
            Some(ScalarValue::Float32(Some(1.5)))
        );
        assert_eq!(
            default_scalar(&json!(true), &DataType::Boolean),
            Some(ScalarValue::Boolean(Some(true)))
        );
        assert!(matches!(
            default_scalar(&json!("B"), &dict),
            Some(ScalarValue::Dictionary(..))
        ));
        // Out of range, of another type, or not named exactly by JSON: none.
        assert_eq!(default_scalar(&json!(1u64 << 40), &DataType::Int32), None);
        assert_eq!(default_scalar(&json!("7"), &DataType::Int64), None);
        assert_eq!(default_scalar(&json!(null), &DataType::Utf8), None);
        let ts = DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None);
        assert_eq!(default_scalar(&json!("0"), &ts), None);
        // Logical types: the column's unit, Avro's decimal bytes.
        assert_eq!(
            default_scalar(&json!(1764324000000i64), &ts),
            Some(ScalarValue::TimestampMillisecond(Some(1764324000000), None))
        );
        assert_eq!(
            default_scalar(&json!(20000), &DataType::Date32),
            Some(ScalarValue::Date32(Some(20000)))
        );
        let money = DataType::Decimal128(20, 4);
        assert_eq!(
            default_scalar(&json!("\u{07}\u{cf}"), &money), // 1999: 0.1999
            Some(ScalarValue::Decimal128(Some(1999), 20, 4))
        );
        assert_eq!(
            default_scalar(&json!("\u{ff}"), &money),
            Some(ScalarValue::Decimal128(Some(-1), 20, 4))
        );
        assert_eq!(default_scalar(&json!("\u{100}"), &money), None);
    }

    #[test]
    fn versions_of_a_tables_columns_merge_to_the_newest_types_and_every_column() {
        let v = |fields: Vec<Field>| Arc::new(Schema::new(fields));
        let old = v(vec![
            Field::new("n", DataType::Int32, false),
            Field::new("gone", DataType::Utf8, false),
            Field::new("f", DataType::Float32, false),
        ]);
        let new = v(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("f", DataType::Float64, false),
            Field::new("added", DataType::Utf8, false),
        ]);
        let merged = evolved_schema(&[old.clone(), new.clone()]).unwrap();
        let shown: Vec<(String, DataType, bool)> = merged
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone(), f.is_nullable()))
            .collect();
        assert_eq!(
            shown,
            [
                ("n".into(), DataType::Int64, false),
                ("f".into(), DataType::Float64, false),
                ("added".into(), DataType::Utf8, true),
                ("gone".into(), DataType::Utf8, true),
            ]
        );
        assert_eq!(evolved_schema(std::slice::from_ref(&new)).unwrap(), new);
        // A field added to a record within a list: nullable, for the older rows.
        let items = |fields: Vec<Field>| {
            v(vec![Field::new(
                "items",
                DataType::List(Arc::new(Field::new(
                    "item",
                    DataType::Struct(fields.into()),
                    false,
                ))),
                false,
            )])
        };
        let sku = Field::new("sku", DataType::Utf8, false);
        let note = Field::new("note", DataType::Utf8, false);
        let merged = evolved_schema(&[
            items(vec![sku.clone()]),
            items(vec![sku.clone(), note.clone()]),
        ])
        .unwrap();
        assert_eq!(merged, items(vec![sku, note.with_nullable(true)]));
        let list = v(vec![Field::new(
            "n",
            DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
            false,
        )]);
        let e = evolved_schema(&[list, new]).unwrap_err().to_string();
        assert!(
            e.contains("column `n` is List") && e.contains("Int64"),
            "{e}"
        );
    }
}

#[cfg(test)]
mod reading_tests {
    use super::*;
    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use datafusion::parquet::arrow::ArrowWriter;

    fn write(dir: &std::path::Path, name: &str, batch: &RecordBatch) {
        let part = dir.join("t/dt=2025-11-26");
        std::fs::create_dir_all(&part).unwrap();
        let f = std::fs::File::create(part.join(name)).unwrap();
        let mut w = ArrowWriter::try_new(f, batch.schema(), None).unwrap();
        w.write(batch).unwrap();
        w.close().unwrap();
    }

    /// Files written before a field was added and after: the old rows read as its default
    /// (or null, when it has none a reader can use), with the schema given or inferred.
    #[tokio::test]
    async fn rows_of_files_without_a_column_read_as_its_default() {
        let dir = tempfile_dir();
        let old = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let new = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("channel", DataType::Utf8, false),
            Field::new("at", DataType::Int64, false),
        ]));
        write(
            &dir,
            "a.parquet",
            &RecordBatch::try_new(old.clone(), vec![Arc::new(Int64Array::from(vec![1]))]).unwrap(),
        );
        write(
            &dir,
            "b.parquet",
            &RecordBatch::try_new(
                new.clone(),
                vec![
                    Arc::new(Int64Array::from(vec![2])),
                    Arc::new(StringArray::from(vec!["app"])),
                    Arc::new(Int64Array::from(vec![9])),
                ],
            )
            .unwrap(),
        );
        let defaults: ColumnDefaults = [
            ("channel".to_string(), serde_json::json!("web")),
            ("at".to_string(), serde_json::json!("not a number")),
        ]
        .into_iter()
        .collect();
        // The schema given, and read from the files themselves (one of each schema).
        for given in [true, false] {
            let ctx = crate::session();
            let url = url::Url::parse("file:///").unwrap();
            let store = Arc::new(object_store::local::LocalFileSystem::new());
            let schema = match given {
                true => new.clone(),
                false => {
                    let mut files = Vec::new();
                    for name in ["a.parquet", "b.parquet"] {
                        let path = object_store::path::Path::from_filesystem_path(
                            dir.join("t/dt=2025-11-26").join(name),
                        )
                        .unwrap();
                        files.push(
                            object_store::ObjectStoreExt::head(&*store, &path)
                                .await
                                .unwrap(),
                        );
                    }
                    crate::table_schema(&ctx, store.clone(), &files)
                        .await
                        .unwrap()
                }
            };
            crate::register_parquet_table(
                &ctx,
                "t",
                &url,
                store,
                dir.join("t").to_str().unwrap(),
                &[Arc::new(arrow::datatypes::Field::new(
                    "dt",
                    DataType::Utf8,
                    false,
                ))],
                schema.clone(),
                &defaults,
            )
            .await
            .unwrap();
            let out = ctx
                .sql("SELECT n, channel, at FROM t ORDER BY n")
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            let text = arrow::util::pretty::pretty_format_batches(&out)
                .unwrap()
                .to_string();
            assert!(text.contains("| 1 | web     |    |"), "{schema:?}\n{text}");
            assert!(text.contains("| 2 | app     | 9  |"), "{schema:?}\n{text}");
        }
    }

    /// A file of a record that may be null whose fields may not (as silt wrote them before,
    /// and as arrow-avro decodes them: zeros where the record is null), read by SQL, and the
    /// same rows given to a `rows` transform: the fields are null where the record is.
    #[tokio::test]
    async fn fields_of_a_null_record_read_as_null_from_files_and_from_memory() {
        use arrow::array::{Array, Int32Array, StructArray};
        use arrow::buffer::NullBuffer;
        let card = StructArray::new(
            vec![Field::new("last4", DataType::Int32, false)].into(),
            vec![Arc::new(Int32Array::from(vec![1, 0, 3, 0]))],
            None,
        );
        let pay = StructArray::new(
            vec![
                Field::new("amount", DataType::Int64, false),
                Field::new("card", card.data_type().clone(), false),
            ]
            .into(),
            vec![
                Arc::new(Int64Array::from(vec![10, 0, 30, 0])),
                Arc::new(card),
            ],
            Some(NullBuffer::from(vec![true, false, true, false])),
        );
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("pay", pay.data_type().clone(), true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(vec![1, 2, 3, 4])), Arc::new(pay)],
        )
        .unwrap();
        let dir = tempfile_dir();
        write(&dir, "a.parquet", &batch);
        let ctx = crate::session();
        crate::register_parquet_table(
            &ctx,
            "events",
            &url::Url::parse("file:///").unwrap(),
            Arc::new(object_store::local::LocalFileSystem::new()),
            dir.join("t").to_str().unwrap(),
            &[Arc::new(arrow::datatypes::Field::new(
                "dt",
                DataType::Utf8,
                false,
            ))],
            schema.clone(),
            &ColumnDefaults::new(),
        )
        .await
        .unwrap();
        let sql = "SELECT count(pay.amount) AS n, avg(pay.amount) AS a, \
            count(pay.card.last4) AS c, count(*) FILTER (WHERE pay.amount = 0) AS zero \
            FROM events";
        let expected = [
            "+---+------+---+------+",
            "| n | a    | c | zero |",
            "+---+------+---+------+",
            "| 2 | 20.0 | 2 | 0    |",
            "+---+------+---+------+",
        ];
        let text = |out: &[RecordBatch]| {
            arrow::util::pretty::pretty_format_batches(out)
                .unwrap()
                .to_string()
        };
        let files = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        assert_eq!(text(&files), expected.join("\n"), "from the file");
        // In memory: `rows` transforms take no aggregate, so count what a filter keeps.
        let t = crate::Transform::new(
            "t",
            "SELECT n, pay.amount AS amount FROM events WHERE pay.card.last4 IS NOT NULL",
            crate::Mode::Rows,
        );
        let rows = crate::run_on_batches(&t, &[], schema, vec![batch])
            .await
            .unwrap();
        assert_eq!(
            text(&rows),
            [
                "+---+--------+",
                "| n | amount |",
                "+---+--------+",
                "| 1 | 10     |",
                "| 3 | 30     |",
                "+---+--------+",
            ]
            .join("\n"),
            "from memory"
        );
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "silt-defaults-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
