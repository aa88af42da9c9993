//! Plain JSON events to Avro bodies (SPEC 5), walking the same schema model as the body check.
//!
//! "Plain" JSON is what product teams write by hand, not Avro's JSON encoding: a nullable field
//! is `null` or its value (no `{"string": ...}` wrapper, though that form is accepted too), a
//! uuid is its usual string, timestamps are ISO-8601 text or epoch milliseconds, decimals are
//! strings or numbers. A missing field takes the schema's default; a field the schema does not
//! have is refused, so that a misspelt name is caught at the door rather than dropped.
//!
//! Every refusal names the field by a JSON-pointer path (`/items/2/price`) and says which rule
//! it broke, and an event is refused with every field that is wrong (up to
//! [`MAX_ERRORS_PER_EVENT`]), not only the first: a producer mends them in one round.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use serde_json::Value;

use crate::body::encode;
use crate::schema::{
    is_currency_code, is_currency_field, Field, Logical, NamedKind, Primitive, Schema, Type,
    DURATION_PARTS, MAX_DECIMAL_DIGITS,
};
use crate::timeuuid;

/// Why one JSON value does not fit its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// JSON pointer to the offending value (`""` for the event itself).
    pub path: String,
    pub reason: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

impl std::error::Error for FieldError {}

type Result<T> = std::result::Result<T, FieldError>;

/// At most this many refusals are listed for one event; past it, one more entry says that
/// more is wrong (the encoder stops looking there).
pub const MAX_ERRORS_PER_EVENT: usize = 20;

/// The refusals of one value and its parts (never empty).
#[derive(Debug)]
struct Errors(Vec<FieldError>);

impl From<FieldError> for Errors {
    fn from(e: FieldError) -> Self {
        Errors(vec![e])
    }
}

impl Errors {
    /// Prepends a path segment to every refusal coming up from a nested value.
    fn within(mut self, segment: impl std::fmt::Display) -> Self {
        for e in &mut self.0 {
            e.path = format!("/{segment}{}", e.path);
        }
        self
    }
}

/// Gathers the refusals of the parts of one value (fields, items, map values): each part is
/// encoded even after one failed, so that every wrong part is named; a value with more than
/// [`MAX_ERRORS_PER_EVENT`] refusals stops there.
#[derive(Default)]
struct Gather(Vec<FieldError>);

impl Gather {
    fn add(&mut self, r: std::result::Result<(), Errors>, segment: impl std::fmt::Display) {
        if let Err(e) = r {
            self.0.extend(e.within(segment).0);
        }
    }
    fn full(&self) -> bool {
        self.0.len() > MAX_ERRORS_PER_EVENT
    }
    fn done(self) -> std::result::Result<(), Errors> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Errors(self.0))
        }
    }
}

/// A refusal of the value at hand (its path is filled in on the way up).
fn fail<T, E: From<FieldError>>(reason: impl Into<String>) -> std::result::Result<T, E> {
    Err(FieldError {
        path: String::new(),
        reason: reason.into(),
    }
    .into())
}

/// What a JSON value is, for error messages.
fn kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) if s.len() > 40 => format!("a string of {} bytes", s.len()),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(a) => format!("an array of {}", a.len()),
        Value::Object(_) => "an object".into(),
    }
}

/// Encodes plain JSON values as Avro bodies of one schema.
#[derive(Debug, Clone, Copy)]
pub struct JsonEncoder<'a> {
    schema: &'a Schema,
}

impl<'a> JsonEncoder<'a> {
    pub fn new(schema: &'a Schema) -> Self {
        Self { schema }
    }

    /// Appends the Avro body of `value` to `out`, or refuses it with every field that does
    /// not fit (in schema order; at most [`MAX_ERRORS_PER_EVENT`], and then a last entry that
    /// says more is wrong). On error `out` may hold a partial body; truncate it to its old length.
    pub fn encode(
        &self,
        value: &Value,
        out: &mut Vec<u8>,
    ) -> std::result::Result<(), Vec<FieldError>> {
        self.value(self.schema.root(), value, out).map_err(|Errors(mut all)| {
            if all.len() > MAX_ERRORS_PER_EVENT {
                all.truncate(MAX_ERRORS_PER_EVENT);
                all.push(FieldError {
                    path: String::new(),
                    reason: format!(
                        "more of this event is wrong than the first {MAX_ERRORS_PER_EVENT} refusals listed"
                    ),
                });
            }
            all
        })
    }

    fn value(&self, ty: &Type, v: &Value, out: &mut Vec<u8>) -> std::result::Result<(), Errors> {
        match ty {
            Type::Primitive(p, logical) => self
                .primitive(*p, logical.as_ref(), v, out)
                .map_err(Errors::from),
            Type::Array(items) => {
                let Value::Array(a) = v else {
                    return fail(format!("expected an array, found {}", kind(v)));
                };
                let mut wrong = Gather::default();
                if !a.is_empty() {
                    encode::long(a.len() as i64, out);
                    for (i, item) in a.iter().enumerate() {
                        wrong.add(self.value(items, item, out), i);
                        if wrong.full() {
                            break;
                        }
                    }
                }
                out.push(0);
                wrong.done()
            }
            Type::Map(values) => {
                let Value::Object(m) = v else {
                    return fail(format!("expected an object (a map), found {}", kind(v)));
                };
                let mut wrong = Gather::default();
                if !m.is_empty() {
                    encode::long(m.len() as i64, out);
                    for (k, item) in m {
                        encode::bytes(k.as_bytes(), out);
                        wrong.add(self.value(values, item, out), escape_pointer(k));
                        if wrong.full() {
                            break;
                        }
                    }
                }
                out.push(0);
                wrong.done()
            }
            Type::Union(branches) => self.union(branches, v, out),
            Type::Named(i) => {
                let named = self.schema.named_type(*i);
                match &named.kind {
                    NamedKind::Record(fields) => self.record(&named.name, fields, v, out),
                    _ => self.named_leaf(named, v, out).map_err(Errors::from),
                }
            }
        }
    }

    /// An enum or fixed value.
    fn named_leaf(
        &self,
        named: &crate::schema::NamedType,
        v: &Value,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        match &named.kind {
            NamedKind::Record(_) => unreachable!("records are encoded by `record`"),
            NamedKind::Enum { symbols, .. } => {
                let Value::String(s) = v else {
                    return fail(format!(
                        "expected a symbol of enum {}, found {}",
                        named.name,
                        kind(v)
                    ));
                };
                match symbols.iter().position(|x| x == s) {
                    Some(k) => {
                        encode::long(k as i64, out);
                        Ok(())
                    }
                    None => fail(format!(
                        "{s:?} is not a symbol of enum {} (one of {})",
                        named.name,
                        symbols.join(", ")
                    )),
                }
            }
            NamedKind::Fixed { size, logical } => {
                if let Some(Logical::Decimal { precision, scale }) = logical {
                    let bytes = decimal(v, *precision, *scale)?;
                    if bytes.len() > *size {
                        return fail(format!("does not fit in fixed({size})"));
                    }
                    let pad = if bytes[0] & 0x80 != 0 { 0xff } else { 0 };
                    out.extend(std::iter::repeat_n(pad, size - bytes.len()));
                    out.extend_from_slice(&bytes);
                    return Ok(());
                }
                if let (Some(Logical::Duration), Value::Object(parts)) = (logical, v) {
                    return duration(parts, out);
                }
                let is_uuid = *size == 16
                    && (matches!(logical, Some(Logical::Uuid)) || named.short_name() == "UUID");
                let Value::String(s) = v else {
                    return fail(format!(
                        "expected a string for {} (fixed({size})), found {}",
                        named.name,
                        kind(v)
                    ));
                };
                if is_uuid {
                    let u = timeuuid::parse_str(s).map_err(|_| FieldError {
                        path: String::new(),
                        reason: format!("{s:?} is not a UUID"),
                    })?;
                    out.extend_from_slice(&u);
                    return Ok(());
                }
                let bytes = latin1(s)?;
                if bytes.len() != *size {
                    return fail(format!(
                        "fixed({size}) needs {size} bytes, found {}",
                        bytes.len()
                    ));
                }
                out.extend_from_slice(&bytes);
                Ok(())
            }
        }
    }

    /// A record: fields it does not have are refused first, then its own fields in schema
    /// order, each encoded even after one failed.
    fn record(
        &self,
        name: &str,
        fields: &[Field],
        v: &Value,
        out: &mut Vec<u8>,
    ) -> std::result::Result<(), Errors> {
        let Value::Object(m) = v else {
            return fail(format!(
                "expected an object (record {name}), found {}",
                kind(v)
            ));
        };
        let mut wrong = Gather::default();
        for key in m.keys() {
            if !fields.iter().any(|f| &f.name == key) {
                wrong.0.push(FieldError {
                    path: format!("/{}", escape_pointer(key)),
                    reason: format!("record {name} has no field `{key}`"),
                });
            }
        }
        for f in fields {
            if wrong.full() {
                break;
            }
            let r = match m.get(&f.name) {
                Some(Value::String(code))
                    if is_currency_field(name, f) && !is_currency_code(code.as_bytes()) =>
                {
                    fail(format!(
                        "{code:?} is not an ISO 4217 currency code (three capital letters, e.g. USD)"
                    ))
                }
                // A null where the type takes none, for a field that has a default: the
                // producer most likely meant "not given".
                Some(Value::Null) if f.default.is_some() => {
                    self.value(&f.ty, &Value::Null, out).map_err(|Errors(e)| {
                        let default = f.default.as_ref().expect("matched");
                        Errors(
                            e.into_iter()
                                .map(|mut e| {
                                    e.reason.push_str(&format!(
                                        "; leave the field out to take its default, {default}"
                                    ));
                                    e
                                })
                                .collect(),
                        )
                    })
                }
                Some(x) => self.value(&f.ty, x, out),
                None => match &f.default {
                    Some(d) => self.default(&f.ty, d, out).map_err(|Errors(e)| {
                        Errors(
                            e.into_iter()
                                .map(|e| FieldError {
                                    path: e.path,
                                    reason: format!(
                                        "the schema's default does not fit: {}",
                                        e.reason
                                    ),
                                })
                                .collect(),
                        )
                    }),
                    None => Err(Errors::from(FieldError {
                        path: String::new(),
                        reason: "missing required field (it has no default)".into(),
                    })),
                },
            };
            wrong.add(r, &f.name);
        }
        wrong.done()
    }

    /// A field default: a union's default is a value of its first branch.
    fn default(&self, ty: &Type, d: &Value, out: &mut Vec<u8>) -> std::result::Result<(), Errors> {
        match ty {
            Type::Union(branches) => {
                out.push(0);
                self.value(&branches[0], d, out)
            }
            _ => self.value(ty, d, out),
        }
    }

    fn union(
        &self,
        branches: &[Type],
        v: &Value,
        out: &mut Vec<u8>,
    ) -> std::result::Result<(), Errors> {
        let null_at = branches
            .iter()
            .position(|b| matches!(b, Type::Primitive(Primitive::Null, _)));
        if v.is_null() {
            return match null_at {
                Some(k) => {
                    encode::long(k as i64, out);
                    Ok(())
                }
                None => fail(format!(
                    "expected {}, found null (the field is not nullable)",
                    self.describe_union(branches)
                )),
            };
        }
        let start = out.len();
        let mut only_error = None;
        let others = branches.len() - usize::from(null_at.is_some());
        for (k, b) in branches.iter().enumerate() {
            if Some(k) == null_at {
                continue;
            }
            encode::long(k as i64, out);
            match self.value(b, v, out) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    out.truncate(start);
                    if others == 1 {
                        only_error = Some(e);
                    }
                }
            }
        }
        // Avro's own JSON form: {"branch name": value}; a named type's short name too, as
        // the lake names the branch (`pay.Iban`), when no other branch has it.
        if let Value::Object(m) = v {
            if m.len() == 1 {
                let (tag, inner) = m.iter().next().expect("one entry");
                let short = |b: &Type| match b {
                    Type::Named(i) => {
                        let name = &self.schema.named_type(*i).name;
                        name.rsplit('.').next() == Some(tag.as_str())
                    }
                    _ => false,
                };
                let by_short = || match branches.iter().filter(|b| short(b)).count() {
                    1 => branches.iter().position(short),
                    _ => None,
                };
                let named = branches.iter().position(|b| self.branch_name(b) == *tag);
                if let Some(k) = named.or_else(by_short) {
                    encode::long(k as i64, out);
                    return self
                        .value(&branches[k], inner, out)
                        .map_err(|e| e.within(escape_pointer(tag)));
                }
            }
        }
        if let Some(e) = only_error {
            return Err(e);
        }
        fail(format!(
            "{} matches none of {}",
            kind(v),
            self.describe_union(branches)
        ))
    }

    fn branch_name(&self, ty: &Type) -> String {
        match ty {
            Type::Primitive(p, _) => p.name().to_string(),
            Type::Array(_) => "array".into(),
            Type::Map(_) => "map".into(),
            Type::Union(_) => "union".into(),
            Type::Named(i) => self.schema.named_type(*i).name.clone(),
        }
    }

    fn describe_union(&self, branches: &[Type]) -> String {
        let names: Vec<String> = branches.iter().map(|b| self.branch_name(b)).collect();
        format!("[{}]", names.join(", "))
    }

    fn primitive(
        &self,
        p: Primitive,
        logical: Option<&Logical>,
        v: &Value,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        match p {
            Primitive::Null => match v {
                Value::Null => Ok(()),
                _ => fail(format!("expected null, found {}", kind(v))),
            },
            Primitive::Boolean => match v {
                Value::Bool(b) => {
                    out.push(u8::from(*b));
                    Ok(())
                }
                _ => fail(format!("expected a boolean, found {}", kind(v))),
            },
            Primitive::Int => {
                let n = match (logical, v) {
                    (Some(Logical::Date), Value::String(s)) => date_days(s)?,
                    (Some(Logical::TimeMillis), Value::String(s)) => time_of_day_micros(s)? / 1000,
                    _ => integer(v, "int")?,
                };
                in_range(logical, n)?;
                let n = i32::try_from(n).map_err(|_| FieldError {
                    path: String::new(),
                    reason: format!("{n} is out of range for an int"),
                })?;
                encode::long(n as i64, out);
                Ok(())
            }
            Primitive::Long => {
                let n = match (logical, v) {
                    (Some(Logical::TimestampMillis | Logical::LocalTimestampMillis), _) => {
                        timestamp_micros(v, logical)?.div_euclid(1000)
                    }
                    (Some(Logical::TimestampMicros | Logical::LocalTimestampMicros), _) => {
                        timestamp_micros(v, logical)?
                    }
                    (Some(Logical::TimeMicros), Value::String(s)) => time_of_day_micros(s)?,
                    _ => integer(v, "long")?,
                };
                in_range(logical, n)?;
                encode::long(n, out);
                Ok(())
            }
            Primitive::Float => {
                let x = number(v, "float")?;
                let f = x as f32;
                if f.is_infinite() {
                    return fail(format!(
                        "{x} is out of range for a float (at most {:e} either way)",
                        f32::MAX
                    ));
                }
                out.extend_from_slice(&f.to_le_bytes());
                Ok(())
            }
            Primitive::Double => {
                let x = number(v, "double")?;
                out.extend_from_slice(&x.to_le_bytes());
                Ok(())
            }
            Primitive::Bytes => {
                if let Some(Logical::Decimal { precision, scale }) = logical {
                    encode::bytes(&decimal(v, *precision, *scale)?, out);
                    return Ok(());
                }
                let Value::String(s) = v else {
                    return fail(format!("expected bytes (a string), found {}", kind(v)));
                };
                encode::bytes(&latin1(s)?, out);
                Ok(())
            }
            Primitive::String => {
                let Value::String(s) = v else {
                    return fail(format!("expected a string, found {}", kind(v)));
                };
                if matches!(logical, Some(Logical::Uuid)) && timeuuid::parse_str(s).is_err() {
                    return fail(format!("{s:?} is not a UUID"));
                }
                encode::bytes(s.as_bytes(), out);
                Ok(())
            }
        }
    }
}

/// `~` and `/` escaped as RFC 6901 asks.
fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn integer(v: &Value, what: &str) -> Result<i64> {
    match v {
        Value::Number(n) => n.as_i64().ok_or_else(|| FieldError {
            path: String::new(),
            reason: format!("expected {what} (a whole number), found number {n}"),
        }),
        _ => fail(format!("expected {what}, found {}", kind(v))),
    }
}

fn number(v: &Value, what: &str) -> Result<f64> {
    match v {
        Value::Number(n) => Ok(n.as_f64().expect("a JSON number has an f64 value")),
        _ => fail(format!("expected {what}, found {}", kind(v))),
    }
}

/// A date, time or timestamp within what the lake holds ([`Logical::range`]); any other
/// value as it is.
fn in_range(logical: Option<&Logical>, n: i64) -> Result<()> {
    match logical {
        Some(l) if l.range().is_some_and(|r| !r.contains(&n)) => fail(l.out_of_range(n)),
        _ => Ok(()),
    }
}

/// Avro's JSON form of bytes: each character one byte (code points up to 255).
fn latin1(s: &str) -> Result<Vec<u8>> {
    s.chars()
        .map(|c| {
            u8::try_from(c as u32).map_err(|_| FieldError {
                path: String::new(),
                reason: format!("bytes are written one character per byte; {c:?} is above \\u00ff"),
            })
        })
        .collect()
}

/// A timestamp as microseconds since the Unix epoch: a number is epoch milliseconds, a string
/// is ISO-8601 (with an offset, or UTC when it has none).
fn timestamp_micros(v: &Value, logical: Option<&Logical>) -> Result<i64> {
    match v {
        Value::Number(_) => {
            let ms = integer(v, "a timestamp in epoch milliseconds")?;
            // What ISO-8601 text can say (years 1 to 9999), and what Spark and pandas read:
            // a number past it is most often microseconds or nanoseconds sent as milliseconds.
            let years_1_to_9999 = Logical::TimestampMillis.range().expect("a timestamp's");
            if !years_1_to_9999.contains(&ms) {
                return fail(format!(
                    "timestamp {ms} is not epoch milliseconds of a year from 1 to 9999 \
                     (microseconds or nanoseconds given as milliseconds?)"
                ));
            }
            Ok(ms * 1000)
        }
        Value::String(s) => {
            let local = matches!(
                logical,
                Some(Logical::LocalTimestampMillis | Logical::LocalTimestampMicros)
            );
            if !local {
                if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                    return Ok(t.timestamp_micros());
                }
            }
            for f in [
                "%Y-%m-%dT%H:%M:%S%.f",
                "%Y-%m-%d %H:%M:%S%.f",
                "%Y-%m-%dT%H:%M",
            ] {
                if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
                    return Ok(t.and_utc().timestamp_micros());
                }
            }
            fail(format!(
                "{s:?} is not an ISO-8601 timestamp (e.g. 2026-11-26T12:00:00.000Z)"
            ))
        }
        _ => fail(format!(
            "expected a timestamp (ISO-8601 text or epoch milliseconds), found {}",
            kind(v)
        )),
    }
}

fn date_days(s: &str) -> Result<i64> {
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| FieldError {
        path: String::new(),
        reason: format!("{s:?} is not an ISO-8601 date (YYYY-MM-DD)"),
    })?;
    Ok(
        d.signed_duration_since(NaiveDate::from_ymd_opt(1970, 1, 1).expect("a date"))
            .num_days(),
    )
}

fn time_of_day_micros(s: &str) -> Result<i64> {
    let t = NaiveTime::parse_from_str(s, "%H:%M:%S%.f").map_err(|_| FieldError {
        path: String::new(),
        reason: format!("{s:?} is not an ISO-8601 time of day (HH:MM:SS.sss)"),
    })?;
    Ok(t.num_seconds_from_midnight() as i64 * 1_000_000 + (t.nanosecond() / 1000) as i64)
}

/// A `duration` given as the lake shows it, `{"months": m, "days": d, "milliseconds": ms}`
/// (a part left out is 0), as its 12 bytes: three little-endian unsigned 32-bit counts.
/// (Avro's own JSON form, the 12 bytes as a string, is taken too.)
fn duration(parts: &serde_json::Map<String, Value>, out: &mut Vec<u8>) -> Result<()> {
    if let Some(other) = parts.keys().find(|k| !DURATION_PARTS.contains(&k.as_str())) {
        return fail(format!(
            "a duration has no part {other:?} (its parts: months, days, milliseconds)"
        ));
    }
    for name in DURATION_PARTS {
        let n = match parts.get(name) {
            None => 0,
            Some(v) => integer(v, "a count").map_err(|e| FieldError {
                path: format!("/{name}"),
                reason: e.reason,
            })?,
        };
        let n = u32::try_from(n).map_err(|_| FieldError {
            path: format!("/{name}"),
            reason: format!(
                "{n} is out of range for a duration's {name} (0 to {})",
                u32::MAX
            ),
        })?;
        out.extend_from_slice(&n.to_le_bytes());
    }
    Ok(())
}

/// The unscaled value of a decimal given as a string or a number, at the schema's scale, as
/// Avro writes it: big-endian two's complement in the fewest bytes. Refuses more fractional
/// digits than the scale allows (no silent rounding of money) and more digits than the
/// precision.
fn decimal(v: &Value, precision: u32, scale: u32) -> Result<Vec<u8>> {
    let text = match v {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => {
            return fail(format!(
                "expected a decimal (a string or a number), found {}",
                kind(v)
            ))
        }
    };
    let bad = || FieldError {
        path: String::new(),
        reason: format!("{text:?} is not a decimal number"),
    };
    let (mantissa, exp) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], text[i + 1..].parse::<i32>().map_err(|_| bad())?),
        None => (text.as_str(), 0),
    };
    let (neg, digits) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa.strip_prefix('+').unwrap_or(mantissa)),
    };
    let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
    if (int_part.is_empty() && frac_part.is_empty())
        || !int_part
            .bytes()
            .chain(frac_part.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    // value = all_digits * 10^(exp - frac_len); unscaled = value * 10^scale.
    let all: String = format!("{int_part}{frac_part}");
    let all = all.trim_start_matches('0');
    let shift = scale as i64 + exp as i64 - frac_part.len() as i64;
    let all = if shift < 0 {
        let cut = all.len().saturating_sub(shift.unsigned_abs() as usize);
        if all[cut..].bytes().any(|b| b != b'0') {
            return fail(format!(
                "{text} has more than {scale} decimal places (the schema's scale)"
            ));
        }
        &all[..cut]
    } else if all.is_empty() {
        all
    } else {
        // Zeros appended: at most enough to pass the precision, and no more (an exponent
        // of a billion is refused without writing a billion zeros).
        let zeros = (shift as u64).min(precision as u64 + 1) as usize;
        return digits_to_bytes(
            &format!("{all}{}", "0".repeat(zeros)),
            neg,
            precision,
            &text,
        );
    };
    digits_to_bytes(all, neg, precision, &text)
}

/// `digits` (no leading zeros), negated when `neg`, as big-endian two's complement in the
/// fewest bytes; refused when longer than `precision`.
fn digits_to_bytes(digits: &str, neg: bool, precision: u32, text: &str) -> Result<Vec<u8>> {
    if digits.len() > precision as usize {
        return fail(format!(
            "{text} has more than {precision} significant digits (the schema's precision)"
        ));
    }
    if digits.len() > MAX_DECIMAL_DIGITS as usize {
        return fail(format!(
            "{text} has more than {MAX_DECIMAL_DIGITS} significant digits, the most a decimal \
             in the lake holds"
        ));
    }
    // A 256-bit unsigned number, least significant 64 bits first: 10^76 < 2^253.
    let mut limbs = [0u64; 4];
    for d in digits.bytes() {
        let mut carry = u128::from(d - b'0');
        for limb in limbs.iter_mut() {
            let v = u128::from(*limb) * 10 + carry;
            *limb = v as u64;
            carry = v >> 64;
        }
    }
    if neg {
        // Two's complement: invert, add one.
        let mut carry = 1u128;
        for limb in limbs.iter_mut() {
            let v = u128::from(!*limb) + carry;
            *limb = v as u64;
            carry = v >> 64;
        }
    }
    let mut bytes = [0u8; 32];
    for (i, limb) in limbs.iter().rev().enumerate() {
        bytes[i * 8..i * 8 + 8].copy_from_slice(&limb.to_be_bytes());
    }
    // Drop leading bytes that only repeat the sign of the next.
    let mut start = 0;
    while start < 31 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    Ok(bytes[start..].to_vec())
}

/// Parses a JSON request body of events: one object or an array of them.
pub fn events(body: &[u8]) -> std::result::Result<Vec<Value>, serde_json::Error> {
    match serde_json::from_slice::<Value>(body)? {
        Value::Array(a) => Ok(a),
        other => Ok(vec![other]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BodyCheck;
    use serde_json::json;

    const SCHEMA: &str = r#"{"type":"record","name":"Order","namespace":"shop.v1","fields":[
        {"name":"uuid","type":"gfc.avro.UUID"},
        {"name":"at","type":{"type":"long","logicalType":"timestamp-micros"}},
        {"name":"day","type":["null",{"type":"int","logicalType":"date"}],"default":null},
        {"name":"price","type":"gfc.avro.Money"},
        {"name":"qty","type":"int"},
        {"name":"note","type":["null","string"],"default":null},
        {"name":"tags","type":{"type":"array","items":"string"},"default":[]},
        {"name":"attrs","type":{"type":"map","values":"long"},"default":{}},
        {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["WEB","APP"]},"default":"WEB"},
        {"name":"ratio","type":"double","default":1.5},
        {"name":"blob","type":"bytes","default":"\u00ff"}
    ]}"#;

    fn encode_all(v: Value) -> std::result::Result<Vec<u8>, Vec<FieldError>> {
        let schema = Schema::parse(SCHEMA).unwrap();
        let mut out = Vec::new();
        JsonEncoder::new(&schema).encode(&v, &mut out)?;
        BodyCheck::new(&schema).check(&out).expect("a valid body");
        Ok(out)
    }

    /// The body, or the event's one refusal (a test of one wrong field).
    fn encode(v: Value) -> Result<Vec<u8>> {
        encode_all(v).map_err(|mut all| {
            assert_eq!(all.len(), 1, "one refusal expected: {all:?}");
            all.remove(0)
        })
    }

    fn event() -> Value {
        json!({
            "uuid": "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
            "at": "2026-11-26T12:00:00.5Z",
            "price": {"amount": "19.99", "currency": "USD"},
            "qty": 2
        })
    }

    #[test]
    fn fills_defaults_and_encodes_logical_types() {
        let out = encode(event()).unwrap();
        assert_eq!(
            &out[..16],
            &timeuuid::parse_str("6ba7b810-9dad-11d1-80b4-00c04fd430c8").unwrap()
        );
        let mut at = vec![];
        encode::long(1_795_694_400_500_000, &mut at);
        assert_eq!(&out[16..16 + at.len()], &at[..]);
        let rest = &out[16 + at.len()..];
        assert_eq!(rest[0], 0, "day defaults to null");
        // amount 19.99 at scale 4 = 199900 = 0x03 0x0C 0xDC
        assert_eq!(&rest[1..5], &[6, 0x03, 0x0c, 0xdc]);
        assert_eq!(&rest[5..9], &[6, b'U', b'S', b'D']);
        assert_eq!(rest[9], 4, "qty 2 zig-zag");
        assert_eq!(rest[10], 0, "note null");
        assert_eq!(rest[11], 0, "tags empty");
        assert_eq!(rest[12], 0, "attrs empty");
        assert_eq!(rest[13], 0, "kind WEB");
        assert_eq!(&rest[14..22], &1.5f64.to_le_bytes());
        assert_eq!(&rest[22..], &[2, 0xff]);
    }

    #[test]
    fn a_null_for_a_field_with_a_default_says_to_leave_it_out() {
        let mut e = event();
        e["ratio"] = Value::Null;
        let refusal = encode(e).unwrap_err();
        assert_eq!(refusal.path, "/ratio");
        assert!(
            refusal
                .reason
                .ends_with("; leave the field out to take its default, 1.5"),
            "{refusal}"
        );
        // A nullable field takes the null as it is.
        let mut e = event();
        e["note"] = Value::Null;
        encode(e).unwrap();
    }

    #[test]
    fn epoch_millis_and_iso_agree() {
        let mut a = event();
        a["at"] = json!(1_795_694_400_500i64);
        assert_eq!(encode(a).unwrap(), encode(event()).unwrap());
        let mut b = event();
        b["at"] = json!("2026-11-26T13:00:00.500+01:00");
        assert_eq!(encode(b).unwrap(), encode(event()).unwrap());
    }

    #[test]
    fn epoch_millis_outside_years_1_to_9999_are_refused_naming_the_likely_mistake() {
        for at in [
            1_795_694_400_500_000i64,
            1_795_694_400_500_000_000,
            -62_135_596_800_001,
        ] {
            let mut a = event();
            a["at"] = json!(at);
            let e = encode(a).unwrap_err();
            assert_eq!(e.path, "/at");
            assert!(
                e.reason
                    .contains(&format!("timestamp {at} is not epoch milliseconds")),
                "{e}"
            );
            assert!(
                e.reason.contains("microseconds or nanoseconds given as"),
                "{e}"
            );
        }
        for at in [253_402_300_799_999i64, -62_135_596_800_000] {
            let mut a = event();
            a["at"] = json!(at);
            encode(a).unwrap();
        }
    }

    #[test]
    fn decimals_as_numbers_and_strings_agree_and_refuse_rounding() {
        let mut a = event();
        a["price"]["amount"] = json!(19.99);
        assert_eq!(encode(a).unwrap(), encode(event()).unwrap());
        let mut b = event();
        b["price"]["amount"] = json!("19.99001");
        let e = encode(b).unwrap_err();
        assert_eq!(e.path, "/price/amount");
        assert!(e.reason.contains("more than 4 decimal places"), "{e}");
        assert_eq!(decimal(&json!("-0.5"), 10, 2).unwrap(), vec![0xce]);
        assert_eq!(
            decimal(&json!("1e3"), 10, 2).unwrap(),
            100_000i32.to_be_bytes()[1..]
        );
        assert_eq!(decimal(&json!("1.28"), 10, 2).unwrap(), vec![0x00, 0x80]);
        assert_eq!(decimal(&json!("-1.28"), 10, 2).unwrap(), vec![0x80]);
        assert_eq!(decimal(&json!("-1.29"), 10, 2).unwrap(), vec![0xff, 0x7f]);
        assert_eq!(decimal(&json!("0.00"), 10, 2).unwrap(), vec![0x00]);
        assert_eq!(decimal(&json!("-0"), 10, 2).unwrap(), vec![0x00]);
        assert!(decimal(&json!("12345678901"), 10, 0).is_err());
        assert!(decimal(&json!("1e1000000000"), 10, 0).is_err());
    }

    #[test]
    fn dates_and_times_given_as_numbers_are_held_to_what_readers_read() {
        let schema = Schema::parse(
            r#"{"type":"record","name":"T","namespace":"t","fields":[
                {"name":"day","type":{"type":"int","logicalType":"date"},"default":0},
                {"name":"t","type":{"type":"int","logicalType":"time-millis"},"default":0}]}"#,
        )
        .unwrap();
        let refused = |v: Value| {
            let mut out = Vec::new();
            let e = JsonEncoder::new(&schema).encode(&v, &mut out).unwrap_err();
            (e[0].path.clone(), e[0].reason.clone())
        };
        let (path, why) = refused(json!({"day": 3_000_000}));
        assert_eq!(path, "/day");
        assert!(why.contains("is not of a year from 1 to 9999"), "{why}");
        let (path, why) = refused(json!({"t": 86_400_000}));
        assert_eq!(path, "/t");
        assert!(
            why.contains("time-millis 86400000 is not a time of day"),
            "{why}"
        );
        let mut out = Vec::new();
        JsonEncoder::new(&schema)
            .encode(&json!({"day": 2_932_896, "t": 86_399_999}), &mut out)
            .unwrap();
    }

    #[test]
    fn a_duration_is_taken_by_its_parts_or_as_its_twelve_bytes() {
        let schema = Schema::parse(
            r#"{"type":"record","name":"L","namespace":"t","fields":[
                {"name":"d","type":{"type":"fixed","name":"D","size":12,"logicalType":"duration"}}]}"#,
        )
        .unwrap();
        let encode = |d: Value| {
            let mut out = Vec::new();
            JsonEncoder::new(&schema)
                .encode(&json!({ "d": d }), &mut out)
                .map(|_| out)
        };
        let le = |m: u32, d: u32, ms: u32| {
            [m, d, ms]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<u8>>()
        };
        assert_eq!(
            encode(json!({"months": 1, "days": 3_000_000_000u32, "milliseconds": 5})).unwrap(),
            le(1, 3_000_000_000, 5)
        );
        assert_eq!(encode(json!({"days": 2})).unwrap(), le(0, 2, 0));
        // Avro's JSON form: the bytes as a string.
        assert_eq!(
            encode(json!("\u{1}\0\0\0\u{2}\0\0\0\u{3}\0\0\0")).unwrap(),
            le(1, 2, 3)
        );
        let refused = |d: Value| {
            let e = encode(d).unwrap_err();
            (e[0].path.clone(), e[0].reason.clone())
        };
        let (path, why) = refused(json!({"days": -1}));
        assert_eq!(path, "/d/days");
        assert!(why.contains("out of range for a duration's days"), "{why}");
        let (path, why) = refused(json!({"weeks": 1}));
        assert_eq!(path, "/d");
        assert!(why.contains("no part \"weeks\""), "{why}");
        let (path, _) = refused(json!({"milliseconds": 1.5}));
        assert_eq!(path, "/d/milliseconds");
    }

    #[test]
    fn decimals_wider_than_38_digits_are_written_whole_up_to_76() {
        let hex = |v: &str, precision| {
            decimal(&json!(v), precision, 3)
                .map(|b| b.iter().map(|x| format!("{x:02x}")).collect::<String>())
                .map_err(|e| e.reason)
        };
        // Python's int.to_bytes(n, "big", signed=True) in the fewest bytes gives these.
        assert_eq!(
            hex("1234567890123456789012345678901234567.123", 40).unwrap(),
            "03a0c92075c0dbf3b8acbc5f96ce3f07d3"
        );
        assert_eq!(
            hex("-9999999999999999999999999999999999999.999", 40).unwrap(),
            "e29cd60e3ca35b4054460a9f0000000001"
        );
        assert_eq!(
            hex("100000000000000000000000000000000000", 39).unwrap(),
            "4b3b4ca85a86c47a098a224000000000"
        );
        let widest = "9".repeat(73) + ".999";
        assert_eq!(
            hex(&widest, 76).unwrap(),
            "161bcca7119915b50764b4abe86529797775a5f171950fffffffffffffffffff"
        );
        assert_eq!(
            hex(&format!("-{widest}"), 76).unwrap(),
            "e9e43358ee66ea4af89b4b54179ad686888a5a0e8e6af0000000000000000001"
        );
        // One digit more than the precision; more than the lake holds.
        let e = hex("1234567890123456789012345678901234567.123", 39).unwrap_err();
        assert!(e.contains("more than 39 significant digits"), "{e}");
        let e = hex(&("9".repeat(74) + ".999"), 80).unwrap_err();
        assert!(e.contains("more than 76 significant digits"), "{e}");
    }

    #[test]
    fn errors_name_the_field_and_the_rule() {
        let cases = [
            (
                json!({"qty": "two"}),
                "/qty",
                "expected int, found string \"two\"",
            ),
            (json!({"qty": 2.5}), "/qty", "whole number"),
            (
                json!({"qty": 3_000_000_000i64}),
                "/qty",
                "out of range for an int",
            ),
            (
                json!({"note": 5}),
                "/note",
                "expected a string, found number 5",
            ),
            (
                json!({"kind": "TV"}),
                "/kind",
                "not a symbol of enum shop.v1.Kind",
            ),
            (json!({"tags": ["a", 1]}), "/tags/1", "expected a string"),
            (json!({"uuid": "nope"}), "/uuid", "is not a UUID"),
            (
                json!({"at": "yesterday"}),
                "/at",
                "not an ISO-8601 timestamp",
            ),
            (
                json!({"price": {"amount": "1"}}),
                "/price/currency",
                "missing required field",
            ),
            (
                json!({"price": {"amount": "1", "currency": "usd"}}),
                "/price/currency",
                "\"usd\" is not an ISO 4217 currency code",
            ),
            (json!({"colour": "red"}), "/colour", "has no field `colour`"),
            (json!({"blob": "\u{1F600}"}), "/blob", "above \\u00ff"),
        ];
        for (patch, path, reason) in cases {
            let mut e = event();
            for (k, v) in patch.as_object().unwrap() {
                e[k] = v.clone();
            }
            let err = encode(e).unwrap_err();
            assert_eq!(err.path, path, "{err}");
            assert!(err.reason.contains(reason), "{err} should say {reason}");
        }
        let mut missing = event();
        missing.as_object_mut().unwrap().remove("qty");
        let err = encode(missing).unwrap_err();
        assert_eq!(
            (err.path.as_str(), err.reason.as_str()),
            ("/qty", "missing required field (it has no default)")
        );
        let err = encode(json!([1])).unwrap_err();
        assert!(err.reason.contains("expected an object"), "{err}");
    }

    #[test]
    fn a_float_too_large_for_32_bits_is_refused_not_made_infinite() {
        let schema =
            Schema::parse(r#"{"type":"record","name":"F","fields":[{"name":"f","type":"float"}]}"#)
                .unwrap();
        let enc = |v: Value| {
            let mut out = Vec::new();
            JsonEncoder::new(&schema).encode(&v, &mut out).map(|_| out)
        };
        assert_eq!(enc(json!({"f": 1.5})).unwrap(), 1.5f32.to_le_bytes());
        assert_eq!(
            enc(json!({"f": -3.0e38})).unwrap(),
            (-3.0e38f32).to_le_bytes()
        );
        for big in [1e50, -1e39] {
            let err = enc(json!({"f": big})).unwrap_err();
            assert_eq!(err[0].path, "/f");
            assert!(
                err[0].reason.contains("out of range for a float"),
                "{err:?}"
            );
        }
    }

    #[test]
    fn every_wrong_field_of_an_event_is_named_in_schema_order() {
        let mut e = event();
        e["qty"] = json!("two");
        e["colour"] = json!("red");
        e["tags"] = json!([1, "ok", false]);
        e["price"] = json!({"amount": "x"});
        e.as_object_mut().unwrap().remove("at");
        let all = encode_all(e).unwrap_err();
        let paths: Vec<&str> = all.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/colour",
                "/at",
                "/price/amount",
                "/price/currency",
                "/qty",
                "/tags/0",
                "/tags/2"
            ],
            "{all:?}"
        );
        assert!(all[1].reason.contains("missing required field"), "{all:?}");
        assert!(all[6].reason.contains("found boolean false"), "{all:?}");
    }

    #[test]
    fn refusals_of_one_event_stop_at_the_cap_and_count_the_rest() {
        let mut e = event();
        e["tags"] = json!(vec![0; 100]);
        let all = encode_all(e).unwrap_err();
        assert_eq!(all.len(), MAX_ERRORS_PER_EVENT + 1, "{all:?}");
        assert_eq!(all[0].path, "/tags/0");
        assert_eq!(
            all[MAX_ERRORS_PER_EVENT - 1].path,
            format!("/tags/{}", MAX_ERRORS_PER_EVENT - 1)
        );
        let last = &all[MAX_ERRORS_PER_EVENT];
        assert_eq!(last.path, "");
        assert!(
            last.reason.contains("more of this event is wrong"),
            "{last:?}"
        );
    }

    #[test]
    fn unions_take_plain_values_or_avro_json_tags() {
        let mut a = event();
        a["note"] = json!("hi");
        let mut b = event();
        b["note"] = json!({"string": "hi"});
        assert_eq!(encode(a).unwrap(), encode(b).unwrap());
        let mut c = event();
        c["day"] = json!("1970-01-11");
        let out = encode(c).unwrap();
        assert!(out.windows(2).any(|w| w == [2, 20]), "branch 1, 10 days");
    }

    #[test]
    fn a_union_branch_is_tagged_by_its_full_name_or_by_the_short_name_the_lake_shows() {
        let schema = Schema::parse(
            r#"{"type":"record","name":"U","namespace":"un.v1","fields":[
                {"name":"pay","type":["null",
                    {"type":"record","name":"Card","fields":[{"name":"no","type":"string"}]},
                    {"type":"record","name":"Iban","fields":[{"name":"no","type":"string"}]},
                    {"type":"record","name":"Item","namespace":"a","fields":[{"name":"no","type":"string"}]},
                    {"type":"record","name":"Item","namespace":"b","fields":[{"name":"no","type":"string"}]}]}]}"#,
        )
        .unwrap();
        let encode = |pay: Value| {
            let mut out = Vec::new();
            JsonEncoder::new(&schema)
                .encode(&json!({ "pay": pay }), &mut out)
                .map(|_| out[0])
                .map_err(|e| e[0].reason.clone())
        };
        // Untagged, both records fit: the first is taken; a tag says which.
        assert_eq!(encode(json!({"no": "1"})), Ok(2)); // branch 1, zig-zag
        assert_eq!(encode(json!({"un.v1.Iban": {"no": "1"}})), Ok(4));
        assert_eq!(encode(json!({"Iban": {"no": "1"}})), Ok(4));
        assert_eq!(encode(json!({"a.Item": {"no": "1"}})), Ok(6));
        // Two branches are `Item` for short: only the full name says which.
        let e = encode(json!({"Item": {"no": "1"}})).unwrap_err();
        assert!(e.contains("matches none of"), "{e}");
    }
}
