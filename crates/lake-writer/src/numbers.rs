//! Number columns: 64-bit integers and timestamps that a file stores as a dictionary
//! (`RLE_DICTIONARY`) or as the steps between them (`DELTA_BINARY_PACKED`), written here
//! instead of by parquet-rs.
//!
//! A product id, a sale id, an arrival time: a few hundred or thousand values over millions
//! of rows, stored as a dictionary. parquet-rs looks every value up in its dictionary by
//! hashing the value's bytes as a slice and comparing it with the stored one as bytes (its
//! `Interner`, 165 instructions a value), updates the page's minimum and maximum with each,
//! and bit-packs the indices with a general encoder: 5% of the instructions of a `silt run` of
//! the bench's events went to the three such columns of its raw table. Here a value is looked
//! up as the number it is (a repeat of the value before is not looked up at all), the minimum
//! and maximum of a page are found once it is done, and the indices are encoded by
//! [`crate::hybrid`]. An event time, nearly distinct and in small steps, is stored as its
//! steps (the encoding judge of [`crate::write`] decides): parquet-rs's encoder of them took
//! about a hundred instructions a value, this one a sixth of that.
//!
//! The chunk is what parquet-rs writes for such a column: a dictionary page (the values,
//! `PLAIN`, compressed with the column's codec) if it has a dictionary, then version 1 data
//! pages of the definition levels (in the RLE/bit-packed hybrid) and the indices (likewise)
//! or the steps (in blocks of 128, four miniblocks of 32, as parquet-rs writes them), with the
//! same statistics, column index (and level histograms) and offset index, cut at the same
//! limits of rows and bytes (not at the same row: parquet-rs looks at its limits every 1,024
//! rows). A dictionary that outgrows the dictionary page limit, or a chunk of nulls only, goes
//! through parquet-rs's writer instead, which stores it as it always does.

use std::hash::BuildHasher;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{
    DataType, Field, Int64Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType,
};
use bytes::Bytes;
use foldhash::fast::FixedState;
use hashbrown::HashTable;
use parquet::arrow::arrow_writer::{compute_leaves, ArrowColumnWriter};
use parquet::basic::{Compression, Encoding, EncodingMask, PageType, Type};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{
    ColumnChunkMetaData, ColumnIndexBuilder, LevelHistogram, OffsetIndexBuilder, PageEncodingStats,
};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::statistics::{Statistics, ValueStatistics};
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

use crate::chunk::{closed_chunk, PageOrder};
use crate::hybrid::{bit_width, hybrid, varint};

/// Whether the leaf column of `field` is written here: a top-level 64-bit integer or a
/// timestamp of milli-, micro- or nanoseconds (stored as the number it is), that the file
/// stores as a dictionary or as `DELTA_BINARY_PACKED` without a bloom filter, in version 1
/// data pages, zstd-compressed or not (any other codec goes through parquet-rs).
pub(crate) fn is_number_column(
    field: &Field,
    descr: &ColumnDescPtr,
    props: &WriterProperties,
) -> bool {
    let path = descr.path();
    matches!(
        field.data_type(),
        DataType::Int64
            | DataType::Timestamp(
                TimeUnit::Millisecond | TimeUnit::Microsecond | TimeUnit::Nanosecond,
                _
            )
    ) && descr.physical_type() == Type::INT64
        && descr.max_rep_level() == 0
        && descr.max_def_level() <= 1
        && (props.dictionary_enabled(path)
            || props.encoding(path) == Some(Encoding::DELTA_BINARY_PACKED))
        && props.bloom_filter_properties(path).is_none()
        && props.writer_version() == WriterVersion::PARQUET_1_0
        && matches!(
            props.compression(path),
            Compression::ZSTD(_) | Compression::UNCOMPRESSED
        )
}

/// The numbers of an array of a number column.
fn numbers(array: &dyn Array) -> Option<&[i64]> {
    Some(match array.data_type() {
        DataType::Int64 => array.as_primitive::<Int64Type>().values(),
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            array.as_primitive::<TimestampMillisecondType>().values()
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            array.as_primitive::<TimestampMicrosecondType>().values()
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            array.as_primitive::<TimestampNanosecondType>().values()
        }
        _ => return None,
    })
}

/// The values of a number column's chunk so far, nulls left out.
enum Values {
    /// A dictionary and each value's index in it.
    Dictionary(Dictionary),
    /// The values themselves, to be written as the steps between them.
    Delta(Vec<i64>),
}

/// A dictionary (values in the order they first appeared) and each value's index in it.
#[derive(Default)]
struct Dictionary {
    /// Indexes into `values`, hashed by the value they point to.
    table: HashTable<u32>,
    values: Vec<i64>,
    /// The last value looked up, and its index: a run of one value is looked up once.
    last: Option<(i64, u32)>,
    indices: Vec<u32>,
}

impl Dictionary {
    #[inline]
    fn push(&mut self, v: i64) {
        let i = match self.last {
            Some((l, i)) if l == v => i,
            _ => {
                let h = hash(v);
                let values = &self.values;
                let i = match self.table.find(h, |&i| values[i as usize] == v) {
                    Some(&i) => i,
                    None => {
                        let i = values.len() as u32;
                        self.table
                            .insert_unique(h, i, |&j| hash(values[j as usize]));
                        self.values.push(v);
                        i
                    }
                };
                self.last = Some((v, i));
                i
            }
        };
        self.indices.push(i);
    }
}

/// A number column's chunk of a row group so far: its values and the definition level of
/// each row.
pub(crate) struct Numbers {
    descr: ColumnDescPtr,
    props: Arc<WriterProperties>,
    /// Whether the column has definition levels (a nullable field).
    nullable: bool,
    values: Values,
    /// The definition level of each row so far (nullable columns only): 1 present, 0 null.
    levels: Vec<u8>,
    rows: usize,
}

#[inline]
fn hash(v: i64) -> u64 {
    FixedState::default().hash_one(v)
}

impl Values {
    /// How many values (nulls left out).
    fn len(&self) -> usize {
        match self {
            Values::Dictionary(d) => d.indices.len(),
            Values::Delta(numbers) => numbers.len(),
        }
    }

    /// Value `k` (of those present).
    fn get(&self, k: usize) -> i64 {
        match self {
            Values::Dictionary(d) => d.values[d.indices[k] as usize],
            Values::Delta(numbers) => numbers[k],
        }
    }

    /// The least and the greatest of values `range` (of those present).
    fn min_max(&self, range: std::ops::Range<usize>) -> Option<(i64, i64)> {
        fn fold(values: impl Iterator<Item = i64>) -> Option<(i64, i64)> {
            values.fold(None, |m, v| match m {
                None => Some((v, v)),
                Some((lo, hi)) => Some((v.min(lo), v.max(hi))),
            })
        }
        match self {
            Values::Dictionary(d) => fold(d.indices[range].iter().map(|&i| d.values[i as usize])),
            Values::Delta(numbers) => fold(numbers[range].iter().copied()),
        }
    }
}

impl Numbers {
    pub(crate) fn new(descr: ColumnDescPtr, props: Arc<WriterProperties>) -> Self {
        let values = match props.dictionary_enabled(descr.path()) {
            true => Values::Dictionary(Dictionary::default()),
            false => Values::Delta(Vec::new()),
        };
        Self {
            nullable: descr.max_def_level() > 0,
            descr,
            props,
            values,
            levels: Vec::new(),
            rows: 0,
        }
    }

    /// Takes the rows of `array` (numbers, as the column's field).
    pub(crate) fn push(&mut self, array: &dyn Array) -> Result<()> {
        let numbers = numbers(array).ok_or_else(|| {
            ParquetError::General(format!(
                "a number column holds 64-bit integers or timestamps, not {}",
                array.data_type()
            ))
        })?;
        // A null buffer of no nulls (as concatenation leaves) is as none.
        let nulls = array.logical_nulls().filter(|n| n.null_count() > 0);
        if nulls.is_some() && !self.nullable {
            return Err(ParquetError::General(format!(
                "column `{}` is required but its values have nulls",
                self.descr.path()
            )));
        }
        match (nulls, &mut self.values) {
            (None, Values::Delta(values)) => values.extend_from_slice(numbers),
            (None, Values::Dictionary(d)) => {
                d.indices.reserve(numbers.len());
                for &v in numbers {
                    d.push(v);
                }
            }
            (Some(nulls), values) => {
                self.levels.reserve(numbers.len());
                let present = numbers
                    .iter()
                    .zip(nulls.iter())
                    .filter_map(|(&v, present)| {
                        self.levels.push(present as u8);
                        present.then_some(v)
                    });
                match values {
                    Values::Dictionary(d) => present.for_each(|v| d.push(v)),
                    Values::Delta(values) => values.extend(present),
                }
                self.rows += numbers.len();
                return Ok(());
            }
        }
        if self.nullable {
            self.levels.resize(self.levels.len() + numbers.len(), 1);
        }
        self.rows += numbers.len();
        Ok(())
    }

    /// Whether the dictionary is as large as a dictionary page may be: parquet-rs falls back
    /// from a dictionary there, and so the column goes to parquet-rs's writer.
    pub(crate) fn outgrown(&self) -> bool {
        match &self.values {
            Values::Dictionary(d) => {
                d.values.len() * 8
                    >= self
                        .props
                        .column_dictionary_page_size_limit(self.descr.path())
            }
            Values::Delta(_) => false,
        }
    }

    /// Whether the chunk is written here: a dictionary of a page at most, and values (a chunk
    /// of nulls only is written as parquet-rs writes it).
    pub(crate) fn encodable(&self) -> bool {
        self.values.len() > 0 && !self.outgrown()
    }

    /// The bits of a dictionary index (none without a dictionary).
    fn width(&self) -> u8 {
        match &self.values {
            Values::Dictionary(d) => bit_width(d.values.len().saturating_sub(1) as u64),
            Values::Delta(_) => 0,
        }
    }

    /// Bytes this column will take in the file, about (uncompressed).
    pub(crate) fn size(&self) -> usize {
        let values = match &self.values {
            Values::Dictionary(d) => {
                d.values.len() * 8 + d.indices.len() * usize::from(self.width()) / 8
            }
            // A step of a couple of bytes.
            Values::Delta(numbers) => numbers.len() * 2,
        };
        values + self.levels.len() / 8
    }

    /// Hands the rows taken so far to parquet-rs's writer of the column.
    pub(crate) fn write_to(self, field: &Field, writer: &mut ArrowColumnWriter) -> Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let mut numbers = Vec::with_capacity(self.rows);
        let nulls = if self.nullable {
            let mut k = 0;
            for &level in &self.levels {
                numbers.push(match level {
                    1 => {
                        k += 1;
                        self.values.get(k - 1)
                    }
                    _ => 0,
                });
            }
            Some(NullBuffer::from_iter(self.levels.iter().map(|&l| l == 1)))
        } else {
            numbers.extend((0..self.values.len()).map(|k| self.values.get(k)));
            None
        };
        let array: ArrayRef = Arc::new(Int64Array::new(numbers.into(), nulls));
        let array = arrow::compute::cast(&array, field.data_type())?;
        for leaf in compute_leaves(field, &array)? {
            writer.write(&leaf)?;
        }
        Ok(())
    }

    /// The page's bytes compressed with the column's codec, and their length before.
    fn compress(
        compressor: &mut Option<zstd::bulk::Compressor<'static>>,
        page: Vec<u8>,
    ) -> Result<(Bytes, usize)> {
        let len = page.len();
        match compressor {
            Some(zstd) => {
                let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(len));
                zstd.compress_to_buffer(&page, &mut out)
                    .map_err(|e| ParquetError::External(Box::new(e)))?;
                Ok((Bytes::from(out), len))
            }
            None => Ok((Bytes::from(page), len)),
        }
    }

    /// Statistics of a page or of the chunk, as parquet-rs makes them.
    fn statistics(&self, min_max: Option<(i64, i64)>, nulls: u64) -> Statistics {
        ValueStatistics::<i64>::new(
            min_max.map(|m| m.0),
            min_max.map(|m| m.1),
            None,
            Some(nulls),
            false,
        )
        .with_backwards_compatible_min_max(self.descr.sort_order().is_signed())
        .into()
    }

    /// Values `range` (of those present) encoded as a data page holds them.
    fn encode_values(&self, range: std::ops::Range<usize>, out: &mut Vec<u8>) {
        match &self.values {
            Values::Dictionary(d) => {
                let width = self.width();
                out.push(width);
                hybrid(&d.indices[range], width, out);
            }
            Values::Delta(numbers) => delta_binary_packed(&numbers[range], out),
        }
    }

    /// The column chunk: a dictionary page (if a dictionary), then data pages of levels and
    /// indices or steps, with the statistics, column index and offset index parquet-rs gives
    /// the same values.
    pub(crate) fn finish(self) -> Result<(Bytes, ColumnCloseResult)> {
        let props = &self.props;
        let path = self.descr.path();
        let compression = props.compression(path);
        let mut compressor = match compression {
            Compression::ZSTD(level) => Some(
                zstd::bulk::Compressor::new(level.compression_level())
                    .map_err(|e| ParquetError::External(Box::new(e)))?,
            ),
            _ => None,
        };
        let statistics = props.statistics_enabled(path);
        let header_statistics =
            statistics == EnabledStatistics::Page && props.write_page_header_statistics(path);
        let page_bytes_limit = props.column_data_page_size_limit(path).max(1);
        // A data page ends at parquet-rs's limits: rows, and bytes of encoded values (for a
        // dictionary, known from the width of an index; steps are encoded to be measured).
        let page_rows = match self.values {
            Values::Dictionary(_) => props
                .data_page_row_count_limit()
                .max(1)
                .min((page_bytes_limit * 8 / usize::from(self.width().max(1))).max(1)),
            Values::Delta(_) => props.data_page_row_count_limit().max(1),
        };
        let data_encoding = match self.values {
            Values::Dictionary(_) => Encoding::RLE_DICTIONARY,
            Values::Delta(_) => Encoding::DELTA_BINARY_PACKED,
        };
        // Level histograms (of a nullable column) when there are statistics.
        let histogram = || {
            (statistics != EnabledStatistics::None)
                .then(|| LevelHistogram::try_new(self.descr.max_def_level()))
                .flatten()
        };

        let mut sink = TrackedWrite::new(Vec::new());
        let mut pages = SerializedPageWriter::new(&mut sink);
        let mut column_index = ColumnIndexBuilder::new(Type::INT64);
        if statistics != EnabledStatistics::Page {
            column_index.to_invalid();
        }
        let mut offset_index = (!props.offset_index_disabled()).then(OffsetIndexBuilder::new);
        let (mut compressed, mut uncompressed) = (0i64, 0i64);
        let mut page_encoding_stats = Vec::new();

        // The dictionary page first: the values, PLAIN.
        let mut dictionary_offset = None;
        if let Values::Dictionary(Dictionary { values, .. }) = &self.values {
            let mut dictionary = Vec::with_capacity(values.len() * 8);
            for v in values {
                dictionary.extend_from_slice(&v.to_le_bytes());
            }
            let (buf, len) = Self::compress(&mut compressor, dictionary)?;
            let spec = pages.write_page(CompressedPage::new(
                Page::DictionaryPage {
                    buf,
                    num_values: values.len() as u32,
                    encoding: props.dictionary_page_encoding(),
                    is_sorted: false,
                },
                len,
            ))?;
            dictionary_offset = Some(spec.offset as i64);
            compressed += spec.compressed_size as i64;
            uncompressed += spec.uncompressed_size as i64;
            page_encoding_stats.push(PageEncodingStats {
                page_type: PageType::DICTIONARY_PAGE,
                encoding: props.dictionary_page_encoding(),
                count: 1,
            });
        }

        let mut data_offset = None;
        let mut data_pages = 0;
        let mut order = PageOrder::new();
        let mut chunk_min_max: Option<(i64, i64)> = None;
        let mut chunk_nulls = 0u64;
        let mut chunk_histogram = histogram();
        let mut levels_buf = Vec::new();
        let mut values_buf = Vec::new();
        let mut at = 0;
        let mut row = 0;
        while row < self.rows {
            let mut end = self.rows.min(row + page_rows);
            let present = loop {
                let present = match self.nullable {
                    true => self.levels[row..end].iter().map(|&l| l as usize).sum(),
                    false => end - row,
                };
                values_buf.clear();
                self.encode_values(at..at + present, &mut values_buf);
                // Steps larger than the page size allows: fewer rows, in proportion.
                if values_buf.len() <= page_bytes_limit || end - row == 1 {
                    break present;
                }
                end = row + ((end - row) * page_bytes_limit / values_buf.len()).max(1);
            };
            let nulls = (end - row - present) as u64;
            let mut buf = Vec::with_capacity(4 + (end - row) / 4 + 16 + values_buf.len());
            if self.nullable {
                levels_buf.clear();
                hybrid(&self.levels[row..end], 1, &mut levels_buf);
                buf.extend_from_slice(&(levels_buf.len() as u32).to_le_bytes());
                buf.extend_from_slice(&levels_buf);
            }
            buf.extend_from_slice(&values_buf);
            let min_max = self.values.min_max(at..at + present);

            let (buf, len) = Self::compress(&mut compressor, buf)?;
            let spec = pages.write_page(CompressedPage::new(
                Page::DataPage {
                    buf,
                    num_values: (end - row) as u32,
                    encoding: data_encoding,
                    def_level_encoding: Encoding::RLE,
                    rep_level_encoding: Encoding::RLE,
                    statistics: (header_statistics && min_max.is_some())
                        .then(|| self.statistics(min_max, nulls)),
                },
                len,
            ))?;
            data_offset.get_or_insert(spec.offset as i64);
            data_pages += 1;
            compressed += spec.compressed_size as i64;
            uncompressed += spec.uncompressed_size as i64;

            match min_max {
                None => column_index.append(true, vec![], vec![], nulls as i64),
                Some((lo, hi)) => {
                    order.page(lo, hi);
                    chunk_min_max = Some(match chunk_min_max {
                        None => (lo, hi),
                        Some((clo, chi)) => (clo.min(lo), chi.max(hi)),
                    });
                    column_index.append(
                        false,
                        lo.to_le_bytes().to_vec(),
                        hi.to_le_bytes().to_vec(),
                        nulls as i64,
                    );
                }
            }
            let mut page_histogram = histogram();
            if let Some(h) = page_histogram.as_mut() {
                h.increment_by(0, nulls as i64);
                h.increment_by(1, present as i64);
            }
            column_index.append_histograms(&None, &page_histogram);
            if let (Some(c), Some(p)) = (chunk_histogram.as_mut(), page_histogram.as_ref()) {
                c.add(p);
            }
            if let Some(o) = offset_index.as_mut() {
                o.append_offset_and_size(spec.offset as i64, spec.compressed_size as i32);
                o.append_row_count((end - row) as i64);
                o.append_unencoded_byte_array_data_bytes(None);
            }
            chunk_nulls += nulls;
            at += present;
            row = end;
        }
        pages.close()?;
        page_encoding_stats.push(PageEncodingStats {
            page_type: PageType::DATA_PAGE,
            encoding: data_encoding,
            count: data_pages,
        });

        let encodings: &[Encoding] = match dictionary_offset {
            Some(_) => &[Encoding::PLAIN, Encoding::RLE, Encoding::RLE_DICTIONARY],
            None => &[Encoding::RLE, Encoding::DELTA_BINARY_PACKED],
        };
        let mut metadata = ColumnChunkMetaData::builder(self.descr.clone())
            .set_compression(compression)
            .set_encodings_mask(EncodingMask::new_from_encodings(encodings.iter()))
            .set_page_encoding_stats(page_encoding_stats)
            .set_total_compressed_size(compressed)
            .set_total_uncompressed_size(uncompressed)
            .set_num_values(self.rows as i64)
            .set_data_page_offset(data_offset.unwrap_or(0))
            .set_dictionary_page_offset(dictionary_offset);
        if statistics != EnabledStatistics::None {
            metadata = metadata
                .set_statistics(self.statistics(chunk_min_max, chunk_nulls))
                .set_definition_level_histogram(chunk_histogram);
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
}

/// `values` in `DELTA_BINARY_PACKED`, as parquet-rs writes them: the block size (128), the
/// miniblocks a block (4), the count and the first value; then, for each block of 128 steps
/// from a value to the next, the least step, the bit width of each miniblock of 32 steps, and
/// the miniblocks' steps less the least, bit-packed (the last miniblock padded with zeros, the
/// ones past the last step of width 0 and left out).
pub(crate) fn delta_binary_packed(values: &[i64], out: &mut Vec<u8>) {
    const BLOCK: usize = 128;
    const MINIBLOCK: usize = 32;
    let zigzag = |v: i64| ((v << 1) ^ (v >> 63)) as u64;
    varint(out, BLOCK as u64);
    varint(out, (BLOCK / MINIBLOCK) as u64);
    varint(out, values.len() as u64);
    let Some((&first, rest)) = values.split_first() else {
        varint(out, 0);
        return;
    };
    varint(out, zigzag(first));
    let mut prev = first;
    let mut steps = [0i64; BLOCK];
    for block in rest.chunks(BLOCK) {
        for (step, &v) in steps.iter_mut().zip(block) {
            *step = v.wrapping_sub(prev);
            prev = v;
        }
        let steps = &steps[..block.len()];
        let least = steps.iter().copied().min().expect("a block has a step");
        varint(out, zigzag(least));
        let widths = out.len();
        out.extend_from_slice(&[0; BLOCK / MINIBLOCK]);
        for (m, mini) in steps.chunks(MINIBLOCK).enumerate() {
            let mut above = [0u64; MINIBLOCK];
            let mut all = 0;
            for (a, &s) in above.iter_mut().zip(mini) {
                *a = s.wrapping_sub(least) as u64;
                all |= *a;
            }
            let width = (u64::BITS - all.leading_zeros()) as u8;
            out[widths + m] = width;
            pack_wide(&above, width, out);
        }
    }
}

/// Values of `width` bits (up to 64), least significant bit first: `values.len() * width / 8`
/// bytes, for a multiple of eight values (a miniblock's 32), gathered into 64-bit words.
fn pack_wide(values: &[u64], width: u8, out: &mut Vec<u8>) {
    let width = u32::from(width);
    if width == 0 {
        return;
    }
    debug_assert!(values.len().is_multiple_of(8) && width <= 64);
    out.reserve(values.len() * width as usize / 8 + 8);
    let (mut word, mut bits) = (0u64, 0u32);
    for &v in values {
        word |= v << bits;
        let used = bits + width;
        if used >= 64 {
            out.extend_from_slice(&word.to_le_bytes());
            bits = used - 64;
            // What of `v` did not fit in the word.
            word = if bits == 0 { 0 } else { v >> (width - bits) };
        } else {
            bits = used;
        }
    }
    out.extend_from_slice(&word.to_le_bytes()[..(bits / 8) as usize]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::tests::{compared_props, ours_checked, parquet_rs, read, same_chunks};
    use arrow::array::{RecordBatch, TimestampMicrosecondArray, TimestampNanosecondArray};
    use arrow::compute::concat_batches;
    use arrow::datatypes::Schema;
    use parquet::schema::types::ColumnPath;

    /// A scrambled row number.
    fn scrambled(i: usize) -> u64 {
        (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 7
    }

    /// Batches of the bench's raw table's numbers: a product id of 500 values in no order, a
    /// sale id present for 30% of rows (nulls scattered and in long runs), an arrival time in
    /// runs, a negative-going count in nanoseconds, a column of nulls only, and an id of
    /// as many values as rows (more than a dictionary page holds).
    fn batches(rows: usize, per_batch: usize) -> Vec<RecordBatch> {
        let utc = Some(Arc::from("UTC"));
        let schema = Arc::new(Schema::new(vec![
            Field::new("productId", DataType::Int64, false),
            Field::new("saleId", DataType::Int64, true),
            Field::new(
                "_arrival_time",
                DataType::Timestamp(TimeUnit::Microsecond, utc.clone()),
                false,
            ),
            Field::new(
                "down",
                DataType::Timestamp(TimeUnit::Nanosecond, None),
                true,
            ),
            Field::new("never", DataType::Int64, true),
            Field::new("id", DataType::Int64, false),
        ]));
        (0..rows)
            .step_by(per_batch)
            .map(|start| {
                let rows = start..rows.min(start + per_batch);
                let sale = rows.clone().map(|r| {
                    let null = (r / 5000) % 4 == 1 || scrambled(r) % 10 >= 3;
                    (!null).then(|| 1000 + (scrambled(r) % 50) as i64)
                });
                let columns: Vec<ArrayRef> = vec![
                    Arc::new(Int64Array::from_iter_values(
                        rows.clone().map(|r| 1 + (scrambled(r) % 500) as i64),
                    )),
                    Arc::new(Int64Array::from_iter(sale)),
                    Arc::new(
                        TimestampMicrosecondArray::from_iter_values(
                            rows.clone()
                                .map(|r| 1_764_108_000_000_000 + (r / 2500) as i64 * 1_000_000),
                        )
                        .with_timezone_opt(utc.clone()),
                    ),
                    Arc::new(TimestampNanosecondArray::from_iter(rows.clone().map(|r| {
                        (r % 9 != 0).then(|| -((r / 300) as i64) * 1_000_000_007)
                    }))),
                    Arc::new(Int64Array::from_iter(rows.clone().map(|_| None::<i64>))),
                    Arc::new(Int64Array::from_iter_values(
                        rows.map(|r| scrambled(r) as i64 - (1 << 55)),
                    )),
                ];
                RecordBatch::try_new(schema.clone(), columns).unwrap()
            })
            .collect()
    }

    /// zstd, page statistics, pages of `page_rows`, and a dictionary page limit that the id
    /// (as many values as rows) outgrows in each row group.
    fn props(page_rows: usize) -> WriterProperties {
        compared_props(page_rows)
            .set_dictionary_page_size_limit(64 << 10)
            .build()
    }

    fn ours(batches: &[RecordBatch], props: WriterProperties) -> Vec<u8> {
        ours_checked(batches, props, |file| {
            for i in 0..6 {
                assert!(file.is_number(i), "column {i} goes the number way");
            }
        })
    }

    /// Pages of 1,024 rows (where parquet-rs looks at its limits): the same values, the same
    /// dictionaries, pages, statistics, column index, level histograms and offset index as
    /// parquet-rs's; what outgrows a dictionary page or holds only nulls is parquet-rs's.
    #[test]
    fn dictionary_numbers_are_the_chunks_parquet_rs_writes() {
        let input = batches(100_000, 8_192);
        let (ours_read, ours_meta) = read(ours(&input, props(2048)));
        let (theirs_read, theirs_meta) = read(parquet_rs(&input, props(2048)));
        assert_eq!(
            ours_read,
            concat_batches(&input[0].schema(), &input).unwrap()
        );
        assert_eq!(ours_read, theirs_read);
        same_chunks(&ours_meta, &theirs_meta, 6);
    }

    /// The column chunks are written here unless they cannot be: the dictionary of the id
    /// outgrows its page, and parquet-rs writes it (falling back to plain pages).
    #[test]
    fn only_a_dictionary_within_a_page_is_written_here() {
        let input = batches(30_000, 7_000);
        let (_, meta) = read(ours(&input, props(2048)));
        let dict_offset = |c: usize| meta.row_group(0).column(c).dictionary_page_offset();
        for c in 0..4 {
            let chunk = meta.row_group(0).column(c);
            let dictionary = dict_offset(c).expect("a dictionary");
            assert!(dictionary < chunk.data_page_offset(), "column {c}");
        }
        // The id fell back to PLAIN pages after its dictionary filled up; the others' data
        // pages are all of indices.
        let data_pages = |c: usize| {
            *meta
                .row_group(0)
                .column(c)
                .page_encoding_stats_mask()
                .unwrap()
        };
        assert!(data_pages(5).is_set(Encoding::PLAIN));
        for c in 0..4 {
            assert!(
                data_pages(c).is_only(Encoding::RLE_DICTIONARY),
                "column {c}"
            );
        }
    }

    /// Pages end at the row limit, or earlier when their indices reach the page size.
    #[test]
    fn pages_end_at_the_row_limit_or_the_page_size() {
        let input = batches(50_000, 10_000);
        let path = ColumnPath::from("productId");
        let small = WriterProperties::builder()
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_data_page_row_count_limit(20_000)
            .set_column_data_page_size_limit(path, 1000)
            .build();
        let (read_back, meta) = read(ours(&input, small));
        assert_eq!(
            read_back,
            concat_batches(&input[0].schema(), &input).unwrap()
        );
        let pages = |c: usize| meta.offset_index().unwrap()[0][c].page_locations().len();
        // 9-bit indices: 1,000 bytes are 888 rows.
        assert_eq!(pages(0), 50_000usize.div_ceil(888), "productId");
        assert_eq!(pages(1), 50_000usize.div_ceil(20_000), "saleId");
    }

    /// Event times in small steps (some back), the same nullable, extremes of 64 bits (steps
    /// that wrap), and steps of every width.
    fn steps(rows: usize, per_batch: usize) -> Vec<RecordBatch> {
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "_event_time",
                DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC"))),
                false,
            ),
            Field::new("maybe", DataType::Int64, true),
            Field::new("extremes", DataType::Int64, false),
            Field::new("widths", DataType::Int64, false),
        ]));
        (0..rows)
            .step_by(per_batch)
            .map(|start| {
                let rows = start..rows.min(start + per_batch);
                let time = |r: usize| {
                    1_764_108_000_000_000 + r as i64 * 2_000 - (scrambled(r) % 5_000) as i64
                };
                let columns: Vec<ArrayRef> = vec![
                    Arc::new(
                        TimestampMicrosecondArray::from_iter_values(rows.clone().map(time))
                            .with_timezone("UTC"),
                    ),
                    Arc::new(Int64Array::from_iter(rows.clone().map(|r| {
                        let null = (r / 3000) % 3 == 1 || r % 7 == 0;
                        (!null).then(|| time(r) / 1000)
                    }))),
                    Arc::new(Int64Array::from_iter_values(rows.clone().map(|r| {
                        match r % 5 {
                            0 => i64::MIN,
                            1 => i64::MAX,
                            2 => 0,
                            3 => -1,
                            _ => scrambled(r) as i64,
                        }
                    }))),
                    Arc::new(Int64Array::from_iter_values(
                        rows.map(|r| (scrambled(r) >> (r / 97 % 64)) as i64),
                    )),
                ];
                RecordBatch::try_new(schema.clone(), columns).unwrap()
            })
            .collect()
    }

    /// Steps for every column (as the encoding judge sets them for nearly distinct integers).
    fn step_props(page_rows: usize, page_bytes: usize) -> WriterProperties {
        let mut b = compared_props(page_rows).set_data_page_size_limit(page_bytes);
        for c in ["_event_time", "maybe", "extremes", "widths"] {
            b = b
                .set_column_dictionary_enabled(ColumnPath::from(c), false)
                .set_column_encoding(ColumnPath::from(c), Encoding::DELTA_BINARY_PACKED);
        }
        b.build()
    }

    /// Pages of 1,024 rows: the same values, steps, statistics, column index and pages as
    /// parquet-rs's, for steps of every width, steps that wrap past 64 bits, and nulls.
    #[test]
    fn steps_are_the_chunks_parquet_rs_writes() {
        let input = steps(100_000, 8_192);
        let written = ours_checked(&input, step_props(2048, 1 << 20), |file| {
            for i in 0..4 {
                assert!(file.is_number(i), "column {i} goes the number way");
            }
        });
        let (ours_read, ours_meta) = read(written);
        let (theirs_read, theirs_meta) = read(parquet_rs(&input, step_props(2048, 1 << 20)));
        assert_eq!(
            ours_read,
            concat_batches(&input[0].schema(), &input).unwrap()
        );
        assert_eq!(ours_read, theirs_read);
        same_chunks(&ours_meta, &theirs_meta, 4);
        let time = ours_meta.row_group(0).column(0);
        assert!(time
            .page_encoding_stats_mask()
            .unwrap()
            .is_only(Encoding::DELTA_BINARY_PACKED));
        assert_eq!(time.dictionary_page_offset(), None);
        // A step of a few milliseconds in microseconds: two bytes a value, not eight.
        assert!(
            time.uncompressed_size() < 40_960 * 3,
            "{}",
            time.uncompressed_size()
        );
    }

    /// Pages end at the page size too: steps of 64 bits make pages of fewer rows.
    #[test]
    fn wide_steps_make_smaller_pages() {
        let input = steps(20_000, 5_000);
        let written = ours_checked(&input, step_props(20_000, 64 << 10), |_| {});
        let (read_back, meta) = read(written);
        assert_eq!(
            read_back,
            concat_batches(&input[0].schema(), &input).unwrap()
        );
        let pages = |c: usize| meta.offset_index().unwrap()[0][c].page_locations().len();
        // Steps of 14 bits: 35 KB for 20,000 rows, a page.
        assert_eq!(pages(0), 1, "small steps: one page of 20,000 rows");
        // Steps of 64 bits: 160 KB, three pages of 64 KiB at most.
        assert_eq!(pages(2), 3);
    }

    /// Batches cut at any row (as partitions and row groups cut them: arrays with an offset)
    /// are written as the whole ones are.
    #[test]
    fn sliced_batches_are_written_as_whole_ones() {
        for input in [batches(30_000, 30_000), steps(30_000, 30_000)] {
            let whole = &input[0];
            let sliced: Vec<RecordBatch> = [0, 1, 999, 4_096, 17_003, 29_999, 30_000]
                .windows(2)
                .map(|w| whole.slice(w[0], w[1] - w[0]))
                .collect();
            let props = || step_props(2048, 1 << 20);
            let (from_slices, _) = read(ours_checked(&sliced, props(), |_| {}));
            let (from_whole, _) = read(ours_checked(&input, props(), |_| {}));
            assert_eq!(&from_slices, whole);
            assert_eq!(from_slices, from_whole);
            let (from_slices, _) = read(ours_checked(&sliced, props_dictionary(), |_| {}));
            assert_eq!(&from_slices, whole);
        }
    }

    /// Dictionaries for every column.
    fn props_dictionary() -> WriterProperties {
        WriterProperties::builder()
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_data_page_row_count_limit(2048)
            .build()
    }
}
