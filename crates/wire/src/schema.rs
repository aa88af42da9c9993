//! A parsed Avro schema: the one model that the canonical form, the body check and the
//! compatibility report all walk.
//!
//! Why our own model rather than a crate's: the canonical form must follow the Avro
//! specification byte for byte (apache-avro 0.22 keeps logical-type attributes and so computes
//! other fingerprints than every other implementation), the body check must be a tight loop
//! over a compiled tree, and the compatibility report must name each offending field by path.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::fingerprint::{rabin_fingerprint, Fingerprint};
use crate::{Error, Result};

/// An Avro primitive type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Primitive {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
}

impl Primitive {
    /// The type's name in the Avro specification.
    pub fn name(self) -> &'static str {
        match self {
            Primitive::Null => "null",
            Primitive::Boolean => "boolean",
            Primitive::Int => "int",
            Primitive::Long => "long",
            Primitive::Float => "float",
            Primitive::Double => "double",
            Primitive::Bytes => "bytes",
            Primitive::String => "string",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "null" => Primitive::Null,
            "boolean" => Primitive::Boolean,
            "int" => Primitive::Int,
            "long" => Primitive::Long,
            "float" => Primitive::Float,
            "double" => Primitive::Double,
            "bytes" => Primitive::Bytes,
            "string" => Primitive::String,
            _ => return None,
        })
    }
}

/// An Avro logical type annotation. It does not change the binary encoding, so the canonical
/// form strips it; the lake maps it to the matching Arrow/Parquet type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Logical {
    Date,
    TimeMillis,
    TimeMicros,
    TimestampMillis,
    TimestampMicros,
    LocalTimestampMillis,
    LocalTimestampMicros,
    Decimal {
        precision: u32,
        scale: u32,
    },
    Uuid,
    Duration,
    /// A logical type this model does not know: kept for readers, ignored otherwise, as the
    /// specification asks.
    Other(String),
}

impl Logical {
    /// The values a date, time or timestamp may hold in the lake: dates and timestamps of the
    /// years 1 to 9999 (what ISO-8601 text can say, and what Spark, pandas and pyarrow's
    /// Python values take: one row beyond made a whole table unreadable to them), a time of
    /// day from midnight to the last tick before the next. Avro's types hold more; the
    /// gateway's strict check refuses the rest ([`crate::BodyCheck::strict`]).
    pub fn range(&self) -> Option<std::ops::RangeInclusive<i64>> {
        const FIRST_MS: i64 = -62_135_596_800_000; // 0001-01-01T00:00:00Z
        const LAST_MS: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
        Some(match self {
            Logical::Date => -719_162..=2_932_896, // 0001-01-01 ..= 9999-12-31
            Logical::TimeMillis => 0..=86_399_999,
            Logical::TimeMicros => 0..=86_399_999_999,
            Logical::TimestampMillis | Logical::LocalTimestampMillis => FIRST_MS..=LAST_MS,
            Logical::TimestampMicros | Logical::LocalTimestampMicros => {
                FIRST_MS * 1000..=LAST_MS * 1000 + 999
            }
            _ => return None,
        })
    }

    /// Why `value` is outside [`Self::range`], in a producer's words.
    pub fn out_of_range(&self, value: i64) -> String {
        match self {
            Logical::Date => format!(
                "date {value} (days since 1970-01-01) is not of a year from 1 to 9999"
            ),
            Logical::TimeMillis | Logical::TimeMicros => format!(
                "{self} {value} is not a time of day (from midnight to the last {} before the next)",
                if *self == Logical::TimeMillis { "millisecond" } else { "microsecond" }
            ),
            _ => format!(
                "{self} {value} is not of a year from 1 to 9999 (a finer unit sent as {}?)",
                if matches!(self, Logical::TimestampMillis | Logical::LocalTimestampMillis) {
                    "milliseconds"
                } else {
                    "microseconds"
                }
            ),
        }
    }
}

impl std::fmt::Display for Logical {
    /// As a schema spells it: `timestamp-millis`, `decimal(10, 2)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Logical::Date => f.write_str("date"),
            Logical::TimeMillis => f.write_str("time-millis"),
            Logical::TimeMicros => f.write_str("time-micros"),
            Logical::TimestampMillis => f.write_str("timestamp-millis"),
            Logical::TimestampMicros => f.write_str("timestamp-micros"),
            Logical::LocalTimestampMillis => f.write_str("local-timestamp-millis"),
            Logical::LocalTimestampMicros => f.write_str("local-timestamp-micros"),
            Logical::Decimal { precision, scale } => write!(f, "decimal({precision}, {scale})"),
            Logical::Uuid => f.write_str("uuid"),
            Logical::Duration => f.write_str("duration"),
            Logical::Other(name) => f.write_str(name),
        }
    }
}

/// The most digits a decimal may have: what the lake's widest decimal (Arrow's 256-bit
/// Decimal256) holds, and what a 32-byte two's complement holds whole.
pub const MAX_DECIMAL_DIGITS: u32 = 76;

/// The first two of `names` that differ only in case (`x`, `X`), the later one second: what
/// Spark and Hive, which read column names without case, refuse in one table.
pub fn names_differing_in_case<'a>(names: &[&'a str]) -> Option<(&'a str, &'a str)> {
    names.iter().enumerate().find_map(|(k, b)| {
        names[..k]
            .iter()
            .find(|a| a.eq_ignore_ascii_case(b))
            .map(|a| (*a, *b))
    })
}

/// The parts of an Avro `duration`, in its bytes' order: the lake's struct fields, and the
/// gateway's JSON keys for one.
pub const DURATION_PARTS: [&str; 3] = ["months", "days", "milliseconds"];

/// One node of a schema. Named types (records, enums, fixed) live in [`Schema::named`] and are
/// referred to by index, so that recursive types need no reference counting.
#[derive(Debug, Clone, PartialEq)]
pub enum Type {
    Primitive(Primitive, Option<Logical>),
    Array(Box<Type>),
    Map(Box<Type>),
    Union(Vec<Type>),
    Named(usize),
}

/// A record, enum or fixed type with its full name.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedType {
    /// Full name (`namespace.name`).
    pub name: String,
    /// Full names this type is also known by (resolution matches them).
    pub aliases: Vec<String>,
    pub kind: NamedKind,
}

impl NamedType {
    /// The name without its namespace.
    pub fn short_name(&self) -> &str {
        self.name.rsplit('.').next().unwrap_or(&self.name)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum NamedKind {
    Record(Vec<Field>),
    Enum {
        symbols: Vec<String>,
        default: Option<String>,
    },
    Fixed {
        size: usize,
        logical: Option<Logical>,
    },
}

/// A record field.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub aliases: Vec<String>,
    pub ty: Type,
    /// The field's default (JSON, as written), used when a reader has the field and the writer
    /// does not.
    pub default: Option<Value>,
}

/// The standard named types every schema may refer to without defining them (SPEC 4).
pub const STANDARD_TYPES: &[(&str, &str)] = &[
    (
        "gfc.avro.UUID",
        r#"{"type":"fixed","name":"UUID","namespace":"gfc.avro","size":16}"#,
    ),
    (
        "gfc.avro.Money",
        r#"{"type":"record","name":"Money","namespace":"gfc.avro","doc":"An amount of money: a decimal amount and its ISO 4217 currency code.","fields":[{"name":"amount","type":{"type":"bytes","logicalType":"decimal","precision":20,"scale":4}},{"name":"currency","type":"string","doc":"ISO 4217 code, e.g. USD"}]}"#,
    ),
];

/// Names of the metadata columns every raw row of the lake carries beside the event's fields
/// (SPEC 8); an event schema's top-level field may not take one.
pub const EVENT_TIME: &str = "_event_time";
pub const ARRIVAL_TIME: &str = "_arrival_time";
pub const STREAM: &str = "_stream";
pub const SHARD: &str = "_shard";
pub const SEQUENCE: &str = "_sequence";
pub const FINGERPRINT: &str = "_fingerprint";
/// The metadata columns, in the lake's order.
pub const METADATA_COLUMNS: [&str; 6] = [
    EVENT_TIME,
    ARRIVAL_TIME,
    STREAM,
    SHARD,
    SEQUENCE,
    FINGERPRINT,
];

/// The full name of the standard money type: a decimal `amount` and an ISO 4217 `currency`.
pub const MONEY: &str = "gfc.avro.Money";

/// Whether `field` of the record named `record` is a [`MONEY`] currency, whose values must be
/// ISO 4217 codes ([`is_currency_code`]): a rule of the standard type that Avro's `string`
/// does not carry, and that the gateway checks at the door.
pub fn is_currency_field(record: &str, field: &Field) -> bool {
    record == MONEY
        && field.name == "currency"
        && matches!(field.ty, Type::Primitive(Primitive::String, None))
}

/// Whether `code` has the form of an ISO 4217 currency code: three capital Latin letters
/// (`USD`, `EUR`, `XAU`). The form, not the list of codes in use, which ISO changes (a code
/// new to the list must not be refused at the door).
pub fn is_currency_code(code: &[u8]) -> bool {
    code.len() == 3 && code.iter().all(u8::is_ascii_uppercase)
}

/// A parsed, self-contained Avro schema with its canonical form and fingerprints.
#[derive(Debug, Clone)]
pub struct Schema {
    root: Type,
    named: Vec<NamedType>,
    json: String,
    canonical: String,
    fingerprint: Fingerprint,
    rabin: u64,
}

impl PartialEq for Schema {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint
    }
}

impl Schema {
    /// Parses a schema from its JSON text. References to the [`STANDARD_TYPES`] that the text
    /// does not define are filled in, so the result (see [`Schema::json`]) is self-contained.
    pub fn parse(text: &str) -> Result<Self> {
        // A byte order mark, which Windows editors put before a file's text: not part of the
        // JSON (it was refused as "not JSON at line 1 column 1", the text looking right).
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let value: Value = serde_json::from_str(text).map_err(|e| Error::InvalidSchema {
            path: String::new(),
            reason: format!("not JSON: {e}"),
        })?;
        let mut parser = Parser::default();
        let root = parser.parse(&value, "", "")?;
        let named = parser.named;
        let json = if parser.used_standard.is_empty() {
            text.to_string()
        } else {
            // Inline the standard definitions where they are first used.
            let mut inlined = value.clone();
            let mut done = Vec::new();
            inline_standard(&mut inlined, "", &mut done);
            serde_json::to_string(&inlined).expect("a JSON value serialises")
        };
        let mut canonical = String::with_capacity(json.len());
        let mut emitted = vec![false; named.len()];
        write_canonical(&root, &named, &mut emitted, &mut canonical);
        let fingerprint = Fingerprint::of_canonical(&canonical);
        let rabin = rabin_fingerprint(canonical.as_bytes());
        Ok(Schema {
            root,
            named,
            json,
            canonical,
            fingerprint,
            rabin,
        })
    }

    /// The top-level type.
    pub fn root(&self) -> &Type {
        &self.root
    }

    /// The named types, in order of definition.
    pub fn named(&self) -> &[NamedType] {
        &self.named
    }

    /// A named type by index (from [`Type::Named`]).
    pub fn named_type(&self, index: usize) -> &NamedType {
        &self.named[index]
    }

    /// The full name of the top-level type, if it is named: the registry subject.
    pub fn full_name(&self) -> Option<&str> {
        match &self.root {
            Type::Named(i) => Some(&self.named[*i].name),
            _ => None,
        }
    }

    /// The top-level record's fields (empty when the root is not a record).
    pub fn fields(&self) -> &[Field] {
        match &self.root {
            Type::Named(i) => match &self.named[*i].kind {
                NamedKind::Record(fields) => fields,
                _ => &[],
            },
            _ => &[],
        }
    }

    /// Where a record holds itself (directly or further down), if anywhere: the path of the
    /// reference (`/fields/root/type/fields/kids/type/items`) and the record's full name.
    /// Avro allows such types (trees, lists); columns cannot hold them, having a fixed depth.
    pub fn recursion(&self) -> Option<(String, String)> {
        fn visit(
            s: &Schema,
            t: &Type,
            path: &str,
            open: &mut Vec<usize>,
        ) -> Option<(String, String)> {
            match t {
                Type::Primitive(..) => None,
                Type::Array(items) => visit(s, items, &format!("{path}/items"), open),
                Type::Map(values) => visit(s, values, &format!("{path}/values"), open),
                Type::Union(branches) => branches.iter().find_map(|b| visit(s, b, path, open)),
                Type::Named(i) => {
                    if open.contains(i) {
                        return Some((path.to_string(), s.named[*i].name.clone()));
                    }
                    let NamedKind::Record(fields) = &s.named[*i].kind else {
                        return None;
                    };
                    open.push(*i);
                    let found = fields.iter().find_map(|f| {
                        visit(s, &f.ty, &format!("{path}/fields/{}/type", f.name), open)
                    });
                    open.pop();
                    found
                }
            }
        }
        visit(self, &self.root, "", &mut Vec::new())
    }

    /// The first type, in schema order, of which `found` says something, with its path
    /// (`/fields/a/type/items`). Each named record is looked into once: a schema that holds
    /// itself is walked without end by no one ([`Self::recursion`] tells where it does).
    fn find_type<T>(&self, found: &dyn Fn(&Type, &str) -> Option<T>) -> Option<(String, T)> {
        fn visit<T>(
            s: &Schema,
            t: &Type,
            path: &str,
            found: &dyn Fn(&Type, &str) -> Option<T>,
            seen: &mut Vec<usize>,
        ) -> Option<(String, T)> {
            if let Some(v) = found(t, path) {
                return Some((path.to_string(), v));
            }
            match t {
                Type::Primitive(..) => None,
                Type::Array(items) => visit(s, items, &format!("{path}/items"), found, seen),
                Type::Map(values) => visit(s, values, &format!("{path}/values"), found, seen),
                Type::Union(branches) => {
                    branches.iter().find_map(|b| visit(s, b, path, found, seen))
                }
                Type::Named(i) => {
                    let NamedKind::Record(fields) = &s.named[*i].kind else {
                        return None;
                    };
                    if seen.contains(i) {
                        return None;
                    }
                    seen.push(*i);
                    fields.iter().find_map(|f| {
                        visit(
                            s,
                            &f.ty,
                            &format!("{path}/fields/{}/type", f.name),
                            found,
                            seen,
                        )
                    })
                }
            }
        }
        visit(self, &self.root, "", found, &mut Vec::new())
    }

    /// Where a decimal of more digits than the lake's decimals hold (76: Arrow's Decimal256)
    /// is, if anywhere: its path and precision. Avro puts no bound on a `bytes` decimal (nor on
    /// a wide `fixed`'s); arrow-avro refuses to decode one, which stopped every run of a job.
    pub fn too_wide_decimal(&self) -> Option<(String, u32)> {
        self.decimal_wider_than(MAX_DECIMAL_DIGITS)
    }

    /// Where a decimal of more than `digits` digits is, if anywhere: its path and precision.
    pub fn decimal_wider_than(&self, digits: u32) -> Option<(String, u32)> {
        let wide = |l: &Option<Logical>| match l {
            Some(Logical::Decimal { precision, .. }) if *precision > digits => Some(*precision),
            _ => None,
        };
        self.find_type(&|t, _| match t {
            Type::Primitive(_, logical) => wide(logical),
            Type::Named(i) => match &self.named[*i].kind {
                NamedKind::Fixed { logical, .. } => wide(logical),
                _ => None,
            },
            _ => None,
        })
    }

    /// Where a record with no fields is, if anywhere: its path and full name. Avro allows
    /// one; arrow-avro cannot decode it (an Arrow struct of no fields has no length) and
    /// Parquet has no empty group, so every event of such a schema was rejected by the jobs
    /// after the gateway had taken it.
    pub fn empty_record(&self) -> Option<(String, String)> {
        self.find_type(&|t, _| match t {
            Type::Named(i) => match &self.named[*i].kind {
                NamedKind::Record(fields) if fields.is_empty() => Some(self.named[*i].name.clone()),
                _ => None,
            },
            _ => None,
        })
    }

    /// Where a record within the event (not the event's own) has a field of the `null` type,
    /// if anywhere: the field's path and the record's full name. arrow-avro cannot decode one
    /// ("unmasked nulls for non-nullable StructArray field"), so every event of such a schema
    /// was rejected by the jobs after the gateway had taken it. (The event's own `null`
    /// fields are nullable columns.)
    pub fn null_field_in_record(&self) -> Option<(String, String)> {
        self.find_type(&|t, path| {
            let Type::Named(i) = t else { return None };
            let NamedKind::Record(fields) = &self.named[*i].kind else {
                return None;
            };
            if path.is_empty() {
                return None;
            }
            fields
                .iter()
                .find(|f| matches!(f.ty, Type::Primitive(Primitive::Null, _)))
                .map(|f| (f.name.clone(), self.named[*i].name.clone()))
        })
        .map(|(path, (field, record))| (format!("{path}/fields/{field}"), record))
    }

    /// Two fields of one record whose names differ only in case (`x` and `X`), if any: the
    /// path of the second and why. Avro tells them apart and so does silt, but Spark and Hive
    /// read column names without case and refuse a table that has both ("the column `x`
    /// already exists"); likewise a top-level field named as a metadata column in other
    /// letters (`_Stream`).
    pub fn case_clash(&self) -> Option<(String, String)> {
        if let Some(f) = self.fields().iter().find(|f| {
            METADATA_COLUMNS
                .iter()
                .any(|m| m.eq_ignore_ascii_case(&f.name) && *m != f.name)
        }) {
            return Some((
                format!("/fields/{}", f.name),
                format!(
                    "`{}` differs only in case from a metadata column every row of the lake carries ({}): Spark and Hive read names without case and would refuse the table; rename the field",
                    f.name,
                    METADATA_COLUMNS.join(", ")
                ),
            ));
        }
        self.find_type(&|t, _| {
            let Type::Named(i) = t else { return None };
            let NamedKind::Record(fields) = &self.named[*i].kind else {
                return None;
            };
            let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
            names_differing_in_case(&names).map(|(a, b)| (a.to_string(), b.to_string()))
        })
        .map(|(path, (a, b))| {
            (
                format!("{path}/fields/{b}"),
                format!(
                    "fields `{a}` and `{b}` differ only in case: Spark and Hive read column names without case and refuse a table that has both; rename one"
                ),
            )
        })
    }

    /// Why the registry refuses this schema, if it does: [`Self::not_an_event`], and what
    /// would make the lake unreadable to outside readers: [`Self::case_clash`], and a decimal
    /// of more than 38 digits (Spark refuses a table with one, "precision 40 exceeds max
    /// precision 38"; DuckDB reads one as a double, and not its value). (Schemas registered
    /// before a rule are still read: jobs and the gateway ask only the first.)
    pub fn refused_at_registration(&self) -> Option<(String, String)> {
        self.not_an_event()
            .or_else(|| self.case_clash())
            .or_else(|| {
                self.decimal_wider_than(38).map(|(path, precision)| {
                    (path, format!(
                        "a decimal of precision {precision}: Spark reads decimals of at most 38 digits (it refuses a table with a wider one) and DuckDB reads a wider one as a double, not its value"
                    ))
                })
            })
    }

    /// Why this schema cannot be an event schema of the lake, if it cannot: where (a path)
    /// and why. The registry refuses such schemas; a job stops on a reader that is one.
    /// - a record that holds itself ([`Self::recursion`]): columns have a fixed depth;
    /// - a record with no fields ([`Self::empty_record`]), or a `null` field in a record
    ///   within the event ([`Self::null_field_in_record`]);
    /// - a decimal of more than 76 digits ([`Self::too_wide_decimal`]);
    /// - a top-level field named as a metadata column ([`METADATA_COLUMNS`], SPEC 8);
    /// - no top-level `uuid` field, a 16-byte fixed or a string (SPEC 3).
    pub fn not_an_event(&self) -> Option<(String, String)> {
        if let Some((path, name)) = self.recursion() {
            return Some((path, format!(
                "record `{name}` holds itself here: a recursive type cannot be stored in the lake's columns, which have a fixed depth (flatten it, e.g. a list of nodes with parent ids)"
            )));
        }
        if let Some((path, name)) = self.empty_record() {
            return Some((path, format!(
                "record `{name}` has no fields: the lake's columns cannot hold it (Parquet has no empty group); give it a field, or make the field a boolean or null"
            )));
        }
        if let Some((path, name)) = self.null_field_in_record() {
            return Some((path, format!(
                "a field of type `null` in record `{name}`: the jobs cannot decode it there (every event would be rejected); drop the field, or make it a union of null and a type"
            )));
        }
        if let Some((path, precision)) = self.too_wide_decimal() {
            return Some((path, format!(
                "a decimal of precision {precision}: the lake's decimals hold at most {} digits (Arrow's Decimal256, Parquet's widest readers)",
                MAX_DECIMAL_DIGITS
            )));
        }
        if let Some(f) = self
            .fields()
            .iter()
            .find(|f| METADATA_COLUMNS.contains(&f.name.as_str()))
        {
            return Some((format!("/fields/{}", f.name), format!(
                "`{}` is the name of a metadata column every row of the lake carries ({}): rename the field",
                f.name,
                METADATA_COLUMNS.join(", ")
            )));
        }
        if !crate::BodyCheck::new(self).has_uuid() {
            let (path, found) = match self.fields().iter().find(|f| f.name == "uuid") {
                Some(f) => (
                    "/fields/uuid/type",
                    format!(", not `{}`", f.ty.describe(self)),
                ),
                None => ("/fields", String::new()),
            };
            return Some((path.to_string(), format!(
                "an event schema needs a top-level `uuid` field, a 16-byte fixed (gfc.avro.UUID) or a string with logicalType uuid{found}: it is the event's id and time"
            )));
        }
        None
    }

    /// The schema's JSON text (self-contained: standard types are inlined).
    pub fn json(&self) -> &str {
        &self.json
    }

    /// The Parsing Canonical Form (Avro specification).
    pub fn canonical_form(&self) -> &str {
        &self.canonical
    }

    /// SHA-256 of the Parsing Canonical Form: the envelope's fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// CRC-64-AVRO (Rabin) of the Parsing Canonical Form: the single-object encoding's
    /// fingerprint.
    pub fn rabin_fingerprint(&self) -> u64 {
        self.rabin
    }
}

fn invalid(path: &str, reason: impl Into<String>) -> Error {
    Error::InvalidSchema {
        path: path.to_string(),
        reason: reason.into(),
    }
}

fn full_name(name: &str, namespace: Option<&str>, enclosing: &str) -> (String, String) {
    if let Some(dot) = name.rfind('.') {
        return (name.to_string(), name[..dot].to_string());
    }
    let ns = namespace.unwrap_or(enclosing);
    if ns.is_empty() {
        (name.to_string(), String::new())
    } else {
        (format!("{ns}.{name}"), ns.to_string())
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|part| {
            let mut chars = part.chars();
            matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

#[derive(Default)]
struct Parser {
    named: Vec<NamedType>,
    by_name: HashMap<String, usize>,
    used_standard: Vec<String>,
}

impl Parser {
    fn parse(&mut self, value: &Value, ns: &str, path: &str) -> Result<Type> {
        match value {
            Value::String(name) => self.parse_name(name, ns, path),
            Value::Array(branches) => {
                let mut types = Vec::with_capacity(branches.len());
                for (i, branch) in branches.iter().enumerate() {
                    let ty = self.parse(branch, ns, &format!("{path}/{i}"))?;
                    if matches!(ty, Type::Union(_)) {
                        return Err(invalid(path, "a union may not directly contain a union"));
                    }
                    let key = self.union_key(&ty);
                    if types.iter().any(|t| self.union_key(t) == key) {
                        return Err(invalid(
                            path,
                            format!("union has two branches of type {key}"),
                        ));
                    }
                    types.push(ty);
                }
                Ok(Type::Union(types))
            }
            Value::Object(obj) => self.parse_object(obj, ns, path),
            other => Err(invalid(
                path,
                format!("a type must be a name, an object or an array, not {other}"),
            )),
        }
    }

    fn union_key(&self, ty: &Type) -> String {
        match ty {
            Type::Primitive(p, _) => p.name().to_string(),
            Type::Array(_) => "array".into(),
            Type::Map(_) => "map".into(),
            Type::Union(_) => "union".into(),
            Type::Named(i) => self.named[*i].name.clone(),
        }
    }

    fn parse_name(&mut self, name: &str, ns: &str, path: &str) -> Result<Type> {
        if let Some(p) = Primitive::from_name(name) {
            return Ok(Type::Primitive(p, None));
        }
        let (full, _) = full_name(name, None, ns);
        if let Some(&i) = self.by_name.get(&full).or_else(|| self.by_name.get(name)) {
            return Ok(Type::Named(i));
        }
        for candidate in [full.as_str(), name] {
            if let Some((std_name, text)) = STANDARD_TYPES.iter().find(|(n, _)| *n == candidate) {
                let value: Value =
                    serde_json::from_str(text).expect("standard types are valid JSON");
                self.used_standard.push(std_name.to_string());
                return self.parse(&value, "", path);
            }
        }
        Err(invalid(path, format!("unknown type `{name}`")))
    }

    fn parse_object(&mut self, obj: &Map<String, Value>, ns: &str, path: &str) -> Result<Type> {
        let ty = obj
            .get("type")
            .ok_or_else(|| invalid(path, "an object type needs a `type` attribute"))?;
        let type_name = match ty {
            Value::String(s) => s.as_str(),
            // `{"type": {...}}` or `{"type": [...]}`: the attributes wrap a nested type.
            other => return self.parse(other, ns, &format!("{path}/type")),
        };
        match type_name {
            "record" | "error" => self.parse_record(obj, ns, path),
            "enum" => self.parse_enum(obj, ns, path),
            "fixed" => {
                let size = obj
                    .get("size")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| invalid(path, "fixed needs a non-negative integer `size`"))?
                    as usize;
                let logical = logical_of(obj, path)?;
                if let Some(Logical::Decimal { precision, .. }) = &logical {
                    let max = max_decimal_precision(size);
                    if *precision as u64 > max {
                        return Err(invalid(
                            path,
                            format!("decimal precision {precision} does not fit in fixed({size}) (at most {max})"),
                        ));
                    }
                }
                if logical == Some(Logical::Uuid) && size != 16 {
                    return Err(invalid(path, "a uuid fixed must have size 16"));
                }
                self.define(obj, ns, path, |_| Ok(NamedKind::Fixed { size, logical }))
            }
            "array" => {
                let items = obj
                    .get("items")
                    .ok_or_else(|| invalid(path, "array needs `items`"))?;
                Ok(Type::Array(Box::new(self.parse(
                    items,
                    ns,
                    &format!("{path}/items"),
                )?)))
            }
            "map" => {
                let values = obj
                    .get("values")
                    .ok_or_else(|| invalid(path, "map needs `values`"))?;
                Ok(Type::Map(Box::new(self.parse(
                    values,
                    ns,
                    &format!("{path}/values"),
                )?)))
            }
            other => match Primitive::from_name(other) {
                Some(p) => Ok(Type::Primitive(p, logical_of(obj, path)?)),
                None => self.parse_name(other, ns, path),
            },
        }
    }

    /// Registers a named type before parsing its body, so that the body may refer to it.
    fn define(
        &mut self,
        obj: &Map<String, Value>,
        ns: &str,
        path: &str,
        body: impl FnOnce(&mut Self) -> Result<NamedKind>,
    ) -> Result<Type> {
        let name = obj
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(path, "a named type needs a string `name`"))?;
        let namespace = obj.get("namespace").and_then(Value::as_str);
        let (full, _) = full_name(name, namespace, ns);
        if !valid_name(&full) {
            return Err(invalid(path, format!("`{full}` is not a valid Avro name")));
        }
        if Primitive::from_name(name).is_some() {
            return Err(invalid(path, format!("`{name}` is a primitive type name")));
        }
        if self.by_name.contains_key(&full) {
            return Err(invalid(path, format!("`{full}` is defined twice")));
        }
        let index = self.named.len();
        self.named.push(NamedType {
            name: full.clone(),
            aliases: Vec::new(),
            kind: NamedKind::Fixed {
                size: 0,
                logical: None,
            },
        });
        self.by_name.insert(full.clone(), index);
        let alias_ns = full
            .rfind('.')
            .map(|d| &full[..d])
            .unwrap_or("")
            .to_string();
        self.named[index].aliases = aliases_of(obj, &alias_ns);
        let kind = body(self)?;
        self.named[index].kind = kind;
        Ok(Type::Named(index))
    }

    fn parse_record(&mut self, obj: &Map<String, Value>, ns: &str, path: &str) -> Result<Type> {
        let name = obj.get("name").and_then(Value::as_str).unwrap_or("");
        let namespace = obj.get("namespace").and_then(Value::as_str);
        let (_, record_ns) = full_name(name, namespace, ns);
        self.define(obj, ns, path, |p| {
            let fields = obj
                .get("fields")
                .and_then(Value::as_array)
                .ok_or_else(|| invalid(path, "a record needs a `fields` array"))?;
            let mut out: Vec<Field> = Vec::with_capacity(fields.len());
            for (i, f) in fields.iter().enumerate() {
                let f = f.as_object().ok_or_else(|| {
                    invalid(&format!("{path}/fields/{i}"), "a field must be an object")
                })?;
                let fname = f.get("name").and_then(Value::as_str).ok_or_else(|| {
                    invalid(
                        &format!("{path}/fields/{i}"),
                        "a field needs a string `name`",
                    )
                })?;
                let fpath = format!("{path}/fields/{fname}");
                if !valid_name(fname) || fname.contains('.') {
                    return Err(invalid(
                        &fpath,
                        format!("`{fname}` is not a valid field name"),
                    ));
                }
                if out.iter().any(|o| o.name == fname) {
                    return Err(invalid(&fpath, format!("field `{fname}` appears twice")));
                }
                let ftype = f
                    .get("type")
                    .ok_or_else(|| invalid(&fpath, "a field needs a `type`"))?;
                let ty = p.parse(ftype, &record_ns, &format!("{fpath}/type"))?;
                let default = f.get("default").cloned();
                if let Some(d) = &default {
                    if let Err(reason) = p.check_default(&ty, d) {
                        return Err(invalid(&format!("{fpath}/default"), reason));
                    }
                }
                let aliases = f
                    .get("aliases")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(Field {
                    name: fname.to_string(),
                    aliases,
                    ty,
                    default,
                });
            }
            Ok(NamedKind::Record(out))
        })
    }

    fn parse_enum(&mut self, obj: &Map<String, Value>, ns: &str, path: &str) -> Result<Type> {
        self.define(obj, ns, path, |_| {
            let symbols: Vec<String> = obj
                .get("symbols")
                .and_then(Value::as_array)
                .ok_or_else(|| invalid(path, "an enum needs a `symbols` array"))?
                .iter()
                .map(|s| {
                    s.as_str()
                        .filter(|s| valid_name(s) && !s.contains('.'))
                        .map(str::to_string)
                        .ok_or_else(|| {
                            invalid(
                                &format!("{path}/symbols"),
                                format!("{s} is not a valid enum symbol"),
                            )
                        })
                })
                .collect::<Result<_>>()?;
            for (i, s) in symbols.iter().enumerate() {
                if symbols[..i].contains(s) {
                    return Err(invalid(
                        &format!("{path}/symbols"),
                        format!("symbol `{s}` appears twice"),
                    ));
                }
            }
            let default = match obj.get("default") {
                None => None,
                Some(Value::String(d)) if symbols.contains(d) => Some(d.clone()),
                Some(d) => {
                    return Err(invalid(
                        &format!("{path}/default"),
                        format!("enum default {d} is not one of its symbols"),
                    ))
                }
            };
            Ok(NamedKind::Enum { symbols, default })
        })
    }

    /// Checks a field default against its type (a union's default matches its first branch).
    fn check_default(&self, ty: &Type, value: &Value) -> std::result::Result<(), String> {
        let ok = match ty {
            Type::Primitive(p, _) => match p {
                Primitive::Null => value.is_null(),
                Primitive::Boolean => value.is_boolean(),
                Primitive::Int => value.as_i64().is_some_and(|v| i32::try_from(v).is_ok()),
                Primitive::Long => value.is_i64() || value.is_u64(),
                Primitive::Float | Primitive::Double => value.is_number(),
                Primitive::Bytes | Primitive::String => value.is_string(),
            },
            Type::Array(items) => match value.as_array() {
                Some(a) => return a.iter().try_for_each(|v| self.check_default(items, v)),
                None => false,
            },
            Type::Map(values) => match value.as_object() {
                Some(m) => return m.values().try_for_each(|v| self.check_default(values, v)),
                None => false,
            },
            Type::Union(branches) => match branches.first() {
                Some(first) => {
                    return self
                        .check_default(first, value)
                        .map_err(|e| format!("a union's default must match its first branch: {e}"))
                }
                None => false,
            },
            Type::Named(i) => match &self.named[*i].kind {
                NamedKind::Record(fields) => match value.as_object() {
                    Some(m) => {
                        return fields
                            .iter()
                            .try_for_each(|f| match (m.get(&f.name), &f.default) {
                                (Some(v), _) => self.check_default(&f.ty, v),
                                (None, Some(_)) => Ok(()),
                                (None, None) => {
                                    Err(format!("default record lacks field `{}`", f.name))
                                }
                            })
                    }
                    None => false,
                },
                NamedKind::Enum { symbols, .. } => value
                    .as_str()
                    .is_some_and(|s| symbols.iter().any(|x| x == s)),
                NamedKind::Fixed { .. } => value.is_string(),
            },
        };
        if ok {
            Ok(())
        } else {
            Err(format!("default {value} does not match the field's type"))
        }
    }
}

fn aliases_of(obj: &Map<String, Value>, ns: &str) -> Vec<String> {
    obj.get("aliases")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|s| full_name(s, None, ns).0)
                .collect()
        })
        .unwrap_or_default()
}

fn max_decimal_precision(size: usize) -> u64 {
    if size == 0 {
        return 0;
    }
    // floor(log10(2^(8*size-1) - 1))
    ((8 * size - 1) as f64 * std::f64::consts::LOG10_2).floor() as u64
}

fn logical_of(obj: &Map<String, Value>, path: &str) -> Result<Option<Logical>> {
    let Some(name) = obj.get("logicalType").and_then(Value::as_str) else {
        return Ok(None);
    };
    Ok(Some(match name {
        "date" => Logical::Date,
        "time-millis" => Logical::TimeMillis,
        "time-micros" => Logical::TimeMicros,
        "timestamp-millis" => Logical::TimestampMillis,
        "timestamp-micros" => Logical::TimestampMicros,
        "local-timestamp-millis" => Logical::LocalTimestampMillis,
        "local-timestamp-micros" => Logical::LocalTimestampMicros,
        "uuid" => Logical::Uuid,
        "duration" => Logical::Duration,
        "decimal" => {
            let precision = obj
                .get("precision")
                .and_then(Value::as_u64)
                .filter(|p| *p > 0)
                .ok_or_else(|| invalid(path, "a decimal needs a positive integer `precision`"))?;
            let scale = obj.get("scale").and_then(Value::as_u64).unwrap_or(0);
            if scale > precision {
                return Err(invalid(
                    path,
                    format!("decimal scale {scale} is larger than its precision {precision}"),
                ));
            }
            Logical::Decimal {
                precision: precision as u32,
                scale: scale as u32,
            }
        }
        other => Logical::Other(other.to_string()),
    }))
}

/// Replaces the first reference to each standard type by its definition (JSON level), so that
/// the stored schema text is self-contained and any Avro library can read it.
fn inline_standard(value: &mut Value, ns: &str, done: &mut Vec<String>) {
    match value {
        Value::String(name) => {
            let full = if name.contains('.') || ns.is_empty() {
                name.clone()
            } else {
                format!("{ns}.{name}")
            };
            let name = name.clone();
            let found = [full.as_str(), name.as_str()]
                .into_iter()
                .find_map(|c| STANDARD_TYPES.iter().find(|(n, _)| *n == c));
            if let Some((std_name, text)) = found {
                if !done.iter().any(|d| d == std_name) {
                    done.push(std_name.to_string());
                    *value = serde_json::from_str(text).expect("standard types are valid JSON");
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| inline_standard(v, ns, done)),
        Value::Object(obj) => {
            let name = obj.get("name").and_then(Value::as_str).map(str::to_string);
            let namespace = obj
                .get("namespace")
                .and_then(Value::as_str)
                .map(str::to_string);
            let inner_ns = match (&name, obj.get("type").and_then(Value::as_str)) {
                (Some(n), Some("record" | "error" | "enum" | "fixed")) => {
                    full_name(n, namespace.as_deref(), ns).1
                }
                _ => ns.to_string(),
            };
            if let Some(name) = &name {
                // A schema may define a standard type itself; then it is not inlined again.
                let full = full_name(name, namespace.as_deref(), ns).0;
                if STANDARD_TYPES.iter().any(|(n, _)| *n == full) && !done.contains(&full) {
                    done.push(full);
                }
            }
            for key in ["type", "items", "values"] {
                if let Some(v) = obj.get_mut(key) {
                    inline_standard(v, &inner_ns, done);
                }
            }
            if let Some(Value::Array(fields)) = obj.get_mut("fields") {
                for f in fields {
                    if let Some(t) = f.get_mut("type") {
                        inline_standard(t, &inner_ns, done);
                    }
                }
            }
        }
        _ => {}
    }
}

fn write_json_string(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).expect("a string serialises"));
}

/// Writes the Parsing Canonical Form: PRIMITIVES, FULLNAMES, STRIP, ORDER, STRINGS, INTEGERS,
/// WHITESPACE, as the Avro specification lists them.
fn write_canonical(ty: &Type, named: &[NamedType], emitted: &mut [bool], out: &mut String) {
    match ty {
        Type::Primitive(p, _) => {
            out.push('"');
            out.push_str(p.name());
            out.push('"');
        }
        Type::Array(items) => {
            out.push_str(r#"{"type":"array","items":"#);
            write_canonical(items, named, emitted, out);
            out.push('}');
        }
        Type::Map(values) => {
            out.push_str(r#"{"type":"map","values":"#);
            write_canonical(values, named, emitted, out);
            out.push('}');
        }
        Type::Union(branches) => {
            out.push('[');
            for (i, b) in branches.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(b, named, emitted, out);
            }
            out.push(']');
        }
        Type::Named(i) => {
            let n = &named[*i];
            if emitted[*i] {
                write_json_string(out, &n.name);
                return;
            }
            emitted[*i] = true;
            out.push_str(r#"{"name":"#);
            write_json_string(out, &n.name);
            match &n.kind {
                NamedKind::Record(fields) => {
                    out.push_str(r#","type":"record","fields":["#);
                    for (k, f) in fields.iter().enumerate() {
                        if k > 0 {
                            out.push(',');
                        }
                        out.push_str(r#"{"name":"#);
                        write_json_string(out, &f.name);
                        out.push_str(r#","type":"#);
                        write_canonical(&f.ty, named, emitted, out);
                        out.push('}');
                    }
                    out.push_str("]}");
                }
                NamedKind::Enum { symbols, .. } => {
                    out.push_str(r#","type":"enum","symbols":["#);
                    for (k, s) in symbols.iter().enumerate() {
                        if k > 0 {
                            out.push(',');
                        }
                        write_json_string(out, s);
                    }
                    out.push_str("]}");
                }
                NamedKind::Fixed { size, .. } => {
                    let _ = write!(out, r#","type":"fixed","size":{size}}}"#);
                }
            }
        }
    }
}

impl Type {
    /// A short human description, for error messages (`long`, `array<string>`, `gfc.avro.UUID`).
    pub fn describe(&self, schema: &Schema) -> String {
        match self {
            Type::Primitive(p, _) => p.name().to_string(),
            Type::Array(items) => format!("array<{}>", items.describe(schema)),
            Type::Map(values) => format!("map<{}>", values.describe(schema)),
            Type::Union(b) => format!(
                "[{}]",
                b.iter()
                    .map(|t| t.describe(schema))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Type::Named(i) => schema.named[*i].name.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_that_holds_itself_is_found_with_the_path_of_the_reference() {
        let rec = |fields: &str| {
            Schema::parse(&format!(
                r#"{{"type":"record","name":"E","namespace":"t","fields":[{fields}]}}"#
            ))
            .unwrap()
        };
        let list = rec(
            r#"{"name":"head","type":{"type":"record","name":"Cell","fields":[
            {"name":"v","type":"int"},{"name":"next","type":["null","Cell"]}]}}"#,
        );
        assert_eq!(
            list.recursion(),
            Some(("/fields/head/type/fields/next/type".into(), "t.Cell".into()))
        );
        let indirect = rec(r#"{"name":"a","type":{"type":"record","name":"A","fields":[
            {"name":"b","type":{"type":"map","values":{"type":"record","name":"B","fields":[
                {"name":"a","type":"A"}]}}}]}}"#);
        assert_eq!(
            indirect.recursion(),
            Some((
                "/fields/a/type/fields/b/type/values/fields/a/type".into(),
                "t.A".into()
            ))
        );
        assert_eq!(
            rec(r#"{"name":"e","type":"E"}"#).recursion(),
            Some(("/fields/e/type".into(), "t.E".into()))
        );
        // One type in two places is no recursion.
        let twice = rec(
            r#"{"name":"paid","type":"gfc.avro.Money"},{"name":"owed","type":"gfc.avro.Money"},
            {"name":"more","type":{"type":"array","items":"gfc.avro.Money"}}"#,
        );
        assert_eq!(twice.recursion(), None);
    }
}
