//! Dictionary number columns: 64-bit integers and timestamps that a file stores as a
//! dictionary (`RLE_DICTIONARY`), written here instead of by parquet-rs.
//!
//! A product id, a sale id, an arrival time: a few hundred or thousand values over millions
//! of rows. parquet-rs looks every value up in its dictionary by hashing the value's bytes as
//! a slice and comparing it with the stored one as bytes (its `Interner`, 165 instructions a
//! value), updates the page's minimum and maximum with each, and bit-packs the indices with a
//! general encoder: 5% of the instructions of a `silt run` of the bench's events went to the
//! three such columns of its raw table. Here a value is looked up as the number it is (a
//! repeat of the row before's value is not looked up at all), the minimum and maximum of a
//! page are found once it is done, and the indices are encoded by [`crate::hybrid`].
//!
//! The chunk is what parquet-rs writes for such a column: a dictionary page (the values,
//! `PLAIN`, compressed with the column's codec), then version 1 data pages of the definition
//! levels and the indices in the RLE/bit-packed hybrid, with the same statistics, column index
//! (and level histograms) and offset index, cut at the same limits of rows and bytes (not at
//! the same row: parquet-rs looks at its limits every 1,024 rows). A dictionary that outgrows
//! the dictionary page limit, or a chunk of nulls only, goes through parquet-rs's writer
//! instead, which stores it as it always does.

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
use parquet::basic::{BoundaryOrder, Compression, Encoding, EncodingMask, PageType, Type};
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

use crate::hybrid::{bit_width, hybrid};

/// Whether the leaf column of `field` is written here: a top-level 64-bit integer or a
/// timestamp of milli-, micro- or nanoseconds (stored as the number it is), that the file
/// stores as a dictionary without a bloom filter, in version 1 data pages, zstd-compressed or
/// not (any other codec goes through parquet-rs).
pub(crate) fn is_dict_column(
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
        && props.dictionary_enabled(path)
        && props.bloom_filter_properties(path).is_none()
        && props.writer_version() == WriterVersion::PARQUET_1_0
        && matches!(
            props.compression(path),
            Compression::ZSTD(_) | Compression::UNCOMPRESSED
        )
}

/// The numbers of an array of a dictionary number column.
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

/// A dictionary number column's chunk of a row group so far: its dictionary (values in the
/// order they first appeared), the index of each value and the definition level of each row.
pub(crate) struct Dict {
    descr: ColumnDescPtr,
    props: Arc<WriterProperties>,
    /// Whether the column has definition levels (a nullable field).
    nullable: bool,
    /// Indexes into `values`, hashed by the value they point to.
    table: HashTable<u32>,
    values: Vec<i64>,
    /// The last value looked up, and its index: a run of one value is looked up once.
    last: Option<(i64, u32)>,
    /// The dictionary index of each value so far (nulls have none).
    indices: Vec<u32>,
    /// The definition level of each row so far (nullable columns only): 1 present, 0 null.
    levels: Vec<u8>,
    rows: usize,
}

#[inline]
fn hash(v: i64) -> u64 {
    FixedState::default().hash_one(v)
}

impl Dict {
    pub(crate) fn new(descr: ColumnDescPtr, props: Arc<WriterProperties>) -> Self {
        Self {
            nullable: descr.max_def_level() > 0,
            descr,
            props,
            table: HashTable::new(),
            values: Vec::new(),
            last: None,
            indices: Vec::new(),
            levels: Vec::new(),
            rows: 0,
        }
    }

    /// Takes the rows of `array` (numbers, as the column's field).
    pub(crate) fn push(&mut self, array: &dyn Array) -> Result<()> {
        let numbers = numbers(array).ok_or_else(|| {
            ParquetError::General(format!(
                "a dictionary number column holds 64-bit integers or timestamps, not {}",
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
        self.indices.reserve(numbers.len());
        match nulls {
            None => {
                for &v in numbers {
                    let i = self.index_of(v);
                    self.indices.push(i);
                }
                if self.nullable {
                    self.levels.resize(self.levels.len() + numbers.len(), 1);
                }
            }
            Some(nulls) => {
                self.levels.reserve(numbers.len());
                for (&v, present) in numbers.iter().zip(nulls.iter()) {
                    self.levels.push(present as u8);
                    if present {
                        let i = self.index_of(v);
                        self.indices.push(i);
                    }
                }
            }
        }
        self.rows += numbers.len();
        Ok(())
    }

    #[inline]
    fn index_of(&mut self, v: i64) -> u32 {
        if let Some((last, i)) = self.last {
            if last == v {
                return i;
            }
        }
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

    /// Whether the dictionary is as large as a dictionary page may be: parquet-rs falls back
    /// from a dictionary there, and so the column goes to parquet-rs's writer.
    pub(crate) fn outgrown(&self) -> bool {
        self.values.len() * 8
            >= self
                .props
                .column_dictionary_page_size_limit(self.descr.path())
    }

    /// Whether the chunk is written here: a dictionary of a page at most, and not empty (a
    /// chunk of nulls only is written as parquet-rs writes it).
    pub(crate) fn encodable(&self) -> bool {
        !self.values.is_empty() && !self.outgrown()
    }

    fn width(&self) -> u8 {
        bit_width(self.values.len().saturating_sub(1) as u64)
    }

    /// Bytes this column will take in the file, about (uncompressed).
    pub(crate) fn size(&self) -> usize {
        self.values.len() * 8
            + self.indices.len() * usize::from(self.width()) / 8
            + self.levels.len() / 8
    }

    /// Hands the rows taken so far to parquet-rs's writer of the column.
    pub(crate) fn write_to(self, field: &Field, writer: &mut ArrowColumnWriter) -> Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let mut numbers = Vec::with_capacity(self.rows);
        let nulls = if self.nullable {
            let mut indices = self.indices.iter();
            for &level in &self.levels {
                numbers.push(match level {
                    1 => self.values[*indices.next().expect("an index a value") as usize],
                    _ => 0,
                });
            }
            Some(NullBuffer::from_iter(self.levels.iter().map(|&l| l == 1)))
        } else {
            numbers.extend(self.indices.iter().map(|&i| self.values[i as usize]));
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

    /// The column chunk: a dictionary page, then data pages of levels and indices, with the
    /// statistics, column index and offset index parquet-rs gives the same values.
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
        let width = self.width();
        // A data page ends at parquet-rs's limits: rows, and bytes of encoded indices.
        let page_rows = props.data_page_row_count_limit().max(1).min(
            (props.column_data_page_size_limit(path).max(1) * 8 / usize::from(width.max(1))).max(1),
        );
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

        // The dictionary page first: the values, PLAIN.
        let mut dictionary = Vec::with_capacity(self.values.len() * 8);
        for v in &self.values {
            dictionary.extend_from_slice(&v.to_le_bytes());
        }
        let (buf, len) = Self::compress(&mut compressor, dictionary)?;
        let spec = pages.write_page(CompressedPage::new(
            Page::DictionaryPage {
                buf,
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
        let (mut ascending, mut descending) = (true, true);
        let mut last: Option<(i64, i64)> = None;
        let mut chunk_min_max: Option<(i64, i64)> = None;
        let mut chunk_nulls = 0u64;
        let mut chunk_histogram = histogram();
        let mut levels_buf = Vec::new();
        let mut at_index = 0;
        let mut row = 0;
        while row < self.rows {
            let end = self.rows.min(row + page_rows);
            let present = match self.nullable {
                true => self.levels[row..end].iter().map(|&l| l as usize).sum(),
                false => end - row,
            };
            let nulls = (end - row - present) as u64;
            let indices = &self.indices[at_index..at_index + present];
            let mut buf = Vec::with_capacity(16 + (end - row) / 4 + present * 5);
            if self.nullable {
                levels_buf.clear();
                hybrid(&self.levels[row..end], 1, &mut levels_buf);
                buf.extend_from_slice(&(levels_buf.len() as u32).to_le_bytes());
                buf.extend_from_slice(&levels_buf);
            }
            buf.push(width);
            hybrid(indices, width, &mut buf);
            let min_max = indices.iter().map(|&i| self.values[i as usize]).fold(
                None,
                |m: Option<(i64, i64)>, v| match m {
                    None => Some((v, v)),
                    Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
                },
            );

            let (buf, len) = Self::compress(&mut compressor, buf)?;
            let spec = pages.write_page(CompressedPage::new(
                Page::DataPage {
                    buf,
                    num_values: (end - row) as u32,
                    encoding: Encoding::RLE_DICTIONARY,
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
                    if let Some((last_lo, last_hi)) = last {
                        if last_lo > lo || last_hi > hi {
                            ascending = false;
                        }
                        if lo > last_lo || hi > last_hi {
                            descending = false;
                        }
                    }
                    last = Some((lo, hi));
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
            at_index += present;
            row = end;
        }
        pages.close()?;

        let encodings = [Encoding::PLAIN, Encoding::RLE, Encoding::RLE_DICTIONARY];
        let mut metadata = ColumnChunkMetaData::builder(self.descr.clone())
            .set_compression(compression)
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
            metadata = metadata
                .set_statistics(self.statistics(chunk_min_max, chunk_nulls))
                .set_definition_level_histogram(chunk_histogram);
        }
        let metadata = metadata.build()?;
        column_index.set_boundary_order(match (ascending, descending) {
            (true, _) => BoundaryOrder::ASCENDING,
            (false, true) => BoundaryOrder::DESCENDING,
            (false, false) => BoundaryOrder::UNORDERED,
        });
        let column_index = match column_index.valid() {
            true => Some(column_index.build()?),
            false => None,
        };
        let close = ColumnCloseResult {
            bytes_written: sink.bytes_written() as u64,
            rows_written: self.rows as u64,
            metadata,
            bloom_filter: None,
            column_index,
            offset_index: offset_index.map(|o| o.build()),
        };
        Ok((Bytes::from(sink.into_inner()?), close))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::tests::{parquet_rs, read};
    use crate::runs::ParquetFile;
    use arrow::array::{RecordBatch, TimestampMicrosecondArray, TimestampNanosecondArray};
    use arrow::compute::concat_batches;
    use arrow::datatypes::Schema;
    use parquet::basic::ZstdLevel;
    use parquet::file::metadata::ParquetMetaData;
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
        WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(40_960))
            .set_data_page_row_count_limit(page_rows)
            .set_write_batch_size(1024)
            .set_dictionary_page_size_limit(64 << 10)
            .build()
    }

    fn ours(batches: &[RecordBatch], props: WriterProperties) -> Vec<u8> {
        let mut file = ParquetFile::try_new(batches[0].schema(), props).unwrap();
        for i in 0..6 {
            assert!(file.is_dict(i), "column {i} goes the dictionary way");
        }
        for b in batches {
            file.write(b).unwrap();
        }
        file.into_inner().unwrap()
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
        let meta = |m: &ParquetMetaData, rg: usize, c: usize| m.row_group(rg).column(c).clone();
        assert_eq!(ours_meta.num_row_groups(), theirs_meta.num_row_groups());
        for rg in 0..ours_meta.num_row_groups() {
            for c in 0..6 {
                let at = format!("row group {rg}, column {c}");
                let (o, t) = (meta(&ours_meta, rg, c), meta(&theirs_meta, rg, c));
                assert_eq!(o.statistics(), t.statistics(), "{at}");
                assert_eq!(o.encodings_mask(), t.encodings_mask(), "{at}");
                assert_eq!(
                    o.page_encoding_stats_mask(),
                    t.page_encoding_stats_mask(),
                    "{at}"
                );
                assert_eq!(o.num_values(), t.num_values(), "{at}");
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
                assert_eq!(ci(&ours_meta), ci(&theirs_meta), "{at}: column index");
                let rows = |m: &ParquetMetaData| {
                    let o = &m.offset_index().unwrap()[rg][c];
                    let first: Vec<i64> = o
                        .page_locations()
                        .iter()
                        .map(|p| p.first_row_index)
                        .collect();
                    (first, o.unencoded_byte_array_data_bytes().cloned())
                };
                assert_eq!(rows(&ours_meta), rows(&theirs_meta), "{at}: pages");
            }
        }
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
}
