//! A field of a null record reads as null.
//!
//! Arrow keeps a struct's nulls apart from its fields': where a record is null its fields may
//! hold anything. arrow-avro's decoder fills them with zeros and empty strings, and a Parquet
//! reader fills a required column inside a null group the same way (every lake file written
//! before the lake made such fields nullable has them). DataFusion 55's field access
//! (`pay.amount`, `get_field`) returns the field as it is, without the record's nulls
//! (apache/datafusion#25120): `count(pay.amount)` counted the rows without a payment and
//! `avg(pay.amount)` averaged their zeros in. silt's reads take each record's nulls into its
//! fields, down to theirs: rows in memory as a transform is given them ([`batch`]), the lake's
//! files as they are scanned ([`NullsDown`], put over a column by the file's expression
//! adapter). The types stay as they are (Arrow lets a field that may not be null be null
//! where its struct is).

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, ListArray, MapArray, RecordBatch, StructArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, FieldRef, Schema};
use datafusion::error::Result;
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::PhysicalExpr;

/// Whether a value of type `dt` may hold a record that may be null (whose fields then need
/// its nulls).
pub(crate) fn holds_nullable_record(dt: &DataType) -> bool {
    match dt {
        DataType::Struct(fields) => fields.iter().any(|f| {
            (f.is_nullable() && matches!(f.data_type(), DataType::Struct(_)))
                || holds_nullable_record(f.data_type())
        }),
        DataType::List(f) | DataType::LargeList(f) | DataType::Map(f, _) => {
            (f.is_nullable() && matches!(f.data_type(), DataType::Struct(_)))
                || holds_nullable_record(f.data_type())
        }
        _ => false,
    }
}

/// Whether a column `f` needs [`down`]: a record that may be null, or one within it.
pub(crate) fn needs(f: &Field) -> bool {
    (f.is_nullable() && matches!(f.data_type(), DataType::Struct(_)))
        || holds_nullable_record(f.data_type())
}

/// `array` with every struct's nulls in its fields too, down to theirs (through lists and
/// maps); of the same type.
pub(crate) fn down(array: &ArrayRef) -> Result<ArrayRef> {
    Ok(match array.data_type() {
        DataType::Struct(_) => Arc::new(struct_down(array.as_struct(), None)?),
        DataType::List(field) => {
            let l = array.as_list::<i32>();
            Arc::new(ListArray::try_new(
                field.clone(),
                l.offsets().clone(),
                down(l.values())?,
                l.nulls().cloned(),
            )?)
        }
        DataType::Map(field, sorted) => {
            let m = array.as_map();
            Arc::new(MapArray::try_new(
                field.clone(),
                m.offsets().clone(),
                struct_down(m.entries(), None)?,
                m.nulls().cloned(),
                *sorted,
            )?)
        }
        _ => array.clone(),
    })
}

/// `s` null also where `outer` is, its nulls in its fields, down to theirs.
fn struct_down(s: &StructArray, outer: Option<&NullBuffer>) -> Result<StructArray> {
    let nulls = NullBuffer::union(s.nulls(), outer);
    let (fields, columns, _) = s.clone().into_parts();
    let columns = columns
        .iter()
        .map(|c| match (c.data_type(), &nulls) {
            (DataType::Struct(_), _) => {
                Ok(Arc::new(struct_down(c.as_struct(), nulls.as_ref())?) as ArrayRef)
            }
            // A field of Avro's `null` type is null in every row, and holds no null buffer.
            (DataType::Null, _) => Ok(c.clone()),
            (_, None) => down(c),
            (_, Some(nulls)) => {
                let c = down(c)?;
                let merged = NullBuffer::union(c.nulls(), Some(nulls));
                Ok(arrow::array::make_array(
                    c.to_data().into_builder().nulls(merged).build()?,
                ))
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(StructArray::try_new(fields, columns, nulls)?)
}

/// `batch` with [`down`] applied to the columns that [`needs`] it.
pub(crate) fn batch(batch: RecordBatch) -> Result<RecordBatch> {
    let schema = batch.schema();
    if !schema.fields().iter().any(|f| needs(f)) {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| match needs(f) {
            true => down(c),
            false => Ok(c.clone()),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// [`down`] over the value of another expression: a column of a lake file.
#[derive(Debug, Eq)]
pub(crate) struct NullsDown(pub(crate) Arc<dyn PhysicalExpr>);

// By hand, as DataFusion's own expressions (rust-lang/rust#78808).
impl PartialEq for NullsDown {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq(&other.0)
    }
}

impl Hash for NullsDown {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state)
    }
}

impl fmt::Display for NullsDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "nulls_down({})", self.0)
    }
}

impl PhysicalExpr for NullsDown {
    fn return_field(&self, input_schema: &Schema) -> Result<FieldRef> {
        self.0.return_field(input_schema)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        Ok(match self.0.evaluate(batch)? {
            ColumnarValue::Array(a) => ColumnarValue::Array(down(&a)?),
            scalar => scalar,
        })
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.0]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        Ok(Arc::new(NullsDown(children[0].clone())))
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt_sql(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, Int64Array};
    use arrow::datatypes::Fields;

    /// `{pay: {amount, card: {last4}}}` with `pay` null in row 1 and its fields filled there.
    fn paid() -> ArrayRef {
        let card = StructArray::new(
            Fields::from(vec![Field::new("last4", DataType::Int32, false)]),
            vec![Arc::new(Int32Array::from(vec![1, 0, 3]))],
            None,
        );
        Arc::new(StructArray::new(
            Fields::from(vec![
                Field::new("amount", DataType::Int64, false),
                Field::new("card", card.data_type().clone(), false),
            ]),
            vec![Arc::new(Int64Array::from(vec![10, 0, 30])), Arc::new(card)],
            Some(NullBuffer::from(vec![true, false, true])),
        ))
    }

    #[test]
    fn a_records_nulls_reach_its_fields_and_theirs_and_the_type_stays() {
        let pay = paid();
        let out = down(&pay).unwrap();
        assert_eq!(out.data_type(), pay.data_type());
        let s = out.as_struct();
        let card = s.column(1).as_struct();
        for (name, col) in [
            ("amount", s.column(0)),
            ("card", s.column(1)),
            ("card.last4", card.column(0)),
        ] {
            let nulls: Vec<bool> = (0..3).map(|i| col.is_null(i)).collect();
            assert_eq!(nulls, [false, true, false], "{name}");
        }
        assert_eq!(
            s.column(0)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .value(2),
            30
        );
        // Within a list too.
        let list = ListArray::new(
            Arc::new(Field::new("item", pay.data_type().clone(), true)),
            arrow::buffer::OffsetBuffer::from_lengths([2, 1]),
            pay,
            None,
        );
        let out = down(&(Arc::new(list) as ArrayRef)).unwrap();
        let items = out.as_list::<i32>().values().as_struct().column(0).clone();
        assert!(items.is_null(1) && !items.is_null(0) && !items.is_null(2));
    }

    #[test]
    fn a_field_of_the_null_type_is_left_as_it_is() {
        let s = StructArray::new(
            Fields::from(vec![
                Field::new("n", DataType::Null, true),
                Field::new("x", DataType::Int64, false),
            ]),
            vec![
                Arc::new(arrow::array::NullArray::new(2)),
                Arc::new(Int64Array::from(vec![1, 0])),
            ],
            Some(NullBuffer::from(vec![true, false])),
        );
        let out = down(&(Arc::new(s) as ArrayRef)).unwrap();
        assert!(out.as_struct().column(1).is_null(1));
        assert_eq!(out.as_struct().column(0).data_type(), &DataType::Null);
    }

    #[test]
    fn columns_that_may_hold_a_null_record_are_those_that_need_it() {
        let pay = Field::new("pay", paid().data_type().clone(), true);
        assert!(needs(&pay));
        assert!(
            !needs(&pay.clone().with_nullable(false)),
            "required, fields required"
        );
        let list = Field::new_list("pays", pay.clone(), false);
        assert!(needs(&list));
        assert!(!needs(&Field::new("n", DataType::Int64, true)));
    }
}
