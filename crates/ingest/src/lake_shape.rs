//! Decoded Avro columns as the lake stores them.
//!
//! Two shapes of arrow-avro's output would read wrong, or not at all, from Parquet:
//!
//! - A union of more than one non-null type (`["null", "string", "long"]`, a choice of
//!   records) is an Arrow union, which Parquet cannot store (the writer has no mapping for
//!   it). The lake holds it the way Spark's and Hive's Avro readers do: a struct with one
//!   nullable field per non-null branch, of which the value's branch is set and the others are
//!   null; the struct is null where the value is. A branch's field is named as its type:
//!   `string`, `long`, a named type's short name (`A` for `mix.v1.A`), as SQL reads them
//!   (`u.long`, `r."A".x`).
//! - A record that may be null (`["null", {"type": "record", ...}]`) with fields that may not:
//!   where the record is null, arrow-avro fills its fields with zeros and empty strings, and
//!   Parquet keeps them as the record's values there (a required column in an optional
//!   group, read back as written). A reader that takes a field of a struct without the
//!   struct's nulls (DataFusion's `get_field`, before apache/datafusion#25120) then reads
//!   `pay.amount` as 0 where `pay` is null: wrong counts and averages. In the lake every
//!   field of a record that may be null may be null too (down to the fields of its fields),
//!   so Parquet stores none there and readers read null. (silt's own reads also take the
//!   record's nulls into its fields, for files written before: `silt_transform`.)
//! - An Avro `duration` (a fixed of three little-endian unsigned 32-bit counts: months, days,
//!   milliseconds) is an Arrow month-day-nanosecond interval, which the Parquet writer cannot
//!   store ("not yet implemented": every run of the job failed on it). The lake holds it as
//!   the struct of its three parts, `months`, `days` and `milliseconds` (`int64`: the counts
//!   are unsigned), which every reader reads and SQL takes apart (`d.days`).

use std::sync::Arc;

use arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, Int64Array, ListArray, MapArray, StructArray,
    UInt32Array,
};
use arrow::buffer::NullBuffer;
use arrow::compute::take;
use arrow::datatypes::{DataType, Field, Fields, IntervalMonthDayNanoType, IntervalUnit};
use arrow::error::ArrowError;

/// Whether `dt` holds a union anywhere (arrow-avro's decoder of such a union must be made
/// anew after each batch: apache/arrow-rs#10876).
pub fn has_union(dt: &DataType) -> bool {
    match dt {
        DataType::Union(..) => true,
        DataType::Struct(fields) => fields.iter().any(|f| has_union(f.data_type())),
        DataType::List(f) | DataType::LargeList(f) | DataType::Map(f, _) => {
            has_union(f.data_type())
        }
        _ => false,
    }
}

/// The lake's field for a decoded field `f`: every union in it a struct of its non-null
/// branches, every field of a record that may be null nullable, and every field of Avro's
/// `null` type.
pub fn lake_field(f: &Field) -> Field {
    let nullable = may_be_null(f);
    Field::new(f.name(), lake_type(f.data_type(), nullable), nullable)
}

/// Whether the lake's column of `f` may be null: when `f` may, and always for a field of
/// Avro's `null` type, whose every value is null. (arrow-avro gives such a field as not
/// nullable; Parquet then stored a required column of no values, which Spark read as 0s.)
fn may_be_null(f: &Field) -> bool {
    f.is_nullable() || f.data_type() == &DataType::Null
}

/// The lake's type for `dt`, a value that may be null when `nullable`.
fn lake_type(dt: &DataType, nullable: bool) -> DataType {
    match dt {
        DataType::Union(fields, _) => {
            let names: Vec<&str> = fields
                .iter()
                .filter(|(_, f)| f.data_type() != &DataType::Null)
                .map(|(_, f)| f.name().as_str())
                .collect();
            DataType::Struct(
                fields
                    .iter()
                    .filter(|(_, f)| f.data_type() != &DataType::Null)
                    .map(|(_, f)| {
                        Arc::new(Field::new(
                            branch_name(f.name(), &names),
                            lake_type(f.data_type(), true),
                            true,
                        ))
                    })
                    .collect(),
            )
        }
        DataType::Struct(fields) => DataType::Struct(
            fields
                .iter()
                .map(|f| {
                    let nullable = nullable || may_be_null(f);
                    Arc::new(Field::new(
                        f.name(),
                        lake_type(f.data_type(), nullable),
                        nullable,
                    ))
                })
                .collect(),
        ),
        DataType::List(f) => DataType::List(Arc::new(lake_field(f))),
        DataType::LargeList(f) => DataType::LargeList(Arc::new(lake_field(f))),
        DataType::Map(f, sorted) => DataType::Map(Arc::new(lake_field(f)), *sorted),
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            DataType::Struct(duration_parts(nullable))
        }
        other => other.clone(),
    }
}

/// The fields of an Avro `duration` in the lake: its three counts.
fn duration_parts(nullable: bool) -> Fields {
    silt_wire::DURATION_PARTS
        .into_iter()
        .map(|name| Field::new(name, DataType::Int64, nullable))
        .collect()
}

/// A branch's field name: the branch type's name without its namespace, unless another
/// branch of the union (`names`) has that short name too (`a.Item`, `b.Item`: Avro lets named
/// types of two namespaces share a union); then its full name, so that no two fields of the
/// struct have one name.
fn branch_name<'a>(name: &'a str, names: &[&str]) -> &'a str {
    fn short(n: &str) -> &str {
        n.rsplit('.').next().unwrap_or(n)
    }
    match names.iter().filter(|n| short(n) == short(name)).count() {
        1 => short(name),
        _ => name,
    }
}

/// `array` (of a field that may be null when `nullable`) in the type [`lake_field`] gives:
/// unions made structs, the fields of records that may be null nullable.
pub fn to_lake(array: &ArrayRef, nullable: bool) -> Result<ArrayRef, ArrowError> {
    let lake = lake_type(array.data_type(), nullable);
    if &lake == array.data_type() {
        return Ok(array.clone());
    }
    shape(array, &lake)
}

/// `array` in the type `lake` ([`lake_type`] of its own).
fn shape(array: &ArrayRef, lake: &DataType) -> Result<ArrayRef, ArrowError> {
    if lake == array.data_type() {
        return Ok(array.clone());
    }
    match (array.data_type(), lake) {
        (DataType::Union(fields, _), DataType::Struct(branches)) => {
            let union = array
                .as_any()
                .downcast_ref::<arrow::array::UnionArray>()
                .expect("a union array");
            let n = union.len();
            let mut children = Vec::new();
            let mut valid = vec![false; n];
            let mut branch = branches.iter();
            for (type_id, field) in fields.iter() {
                if field.data_type() == &DataType::Null {
                    continue;
                }
                let lake_field = branch.next().expect("a field per non-null branch");
                // The rows of this branch, by their place in its child.
                let rows: UInt32Array = (0..n)
                    .map(|i| {
                        (union.type_id(i) == type_id).then(|| {
                            valid[i] = true;
                            union.value_offset(i) as u32
                        })
                    })
                    .collect();
                children.push(if rows.null_count() == n {
                    new_null_array(lake_field.data_type(), n)
                } else {
                    shape(
                        &take(union.child(type_id).as_ref(), &rows, None)?,
                        lake_field.data_type(),
                    )?
                });
            }
            let nulls = NullBuffer::from(valid);
            Ok(Arc::new(StructArray::try_new(
                branches.clone(),
                children,
                (nulls.null_count() > 0).then_some(nulls),
            )?))
        }
        (DataType::Struct(_), DataType::Struct(fields)) => {
            let s = array
                .as_any()
                .downcast_ref::<StructArray>()
                .expect("struct");
            let children = s
                .columns()
                .iter()
                .zip(fields)
                .map(|(c, f)| shape(c, f.data_type()))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Arc::new(StructArray::try_new(
                fields.clone(),
                children,
                s.nulls().cloned(),
            )?))
        }
        (DataType::List(_), DataType::List(field)) => {
            let l = array.as_any().downcast_ref::<ListArray>().expect("list");
            Ok(Arc::new(ListArray::try_new(
                field.clone(),
                l.offsets().clone(),
                shape(l.values(), field.data_type())?,
                l.nulls().cloned(),
            )?))
        }
        (DataType::Map(_, sorted), DataType::Map(field, _)) => {
            let m = array.as_any().downcast_ref::<MapArray>().expect("map");
            let entries = shape(
                &(Arc::new(m.entries().clone()) as ArrayRef),
                field.data_type(),
            )?;
            let entries = entries
                .as_any()
                .downcast_ref::<StructArray>()
                .expect("entries stay a struct")
                .clone();
            Ok(Arc::new(MapArray::try_new(
                field.clone(),
                m.offsets().clone(),
                entries,
                m.nulls().cloned(),
                *sorted,
            )?))
        }
        (DataType::Interval(IntervalUnit::MonthDayNano), DataType::Struct(fields)) => {
            let d = array.as_primitive::<IntervalMonthDayNanoType>();
            let nulls = d.nulls().cloned();
            // arrow-avro reads each count as its 32 bits; they are unsigned in Avro.
            let part = |f: &dyn Fn(i32, i32, i64) -> i64| -> ArrayRef {
                Arc::new(Int64Array::new(
                    d.values()
                        .iter()
                        .map(|v| f(v.months, v.days, v.nanoseconds))
                        .collect(),
                    nulls.clone(),
                ))
            };
            Ok(Arc::new(StructArray::try_new(
                fields.clone(),
                vec![
                    part(&|m, _, _| i64::from(m as u32)),
                    part(&|_, d, _| i64::from(d as u32)),
                    part(&|_, _, n| n / 1_000_000),
                ],
                nulls.clone(),
            )?))
        }
        (other, lake) => Err(ArrowError::NotYetImplemented(format!(
            "{other} as {lake} in the lake"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::UnionFields;

    fn union(names: &[&str]) -> DataType {
        let fields: Vec<Field> = std::iter::once(Field::new("null", DataType::Null, true))
            .chain(names.iter().map(|n| Field::new(*n, DataType::Int32, false)))
            .collect();
        DataType::Union(
            UnionFields::try_new(0..fields.len() as i8, fields).unwrap(),
            arrow::datatypes::UnionMode::Dense,
        )
    }

    fn names(dt: &DataType) -> Vec<String> {
        let DataType::Struct(fields) = dt else {
            panic!("{dt}")
        };
        fields.iter().map(|f| f.name().clone()).collect()
    }

    #[test]
    fn branches_are_named_short_unless_two_share_a_short_name() {
        let field = |names| lake_field(&Field::new("u", union(names), true));
        assert_eq!(
            names(field(&["int", "a.Item"]).data_type()),
            ["int", "Item"]
        );
        assert_eq!(
            names(field(&["a.Item", "b.Item", "c.Other"]).data_type()),
            ["a.Item", "b.Item", "Other"]
        );
    }
}
