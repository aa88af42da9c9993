//! Avro unions of more than one non-null type, as the lake stores them.
//!
//! arrow-avro reads such a union (`["null", "string", "long"]`, or a choice of records) as an
//! Arrow union, which Parquet cannot store (the writer has no mapping for it). The lake holds
//! it the way Spark's and Hive's Avro readers do: a struct with one nullable field per
//! non-null branch, of which the value's branch is set and the others are null; the struct is
//! null where the value is. A branch's field is named as its type: `string`, `long`, a named
//! type's short name (`A` for `mix.v1.A`), as SQL reads them (`u.long`, `r."A".x`).

use std::sync::Arc;

use arrow::array::{
    new_null_array, Array, ArrayRef, ListArray, MapArray, StructArray, UInt32Array,
};
use arrow::buffer::NullBuffer;
use arrow::compute::take;
use arrow::datatypes::{DataType, Field, Fields};
use arrow::error::ArrowError;

/// Whether `dt` holds a union anywhere (then its columns need [`to_lake`]).
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

/// The lake's type for `dt`: every union a struct of its non-null branches.
pub fn lake_type(dt: &DataType) -> DataType {
    match dt {
        DataType::Union(fields, _) => DataType::Struct(
            fields
                .iter()
                .filter(|(_, f)| f.data_type() != &DataType::Null)
                .map(|(_, f)| {
                    Arc::new(Field::new(
                        branch_name(f.name()),
                        lake_type(f.data_type()),
                        true,
                    ))
                })
                .collect(),
        ),
        DataType::Struct(fields) => DataType::Struct(lake_fields(fields)),
        DataType::List(f) => DataType::List(Arc::new(lake_field(f))),
        DataType::LargeList(f) => DataType::LargeList(Arc::new(lake_field(f))),
        DataType::Map(f, sorted) => DataType::Map(Arc::new(lake_field(f)), *sorted),
        other => other.clone(),
    }
}

fn lake_field(f: &Field) -> Field {
    Field::new(f.name(), lake_type(f.data_type()), f.is_nullable())
}

fn lake_fields(fields: &Fields) -> Fields {
    fields.iter().map(|f| Arc::new(lake_field(f))).collect()
}

/// A branch's field name: the branch type's name without its namespace.
fn branch_name(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

/// `array` with every union in it made the struct [`lake_type`] gives.
pub fn to_lake(array: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    if !has_union(array.data_type()) {
        return Ok(array.clone());
    }
    match array.data_type() {
        DataType::Union(fields, _) => {
            let union = array
                .as_any()
                .downcast_ref::<arrow::array::UnionArray>()
                .expect("a union array");
            let n = union.len();
            let mut names = Vec::new();
            let mut children = Vec::new();
            let mut valid = vec![false; n];
            for (type_id, field) in fields.iter() {
                if field.data_type() == &DataType::Null {
                    continue;
                }
                // The rows of this branch, by their place in its child.
                let rows: UInt32Array = (0..n)
                    .map(|i| {
                        (union.type_id(i) == type_id).then(|| {
                            valid[i] = true;
                            union.value_offset(i) as u32
                        })
                    })
                    .collect();
                let child = union.child(type_id);
                let values = if rows.null_count() == n {
                    new_null_array(&lake_type(child.data_type()), n)
                } else {
                    to_lake(&take(child.as_ref(), &rows, None)?)?
                };
                names.push(Arc::new(Field::new(
                    branch_name(field.name()),
                    values.data_type().clone(),
                    true,
                )));
                children.push(values);
            }
            let nulls = NullBuffer::from(valid);
            Ok(Arc::new(StructArray::try_new(
                names.into(),
                children,
                (nulls.null_count() > 0).then_some(nulls),
            )?))
        }
        DataType::Struct(_) => {
            let s = array
                .as_any()
                .downcast_ref::<StructArray>()
                .expect("struct");
            let children = s
                .columns()
                .iter()
                .map(to_lake)
                .collect::<Result<Vec<_>, _>>()?;
            let fields: Fields = s
                .fields()
                .iter()
                .zip(&children)
                .map(|(f, c)| {
                    Arc::new(Field::new(f.name(), c.data_type().clone(), f.is_nullable()))
                })
                .collect();
            Ok(Arc::new(StructArray::try_new(
                fields,
                children,
                s.nulls().cloned(),
            )?))
        }
        DataType::List(f) => {
            let l = array.as_any().downcast_ref::<ListArray>().expect("list");
            let values = to_lake(l.values())?;
            let field = Field::new(f.name(), values.data_type().clone(), f.is_nullable());
            Ok(Arc::new(ListArray::try_new(
                Arc::new(field),
                l.offsets().clone(),
                values,
                l.nulls().cloned(),
            )?))
        }
        DataType::Map(f, sorted) => {
            let m = array.as_any().downcast_ref::<MapArray>().expect("map");
            let entries = to_lake(&(Arc::new(m.entries().clone()) as ArrayRef))?;
            let entries = entries
                .as_any()
                .downcast_ref::<StructArray>()
                .expect("entries stay a struct")
                .clone();
            let field = Field::new(f.name(), entries.data_type().clone(), f.is_nullable());
            Ok(Arc::new(MapArray::try_new(
                Arc::new(field),
                m.offsets().clone(),
                entries,
                m.nulls().cloned(),
                *sorted,
            )?))
        }
        other => Err(ArrowError::NotYetImplemented(format!(
            "a union inside {other} in the lake"
        ))),
    }
}
