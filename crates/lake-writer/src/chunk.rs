//! What silt's own column writers ([`crate::runs`], [`crate::plain`], [`crate::numbers`])
//! share at the end of a column chunk: the boundary order of its column index, and the
//! close result parquet-rs's writer would return for it.

use bytes::Bytes;
use parquet::basic::BoundaryOrder;
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::Result;
use parquet::file::metadata::{ColumnChunkMetaData, ColumnIndexBuilder, OffsetIndexBuilder};
use parquet::file::writer::TrackedWrite;

/// Whether the pages' minimums and maximums go up, or down, from each page to the next (the
/// column index's boundary order), as parquet-rs judges it: pages of nulls only left out.
#[derive(Debug)]
pub(crate) struct PageOrder<T> {
    last: Option<(T, T)>,
    ascending: bool,
    descending: bool,
}

impl<T: PartialOrd> PageOrder<T> {
    pub(crate) fn new() -> Self {
        Self {
            last: None,
            ascending: true,
            descending: true,
        }
    }

    /// The next page's minimum and maximum.
    pub(crate) fn page(&mut self, min: T, max: T) {
        if let Some((last_min, last_max)) = &self.last {
            if *last_min > min || *last_max > max {
                self.ascending = false;
            }
            if min > *last_min || max > *last_max {
                self.descending = false;
            }
        }
        self.last = Some((min, max));
    }

    pub(crate) fn order(&self) -> BoundaryOrder {
        match (self.ascending, self.descending) {
            (true, _) => BoundaryOrder::ASCENDING,
            (false, true) => BoundaryOrder::DESCENDING,
            (false, false) => BoundaryOrder::UNORDERED,
        }
    }
}

/// A column chunk written into `sink`: its bytes, and its close result (the column index
/// only when it is valid: statistics of pages kept).
pub(crate) fn closed_chunk(
    sink: TrackedWrite<Vec<u8>>,
    rows: usize,
    metadata: ColumnChunkMetaData,
    column_index: Option<ColumnIndexBuilder>,
    offset_index: Option<OffsetIndexBuilder>,
) -> Result<(Bytes, ColumnCloseResult)> {
    let column_index = match column_index {
        Some(index) if index.valid() => Some(index.build()?),
        _ => None,
    };
    let close = ColumnCloseResult {
        bytes_written: sink.bytes_written() as u64,
        rows_written: rows as u64,
        metadata,
        bloom_filter: None,
        column_index,
        offset_index: offset_index.map(|o| o.build()),
    };
    Ok((Bytes::from(sink.into_inner()?), close))
}
