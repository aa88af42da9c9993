//! # silt-wire: how one event travels
//!
//! The pieces that producers, the gateway, the registry and the consumers share (SPEC 2-3):
//!
//! * [`Schema`]: an Avro schema parsed into one small model, with its Parsing Canonical Form
//!   and SHA-256 [`Fingerprint`] computed as the Avro specification says (logical-type
//!   attributes stripped), so that fingerprints agree with every other Avro implementation;
//! * [`Framing`]: the `0x81 | fingerprint | body` envelope, and the single-object and
//!   Confluent framings as alternatives;
//! * [`BodyCheck`]: decides whether a body is exactly one value of its writer schema, before
//!   any columnar decoder sees it, and pulls out the event's `uuid`;
//! * [`timeuuid`]: version-1 UUIDs, the event time and the deduplication key;
//! * [`resolution`]: the Avro resolution rules as a field-by-field report;
//! * [`json`]: plain JSON events to Avro bodies, and [`ocf`]: object container files, the two
//!   ways the gateway takes events besides the envelope.
//!
//! ```
//! use silt_wire::{BodyCheck, Framing, Schema, envelope, encode, timeuuid};
//!
//! let schema = Schema::parse(r#"{"type":"record","name":"Viewed","namespace":"shop.v1",
//!     "fields":[{"name":"uuid","type":"gfc.avro.UUID"},{"name":"productId","type":"long"}]}"#)?;
//! let id = timeuuid::TimeUuidGenerator::random().next();
//! let mut body = id.to_vec();
//! encode::long(42, &mut body);
//! let record = envelope(&schema.fingerprint(), &body);
//!
//! let framed = Framing::Envelope.split(&record)?;
//! let checked = BodyCheck::new(&schema).check(framed.body)?;
//! assert_eq!(checked.uuid, Some(id));
//! # Ok::<(), silt_wire::Error>(())
//! ```

mod body;
mod envelope;
mod fingerprint;
pub mod json;
pub mod ocf;
pub mod resolution;
mod schema;
pub mod testing;
pub mod timeuuid;

pub use body::{decimal_i128, encode, zigzag, BodyCheck, CheckedBody};
pub use envelope::{
    envelope, write_envelope, Framed, Framing, WriterRef, CONFLUENT_MAGIC, ENVELOPE_HEADER,
    ENVELOPE_PREFIX_LEN, SINGLE_OBJECT_MAGIC,
};
pub use fingerprint::{rabin_fingerprint, Fingerprint};
pub use schema::{
    is_currency_code, is_currency_field, names_differing_in_case, Field, Logical, NamedKind,
    NamedType, Primitive, Schema, Type, ARRIVAL_TIME, DURATION_PARTS, EVENT_TIME, FINGERPRINT,
    MAX_DECIMAL_DIGITS, METADATA_COLUMNS, MONEY, SEQUENCE, SHARD, STANDARD_TYPES, STREAM,
};

/// Errors of schemas and records. The record variants are the reasons a record is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The schema text is not a valid Avro schema.
    #[error("invalid schema at {path:?}: {reason}")]
    InvalidSchema { path: String, reason: String },
    /// Not 64 lower-case hex digits.
    #[error("`{text}` is not a fingerprint (64 lower-case hex digits)")]
    InvalidFingerprint { text: String },
    /// The record is shorter than its framing's prefix.
    #[error("record too short: {len} bytes, the framing needs at least {min}")]
    TooShort { len: usize, min: usize },
    /// The record does not start with the framing's header.
    #[error("bad header: found 0x{found}, expected 0x{expected}")]
    BadHeader {
        found: String,
        expected: &'static str,
    },
    /// The framing names a writer schema the registry does not know.
    #[error("unknown writer schema: {writer}")]
    UnknownWriter { writer: WriterRef },
    /// The writer schema is of the reader's subject but cannot be read with the reader schema
    /// (a version registered without a compatibility rule, say).
    #[error("writer schema {writer} cannot be read with the subject's latest schema: {reason}")]
    UnreadableWriter { writer: WriterRef, reason: String },
    /// The body is not a value of its writer schema.
    #[error("body does not decode at byte {offset}: {reason}")]
    BadBody { offset: usize, reason: String },
    /// The body is a value of its writer schema that breaks a rule of a standard type (a
    /// `gfc.avro.Money` currency that is not an ISO 4217 code): found by a
    /// [`BodyCheck::strict`] check only.
    #[error("body breaks a rule of its schema at byte {offset}: {reason}")]
    BrokenRule { offset: usize, reason: String },
    /// The body holds more bytes after one whole value.
    #[error("{count} trailing bytes after the record")]
    TrailingBytes { count: usize },
    /// The event's `uuid` is not a usable TimeUuid.
    #[error("bad uuid: {reason}")]
    BadUuid { reason: String },
    /// An Avro object container file is malformed.
    #[error("bad object container file at byte {offset}: {reason}")]
    BadContainer {
        offset: usize,
        /// The record (counted from 0 across blocks) that broke, when one did.
        record: Option<usize>,
        reason: String,
    },
    /// An Avro object container file's blocks decompress to more than the reader allows.
    #[error("the object container file's blocks decompress to more than {limit} bytes (passed in block {block})")]
    ContainerTooLarge { block: usize, limit: usize },
}

impl Error {
    /// A short stable code for the rejected-records table (`too_short`, `bad_header`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidSchema { .. } => "invalid_schema",
            Error::InvalidFingerprint { .. } => "invalid_fingerprint",
            Error::TooShort { .. } => "too_short",
            Error::BadHeader { .. } => "bad_header",
            Error::UnknownWriter { .. } => "unknown_fingerprint",
            Error::UnreadableWriter { .. } => "unreadable_writer",
            Error::BadBody { .. } => "bad_body",
            Error::BrokenRule { .. } => "broken_rule",
            Error::TrailingBytes { .. } => "trailing_bytes",
            Error::BadUuid { .. } => "bad_uuid",
            Error::BadContainer { .. } => "bad_container",
            Error::ContainerTooLarge { .. } => "container_too_large",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
