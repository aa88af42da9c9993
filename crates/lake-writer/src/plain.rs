//! Plain text columns: the nearly distinct text that a file stores without a dictionary,
//! as it is (`PLAIN`) or as the prefix each value shares with the one before and the rest
//! (`DELTA_BYTE_ARRAY`: sequence numbers, positions), as [`crate::write`]'s encoding judge
//! decides, written here page by page instead of by parquet-rs: text of no order (URLs,
//! random ids) without statistics, ordered text (a TimeUuid, a sorted key) with them.
//!
//! Such columns can be most of a raw table's bytes (the bench's `channel` URLs are three
//! quarters of its values' bytes). parquet-rs gathers each value into its encoder's buffer,
//! which grows by doubling (each regrowth copying it), copies that buffer again behind the
//! page's levels, and compresses into a buffer it regrows once more before the first byte
//! (glibc copying the whole old allocation): three or four times a page's bytes moved besides
//! zstd's own reading of them (arrow-rs's `ByteArrayEncoder`, `GenericColumnWriter::
//! add_data_page` and the zstd codec of parquet 59). Here each value is copied once, into a
//! page buffer sized for the page ahead of time (and kept for the next) that has room before
//! the values for their definition levels, and the page is compressed into a buffer of zstd's
//! bound: a `silt run` of the bench's events spends 2.9% fewer instructions (callgrind). A
//! page's minimum and maximum are where they lie in the page buffer until the page is done,
//! and a value above the maximum is not compared with the minimum (text in order goes up: one
//! comparison a value where parquet-rs makes two): the bench's `uuid` that way, 1.3% fewer.
//! A `DELTA_BYTE_ARRAY` page keeps its values whole beside their suffixes (for the prefixes
//! and the statistics) and encodes the lengths of prefixes and suffixes with
//! [`crate::numbers`]' steps: the bench's `_sequence` so, 1% fewer.
//!
//! The pages are what parquet-rs writes for such a column (version 1 data pages, definition
//! levels in the RLE/bit-packed hybrid, the values `PLAIN` or `DELTA_BYTE_ARRAY`, the same
//! zstd level), cut at the
//! same limits of bytes and rows (not always at the same row: parquet-rs looks at its page
//! size every 1,024 rows), with the same chunk metadata, statistics (cut to the same length,
//! marked inexact when cut), column index and offset index; every Parquet reader reads them
//! (`tests/outside_readers.rs` reads the lake's with DuckDB and pyarrow).

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Field};
use bytes::Bytes;
use parquet::basic::{Compression, Encoding, EncodingMask, PageType, SortOrder};
use parquet::basic::{ConvertedType, LogicalType};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::data_type::ByteArray;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{
    ColumnChunkMetaData, ColumnIndexBuilder, LevelHistogram, OffsetIndexBuilder, PageEncodingStats,
};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::statistics::{Statistics, ValueStatistics};
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

use crate::chunk::{closed_chunk, PageOrder};
use crate::hybrid::hybrid;
use crate::numbers::delta_binary_packed;

/// Whether the leaf column of `field` is written here: top-level text or bytes, that the file
/// stores `PLAIN` without dictionary or bloom filter, in version 1 data pages, with statistics
/// of the chunk and its pages or none (not in page headers), zstd-compressed or not (any other
/// codec goes through parquet-rs).
pub(crate) fn is_plain_column(
    field: &Field,
    descr: &ColumnDescPtr,
    props: &WriterProperties,
) -> bool {
    let path = descr.path();
    matches!(
        field.data_type(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Binary | DataType::LargeBinary
    ) && descr.max_rep_level() == 0
        && descr.max_def_level() <= 1
        && !props.dictionary_enabled(path)
        && props
            .encoding(path)
            .is_none_or(|e| matches!(e, Encoding::PLAIN | Encoding::DELTA_BYTE_ARRAY))
        && (props.statistics_enabled(path) == EnabledStatistics::None
            || !props.write_page_header_statistics(path))
        && descr.sort_order() == SortOrder::UNSIGNED
        && props.bloom_filter_properties(path).is_none()
        && props.writer_version() == WriterVersion::PARQUET_1_0
        && matches!(
            props.compression(path),
            Compression::ZSTD(_) | Compression::UNCOMPRESSED
        )
}

/// A plain column's chunk of a row group, being written: its pages so far, and the page
/// being filled.
pub(crate) struct Plain {
    descr: ColumnDescPtr,
    compression: Compression,
    compressor: Option<zstd::bulk::Compressor<'static>>,
    /// Whether the column has definition levels (a nullable field).
    nullable: bool,
    page_rows_limit: usize,
    page_bytes_limit: usize,
    /// Bytes kept at the front of `page` for the page's definition levels (their length and
    /// their hybrid encoding), so that the values need not be moved behind them.
    room: usize,
    /// The page being filled: `room` bytes, then the values (each a 4-byte length and its
    /// bytes).
    page: Vec<u8>,
    /// The page's definition levels, a byte a row (1 present, 0 null).
    levels: Vec<u8>,
    /// Its hybrid encoding, made when the page is done.
    encoded_levels: Vec<u8>,
    page_rows: usize,
    /// Bytes of the page's values, lengths left out (the offset index's unencoded bytes).
    page_unencoded: i64,
    sink: TrackedWrite<Vec<u8>>,
    offset_index: Option<OffsetIndexBuilder>,
    data_offset: Option<i64>,
    data_pages: i32,
    compressed: i64,
    uncompressed: i64,
    rows: usize,
    /// Statistics, when the column has them.
    stats: Option<Box<Stats>>,
    /// The page's values as prefixes and suffixes, for a `DELTA_BYTE_ARRAY` column (whose
    /// `page` holds the suffixes after the room for the levels).
    delta: Option<Box<Delta>>,
}

/// A `DELTA_BYTE_ARRAY` page being filled: each value as the length of the prefix it shares
/// with the value before it and the rest.
#[derive(Default)]
struct Delta {
    prefixes: Vec<i64>,
    suffixes: Vec<i64>,
    /// The page's values whole, one after the other (for the prefixes and the statistics).
    whole: Vec<u8>,
    /// Where the value before is in `whole`.
    previous: (usize, usize),
    /// The encoded page, made when it is done.
    encoded: Vec<u8>,
}

/// The statistics of a plain column's chunk, and those of the page being filled.
struct Stats {
    /// Whether the page statistics go to a column index.
    pages: bool,
    /// Text (truncated at a character's boundary), not bytes.
    utf8: bool,
    statistics_truncate: Option<usize>,
    column_index_truncate: Option<usize>,
    /// Where in `Plain::page` the page's least and greatest values so far are.
    page_min: Option<(usize, usize)>,
    page_max: Option<(usize, usize)>,
    column_index: ColumnIndexBuilder,
    /// The pages' least and greatest values (untruncated), for the boundary order.
    order: PageOrder<Vec<u8>>,
    min: Option<Vec<u8>>,
    max: Option<Vec<u8>>,
    nulls: u64,
    /// Bytes of the chunk's values, lengths left out.
    unencoded: i64,
    histogram: Option<LevelHistogram>,
}

impl Plain {
    pub(crate) fn new(descr: ColumnDescPtr, props: &WriterProperties) -> Result<Self> {
        let descr_path = descr.path().clone();
        let descr_path = &descr_path;
        let compression = props.compression(descr.path());
        let compressor = match compression {
            Compression::ZSTD(level) => Some(
                zstd::bulk::Compressor::new(level.compression_level())
                    .map_err(|e| ParquetError::External(Box::new(e)))?,
            ),
            _ => None,
        };
        let page_rows_limit = props.data_page_row_count_limit().max(1);
        let page_bytes_limit = props.column_data_page_size_limit(descr.path()).max(1);
        // At most two bits a row (see `hybrid`), for pages of up to a million rows; a page
        // of more rows whose levels take more room has them put before its values by a copy.
        let room = 4 + page_rows_limit.min(1 << 20) / 4 + 16;
        let mut plain = Self {
            nullable: descr.max_def_level() > 0,
            descr,
            compression,
            compressor,
            page_rows_limit,
            page_bytes_limit,
            room,
            page: Vec::new(),
            levels: Vec::new(),
            encoded_levels: Vec::new(),
            page_rows: 0,
            page_unencoded: 0,
            sink: TrackedWrite::new(Vec::new()),
            offset_index: (!props.offset_index_disabled()).then(OffsetIndexBuilder::new),
            data_offset: None,
            data_pages: 0,
            compressed: 0,
            uncompressed: 0,
            rows: 0,
            stats: None,
            delta: (props.encoding(descr_path) == Some(Encoding::DELTA_BYTE_ARRAY))
                .then(Box::default),
        };
        let path = plain.descr.path();
        let statistics = props.statistics_enabled(path);
        if statistics != EnabledStatistics::None {
            let mut column_index = ColumnIndexBuilder::new(plain.descr.physical_type());
            if statistics != EnabledStatistics::Page {
                column_index.to_invalid();
            }
            plain.stats = Some(Box::new(Stats {
                pages: statistics == EnabledStatistics::Page,
                utf8: plain.descr.logical_type_ref() == Some(&LogicalType::String)
                    || plain.descr.converted_type() == ConvertedType::UTF8,
                statistics_truncate: props.statistics_truncate_length(),
                column_index_truncate: props.column_index_truncate_length(),
                page_min: None,
                page_max: None,
                column_index,
                order: PageOrder::new(),
                min: None,
                max: None,
                nulls: 0,
                unencoded: 0,
                histogram: LevelHistogram::try_new(plain.descr.max_def_level()),
            }));
        }
        plain.new_page();
        Ok(plain)
    }

    /// The next page: the buffer of the last if it was left (emptied but for the room for
    /// the levels), or a fresh one with room for the levels and a page of values (the limit
    /// and a last value past it, about, up to 8 MiB), so that it does not regrow.
    fn new_page(&mut self) {
        if self.page.capacity() == 0 {
            let values = (self.page_bytes_limit + self.page_bytes_limit / 8).min(8 << 20);
            self.page = Vec::with_capacity(self.room + values);
            self.page.resize(self.room, 0);
        }
        self.levels.clear();
        self.page_rows = 0;
        self.page_unencoded = 0;
        if let Some(delta) = self.delta.as_deref_mut() {
            delta.prefixes.clear();
            delta.suffixes.clear();
            delta.whole.clear();
            delta.previous = (0, 0);
        }
    }

    /// Appends the rows of `array` (text or bytes, as the column's field).
    pub(crate) fn push(&mut self, array: &dyn Array) -> Result<()> {
        match array.data_type() {
            DataType::Utf8 => {
                let a = array.as_string::<i32>();
                self.push_values(array, a.value_offsets(), a.value_data())
            }
            DataType::LargeUtf8 => {
                let a = array.as_string::<i64>();
                self.push_values(array, a.value_offsets(), a.value_data())
            }
            DataType::Binary => {
                let a = array.as_binary::<i32>();
                self.push_values(array, a.value_offsets(), a.value_data())
            }
            DataType::LargeBinary => {
                let a = array.as_binary::<i64>();
                self.push_values(array, a.value_offsets(), a.value_data())
            }
            other => Err(ParquetError::General(format!(
                "a plain column holds text or bytes, not {other}"
            ))),
        }
    }

    /// Appends the rows of an array of `offsets` (one more than its rows) into `data`.
    #[inline]
    fn push_values<O: arrow::array::OffsetSizeTrait>(
        &mut self,
        array: &dyn Array,
        offsets: &[O],
        data: &[u8],
    ) -> Result<()> {
        // A null buffer of no nulls (as concatenation leaves) is as none.
        let nulls = array.logical_nulls().filter(|n| n.null_count() > 0);
        if nulls.is_some() && !self.nullable {
            return Err(ParquetError::General(format!(
                "column `{}` is required but its values have nulls",
                self.descr.path()
            )));
        }
        for (i, ends) in offsets.windows(2).enumerate() {
            let present = nulls.as_ref().is_none_or(|n| n.is_valid(i));
            if present {
                let v = &data[ends[0].as_usize()..ends[1].as_usize()];
                self.page_unencoded += v.len() as i64;
                // Where the value is whole, for its statistics.
                let (values, at) = match self.delta.as_deref_mut() {
                    None => {
                        self.page.extend_from_slice(&(v.len() as u32).to_le_bytes());
                        self.page.extend_from_slice(v);
                        (&self.page, (self.page.len() - v.len(), self.page.len()))
                    }
                    Some(delta) => {
                        let (a, b) = delta.previous;
                        let shared = shared_prefix(&delta.whole[a..b], v);
                        delta.prefixes.push(shared as i64);
                        delta.suffixes.push((v.len() - shared) as i64);
                        self.page.extend_from_slice(&v[shared..]);
                        delta.whole.extend_from_slice(v);
                        delta.previous = (delta.whole.len() - v.len(), delta.whole.len());
                        (&delta.whole, delta.previous)
                    }
                };
                if let Some(stats) = self.stats.as_deref_mut() {
                    let value = |(a, b): (usize, usize)| &values[a..b];
                    // A value above the maximum is not below the minimum (ordered text goes
                    // up: one comparison a value).
                    if stats.page_max.is_none_or(|m| v > value(m)) {
                        stats.page_max = Some(at);
                        if stats.page_min.is_none() {
                            stats.page_min = Some(at);
                        }
                    } else if stats.page_min.is_none_or(|m| v < value(m)) {
                        stats.page_min = Some(at);
                    }
                }
            }
            if self.nullable {
                self.levels.push(present as u8);
            }
            self.page_rows += 1;
            if self.page_rows >= self.page_rows_limit
                || self.page.len() - self.room >= self.page_bytes_limit
            {
                self.finish_page()?;
            }
        }
        Ok(())
    }

    /// Writes the page being filled, if it has rows, and starts the next.
    fn finish_page(&mut self) -> Result<()> {
        if self.page_rows == 0 {
            return Ok(());
        }
        self.page_statistics();
        let mut page = std::mem::take(&mut self.page);
        let mut start = self.room;
        if self.nullable {
            self.encoded_levels.clear();
            hybrid(&self.levels, 1, &mut self.encoded_levels);
            let len = self.encoded_levels.len();
            if len + 4 <= self.room {
                start = self.room - len - 4;
                page[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
                page[start + 4..self.room].copy_from_slice(&self.encoded_levels);
            } else {
                let mut whole = Vec::with_capacity(4 + len + page.len() - self.room);
                whole.extend_from_slice(&(len as u32).to_le_bytes());
                whole.extend_from_slice(&self.encoded_levels);
                whole.extend_from_slice(&page[self.room..]);
                (page, start) = (whole, 0);
            }
        }
        if let Some(delta) = self.delta.as_deref_mut() {
            // The prefixes' and the suffixes' lengths go before the suffixes.
            delta.encoded.clear();
            delta.encoded.extend_from_slice(&page[start..self.room]);
            delta_binary_packed(&delta.prefixes, &mut delta.encoded);
            delta_binary_packed(&delta.suffixes, &mut delta.encoded);
            delta.encoded.extend_from_slice(&page[self.room..]);
            page.truncate(self.room);
            page.extend_from_slice(&delta.encoded);
            start = self.room;
        }
        let uncompressed = page.len() - start;
        let buf = match self.compressor.as_mut() {
            Some(zstd) => {
                let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(uncompressed));
                zstd.compress_to_buffer(&page[start..], &mut out)
                    .map_err(|e| ParquetError::External(Box::new(e)))?;
                // The page buffer serves the next page (its memory already mapped).
                if page.capacity() >= self.room + self.page_bytes_limit {
                    page.truncate(self.room);
                    self.page = page;
                }
                Bytes::from(out)
            }
            None => Bytes::from(page).slice(start..),
        };
        let encoding = self.encoding();
        let spec = SerializedPageWriter::new(&mut self.sink).write_page(CompressedPage::new(
            Page::DataPage {
                buf,
                num_values: self.page_rows as u32,
                encoding,
                def_level_encoding: Encoding::RLE,
                rep_level_encoding: Encoding::RLE,
                statistics: None,
            },
            uncompressed,
        ))?;
        self.data_offset.get_or_insert(spec.offset as i64);
        self.data_pages += 1;
        self.compressed += spec.compressed_size as i64;
        self.uncompressed += spec.uncompressed_size as i64;
        self.rows += self.page_rows;
        if let Some(o) = self.offset_index.as_mut() {
            o.append_offset_and_size(spec.offset as i64, spec.compressed_size as i32);
            o.append_row_count(self.page_rows as i64);
            o.append_unencoded_byte_array_data_bytes(Some(self.page_unencoded));
        }
        self.new_page();
        Ok(())
    }

    /// The page's statistics into the column index and the chunk's.
    fn page_statistics(&mut self) {
        let Some(stats) = self.stats.as_deref_mut() else {
            return;
        };
        let present = match self.nullable {
            true => self.levels.iter().map(|&l| l as usize).sum(),
            false => self.page_rows,
        };
        let nulls = (self.page_rows - present) as u64;
        stats.nulls += nulls;
        stats.unencoded += self.page_unencoded;
        let mut histogram = LevelHistogram::try_new(self.descr.max_def_level());
        if let Some(h) = histogram.as_mut() {
            h.increment_by(0, nulls as i64);
            h.increment_by(1, present as i64);
        }
        if let (Some(c), Some(p)) = (stats.histogram.as_mut(), histogram.as_ref()) {
            c.add(p);
        }
        let (Some((a, b)), Some((c, d))) = (stats.page_min.take(), stats.page_max.take()) else {
            stats
                .column_index
                .append(true, vec![], vec![], nulls as i64);
            stats.column_index.append_histograms(&None, &histogram);
            return;
        };
        let values = self.delta.as_ref().map_or(&self.page, |d| &d.whole);
        let (lo, hi) = (&values[a..b], &values[c..d]);
        if stats.min.as_deref().is_none_or(|m| lo < m) {
            stats.min = Some(lo.to_vec());
        }
        if stats.max.as_deref().is_none_or(|m| hi > m) {
            stats.max = Some(hi.to_vec());
        }
        if stats.pages && stats.column_index.valid() {
            stats.order.page(lo.to_vec(), hi.to_vec());
            let truncate = stats.column_index_truncate;
            let (min, _) = truncate_min(lo, truncate, stats.utf8);
            let (max, _) = truncate_max(hi, truncate, stats.utf8);
            stats.column_index.append(false, min, max, nulls as i64);
        }
        stats.column_index.append_histograms(&None, &histogram);
    }

    /// The encoding of the values of a page.
    fn encoding(&self) -> Encoding {
        match self.delta {
            Some(_) => Encoding::DELTA_BYTE_ARRAY,
            None => Encoding::PLAIN,
        }
    }

    /// Bytes this column will take in the file, about (its pages so far uncompressed).
    pub(crate) fn size(&self) -> usize {
        self.sink.bytes_written() + self.page.len() - self.room + self.levels.len() / 8
    }

    /// The column chunk: its pages, and the metadata and offset index parquet-rs gives such a
    /// column.
    pub(crate) fn finish(mut self) -> Result<(Bytes, ColumnCloseResult)> {
        self.finish_page()?;
        let mut encodings = vec![Encoding::RLE];
        if self.data_pages > 0 {
            encodings.push(self.encoding());
        }
        let mut metadata = ColumnChunkMetaData::builder(self.descr.clone())
            .set_compression(self.compression)
            .set_encodings_mask(EncodingMask::new_from_encodings(encodings.iter()))
            .set_page_encoding_stats(match self.data_pages {
                0 => vec![],
                count => vec![PageEncodingStats {
                    page_type: PageType::DATA_PAGE,
                    encoding: self.encoding(),
                    count,
                }],
            })
            .set_total_compressed_size(self.compressed)
            .set_total_uncompressed_size(self.uncompressed)
            .set_num_values(self.rows as i64)
            .set_data_page_offset(self.data_offset.unwrap_or(0))
            .set_dictionary_page_offset(None);
        let mut column_index = None;
        if let Some(mut stats) = self.stats.map(|s| *s) {
            let truncate = stats.statistics_truncate;
            let min = stats.min.map(|m| truncate_min(&m, truncate, stats.utf8));
            let max = stats.max.map(|m| truncate_max(&m, truncate, stats.utf8));
            let statistics = ValueStatistics::<ByteArray>::new(
                min.as_ref().map(|m| ByteArray::from(m.0.clone())),
                max.as_ref().map(|m| ByteArray::from(m.0.clone())),
                None,
                Some(stats.nulls),
                false,
            )
            .with_min_is_exact(min.is_none_or(|m| !m.1))
            .with_max_is_exact(max.is_none_or(|m| !m.1));
            metadata = metadata
                .set_statistics(Statistics::ByteArray(statistics))
                .set_unencoded_byte_array_data_bytes(Some(stats.unencoded))
                .set_definition_level_histogram(stats.histogram);
            stats.column_index.set_boundary_order(stats.order.order());
            column_index = Some(stats.column_index);
        }
        closed_chunk(
            self.sink,
            self.rows,
            metadata.build()?,
            column_index,
            self.offset_index,
        )
    }
}

/// The length of the prefix `a` and `b` share, compared eight bytes at a time.
#[inline]
fn shared_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let x = u64::from_le_bytes(a[i..i + 8].try_into().expect("eight bytes"));
        let y = u64::from_le_bytes(b[i..i + 8].try_into().expect("eight bytes"));
        if x != y {
            return i + ((x ^ y).trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

/// A lower bound of `value` of at most `length` bytes (cut at a character's boundary for
/// text), as parquet-rs truncates the minimum of statistics; and whether it was cut.
fn truncate_min(value: &[u8], length: Option<usize>, utf8: bool) -> (Vec<u8>, bool) {
    let cut = length.filter(|&l| value.len() > l).and_then(|l| {
        match std::str::from_utf8(value).ok().filter(|_| utf8) {
            Some(text) => (1..=l)
                .rfind(|&x| text.is_char_boundary(x))
                .map(|at| value[..at].to_vec()),
            None => Some(value[..l].to_vec()),
        }
    });
    match cut {
        Some(cut) => (cut, true),
        None => (value.to_vec(), false),
    }
}

/// An upper bound of `value` of at most `length` bytes (cut, then its last character or byte
/// incremented), as parquet-rs truncates the maximum of statistics; and whether it was cut.
fn truncate_max(value: &[u8], length: Option<usize>, utf8: bool) -> (Vec<u8>, bool) {
    let cut = length.filter(|&l| value.len() > l).and_then(|l| {
        match std::str::from_utf8(value).ok().filter(|_| utf8) {
            Some(text) => {
                let at = (l.saturating_sub(3)..=l).rfind(|&x| text.is_char_boundary(x))?;
                let text = text.get(..at)?;
                // The last character that can be incremented within its width.
                text.char_indices().rev().find_map(|(i, c)| {
                    let next = char::from_u32(c as u32 + 1)?;
                    (next.len_utf8() == c.len_utf8()).then(|| {
                        let mut out = text.as_bytes()[..i + c.len_utf8()].to_vec();
                        next.encode_utf8(&mut out[i..]);
                        out
                    })
                })
            }
            None => {
                let mut out = value[..l].to_vec();
                // The last byte that does not overflow incremented, those after it to zero.
                let last = out.iter().rposition(|&b| b != u8::MAX)?;
                out[last] += 1;
                out[last + 1..].fill(0);
                Some(out)
            }
        }
    });
    match cut {
        Some(cut) => (cut, true),
        None => (value.to_vec(), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::tests::{compared_props, ours_checked, parquet_rs, read, same_chunks};
    use arrow::array::{
        ArrayRef, BinaryArray, Int64Array, LargeStringArray, RecordBatch, StringArray,
    };
    use arrow::compute::concat_batches;
    use arrow::datatypes::Schema;
    use parquet::basic::ZstdLevel;
    use parquet::file::metadata::ParquetMetaData;
    use parquet::schema::types::ColumnPath;
    use std::sync::Arc;

    /// Text of no order (a scrambled number, as hex): ids, URLs.
    fn scrambled(i: usize) -> String {
        format!("{:016x}", (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// Batches of a required id, a nullable URL (nulls in long runs and scattered), nullable
    /// bytes (mostly null), long required text, and a number.
    fn batches(rows: usize, per_batch: usize) -> Vec<RecordBatch> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("url", DataType::Utf8, true),
            Field::new("blob", DataType::Binary, true),
            Field::new("big", DataType::LargeUtf8, false),
            Field::new("n", DataType::Int64, false),
        ]));
        (0..rows)
            .step_by(per_batch)
            .map(|start| {
                let rows = start..rows.min(start + per_batch);
                let url = rows.clone().map(|r| {
                    let null = (r / 3000) % 3 == 1 || r % 7 == 0;
                    (!null).then(|| format!("https://x.io/p?ref={}", scrambled(r)))
                });
                let blob = rows
                    .clone()
                    .map(|r| (r % 10 == 3).then(|| scrambled(r).into_bytes()));
                let big = rows.clone().map(|r| scrambled(r).repeat(1 + r % 9));
                let columns: Vec<ArrayRef> = vec![
                    Arc::new(StringArray::from_iter_values(rows.clone().map(scrambled))),
                    Arc::new(StringArray::from_iter(url)),
                    Arc::new(BinaryArray::from_iter(blob)),
                    Arc::new(LargeStringArray::from_iter_values(big)),
                    Arc::new(Int64Array::from_iter_values(rows.map(|r| r as i64))),
                ];
                RecordBatch::try_new(schema.clone(), columns).unwrap()
            })
            .collect()
    }

    /// zstd, statistics, and the text columns as the encoding judge leaves nearly distinct
    /// text of no order: no dictionary, no statistics.
    fn props(page_rows: usize, page_bytes: usize) -> WriterProperties {
        let mut b = compared_props(page_rows).set_data_page_size_limit(page_bytes);
        for c in ["id", "url", "blob", "big"] {
            b = b
                .set_column_dictionary_enabled(ColumnPath::from(c), false)
                .set_column_statistics_enabled(ColumnPath::from(c), EnabledStatistics::None);
        }
        b.build()
    }

    fn ours(batches: &[RecordBatch], props: WriterProperties) -> Vec<u8> {
        ours_checked(batches, props, |file| {
            for i in 0..4 {
                assert!(file.is_plain(i), "column {i} goes the plain way");
            }
            assert!(!file.is_plain(4), "a number does not");
        })
    }

    /// Pages of 1,024 rows (where parquet-rs looks at its limits): the same pages as
    /// parquet-rs's, the same chunk metadata and offset index; the required columns' pages
    /// (no levels) byte for byte.
    #[test]
    fn plain_columns_are_the_pages_parquet_rs_writes() {
        let input = batches(100_000, 8_192);
        let props = props(1024, 1 << 30);
        let (ours_read, ours_meta) = read(ours(&input, props.clone()));
        let (theirs_read, theirs_meta) = read(parquet_rs(&input, props));
        assert_eq!(
            ours_read,
            concat_batches(&input[0].schema(), &input).unwrap()
        );
        assert_eq!(ours_read, theirs_read);
        assert_eq!(ours_meta.num_row_groups(), 3);
        assert_eq!(ours_meta.num_row_groups(), theirs_meta.num_row_groups());
        same_chunks(&ours_meta, &theirs_meta, 5);
        for rg in 0..ours_meta.num_row_groups() {
            for c in [0, 3] {
                let (oc, tc) = (
                    ours_meta.row_group(rg).column(c),
                    theirs_meta.row_group(rg).column(c),
                );
                let at = format!("row group {rg}, column {c}");
                assert_eq!(oc.compressed_size(), tc.compressed_size(), "{at}");
                assert_eq!(oc.uncompressed_size(), tc.uncompressed_size(), "{at}");
            }
            assert!(ours_meta
                .column_index()
                .is_none_or(|ci| ci[rg][..4].iter().all(|i| matches!(
                    i,
                    parquet::file::page_index::column_index::ColumnIndexMetaData::NONE
                ))));
        }
    }

    /// A required column's values may come with a null buffer of no nulls (as concatenated
    /// arrays do): written as any others.
    #[test]
    fn a_null_buffer_of_no_nulls_in_a_required_column_is_no_null() {
        let input = batches(3_000, 1_000);
        let with_buffer: Vec<RecordBatch> = input
            .iter()
            .map(|b| {
                let id = b.column(0).as_string::<i32>();
                let id = StringArray::try_new(
                    id.offsets().clone(),
                    id.values().clone(),
                    Some(arrow::buffer::NullBuffer::new_valid(id.len())),
                )
                .unwrap();
                let mut columns = b.columns().to_vec();
                columns[0] = Arc::new(id);
                RecordBatch::try_new(b.schema(), columns).unwrap()
            })
            .collect();
        assert!(with_buffer[0].column(0).nulls().is_some());
        let (read_back, _) = read(ours(&with_buffer, props(1024, 1 << 20)));
        assert_eq!(
            read_back,
            concat_batches(&input[0].schema(), &input).unwrap()
        );
    }

    /// Values larger than a page (a document, an image) make pages of one value each, read
    /// back whole; empty values and nulls between them take no bytes.
    #[test]
    fn values_larger_than_a_page_are_a_page_each() {
        let schema = Arc::new(Schema::new(vec![Field::new("doc", DataType::Binary, true)]));
        let docs: Vec<Option<Vec<u8>>> = (0..12usize)
            .map(|i| match i % 4 {
                0 => None,
                1 => Some(Vec::new()),
                _ => Some((0..300_000).map(|b| (b * 7 + i) as u8).collect()),
            })
            .collect();
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(BinaryArray::from_iter(
                docs.iter().map(|d| d.as_deref()),
            ))],
        )
        .unwrap();
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_dictionary_enabled(false)
            .set_statistics_enabled(EnabledStatistics::None)
            .set_data_page_size_limit(128 << 10)
            .build();
        let written = ours_checked(std::slice::from_ref(&batch), props, |file| {
            assert!(file.is_plain(0));
        });
        let (read_back, meta) = read(written);
        assert_eq!(read_back, batch);
        let pages = meta.offset_index().unwrap()[0][0].page_locations().len();
        assert_eq!(pages, 6, "a page ends after each large value");
    }

    /// A page ends once its values reach the page size (or the row limit), whatever the
    /// batches: a value never makes it more than one value over.
    #[test]
    fn plain_pages_end_at_the_page_size() {
        let input = batches(30_000, 1_000);
        let page_bytes = 16 << 10;
        let (read_back, meta) = read(ours(&input, props(20_000, page_bytes)));
        assert_eq!(
            read_back,
            concat_batches(&input[0].schema(), &input).unwrap()
        );
        let offsets = &meta.offset_index().unwrap()[0];
        for (c, longest) in [(0, 16), (1, 35), (3, 16 * 9)] {
            let index = &offsets[c];
            let pages = index.page_locations();
            let unencoded = index.unencoded_byte_array_data_bytes().unwrap();
            assert!(pages.len() > 10, "column {c}: {} pages", pages.len());
            for p in 0..pages.len() - 1 {
                let rows = pages[p + 1].first_row_index - pages[p].first_row_index;
                // The page's values with their 4-byte lengths, nulls taking none (a page of
                // the URL column holds fewer values than rows).
                let values = unencoded[p] as usize;
                assert!(
                    values + 4 * rows as usize >= page_bytes || c == 1,
                    "column {c}, page {p}: {values} bytes in {rows} rows"
                );
                assert!(
                    values < page_bytes + longest,
                    "column {c}, page {p}: {values} bytes"
                );
            }
        }
    }

    /// Ordered text: keys counting up (some longer than the statistics keep, with characters
    /// of several bytes where they are cut), the same nullable (nulls in pages of their own
    /// and scattered), and bytes counting down (with bytes of 0xFF where they are cut).
    fn ordered(rows: usize, per_batch: usize) -> Vec<RecordBatch> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("maybe", DataType::Utf8, true),
            Field::new("down", DataType::Binary, false),
        ]));
        let key = |r: usize| match r % 3 {
            0 => format!("{r:012}"),
            1 => format!("{r:012}-{}", "é€".repeat(20)),
            _ => format!("{r:012}-{}", "z".repeat(70)),
        };
        (0..rows)
            .step_by(per_batch)
            .map(|start| {
                let rows = start..rows.min(start + per_batch);
                let maybe = rows.clone().map(|r| {
                    let null = (r / 3000) % 3 == 1 || r % 7 == 0;
                    (!null).then(|| key(r))
                });
                let down = rows.clone().map(|r| {
                    let mut b = (u64::MAX - r as u64).to_be_bytes().to_vec();
                    b.extend(std::iter::repeat_n(0xFF, 60 + r % 9));
                    b
                });
                let columns: Vec<ArrayRef> = vec![
                    Arc::new(StringArray::from_iter_values(rows.clone().map(key))),
                    Arc::new(StringArray::from_iter(maybe)),
                    Arc::new(BinaryArray::from_iter_values(down)),
                ];
                RecordBatch::try_new(schema.clone(), columns).unwrap()
            })
            .collect()
    }

    /// Ordered text keeps its statistics, written here: the same statistics (cut to 64 bytes
    /// as parquet-rs cuts them, marked inexact), column index, level histograms and pages as
    /// parquet-rs's, for statistics of pages and of chunks only.
    #[test]
    fn ordered_text_keeps_the_statistics_parquet_rs_gives_it() {
        let input = ordered(50_000, 8_192);
        for statistics in [EnabledStatistics::Page, EnabledStatistics::Chunk] {
            let props = || {
                WriterProperties::builder()
                    .set_compression(Compression::ZSTD(ZstdLevel::default()))
                    .set_dictionary_enabled(false)
                    .set_statistics_enabled(statistics)
                    .set_max_row_group_row_count(Some(40_960))
                    .set_data_page_row_count_limit(2048)
                    .set_write_batch_size(1024)
                    .build()
            };
            let written = ours_checked(&input, props(), |file| {
                for i in 0..3 {
                    assert!(file.is_plain(i), "column {i} goes the plain way");
                }
            });
            let (ours_read, ours_meta) = read(written);
            let (theirs_read, theirs_meta) = read(parquet_rs(&input, props()));
            assert_eq!(
                ours_read,
                concat_batches(&input[0].schema(), &input).unwrap()
            );
            assert_eq!(ours_read, theirs_read);
            if statistics == EnabledStatistics::Page {
                same_chunks(&ours_meta, &theirs_meta, 3);
            } else {
                for c in 0..3 {
                    let chunk = |m: &ParquetMetaData| m.row_group(0).column(c).clone();
                    let (o, t) = (chunk(&ours_meta), chunk(&theirs_meta));
                    assert_eq!(o.statistics(), t.statistics(), "column {c}");
                    assert_eq!(
                        o.definition_level_histogram(),
                        t.definition_level_histogram()
                    );
                }
            }
            // The cases are there: bytes whose maximum is all 0xFF cannot be cut (row group 0),
            // the others are, and marked so.
            let stats = |rg: usize| {
                ours_meta
                    .row_group(rg)
                    .column(2)
                    .statistics()
                    .unwrap()
                    .clone()
            };
            assert!(
                !stats(0).min_is_exact() && stats(0).max_is_exact(),
                "{:?}",
                stats(0)
            );
            assert!(
                !stats(1).min_is_exact() && !stats(1).max_is_exact(),
                "{:?}",
                stats(1)
            );
        }
    }

    /// Sequence numbers and positions (values sharing most of their bytes with the one before),
    /// the same nullable, and bytes: `DELTA_BYTE_ARRAY` pages that read back as parquet-rs's
    /// do, with the same statistics, column index and pages.
    #[test]
    fn values_sharing_their_prefix_are_the_delta_pages_parquet_rs_writes() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("_sequence", DataType::Utf8, false),
            Field::new("maybe", DataType::Utf8, true),
            Field::new("bytes", DataType::Binary, false),
        ]));
        let sequence = |r: usize| format!("4963{:022}", 1_000_003 * r as u64);
        let input: Vec<RecordBatch> = (0..60_000usize)
            .step_by(8_192)
            .map(|start| {
                let rows = start..60_000usize.min(start + 8_192);
                let maybe = rows.clone().map(|r| {
                    let null = (r / 3000) % 3 == 1 || r % 7 == 0;
                    (!null).then(|| format!("s3://bucket/{}/part-{r}", r / 500))
                });
                let bytes = rows.clone().map(|r| {
                    let mut b = vec![0xFF; 3 + r % 5];
                    b.extend_from_slice(&(r as u32 / 3).to_be_bytes());
                    b
                });
                let columns: Vec<ArrayRef> = vec![
                    Arc::new(StringArray::from_iter_values(rows.clone().map(sequence))),
                    Arc::new(StringArray::from_iter(maybe)),
                    Arc::new(BinaryArray::from_iter_values(bytes)),
                ];
                RecordBatch::try_new(schema.clone(), columns).unwrap()
            })
            .collect();
        let props = || {
            let mut b = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::default()))
                .set_dictionary_enabled(false)
                .set_statistics_enabled(EnabledStatistics::Page)
                .set_max_row_group_row_count(Some(40_960))
                .set_data_page_row_count_limit(2048)
                .set_write_batch_size(1024);
            for c in ["_sequence", "maybe", "bytes"] {
                b = b.set_column_encoding(ColumnPath::from(c), Encoding::DELTA_BYTE_ARRAY);
            }
            b.build()
        };
        let written = ours_checked(&input, props(), |file| {
            for i in 0..3 {
                assert!(file.is_plain(i), "column {i} goes the plain way");
            }
        });
        let ours = written;
        let theirs = parquet_rs(&input, props());
        let (ours_read, ours_meta) = read(ours.clone());
        let (theirs_read, theirs_meta) = read(theirs.clone());
        assert_eq!(ours_read, concat_batches(&schema, &input).unwrap());
        assert_eq!(ours_read, theirs_read);
        same_chunks(&ours_meta, &theirs_meta, 3);
        for c in 0..3 {
            let chunk = ours_meta.row_group(0).column(c);
            let pages = chunk.page_encoding_stats_mask().unwrap();
            assert!(pages.is_only(Encoding::DELTA_BYTE_ARRAY), "column {c}");
        }
        // The same encoding, so about the same bytes (within 5%).
        let (o, t) = (ours.len() as f64, theirs.len() as f64);
        assert!(
            (o - t).abs() < t * 0.05,
            "{o} bytes against parquet-rs's {t}"
        );
    }

    #[test]
    fn shared_prefixes_are_the_bytes_two_values_begin_with() {
        let a: Vec<u8> = (0..40).collect();
        for n in 0..=40 {
            for at in 0..n {
                let mut b = a[..n].to_vec();
                b[at] ^= 0x10;
                assert_eq!(shared_prefix(&a, &b), at, "{n} bytes, differing at {at}");
            }
            assert_eq!(shared_prefix(&a[..n], &a), n);
            assert_eq!(shared_prefix(&a, &a[..n]), n);
        }
        assert_eq!(shared_prefix(b"", b"x"), 0);
    }

    /// Batches cut at any row (arrays with an offset) are written as the whole ones are,
    /// plain and as prefixes, with statistics and without.
    #[test]
    fn sliced_batches_are_written_as_whole_ones() {
        let whole = &ordered(30_000, 30_000)[0];
        let sliced: Vec<RecordBatch> = [0, 1, 999, 4_096, 17_003, 29_999, 30_000]
            .windows(2)
            .map(|w| whole.slice(w[0], w[1] - w[0]))
            .collect();
        for (encoding, statistics) in [
            (Encoding::PLAIN, EnabledStatistics::None),
            (Encoding::PLAIN, EnabledStatistics::Page),
            (Encoding::DELTA_BYTE_ARRAY, EnabledStatistics::Page),
        ] {
            let props = WriterProperties::builder()
                .set_dictionary_enabled(false)
                .set_encoding(encoding)
                .set_statistics_enabled(statistics)
                .set_data_page_row_count_limit(2048)
                .build();
            let written = ours_checked(&sliced, props, |file| {
                for i in 0..3 {
                    assert!(file.is_plain(i), "column {i} goes the plain way");
                }
            });
            let (read_back, _) = read(written);
            assert_eq!(&read_back, whole, "{encoding:?}, {statistics:?}");
        }
    }
}
