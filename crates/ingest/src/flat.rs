//! A columnar decoder for flat records, the shape most events have: fields that are numbers
//! (dates, times, timestamps and decimals among them), booleans, strings, bytes, fixed or
//! enums, each possibly in a union with null.
//!
//! Every body reaching a decoder has passed [`silt_wire::BodyCheck`] against the same writer
//! schema: it is exactly one value, its union branches and enum indexes are in range, its
//! decimals within their precision and its strings UTF-8. So decoding such a record is a walk of a precompiled list of steps that
//! appends each value to its column: about 430 instructions a record of the benchmark's
//! events, against arrow-avro's general decoder's 1,036. arrow-avro stays the decoder of every
//! other shape (nested records, arrays, maps, uuids, promotions, aliases, non-null
//! defaults). [`FlatDecoder::new`] says whether a writer and reader pair is one this decoder
//! takes; it produces the columns arrow-avro would, and a test holds the two to that.

use std::sync::Arc;

use arrow::array::{
    make_array, new_null_array, Array, ArrayRef, BinaryArray, BooleanArray, BooleanBufferBuilder,
    DictionaryArray, FixedSizeBinaryArray, Int32Array, PrimitiveArray, StringArray,
};
use arrow::buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Decimal128Type, Float32Type, Float64Type, Int32Type, Int64Type,
    Schema as ArrowSchema, TimeUnit,
};
use silt_wire::{decimal_i128, zigzag, Logical, NamedKind, Primitive, Schema, Type};

/// A value's binary form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Any primitive but `null`.
    Plain(Primitive),
    Fixed(usize),
    /// An enum: its index, an `int`.
    Enum,
}

/// What else resolution and the Arrow type depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Detail {
    None,
    /// A fixed's full name (resolution matches named types by name too).
    Named(String),
    /// A temporal logical type on an `int` or `long`.
    Logical(Logical),
    /// An enum's full name and symbols.
    Enum(String, Vec<String>),
    /// A decimal on bytes, or on a fixed of this full name.
    Decimal {
        precision: u32,
        scale: u32,
        fixed: Option<String>,
    },
}

/// A field's type: a kind, or a union of null and a kind.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shape {
    kind: Kind,
    /// For a union with null: the null branch's index (0 or 1).
    null_branch: Option<i64>,
    detail: Detail,
}

impl Shape {
    /// Whether arrow-avro reads this shape as `dt`, the one Arrow type this decoder makes of
    /// it.
    fn reads_as(&self, dt: &DataType) -> bool {
        use TimeUnit::{Microsecond, Millisecond};
        match (self.kind, &self.detail, dt) {
            (Kind::Plain(Primitive::Boolean), Detail::None, DataType::Boolean)
            | (Kind::Plain(Primitive::Int), Detail::None, DataType::Int32)
            | (Kind::Plain(Primitive::Long), Detail::None, DataType::Int64)
            | (Kind::Plain(Primitive::Float), Detail::None, DataType::Float32)
            | (Kind::Plain(Primitive::Double), Detail::None, DataType::Float64)
            | (Kind::Plain(Primitive::Bytes), Detail::None, DataType::Binary)
            | (Kind::Plain(Primitive::String), Detail::None, DataType::Utf8)
            | (Kind::Plain(Primitive::Int), Detail::Logical(Logical::Date), DataType::Date32)
            | (
                Kind::Plain(Primitive::Int),
                Detail::Logical(Logical::TimeMillis),
                DataType::Time32(Millisecond),
            )
            | (
                Kind::Plain(Primitive::Long),
                Detail::Logical(Logical::TimeMicros),
                DataType::Time64(Microsecond),
            )
            | (
                Kind::Plain(Primitive::Long),
                Detail::Logical(Logical::TimestampMillis | Logical::LocalTimestampMillis),
                DataType::Timestamp(Millisecond, _),
            )
            | (
                Kind::Plain(Primitive::Long),
                Detail::Logical(Logical::TimestampMicros | Logical::LocalTimestampMicros),
                DataType::Timestamp(Microsecond, _),
            ) => true,
            // (A fixed of no bytes is left to arrow-avro: Arrow cannot count such values.)
            (Kind::Fixed(n), Detail::Named(_), DataType::FixedSizeBinary(m)) => {
                n > 0 && n as i32 == *m
            }
            (
                Kind::Plain(Primitive::Bytes) | Kind::Fixed(_),
                Detail::Decimal {
                    precision, scale, ..
                },
                DataType::Decimal128(p, s),
            ) => *precision <= 38 && u32::from(*p) == *precision && i64::from(*s) == *scale as i64,
            (Kind::Enum, Detail::Enum(..), DataType::Dictionary(k, v)) => {
                **k == DataType::Int32 && **v == DataType::Utf8
            }
            _ => false,
        }
    }
}

/// The shape of `ty`, when it is one this decoder reads: numbers (dates, times,
/// timestamps and decimals up to 38 digits among them), booleans, strings, bytes, fixed and enums, each possibly in a union
/// with null; no other logical type (with `any_logical`, any: for the `uuid` field, which the
/// caller skips), no nesting.
fn shape_of(schema: &Schema, ty: &Type, any_logical: bool) -> Option<Shape> {
    let plain = |ty: &Type| -> Option<(Kind, Detail)> {
        match ty {
            Type::Primitive(p, logical) => {
                if *p == Primitive::Null {
                    return None;
                }
                let kind = Kind::Plain(*p);
                let detail = match logical {
                    None => Detail::None,
                    Some(_) if any_logical => Detail::None,
                    Some(Logical::Decimal { precision, scale })
                        if kind == Kind::Plain(Primitive::Bytes) =>
                    {
                        Detail::Decimal {
                            precision: *precision,
                            scale: *scale,
                            fixed: None,
                        }
                    }
                    Some(
                        l @ (Logical::Date
                        | Logical::TimeMillis
                        | Logical::TimeMicros
                        | Logical::TimestampMillis
                        | Logical::TimestampMicros
                        | Logical::LocalTimestampMillis
                        | Logical::LocalTimestampMicros),
                    ) => Detail::Logical(l.clone()),
                    Some(_) => return None,
                };
                Some((kind, detail))
            }
            Type::Named(n) => {
                let named = schema.named_type(*n);
                match &named.kind {
                    NamedKind::Fixed { size, logical } if logical.is_none() || any_logical => {
                        Some((Kind::Fixed(*size), Detail::Named(named.name.clone())))
                    }
                    NamedKind::Fixed {
                        size,
                        logical: Some(Logical::Decimal { precision, scale }),
                    } => Some((
                        Kind::Fixed(*size),
                        Detail::Decimal {
                            precision: *precision,
                            scale: *scale,
                            fixed: Some(named.name.clone()),
                        },
                    )),
                    NamedKind::Enum { symbols, .. } => Some((
                        Kind::Enum,
                        Detail::Enum(named.name.clone(), symbols.clone()),
                    )),
                    _ => None,
                }
            }
            _ => None,
        }
    };
    let (null_branch, ty) = match ty {
        Type::Union(branches) if branches.len() == 2 => {
            let is_null = |t: &Type| matches!(t, Type::Primitive(Primitive::Null, _));
            match (is_null(&branches[0]), is_null(&branches[1])) {
                (true, false) => (Some(0), &branches[1]),
                (false, true) => (Some(1), &branches[0]),
                _ => return None,
            }
        }
        other => (None, other),
    };
    let (kind, detail) = plain(ty)?;
    Some(Shape {
        kind,
        null_branch,
        detail,
    })
}

/// One writer field: how to read it and which column it goes to (`None`: passed over, as the
/// `uuid` field, which the caller fills from the check, and fields the reader lacks).
#[derive(Debug, Clone, Copy)]
struct Step {
    kind: Kind,
    null_branch: Option<i64>,
    column: Option<usize>,
}

/// A column being filled.
#[derive(Debug)]
enum Values {
    Boolean(BooleanBufferBuilder),
    Int(Vec<i32>),
    Long(Vec<i64>),
    Float(Vec<f32>),
    Double(Vec<f64>),
    /// Strings (`true`) and bytes: offsets (starting with 0) and the values end to end.
    Bytes(bool, Vec<i32>, Vec<u8>),
    Fixed(usize, Vec<u8>),
    /// An enum's indexes, and its symbols.
    Enum(Vec<i32>, ArrayRef),
    /// A decimal's values; on a fixed of this size, else on bytes.
    Decimal(Option<usize>, Vec<i128>),
    /// A reader field the writer lacks (its default is null), or the `uuid` column.
    Null,
}

#[derive(Debug)]
struct Column {
    /// The column's Arrow type (the reader's, as arrow-avro reads it).
    data_type: DataType,
    values: Values,
    /// Which rows hold a value; only for fields in a union with null.
    valid: Option<BooleanBufferBuilder>,
    nulls: usize,
}

/// A writer schema compiled against the reader schema, for records of flat shape.
#[derive(Debug)]
pub(crate) struct FlatDecoder {
    steps: Vec<Step>,
    columns: Vec<Column>,
    rows: usize,
    /// Bytes of strings and bytes appended since the last [`Self::take`], all columns.
    bytes: usize,
    capacity: usize,
}

/// Bytes a batch's string and bytes columns may hold together before the batch is cut
/// (Arrow's 32-bit offsets hold 2 GiB a column).
const MAX_COLUMN_BYTES: usize = 1 << 30;

impl FlatDecoder {
    /// A decoder of `writer`'s records into the columns of `event` (the reader schema as
    /// arrow-avro reads it), or `None` when the pair is not one it takes: either schema not a
    /// record of flat fields, a field whose type differs between them, a reader field the
    /// writer lacks whose default is not null, aliases, or an Arrow type other than
    /// arrow-avro's for the field. Column `uuid_index` is left to the caller.
    pub(crate) fn new(
        writer: &Schema,
        reader: &Schema,
        event: &ArrowSchema,
        uuid_index: usize,
        capacity: usize,
    ) -> Option<Self> {
        let (wf, rf) = (writer.fields(), reader.fields());
        if rf.is_empty() || rf.len() != event.fields().len() || !writer_is_record(writer) {
            return None;
        }
        let mut columns = Vec::with_capacity(rf.len());
        let mut uuid_seen = false;
        let mut steps = Vec::with_capacity(wf.len());
        for (i, (r, f)) in rf.iter().zip(event.fields()).enumerate() {
            if r.name != f.name().as_str() || !r.aliases.is_empty() {
                return None;
            }
            if i == uuid_index {
                columns.push(Column {
                    data_type: DataType::Null,
                    values: Values::Null,
                    valid: None,
                    nulls: 0,
                });
                continue;
            }
            let shape = shape_of(reader, &r.ty, false)?;
            if !shape.reads_as(f.data_type()) || f.is_nullable() != shape.null_branch.is_some() {
                return None;
            }
            let values = if !wf.iter().any(|w| w.name == r.name) {
                if shape.null_branch == Some(0) && r.default == Some(serde_json::Value::Null) {
                    Values::Null
                } else {
                    return None;
                }
            } else if let Detail::Decimal { .. } = shape.detail {
                let size = match shape.kind {
                    Kind::Fixed(n) => Some(n),
                    _ => None,
                };
                Values::Decimal(size, Vec::with_capacity(capacity))
            } else {
                match shape.kind {
                    Kind::Plain(Primitive::Boolean) => {
                        Values::Boolean(BooleanBufferBuilder::new(capacity))
                    }
                    Kind::Plain(Primitive::Int) => Values::Int(Vec::with_capacity(capacity)),
                    Kind::Plain(Primitive::Long) => Values::Long(Vec::with_capacity(capacity)),
                    Kind::Plain(Primitive::Float) => Values::Float(Vec::with_capacity(capacity)),
                    Kind::Plain(Primitive::Double) => Values::Double(Vec::with_capacity(capacity)),
                    Kind::Plain(Primitive::Bytes) | Kind::Plain(Primitive::String) => {
                        let mut offsets = Vec::with_capacity(capacity + 1);
                        offsets.push(0);
                        Values::Bytes(
                            shape.kind == Kind::Plain(Primitive::String),
                            offsets,
                            Vec::new(),
                        )
                    }
                    Kind::Fixed(n) => Values::Fixed(n, Vec::with_capacity(capacity * n)),
                    Kind::Enum => match &shape.detail {
                        Detail::Enum(_, symbols) => Values::Enum(
                            Vec::with_capacity(capacity),
                            Arc::new(StringArray::from_iter_values(symbols)),
                        ),
                        _ => return None,
                    },
                    Kind::Plain(Primitive::Null) => return None,
                }
            };
            columns.push(Column {
                data_type: f.data_type().clone(),
                valid: shape
                    .null_branch
                    .filter(|_| !matches!(values, Values::Null))
                    .map(|_| BooleanBufferBuilder::new(capacity)),
                values,
                nulls: 0,
            });
        }
        for w in wf {
            let at = rf.iter().position(|r| r.name == w.name);
            if at == Some(uuid_index) {
                // Filled by the caller from the check: only its length matters here.
                let shape = shape_of(writer, &w.ty, true)?;
                uuid_seen = true;
                steps.push(Step {
                    kind: shape.kind,
                    null_branch: shape.null_branch,
                    column: None,
                });
                continue;
            }
            let shape = shape_of(writer, &w.ty, false)?;
            if let Some(at) = at {
                if shape_of(reader, &rf[at].ty, false)? != shape {
                    return None;
                }
            }
            steps.push(Step {
                kind: shape.kind,
                null_branch: shape.null_branch,
                column: at,
            });
        }
        if !uuid_seen {
            return None;
        }
        Some(FlatDecoder {
            steps,
            columns,
            rows: 0,
            bytes: 0,
            capacity,
        })
    }

    /// Rows appended since the last [`Self::take`].
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Whether the batch should be taken now: it has its rows, or its strings and bytes are
    /// large.
    pub(crate) fn is_full(&self) -> bool {
        self.rows >= self.capacity || self.bytes >= MAX_COLUMN_BYTES
    }

    /// Appends one checked body. An error means the body is not what the check passed (it
    /// cannot happen for checked records); the columns are then inconsistent and the caller
    /// must drop this decoder.
    pub(crate) fn append(&mut self, body: &[u8]) -> Result<(), &'static str> {
        let mut pos = 0;
        for step in &self.steps {
            let present = match step.null_branch {
                None => true,
                Some(null) => zigzag(body, &mut pos)? != null,
            };
            let Some(col) = step.column else {
                if present {
                    skip(step.kind, body, &mut pos)?;
                }
                continue;
            };
            let col = &mut self.columns[col];
            if let Some(valid) = &mut col.valid {
                valid.append(present);
                col.nulls += usize::from(!present);
            }
            match &mut col.values {
                Values::Boolean(b) => b.append(present && take(body, &mut pos, 1)?[0] == 1),
                Values::Int(v) => v.push(if present {
                    i32::try_from(zigzag(body, &mut pos)?).map_err(|_| "an int out of range")?
                } else {
                    0
                }),
                Values::Long(v) => v.push(if present { zigzag(body, &mut pos)? } else { 0 }),
                Values::Float(v) => v.push(if present {
                    f32::from_le_bytes(take(body, &mut pos, 4)?.try_into().expect("4 bytes"))
                } else {
                    0.0
                }),
                Values::Double(v) => v.push(if present {
                    f64::from_le_bytes(take(body, &mut pos, 8)?.try_into().expect("8 bytes"))
                } else {
                    0.0
                }),
                Values::Bytes(_, offsets, data) => {
                    if present {
                        let n = length(body, &mut pos)?;
                        data.extend_from_slice(take(body, &mut pos, n)?);
                        self.bytes += n;
                    }
                    offsets.push(i32::try_from(data.len()).map_err(|_| "a column over 2 GiB")?);
                }
                Values::Fixed(n, data) => {
                    if present {
                        data.extend_from_slice(take(body, &mut pos, *n)?);
                    } else {
                        data.resize(data.len() + *n, 0);
                    }
                }
                Values::Enum(keys, _) => keys.push(if present {
                    i32::try_from(zigzag(body, &mut pos)?)
                        .map_err(|_| "an enum index out of range")?
                } else {
                    0
                }),
                Values::Decimal(size, v) => v.push(if present {
                    let n = match size {
                        Some(n) => *n,
                        None => length(body, &mut pos)?,
                    };
                    decimal_i128(take(body, &mut pos, n)?).ok_or("a decimal wider than 128 bits")?
                } else {
                    0
                }),
                Values::Null => return Err("a value for a column of nulls"),
            }
        }
        if pos != body.len() {
            return Err("bytes after the record");
        }
        self.rows += 1;
        Ok(())
    }

    /// The columns of the rows appended so far, in the reader's field order (the `uuid`
    /// column a placeholder of nulls of type `Null`), and a fresh start.
    pub(crate) fn take(&mut self) -> Result<Vec<ArrayRef>, arrow::error::ArrowError> {
        let rows = std::mem::take(&mut self.rows);
        self.bytes = 0;
        let capacity = self.capacity;
        self.columns
            .iter_mut()
            .map(|col| {
                let nulls = match (&mut col.valid, std::mem::take(&mut col.nulls)) {
                    (Some(valid), n) if n > 0 => Some(NullBuffer::new(valid.finish())),
                    (Some(valid), _) => {
                        valid.finish();
                        None
                    }
                    (None, _) => None,
                };
                Ok(match &mut col.values {
                    Values::Boolean(b) => {
                        Arc::new(BooleanArray::new(b.finish(), nulls)) as ArrayRef
                    }
                    Values::Int(v) => primitive::<Int32Type>(v, capacity, nulls),
                    Values::Long(v) => primitive::<Int64Type>(v, capacity, nulls),
                    Values::Float(v) => primitive::<Float32Type>(v, capacity, nulls),
                    Values::Double(v) => primitive::<Float64Type>(v, capacity, nulls),
                    Values::Bytes(utf8, offsets, data) => {
                        let mut fresh = Vec::with_capacity(capacity + 1);
                        fresh.push(0);
                        let offsets = OffsetBuffer::new(ScalarBuffer::from(std::mem::replace(
                            offsets, fresh,
                        )));
                        // Room for a full batch of values as large as these, an eighth more
                        // (a buffer that regrows copies itself), at most twice these bytes.
                        let full = data.len().div_ceil(rows.max(1)) * capacity;
                        let next = (full + full / 8).min(data.len() * 2).min(MAX_COLUMN_BYTES);
                        let values = std::mem::replace(data, Vec::with_capacity(next));
                        let values = Buffer::from_vec(values);
                        if *utf8 {
                            Arc::new(text_array(offsets, values, nulls)?) as ArrayRef
                        } else {
                            Arc::new(BinaryArray::try_new(offsets, values, nulls)?)
                        }
                    }
                    Values::Fixed(n, data) => Arc::new(FixedSizeBinaryArray::try_new(
                        *n as i32,
                        Buffer::from_vec(std::mem::replace(
                            data,
                            Vec::with_capacity(capacity * *n),
                        )),
                        nulls,
                    )?),
                    Values::Enum(keys, symbols) => Arc::new(DictionaryArray::<Int32Type>::try_new(
                        Int32Array::new(
                            ScalarBuffer::from(std::mem::replace(
                                keys,
                                Vec::with_capacity(capacity),
                            )),
                            nulls,
                        ),
                        symbols.clone(),
                    )?),
                    Values::Decimal(_, v) => primitive::<Decimal128Type>(v, capacity, nulls),
                    Values::Null => new_null_array(&col.data_type, rows),
                })
                .and_then(|array| {
                    // Dates, times, timestamps, decimals: the same values under their own
                    // type (precision and scale, time unit and zone).
                    if matches!(
                        col.values,
                        Values::Int(_) | Values::Long(_) | Values::Decimal(..)
                    ) && *array.data_type() != col.data_type
                    {
                        let data = array
                            .to_data()
                            .into_builder()
                            .data_type(col.data_type.clone());
                        Ok(make_array(data.build()?))
                    } else {
                        Ok(array)
                    }
                })
            })
            .collect()
    }
}

/// The values of a number column as an array, and a fresh start for the next batch.
fn primitive<T: ArrowPrimitiveType>(
    values: &mut Vec<T::Native>,
    capacity: usize,
    nulls: Option<NullBuffer>,
) -> ArrayRef {
    let values = std::mem::replace(values, Vec::with_capacity(capacity));
    Arc::new(PrimitiveArray::<T>::new(ScalarBuffer::from(values), nulls))
}

fn writer_is_record(schema: &Schema) -> bool {
    matches!(schema.root(), Type::Named(n) if matches!(schema.named_type(*n).kind, NamedKind::Record(_)))
}

fn take<'a>(body: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8], &'static str> {
    let s = body
        .get(*pos..pos.saturating_add(n))
        .ok_or("truncated: ends inside a value")?;
    *pos += n;
    Ok(s)
}

fn length(body: &[u8], pos: &mut usize) -> Result<usize, &'static str> {
    usize::try_from(zigzag(body, pos)?).map_err(|_| "negative length")
}

fn skip(kind: Kind, body: &[u8], pos: &mut usize) -> Result<(), &'static str> {
    match kind {
        Kind::Plain(Primitive::Boolean) => take(body, pos, 1).map(drop),
        Kind::Plain(Primitive::Int) | Kind::Plain(Primitive::Long) | Kind::Enum => {
            zigzag(body, pos).map(drop)
        }
        Kind::Plain(Primitive::Float) => take(body, pos, 4).map(drop),
        Kind::Plain(Primitive::Double) => take(body, pos, 8).map(drop),
        Kind::Plain(Primitive::Bytes) | Kind::Plain(Primitive::String) => {
            let n = length(body, pos)?;
            take(body, pos, n).map(drop)
        }
        Kind::Fixed(n) => take(body, pos, n).map(drop),
        // `shape_of` makes no such kind.
        Kind::Plain(Primitive::Null) => Ok(()),
    }
}

/// A text array of `values` cut at `offsets`, its UTF-8 checked (again: the body check did,
/// value by value) with simdutf8 over the whole buffer, and each offset at a character's
/// start. `StringArray::try_new` checks the same with the standard library's validation,
/// four times the cost on ASCII (1.1% of a `silt run`'s instructions).
fn text_array(
    offsets: OffsetBuffer<i32>,
    values: Buffer,
    nulls: Option<NullBuffer>,
) -> Result<StringArray, arrow::error::ArrowError> {
    let invalid = arrow::error::ArrowError::InvalidArgumentError;
    let text = simdutf8::basic::from_utf8(values.as_slice())
        .map_err(|_| invalid("decoded text is not UTF-8".into()))?;
    // In bounds and at a character's start (`is_char_boundary` is false past the end).
    if let Some(o) = offsets
        .iter()
        .find(|&&o| !text.is_char_boundary(o as usize))
    {
        return Err(invalid(format!(
            "a text offset ({o}) is not at a character's start"
        )));
    }
    if let Some(n) = nulls.as_ref().filter(|n| n.len() != offsets.len() - 1) {
        return Err(invalid(format!(
            "{} nulls for {} values",
            n.len(),
            offsets.len() - 1
        )));
    }
    // SAFETY: what `StringArray::try_new` checks holds, checked above: the offsets are
    // non-negative and ascending (an `OffsetBuffer`), within the values and on character
    // boundaries of valid UTF-8, and the null buffer has one bit a value.
    #[allow(unsafe_code)]
    let array = unsafe { StringArray::new_unchecked(offsets, values, nulls) };
    Ok(array)
}

#[cfg(test)]
mod text_tests {
    use super::*;

    fn offsets(o: &[i32]) -> OffsetBuffer<i32> {
        OffsetBuffer::new(ScalarBuffer::from(o.to_vec()))
    }

    #[test]
    fn text_is_checked_as_try_new_checks_it() {
        let good = Buffer::from("aé€z".as_bytes());
        let a = text_array(offsets(&[0, 1, 3, 6, 7]), good.clone(), None).unwrap();
        assert_eq!(a, StringArray::from(vec!["a", "é", "€", "z"]));
        // Cut inside a character, past the end, bad bytes, nulls of another length.
        assert!(text_array(offsets(&[0, 2, 7]), good.clone(), None).is_err());
        assert!(text_array(offsets(&[0, 8]), good.clone(), None).is_err());
        let bad = Buffer::from(&[b'a', 0xC3, b'z'][..]);
        assert!(text_array(offsets(&[0, 3]), bad, None).is_err());
        let nulls = NullBuffer::new_valid(3);
        assert!(text_array(offsets(&[0, 1, 7]), good, Some(nulls)).is_err());
    }
}
