//! One Parquet file, written row group by row group with parquet-rs's Arrow column writers,
//! except for the dictionary columns whose values come in long runs: those are written here,
//! run by run (and two other kinds, below).
//!
//! The stream metadata of every raw table (SPEC 8) is such: `_stream` and `_fingerprint` hold
//! one value a micro-batch, `_shard` one value a slice of records. parquet-rs encodes a
//! dictionary array row by row: every row's text is hashed and looked up in the column's own
//! dictionary and compared with the page's minimum and maximum (arrow-rs#10465), so the three
//! columns cost a hash and three comparisons of up to 64 bytes for every event: a `silt run`
//! of 1M events (raw table only, one core) took 562 ms of CPU that way and takes 526 ms this
//! way. Here a run of equal keys is looked at once: its dictionary index is found when its
//! value first appears in a batch, and it is written as one RLE run (`RLE_DICTIONARY`, as
//! parquet-rs writes dictionary indices), with the page's statistics, column index and offset
//! index taken from the runs. Such a chunk is stored uncompressed: a page of runs is a few
//! bytes, which zstd would only make longer.
//!
//! A run column that would not be written as parquet-rs writes it (values longer than the
//! statistics are truncated to, a dictionary larger than a dictionary page, runs shorter than
//! eight rows on average, nulls among the values) goes through parquet-rs's writer instead:
//! the values, statistics and page indexes are the same either way.
//!
//! The plain text columns (nearly distinct text of no order, stored `PLAIN` without
//! statistics) are written here too, page by page ([`crate::plain`]), and so are the numbers
//! stored as a dictionary or as steps (64-bit integers and timestamps: [`crate::numbers`]).

use std::collections::HashMap;

use arrow::array::{
    downcast_dictionary_array, new_empty_array, Array, ArrayRef, AsArray, DictionaryArray,
    Int32Array, RecordBatch,
};
use arrow::datatypes::{ArrowNativeType, DataType, Field, Int32Type, SchemaRef};
use bytes::Bytes;
use parquet::arrow::arrow_writer::{
    compute_leaves, ArrowColumnChunk, ArrowColumnWriter, ArrowRowGroupWriterFactory,
};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, EncodingMask, PageType};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{
    ColumnChunkMetaData, ColumnIndexBuilder, OffsetIndexBuilder, PageEncodingStats,
};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::statistics::{Statistics, ValueStatistics};
use parquet::file::writer::{SerializedFileWriter, SerializedPageWriter, TrackedWrite};
use parquet::schema::types::{ColumnDescPtr, ColumnPath};

use crate::chunk::{closed_chunk, PageOrder};
use crate::numbers::{is_number_column, Numbers};
use crate::plain::{is_plain_column, Plain};

/// A Parquet file being written into memory: what [`ArrowWriter`] does, with run columns.
pub(crate) struct ParquetFile {
    writer: SerializedFileWriter<Vec<u8>>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    /// Per field of `schema`: its first leaf column, and how it is written.
    fields: Vec<(usize, Way)>,
    max_rows: usize,
    group: Option<Group>,
    groups: usize,
    /// Files of some of these columns, given each row group's chunks as they are encoded.
    copies: Vec<ColumnCopy>,
}

/// A Parquet file of some of the columns of a [`ParquetFile`], row group for row group: its
/// column chunks are the other file's, copied, not encoded again.
struct ColumnCopy {
    writer: SerializedFileWriter<Vec<u8>>,
    /// Per leaf column of this file: the leaf column of the file it copies.
    leaves: Vec<usize>,
}

/// How a field is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// By parquet-rs's Arrow column writers.
    Arrow,
    /// As runs of dictionary indices ([`Runs`]), unless they turn out short.
    Runs,
    /// Page by page as plain values ([`Plain`]).
    Plain,
    /// As numbers ([`Numbers`]): a dictionary, unless it outgrows a dictionary page, or steps.
    Numbers,
}

/// The row group being written: one Arrow column writer a leaf column, the runs of the run
/// columns (whose Arrow writers stay empty unless the column falls back to them) and the
/// pages of the plain columns (whose Arrow writers stay empty).
struct Group {
    writers: Vec<ArrowColumnWriter>,
    runs: Vec<Option<Runs>>,
    plain: Vec<Option<Plain>>,
    numbers: Vec<Option<Numbers>>,
    rows: usize,
}

impl ParquetFile {
    pub(crate) fn try_new(schema: SchemaRef, props: WriterProperties) -> Result<Self> {
        let max_rows = props.max_row_group_row_count().unwrap_or(usize::MAX).max(1);
        let (writer, factory) = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props))?
            .into_serialized_writer()?;
        let props = writer.properties().clone();
        let mut leaf = 0;
        let mut fields = Vec::with_capacity(schema.fields().len());
        for field in schema.fields() {
            let leaves = compute_leaves(field, &new_empty_array(field.data_type()))?.len();
            let descr = writer.schema_descr().column(leaf);
            let way = match leaves == 1 {
                true if is_run_column(field, &descr, &props) => Way::Runs,
                true if is_plain_column(field, &descr, &props) => Way::Plain,
                true if is_number_column(field, &descr, &props) => Way::Numbers,
                _ => Way::Arrow,
            };
            fields.push((leaf, way));
            leaf += leaves;
        }
        Ok(Self {
            writer,
            factory,
            schema,
            fields,
            max_rows,
            group: None,
            groups: 0,
            copies: Vec::new(),
        })
    }

    /// Writes also a file of `schema`'s columns, field `i` of which is this file's field
    /// `sources[i]` (the same type, nullability and metadata; its name may differ), in any
    /// order: every row group of this file gives it the same rows, its chunks copied
    /// ([`into_files`](Self::into_files) returns it). Only before the first row is written.
    pub(crate) fn copy_columns(&mut self, schema: SchemaRef, sources: &[usize]) -> Result<()> {
        if self.group.is_some() || self.groups > 0 {
            return Err(ParquetError::General(
                "columns are copied from a file's first row on".into(),
            ));
        }
        if sources.len() != schema.fields().len() {
            return Err(ParquetError::General(format!(
                "{} columns to copy from {} sources",
                schema.fields().len(),
                sources.len()
            )));
        }
        let mut leaves = Vec::new();
        for (field, &i) in schema.fields().iter().zip(sources) {
            let same = self
                .schema
                .fields()
                .get(i)
                .is_some_and(|f| f.as_ref().clone().with_name(field.name()) == **field);
            if !same {
                return Err(ParquetError::General(format!(
                    "column `{}` ({}) is not a copy of the file's column {i}",
                    field.name(),
                    field.data_type()
                )));
            }
            let first = self.fields[i].0;
            let end = self
                .fields
                .get(i + 1)
                .map_or(self.writer.schema_descr().num_columns(), |f| f.0);
            leaves.extend(first..end);
        }
        let props = self.writer.properties().as_ref().clone();
        let (writer, _) =
            ArrowWriter::try_new(Vec::new(), schema, Some(props))?.into_serialized_writer()?;
        self.copies.push(ColumnCopy { writer, leaves });
        Ok(())
    }

    /// Encodes `batch` into the row group in progress, closing row groups of
    /// `max_row_group_size` rows as they fill.
    pub(crate) fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let mut off = 0;
        while off < batch.num_rows() {
            if self.group.is_none() {
                let writers = self.factory.create_column_writers(self.groups)?;
                let mut runs: Vec<Option<Runs>> = writers.iter().map(|_| None).collect();
                let mut plain: Vec<Option<Plain>> = writers.iter().map(|_| None).collect();
                let mut numbers: Vec<Option<Numbers>> = writers.iter().map(|_| None).collect();
                for &(leaf, way) in &self.fields {
                    match way {
                        Way::Runs => runs[leaf] = Some(Runs::default()),
                        Way::Plain => {
                            let descr = self.writer.schema_descr().column(leaf);
                            plain[leaf] = Some(Plain::new(descr, self.writer.properties())?);
                        }
                        Way::Numbers => {
                            let descr = self.writer.schema_descr().column(leaf);
                            let props = self.writer.properties().clone();
                            numbers[leaf] = Some(Numbers::new(descr, props));
                        }
                        Way::Arrow => {}
                    }
                }
                self.group = Some(Group {
                    writers,
                    runs,
                    plain,
                    numbers,
                    rows: 0,
                });
            }
            let group = self.group.as_mut().expect("a row group in progress");
            let n = (self.max_rows - group.rows).min(batch.num_rows() - off);
            let slice = batch.slice(off, n);
            for ((field, column), &(leaf, _)) in self
                .schema
                .fields()
                .iter()
                .zip(slice.columns())
                .zip(&self.fields)
            {
                if let Some(plain) = group.plain[leaf].as_mut() {
                    plain.push(column.as_ref())?;
                    continue;
                }
                if let Some(numbers) = group.numbers[leaf].as_mut() {
                    numbers.push(column.as_ref())?;
                    if numbers.outgrown() {
                        // More values than a dictionary page holds: what it holds so far,
                        // then the rest of the row group, through parquet-rs.
                        let numbers = group.numbers[leaf].take().expect("numbers");
                        numbers.write_to(field, &mut group.writers[leaf])?;
                    }
                    continue;
                }
                if let Some(runs) = group.runs[leaf].as_mut() {
                    let taken = runs.push(column.as_ref());
                    if taken && !runs.too_short() {
                        continue;
                    }
                    // Not a column of runs after all (nulls among its values, or runs too
                    // short to be worth it: an enum that changes every few rows): what it
                    // holds so far, then the rest of the row group, through parquet-rs.
                    let runs = group.runs[leaf].take().expect("runs");
                    runs.write_to(field, &mut group.writers[leaf])?;
                    if taken {
                        continue;
                    }
                }
                for (i, l) in compute_leaves(field, column)?.iter().enumerate() {
                    group.writers[leaf + i].write(l)?;
                }
            }
            group.rows += n;
            off += n;
            if group.rows >= self.max_rows {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Closes the row group in progress and writes it out.
    fn flush(&mut self) -> Result<()> {
        let Some(group) = self.group.take() else {
            return Ok(());
        };
        let props = self.writer.properties().clone();
        let mut columns = Vec::with_capacity(group.writers.len());
        let ways = group.runs.into_iter().zip(group.plain).zip(group.numbers);
        for (leaf, (mut writer, ((runs, plain), numbers))) in
            group.writers.into_iter().zip(ways).enumerate()
        {
            if let Some(plain) = plain {
                columns.push(Column::Encoded(plain.finish()?));
                continue;
            }
            let field = |fields: &[(usize, Way)]| {
                let i = fields.iter().position(|&(l, _)| l == leaf);
                self.schema
                    .field(i.expect("a leaf written here is a field"))
            };
            match numbers {
                Some(numbers) if numbers.encodable() => {
                    columns.push(Column::Encoded(numbers.finish()?));
                    continue;
                }
                Some(numbers) => {
                    numbers.write_to(field(&self.fields), &mut writer)?;
                    columns.push(Column::Arrow(writer.close()?));
                    continue;
                }
                None => {}
            }
            match runs {
                Some(runs)
                    if runs.encodable(&props, self.writer.schema_descr().column(leaf).path()) =>
                {
                    let descr = self.writer.schema_descr().column(leaf);
                    columns.push(Column::Encoded(runs.encode(descr, &props)?));
                }
                Some(runs) => {
                    runs.write_to(field(&self.fields), &mut writer)?;
                    columns.push(Column::Arrow(writer.close()?));
                }
                None => columns.push(Column::Arrow(writer.close()?)),
            }
        }
        // What the copies need of each leaf's chunk: its close result (and its bytes, for a
        // chunk of runs; an Arrow chunk's are read back from this file once appended).
        let mut copied: Vec<Option<(Option<Bytes>, ColumnCloseResult)>> =
            columns.iter().map(|_| None).collect();
        for copy in &self.copies {
            for &leaf in &copy.leaves {
                copied[leaf].get_or_insert_with(|| match &columns[leaf] {
                    Column::Arrow(chunk) => (None, chunk.close().clone()),
                    Column::Encoded((bytes, close)) => (Some(bytes.clone()), close.clone()),
                });
            }
        }
        // Room for the row group's chunks in the file's buffer at once (and for the page
        // indexes and footer after a last one): grown as they come, it would be copied over
        // and over into fresh pages as it doubles.
        let size: usize = columns
            .iter()
            .map(|c| match c {
                Column::Arrow(chunk) => chunk.close().metadata.compressed_size() as usize,
                Column::Encoded((bytes, _)) => bytes.len(),
            })
            .sum();
        self.writer
            .inner_mut()
            .reserve(size + size / 64 + (64 << 10));
        let mut row_group = self.writer.next_row_group()?;
        for column in columns {
            match column {
                Column::Arrow(chunk) => chunk.append_to_row_group(&mut row_group)?,
                Column::Encoded((bytes, close)) => row_group.append_column(&bytes, close)?,
            }
        }
        let written = row_group.close()?;
        self.groups += 1;
        if self.copies.is_empty() {
            return Ok(());
        }
        self.writer.flush()?;
        for (leaf, c) in copied.iter_mut().enumerate() {
            let Some((bytes @ None, close)) = c else {
                continue;
            };
            // Where the chunk went in this file; its close result's offsets are its own
            // buffer's, where the dictionary page came after the data pages.
            let chunk = written.column(leaf);
            let start = chunk
                .dictionary_page_offset()
                .unwrap_or(chunk.data_page_offset()) as usize;
            let end = start + chunk.compressed_size() as usize;
            *bytes = Some(Bytes::copy_from_slice(&self.writer.inner()[start..end]));
            let dictionary = chunk
                .dictionary_page_offset()
                .map_or(0, |d| chunk.data_page_offset() - d);
            *close = close
                .clone()
                .update_dictionary_location(dictionary as usize)?;
        }
        for copy in &mut self.copies {
            let descrs: Vec<ColumnDescPtr> = (0..copy.leaves.len())
                .map(|i| copy.writer.schema_descr().column(i))
                .collect();
            let size: usize = copy
                .leaves
                .iter()
                .filter_map(|&leaf| copied[leaf].as_ref()?.0.as_ref().map(Bytes::len))
                .sum();
            copy.writer
                .inner_mut()
                .reserve(size + size / 64 + (64 << 10));
            let mut row_group = copy.writer.next_row_group()?;
            for (i, &leaf) in copy.leaves.iter().enumerate() {
                let (bytes, close) = copied[leaf].as_ref().expect("taken above");
                let bytes = bytes.as_ref().expect("read back above");
                let descr = descrs[i].clone();
                let close = if close.metadata.column_descr() == descr.as_ref() {
                    close.clone()
                } else {
                    renamed(close, descr)?
                };
                row_group.append_column(bytes, close)?;
            }
            row_group.close()?;
        }
        Ok(())
    }

    /// Bytes of the row groups written out.
    pub(crate) fn bytes_written(&self) -> usize {
        self.writer.bytes_written()
    }

    /// Estimated bytes of the row group in progress, once written out.
    pub(crate) fn in_progress_size(&self) -> usize {
        self.group.as_ref().map_or(0, |g| {
            g.writers
                .iter()
                .map(|w| w.get_estimated_total_bytes())
                .sum::<usize>()
                + g.runs.iter().flatten().map(Runs::size).sum::<usize>()
                + g.plain.iter().flatten().map(Plain::size).sum::<usize>()
                + g.numbers.iter().flatten().map(Numbers::size).sum::<usize>()
        })
    }

    /// Whether field `i` is written as a plain column.
    #[cfg(test)]
    pub(crate) fn is_plain(&self, i: usize) -> bool {
        self.fields[i].1 == Way::Plain
    }

    /// Whether field `i` is written as a number column.
    #[cfg(test)]
    pub(crate) fn is_number(&self, i: usize) -> bool {
        self.fields[i].1 == Way::Numbers
    }

    #[cfg(test)]
    pub(crate) fn into_inner(self) -> Result<Vec<u8>> {
        Ok(self.into_files()?.0)
    }

    /// Writes the last row group and the footers, and returns the file's bytes and those of
    /// its column copies ([`copy_columns`](Self::copy_columns)), in the order they were asked.
    pub(crate) fn into_files(mut self) -> Result<(Vec<u8>, Vec<Vec<u8>>)> {
        self.flush()?;
        let copies = self
            .copies
            .into_iter()
            .map(|c| c.writer.into_inner())
            .collect::<Result<_>>()?;
        Ok((self.writer.into_inner()?, copies))
    }
}

/// A chunk's close result for a column of another name (a renamed copy): its metadata
/// rebuilt under `descr`, every other part as it was.
fn renamed(close: &ColumnCloseResult, descr: ColumnDescPtr) -> Result<ColumnCloseResult> {
    let m = &close.metadata;
    let mut b = ColumnChunkMetaData::builder(descr)
        .set_compression_codec(m.compression_codec())
        .set_encodings_mask(*m.encodings_mask())
        .set_num_values(m.num_values())
        .set_total_compressed_size(m.compressed_size())
        .set_total_uncompressed_size(m.uncompressed_size())
        .set_data_page_offset(m.data_page_offset())
        .set_dictionary_page_offset(m.dictionary_page_offset())
        .set_index_page_offset(m.index_page_offset())
        .set_unencoded_byte_array_data_bytes(m.unencoded_byte_array_data_bytes())
        .set_repetition_level_histogram(m.repetition_level_histogram().cloned())
        .set_definition_level_histogram(m.definition_level_histogram().cloned());
    if let Some(s) = m.statistics() {
        b = b.set_statistics(s.clone());
    }
    if let Some(s) = m.geo_statistics() {
        b = b.set_geo_statistics(Box::new(s.clone()));
    }
    if let Some(s) = m.page_encoding_stats() {
        b = b.set_page_encoding_stats(s.clone());
    }
    if let Some(s) = m.page_encoding_stats_mask() {
        b = b.set_page_encoding_stats_mask(*s);
    }
    let mut close = close.clone();
    close.metadata = b.build()?;
    Ok(close)
}

/// A leaf column's chunk of a row group, encoded: by parquet-rs, or here (runs, plain).
enum Column {
    Arrow(ArrowColumnChunk),
    Encoded((Bytes, ColumnCloseResult)),
}

/// Whether `field` (a leaf column) is written as runs: a dictionary of text or bytes, never
/// null, dictionary-encoded in the file, no bloom filter, version 1 data pages.
fn is_run_column(field: &Field, descr: &ColumnDescPtr, props: &WriterProperties) -> bool {
    let DataType::Dictionary(_, values) = field.data_type() else {
        return false;
    };
    matches!(
        values.as_ref(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Binary | DataType::LargeBinary
    ) && !field.is_nullable()
        && descr.max_def_level() == 0
        && descr.max_rep_level() == 0
        && props.dictionary_enabled(descr.path())
        && props.bloom_filter_properties(descr.path()).is_none()
        && props.writer_version() == WriterVersion::PARQUET_1_0
}

/// A run column's row group so far: its dictionary (values in the order they first appeared)
/// and its runs of equal values.
#[derive(Default)]
struct Runs {
    values: Vec<Vec<u8>>,
    index: HashMap<Vec<u8>, u32>,
    /// (dictionary index, rows)
    runs: Vec<(u32, u32)>,
    rows: usize,
}

impl Runs {
    /// Takes the runs of `array`'s keys; false (taking nothing) when it has null values.
    fn push(&mut self, array: &dyn Array) -> bool {
        downcast_dictionary_array! {
            array => {
                let values = array.values();
                if array.null_count() > 0 || values.null_count() > 0 {
                    return false;
                }
                let keys = array.keys().values();
                // This batch's dictionary index of each of its values, found when first used.
                let mut mine = vec![u32::MAX; values.len()];
                let mut i = 0;
                while i < keys.len() {
                    let key = keys[i];
                    let mut j = i + 1;
                    while j < keys.len() && keys[j] == key {
                        j += 1;
                    }
                    let k = key.as_usize();
                    if mine[k] == u32::MAX {
                        mine[k] = self.index_of(value_bytes(values.as_ref(), k));
                    }
                    self.push_run(mine[k], j - i);
                    i = j;
                }
                true
            }
            _ => false
        }
    }

    fn index_of(&mut self, value: &[u8]) -> u32 {
        if let Some(&i) = self.index.get(value) {
            return i;
        }
        let i = self.values.len() as u32;
        self.values.push(value.to_vec());
        self.index.insert(value.to_vec(), i);
        i
    }

    fn push_run(&mut self, index: u32, rows: usize) {
        self.rows += rows;
        let mut rows = rows;
        // Runs are kept under 2^31 rows, merged with the run before when they continue it.
        if let Some(last) = self.runs.last_mut() {
            if last.0 == index {
                let add = rows.min((i32::MAX as u32 - last.1) as usize);
                last.1 += add as u32;
                rows -= add;
            }
        }
        while rows > 0 {
            let add = rows.min(i32::MAX as usize);
            self.runs.push((index, add as u32));
            rows -= add;
        }
    }

    /// Bytes this column will take in the file, about.
    fn size(&self) -> usize {
        self.runs.len() * 6 + self.values.iter().map(|v| v.len() + 4).sum::<usize>()
    }

    /// Whether the runs are shorter than eight rows on average: too short for runs to pay.
    fn short(&self) -> bool {
        self.runs.len() * 8 > self.rows
    }

    /// Whether the runs so far are [`short`](Self::short), over enough rows to tell.
    fn too_short(&self) -> bool {
        self.rows >= 4096 && self.short()
    }

    /// Whether parquet-rs would write these values as a dictionary with the statistics they
    /// are (no truncation), in runs long enough to be worth it.
    fn encodable(&self, props: &WriterProperties, path: &ColumnPath) -> bool {
        let longest = self.values.iter().map(Vec::len).max().unwrap_or(0);
        let fits = |limit: Option<usize>| limit.is_none_or(|l| longest <= l);
        fits(props.statistics_truncate_length())
            && fits(props.column_index_truncate_length())
            && self.values.iter().map(|v| v.len() + 4).sum::<usize>()
                <= props.column_dictionary_page_size_limit(path)
            && !self.short()
    }

    /// Hands the rows taken so far to parquet-rs's writer of the column (as a dictionary
    /// array, in slices).
    fn write_to(self, field: &Field, writer: &mut ArrowColumnWriter) -> Result<()> {
        let values: ArrayRef = match field.data_type() {
            DataType::Dictionary(_, v) => arrow::compute::cast(
                &arrow::array::BinaryArray::from_iter_values(&self.values),
                v,
            )?,
            _ => return Err(ParquetError::General("a run column is a dictionary".into())),
        };
        let mut keys = Vec::with_capacity(self.rows.min(1 << 16));
        let mut runs = self.runs.into_iter();
        let mut left = 0;
        let mut index = 0;
        loop {
            while keys.len() < 1 << 16 {
                if left == 0 {
                    match runs.next() {
                        Some((i, n)) => (index, left) = (i as i32, n as usize),
                        None => break,
                    }
                }
                let take = left.min((1 << 16) - keys.len());
                keys.extend(std::iter::repeat_n(index, take));
                left -= take;
            }
            if keys.is_empty() {
                return Ok(());
            }
            let array = DictionaryArray::<Int32Type>::try_new(
                Int32Array::from(std::mem::take(&mut keys)),
                values.clone(),
            )?;
            let array = arrow::compute::cast(&array, field.data_type())?;
            for leaf in compute_leaves(field, &array)? {
                writer.write(&leaf)?;
            }
        }
    }

    /// The column chunk: a dictionary page, then data pages of RLE runs of indices, with the
    /// statistics, column index and offset index parquet-rs gives the same values.
    fn encode(
        self,
        descr: ColumnDescPtr,
        props: &WriterProperties,
    ) -> Result<(Bytes, ColumnCloseResult)> {
        let path = descr.path();
        let statistics = props.statistics_enabled(path);
        let header_statistics =
            statistics == EnabledStatistics::Page && props.write_page_header_statistics(path);
        // A data page ends at parquet-rs's own limits: rows, and bytes of encoded values.
        let (page_rows, page_bytes_limit) = (
            props.data_page_row_count_limit().max(1),
            props.column_data_page_size_limit(path).max(1),
        );
        let bit_width =
            (u32::BITS - (self.values.len().saturating_sub(1) as u32).leading_zeros()) as u8;
        let index_bytes = (bit_width as usize).div_ceil(8);

        let mut sink = TrackedWrite::new(Vec::new());
        let mut pages = SerializedPageWriter::new(&mut sink);
        let mut column_index = ColumnIndexBuilder::new(descr.physical_type());
        if statistics != EnabledStatistics::Page {
            column_index.to_invalid();
        }
        let mut offset_index = (!props.offset_index_disabled()).then(OffsetIndexBuilder::new);
        let (mut compressed, mut uncompressed) = (0i64, 0i64);

        // The dictionary page first: the values, PLAIN (a 4-byte length, the bytes).
        let mut dictionary = Vec::with_capacity(self.size());
        for v in &self.values {
            dictionary.extend_from_slice(&(v.len() as u32).to_le_bytes());
            dictionary.extend_from_slice(v);
        }
        let len = dictionary.len();
        let spec = pages.write_page(CompressedPage::new(
            Page::DictionaryPage {
                buf: dictionary.into(),
                num_values: self.values.len() as u32,
                encoding: props.dictionary_page_encoding(),
                is_sorted: false,
            },
            len,
        ))?;
        let dictionary_offset = spec.offset as i64;
        compressed += spec.compressed_size as i64;
        uncompressed += spec.uncompressed_size as i64;

        let mut data_offset = None;
        let mut data_pages = 0;
        let mut order = PageOrder::new();
        let mut chunk_min_max: Option<(u32, u32)> = None;
        let mut unencoded = 0i64;
        let mut runs = self.runs.iter().copied();
        let mut pending: Option<(u32, usize)> = None;
        loop {
            // One data page: the bit width, then runs (`len << 1` as a ULEB128, the index in
            // `index_bytes` little-endian bytes).
            let mut buf = vec![bit_width];
            let (mut rows, mut page_bytes) = (0usize, 0i64);
            let mut min_max: Option<(u32, u32)> = None;
            while rows < page_rows && buf.len() < page_bytes_limit {
                let (index, n) = match pending.take() {
                    Some(p) => p,
                    None => match runs.next() {
                        Some((i, n)) => (i, n as usize),
                        None => break,
                    },
                };
                let take = n.min(page_rows - rows);
                if take < n {
                    pending = Some((index, n - take));
                }
                let mut header = (take as u64) << 1;
                loop {
                    let byte = (header & 0x7f) as u8;
                    header >>= 7;
                    if header == 0 {
                        buf.push(byte);
                        break;
                    }
                    buf.push(byte | 0x80);
                }
                buf.extend_from_slice(&index.to_le_bytes()[..index_bytes]);
                rows += take;
                page_bytes += (take * self.values[index as usize].len()) as i64;
                min_max = Some(match min_max {
                    None => (index, index),
                    Some((lo, hi)) => (self.lesser(lo, index), self.greater(hi, index)),
                });
            }
            let Some((lo, hi)) = min_max else {
                break;
            };
            order.page(&self.values[lo as usize], &self.values[hi as usize]);
            chunk_min_max = Some(match chunk_min_max {
                None => (lo, hi),
                Some((clo, chi)) => (self.lesser(clo, lo), self.greater(chi, hi)),
            });
            if column_index.valid() {
                column_index.append(
                    false,
                    self.values[lo as usize].clone(),
                    self.values[hi as usize].clone(),
                    0,
                );
            }
            let len = buf.len();
            let spec = pages.write_page(CompressedPage::new(
                Page::DataPage {
                    buf: buf.into(),
                    num_values: rows as u32,
                    encoding: Encoding::RLE_DICTIONARY,
                    def_level_encoding: Encoding::RLE,
                    rep_level_encoding: Encoding::RLE,
                    statistics: header_statistics.then(|| self.statistics(lo, hi, &descr)),
                },
                len,
            ))?;
            data_offset.get_or_insert(spec.offset as i64);
            data_pages += 1;
            compressed += spec.compressed_size as i64;
            uncompressed += spec.uncompressed_size as i64;
            unencoded += page_bytes;
            if let Some(o) = offset_index.as_mut() {
                o.append_offset_and_size(spec.offset as i64, spec.compressed_size as i32);
                o.append_row_count(rows as i64);
                o.append_unencoded_byte_array_data_bytes(Some(page_bytes));
            }
        }
        pages.close()?;

        let encodings = [Encoding::PLAIN, Encoding::RLE, Encoding::RLE_DICTIONARY];
        let mut metadata = ColumnChunkMetaData::builder(descr.clone())
            .set_compression(Compression::UNCOMPRESSED)
            .set_encodings_mask(EncodingMask::new_from_encodings(encodings.iter()))
            .set_page_encoding_stats(vec![
                PageEncodingStats {
                    page_type: PageType::DICTIONARY_PAGE,
                    encoding: props.dictionary_page_encoding(),
                    count: 1,
                },
                PageEncodingStats {
                    page_type: PageType::DATA_PAGE,
                    encoding: Encoding::RLE_DICTIONARY,
                    count: data_pages,
                },
            ])
            .set_total_compressed_size(compressed)
            .set_total_uncompressed_size(uncompressed)
            .set_num_values(self.rows as i64)
            .set_data_page_offset(data_offset.unwrap_or(0))
            .set_dictionary_page_offset(Some(dictionary_offset));
        if statistics != EnabledStatistics::None {
            if let Some((lo, hi)) = chunk_min_max {
                metadata = metadata
                    .set_statistics(self.statistics(lo, hi, &descr))
                    .set_unencoded_byte_array_data_bytes(Some(unencoded));
            }
        }
        column_index.set_boundary_order(order.order());
        closed_chunk(
            sink,
            self.rows,
            metadata.build()?,
            Some(column_index),
            offset_index,
        )
    }

    /// The index of the lesser value (bytes compared, as Parquet orders text).
    fn lesser(&self, a: u32, b: u32) -> u32 {
        if self.values[b as usize] < self.values[a as usize] {
            b
        } else {
            a
        }
    }

    /// The index of the greater value.
    fn greater(&self, a: u32, b: u32) -> u32 {
        if self.values[b as usize] > self.values[a as usize] {
            b
        } else {
            a
        }
    }

    /// Statistics of a page or of the chunk, as parquet-rs makes them (min, max, no nulls).
    fn statistics(&self, lo: u32, hi: u32, descr: &ColumnDescPtr) -> Statistics {
        Statistics::ByteArray(
            ValueStatistics::new(
                Some(self.values[lo as usize].clone().into()),
                Some(self.values[hi as usize].clone().into()),
                None,
                Some(0),
                false,
            )
            .with_backwards_compatible_min_max(descr.sort_order().is_signed()),
        )
    }
}

/// The bytes of value `i` of a dictionary's values (text or binary).
fn value_bytes(values: &dyn Array, i: usize) -> &[u8] {
    match values.data_type() {
        DataType::Utf8 => values.as_string::<i32>().value(i).as_bytes(),
        DataType::LargeUtf8 => values.as_string::<i64>().value(i).as_bytes(),
        DataType::Binary => values.as_binary::<i32>().value(i),
        DataType::LargeBinary => values.as_binary::<i64>().value(i),
        _ => unreachable!("run columns hold text or bytes"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::compute::concat_batches;
    use arrow::datatypes::Schema;
    use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
    use parquet::basic::ZstdLevel;
    use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
    use parquet::file::properties::EnabledStatistics;
    use std::sync::Arc;

    fn dictionary(keys: Vec<i32>, values: &[&str]) -> ArrayRef {
        Arc::new(
            DictionaryArray::<Int32Type>::try_new(
                Int32Array::from(keys),
                Arc::new(StringArray::from(values.to_vec())),
            )
            .unwrap(),
        )
    }

    /// Batches of the raw table's shape: a constant `_stream`, a `_shard` in runs of a few
    /// thousand rows (its values neither ascending nor descending), a long constant
    /// `_fingerprint`, a nullable dictionary column (never runs) and a plain one.
    fn batches(rows: usize, per_batch: usize, shard_run: usize) -> Vec<RecordBatch> {
        let dict = || DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("_stream", dict(), false),
            Field::new("_shard", dict(), false),
            Field::new("_fingerprint", dict(), false),
            Field::new("maybe", dict(), true),
        ]));
        let fp = "9f3a".repeat(16);
        (0..rows)
            .step_by(per_batch)
            .map(|start| {
                let n = per_batch.min(rows - start);
                let rows = start..start + n;
                let shard = rows
                    .clone()
                    .map(|r| [2, 0, 1, 0][(r / shard_run) % 4])
                    .collect();
                let maybe = DictionaryArray::<Int32Type>::try_new(
                    rows.clone()
                        .map(|r| (r % 3 != 0).then_some((r % 2) as i32))
                        .collect(),
                    Arc::new(StringArray::from(vec!["x", "y"])),
                )
                .unwrap();
                RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(Int64Array::from_iter_values(rows.clone().map(|r| r as i64))),
                        dictionary(vec![0; n], &["clickstream"]),
                        dictionary(
                            shard,
                            &[
                                "shardId-000000000000",
                                "shardId-000000000001",
                                "shardId-000000000002",
                            ],
                        ),
                        dictionary(vec![0; n], &[fp.as_str()]),
                        Arc::new(maybe),
                    ],
                )
                .unwrap()
            })
            .collect()
    }

    fn props() -> WriterProperties {
        compared_props(8192).build()
    }

    /// zstd, page statistics, row groups of 40,960 rows and pages of `page_rows`: a multiple
    /// of parquet-rs's 1,024-row mini-batches, where it looks at its limits, so that its pages
    /// and silt's have the same rows and their page indexes compare.
    pub(crate) fn compared_props(
        page_rows: usize,
    ) -> parquet::file::properties::WriterPropertiesBuilder {
        WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(40_960))
            .set_data_page_row_count_limit(page_rows)
            .set_write_batch_size(1024)
    }

    fn ours(batches: &[RecordBatch], props: WriterProperties) -> Vec<u8> {
        ours_checked(batches, props, |_| {})
    }

    /// The file a [`ParquetFile`] writes of `batches`, `check` looking at it first (how it
    /// writes each column).
    pub(crate) fn ours_checked(
        batches: &[RecordBatch],
        props: WriterProperties,
        check: impl FnOnce(&ParquetFile),
    ) -> Vec<u8> {
        let mut file = ParquetFile::try_new(batches[0].schema(), props).unwrap();
        check(&file);
        for b in batches {
            file.write(b).unwrap();
        }
        file.into_inner().unwrap()
    }

    /// The file parquet-rs's `ArrowWriter` writes of `batches`.
    pub(crate) fn parquet_rs(batches: &[RecordBatch], props: WriterProperties) -> Vec<u8> {
        let mut w = ArrowWriter::try_new(Vec::new(), batches[0].schema(), Some(props)).unwrap();
        for b in batches {
            w.write(b).unwrap();
        }
        w.into_inner().unwrap()
    }

    /// The chunks of `columns` columns of two files have the same statistics, encodings,
    /// counts, codec, level histograms, column index and pages (rows and unencoded bytes).
    pub(crate) fn same_chunks(
        ours_meta: &ParquetMetaData,
        theirs_meta: &ParquetMetaData,
        columns: usize,
    ) {
        let meta = |m: &ParquetMetaData, rg: usize, c: usize| m.row_group(rg).column(c).clone();
        assert_eq!(ours_meta.num_row_groups(), theirs_meta.num_row_groups());
        for rg in 0..ours_meta.num_row_groups() {
            for c in 0..columns {
                let at = format!("row group {rg}, column {c}");
                let (o, t) = (meta(ours_meta, rg, c), meta(theirs_meta, rg, c));
                assert_eq!(o.statistics(), t.statistics(), "{at}");
                assert_eq!(o.encodings_mask(), t.encodings_mask(), "{at}");
                assert_eq!(
                    o.page_encoding_stats_mask(),
                    t.page_encoding_stats_mask(),
                    "{at}"
                );
                assert_eq!(o.num_values(), t.num_values(), "{at}");
                assert_eq!(
                    o.unencoded_byte_array_data_bytes(),
                    t.unencoded_byte_array_data_bytes(),
                    "{at}"
                );
                assert_eq!(o.compression(), t.compression(), "{at}");
                assert_eq!(
                    o.definition_level_histogram(),
                    t.definition_level_histogram(),
                    "{at}"
                );
                assert_eq!(
                    o.dictionary_page_offset().is_some(),
                    t.dictionary_page_offset().is_some(),
                    "{at}"
                );
                let ci = |m: &ParquetMetaData| m.column_index().unwrap()[rg][c].clone();
                assert_eq!(ci(ours_meta), ci(theirs_meta), "{at}: column index");
                let rows = |m: &ParquetMetaData| {
                    let o = &m.offset_index().unwrap()[rg][c];
                    let first: Vec<i64> = o
                        .page_locations()
                        .iter()
                        .map(|p| p.first_row_index)
                        .collect();
                    (first, o.unencoded_byte_array_data_bytes().cloned())
                };
                assert_eq!(rows(ours_meta), rows(theirs_meta), "{at}: pages");
            }
        }
    }

    /// A file's rows, in one batch, and its metadata with its page indexes.
    pub(crate) fn read(bytes: Vec<u8>) -> (RecordBatch, Arc<ParquetMetaData>) {
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
        let builder =
            ParquetRecordBatchReaderBuilder::try_new_with_options(Bytes::from(bytes), options)
                .unwrap();
        let metadata = builder.metadata().clone();
        let schema = builder.schema().clone();
        let batches: Vec<_> = builder.build().unwrap().map(Result::unwrap).collect();
        (concat_batches(&schema, &batches).unwrap(), metadata)
    }

    fn codec(metadata: &ParquetMetaData, column: usize) -> Compression {
        metadata.row_group(0).column(column).compression()
    }

    #[test]
    fn run_columns_are_written_as_runs_and_read_back_with_parquet_rs_statistics_and_page_indexes() {
        // Batches and row groups in whole mini-batches too.
        let input = batches(100_000, 8_192, 3_000);
        let (ours_read, ours_meta) = read(ours(&input, props()));
        let (theirs_read, theirs_meta) = read(parquet_rs(&input, props()));
        let schema = input[0].schema();
        assert_eq!(ours_read, concat_batches(&schema, &input).unwrap());
        assert_eq!(ours_read, theirs_read);

        // The three metadata columns went the run way (their chunks are not compressed: a
        // page of runs is a few bytes); the others through parquet-rs.
        for c in [1, 2, 3] {
            assert_eq!(
                codec(&ours_meta, c),
                Compression::UNCOMPRESSED,
                "column {c}"
            );
        }
        for c in [0, 4] {
            assert_eq!(codec(&ours_meta, c), codec(&theirs_meta, c), "column {c}");
        }
        assert_eq!(ours_meta.num_row_groups(), 3);
        assert_eq!(ours_meta.num_row_groups(), theirs_meta.num_row_groups());
        for rg in 0..ours_meta.num_row_groups() {
            let (o, t) = (ours_meta.row_group(rg), theirs_meta.row_group(rg));
            assert_eq!(o.num_rows(), t.num_rows());
            for c in 0..o.num_columns() {
                let (oc, tc) = (o.column(c), t.column(c));
                let at = format!("row group {rg}, column {c}");
                assert_eq!(oc.num_values(), tc.num_values(), "{at}");
                assert_eq!(oc.statistics(), tc.statistics(), "{at}");
                assert_eq!(oc.encodings_mask(), tc.encodings_mask(), "{at}");
                assert_eq!(
                    oc.unencoded_byte_array_data_bytes(),
                    tc.unencoded_byte_array_data_bytes(),
                    "{at}"
                );
                assert!(oc.dictionary_page_offset().is_some(), "{at}");
                let oi = &ours_meta.column_index().unwrap()[rg][c];
                let ti = &theirs_meta.column_index().unwrap()[rg][c];
                assert_eq!(oi, ti, "{at}: column index");
                let oo = &ours_meta.offset_index().unwrap()[rg][c];
                let to = &theirs_meta.offset_index().unwrap()[rg][c];
                let rows = |o: &parquet::file::page_index::offset_index::OffsetIndexMetaData| {
                    o.page_locations()
                        .iter()
                        .map(|p| p.first_row_index)
                        .collect::<Vec<_>>()
                };
                assert_eq!(rows(oo), rows(to), "{at}: pages");
                assert_eq!(
                    oo.unencoded_byte_array_data_bytes(),
                    to.unencoded_byte_array_data_bytes(),
                    "{at}"
                );
            }
        }
    }

    #[test]
    fn copied_columns_make_the_file_that_encoding_them_alone_makes() {
        // Run columns, a dictionary column through parquet-rs (its dictionary page is
        // spliced in first) and a plain one, over three row groups.
        let input = batches(100_000, 8_192, 3_000);
        let schema = input[0].schema();
        // Three of them in another order, two renamed.
        let picked = [4, 0, 2];
        let some = Arc::new(Schema::new(vec![
            schema.field(4).clone(),
            schema.field(0).clone().with_name("number"),
            schema.field(2).clone().with_name("shard"),
        ]));
        let mut file = ParquetFile::try_new(schema.clone(), props()).unwrap();
        file.copy_columns(schema.clone(), &[0, 1, 2, 3, 4]).unwrap();
        file.copy_columns(some.clone(), &picked).unwrap();
        for b in &input {
            file.write(b).unwrap();
        }
        let (own, copies) = file.into_files().unwrap();
        assert_eq!(copies.len(), 2);
        assert_eq!(copies[0], own, "all the columns: the file itself");
        assert_eq!(
            own,
            ours(&input, props()),
            "copies leave the file as it was"
        );

        // Those: byte for byte the file of those columns encoded alone under those names,
        // its page indexes pointing at its own pages.
        let projected: Vec<RecordBatch> = input
            .iter()
            .map(|b| {
                let columns = b.project(&picked).unwrap().columns().to_vec();
                RecordBatch::try_new(some.clone(), columns).unwrap()
            })
            .collect();
        assert!(copies[1] == ours(&projected, props()));
        let (read_back, meta) = read(copies[1].clone());
        assert_eq!(read_back, concat_batches(&some, &projected).unwrap());
        assert_eq!(meta.num_row_groups(), 3);
        for rg in 0..3 {
            for c in 0..picked.len() {
                let chunk = meta.row_group(rg).column(c);
                let first_page = meta.offset_index().unwrap()[rg][c].page_locations()[0].offset;
                assert_eq!(
                    first_page,
                    chunk.data_page_offset(),
                    "row group {rg}, column {c}"
                );
            }
        }

        // Not once rows are in.
        let mut late = ParquetFile::try_new(schema.clone(), props()).unwrap();
        late.write(&input[0]).unwrap();
        assert!(late.copy_columns(some, &picked).is_err());
    }

    #[test]
    fn a_column_of_short_runs_goes_to_parquet_rs_as_soon_as_that_shows() {
        let input = batches(30_000, 5_000, 3);
        let mut file = ParquetFile::try_new(input[0].schema(), props()).unwrap();
        file.write(&input[0]).unwrap();
        let runs = |f: &ParquetFile, leaf: usize| f.group.as_ref().unwrap().runs[leaf].is_some();
        // After the first batch: `_shard` (a run every 3 rows) has left the run way for the
        // rest of the row group; `_stream` and `_fingerprint` have not.
        assert!(!runs(&file, 2));
        assert!(runs(&file, 1) && runs(&file, 3));
        for b in &input[1..] {
            file.write(b).unwrap();
        }
        let (read_back, _) = read(file.into_inner().unwrap());
        assert_eq!(
            read_back,
            concat_batches(&input[0].schema(), &input).unwrap()
        );
    }

    #[test]
    fn columns_that_are_not_runs_after_all_go_through_parquet_rs() {
        // `_shard` changes every 3 rows (too short to be worth runs), the fingerprint is
        // longer than the statistics' truncation (parquet-rs truncates; so must the file),
        // and the second batch's `_stream` dictionary holds a null (no row uses it).
        let mut input = batches(30_000, 10_000, 3);
        let long = "f".repeat(100);
        for (i, b) in input.iter_mut().enumerate() {
            let mut columns = b.columns().to_vec();
            columns[3] = dictionary(vec![0; b.num_rows()], &[long.as_str()]);
            if i == 1 {
                columns[1] = Arc::new(
                    DictionaryArray::<Int32Type>::try_new(
                        Int32Array::from(vec![0; b.num_rows()]),
                        Arc::new(StringArray::from(vec![Some("clickstream"), None])),
                    )
                    .unwrap(),
                );
            }
            *b = RecordBatch::try_new(b.schema(), columns).unwrap();
        }
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_statistics_truncate_length(Some(64))
            .build();
        let (ours_read, ours_meta) = read(ours(&input, props.clone()));
        let (_, theirs_meta) = read(parquet_rs(&input, props));
        assert_eq!(
            ours_read,
            concat_batches(&input[0].schema(), &input).unwrap()
        );
        for c in [1, 2, 3] {
            let (o, t) = (
                ours_meta.row_group(0).column(c),
                theirs_meta.row_group(0).column(c),
            );
            assert_eq!(o.compression(), t.compression(), "column {c}");
            assert_eq!(o.statistics(), t.statistics(), "column {c}");
        }
    }
}
