//! Checking an Avro body against its writer schema, exactly and without decoding it into
//! values, and pulling out the event's `uuid` on the way.
//!
//! A columnar decoder finds where a record ends only by decoding it, so a truncated body would
//! swallow the next record and trailing bytes would show up only after the row was appended.
//! This check runs first and decides, per record, whether the body is exactly one value of the
//! writer schema. It allocates nothing on success.

use crate::schema::{
    is_currency_code, is_currency_field, Logical, NamedKind, Primitive, Schema, Type,
};
use crate::timeuuid;
use crate::{Error, Result};

#[derive(Debug, Clone)]
enum Node {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    /// A string with the `uuid` logical type: readers parse it into 16 bytes.
    UuidString,
    /// The `currency` of a `gfc.avro.Money`, in a [`BodyCheck::strict`] check: an ISO 4217 code.
    Currency,
    /// A date, time or timestamp (an `int` or a `long`), in a [`BodyCheck::strict`] check:
    /// within [`Logical::range`].
    Ranged {
        int: bool,
        logical: Logical,
    },
    Fixed(usize),
    /// A `decimal` on bytes (`size` None) or on a fixed of `size` bytes: its two's-complement
    /// value must be within its precision.
    Decimal {
        size: Option<usize>,
        precision: u32,
    },
    Enum(u64),
    Array(Box<Node>),
    Map(Box<Node>),
    Union(Vec<Node>),
    /// Index into [`BodyCheck::records`] (so recursive records need no cycles).
    Record(usize),
}

impl Node {
    /// Whether this node (or one within it, short of a record, whose fields are compiled on
    /// their own) checks a rule of a [`BodyCheck::strict`] check.
    fn is_rule(&self) -> bool {
        match self {
            Node::Currency | Node::Ranged { .. } => true,
            Node::Array(n) | Node::Map(n) => n.is_rule(),
            Node::Union(b) => b.iter().any(Node::is_rule),
            _ => false,
        }
    }
}

/// Where the top-level `uuid` field is and how it is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UuidField {
    None,
    Fixed(usize),
    String(usize),
}

/// A writer schema compiled for checking bodies. Build once per fingerprint, use for every
/// record written with it.
#[derive(Debug, Clone)]
pub struct BodyCheck {
    root: Node,
    records: Vec<Vec<Node>>,
    uuid: UuidField,
    /// Whether a [`BodyCheck::strict`] compile found rules to check (a money currency, a
    /// date, time or timestamp).
    rules: bool,
}

/// What a body check learns about a good record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedBody {
    /// The event's id in its 16-byte form, when the schema has a top-level `uuid` field.
    pub uuid: Option<[u8; 16]>,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Array and map items claimed so far, every block of every array and map together.
    items: u64,
}

/// Reads one zig-zag varint (`int`, `long`, lengths, indexes) at `*pos` and moves past it.
/// One or two bytes (-8192..=8191: union branches, lengths of strings up to 8 KB, ids and
/// counts of a few thousand) are read inline.
#[inline(always)]
pub fn zigzag(buf: &[u8], pos: &mut usize) -> std::result::Result<i64, &'static str> {
    match buf.get(*pos) {
        Some(&b) if b < 0x80 => {
            *pos += 1;
            Ok(((b >> 1) as i64) ^ -((b & 1) as i64))
        }
        Some(&b) => match buf.get(*pos + 1) {
            Some(&c) if c < 0x80 => {
                *pos += 2;
                let v = (b & 0x7f) as u64 | (c as u64) << 7;
                Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
            }
            _ => zigzag_long(buf, pos),
        },
        None => zigzag_long(buf, pos),
    }
}

/// [`zigzag`] of three bytes or more, and its errors.
#[inline(never)]
fn zigzag_long(buf: &[u8], pos: &mut usize) -> std::result::Result<i64, &'static str> {
    let mut value: u64 = 0;
    let mut shift = 0;
    loop {
        let Some(&b) = buf.get(*pos) else {
            return Err("truncated: ends inside a number");
        };
        *pos += 1;
        value |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
        shift += 7;
        if shift > 63 {
            return Err("a number is longer than 10 bytes");
        }
    }
}

#[cold]
#[inline(never)]
fn bad(offset: usize, reason: &str) -> Error {
    Error::BadBody {
        offset,
        reason: reason.to_string(),
    }
}

impl Cursor<'_> {
    #[inline]
    fn varint(&mut self) -> Result<i64> {
        zigzag(self.buf, &mut self.pos).map_err(|reason| bad(self.pos, reason))
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(bad(self.pos, "truncated: ends inside a value")),
        }
    }

    #[inline]
    fn len(&mut self) -> Result<usize> {
        let at = self.pos;
        let n = self.varint()?;
        if n < 0 {
            return Err(bad(at, "negative length"));
        }
        Ok(n as usize)
    }
}

impl BodyCheck {
    /// Compiles a schema. The top-level `uuid` field, if any, must be a 16-byte fixed or a
    /// string.
    pub fn new(schema: &Schema) -> Self {
        Self::compile(schema, false)
    }

    /// [`Self::new`], also checking the rules of the standard types that their Avro types do
    /// not carry: a `gfc.avro.Money` currency must be an ISO 4217 code, and a date, time or
    /// timestamp within [`Logical::range`] (a year from 1 to 9999, a time of day: Avro's
    /// `int` and `long` hold more, which outside readers cannot read). The gateway's check:
    /// such events are refused at the door, while the consumer takes what the stream holds
    /// (whose records decode either way).
    pub fn strict(schema: &Schema) -> Self {
        Self::compile(schema, true)
    }

    fn compile(schema: &Schema, strict: bool) -> Self {
        let records: Vec<Vec<Node>> = schema
            .named()
            .iter()
            .map(|n| match &n.kind {
                NamedKind::Record(fields) => fields
                    .iter()
                    .map(|f| match strict && is_currency_field(&n.name, f) {
                        true => Node::Currency,
                        false => compile(&f.ty, schema, strict),
                    })
                    .collect(),
                _ => Vec::new(),
            })
            .collect();
        let uuid = schema
            .fields()
            .iter()
            .position(|f| f.name == "uuid")
            .map(|i| match &schema.fields()[i].ty {
                Type::Named(n)
                    if matches!(
                        schema.named_type(*n).kind,
                        NamedKind::Fixed { size: 16, .. }
                    ) =>
                {
                    UuidField::Fixed(i)
                }
                Type::Primitive(Primitive::String, _) => UuidField::String(i),
                _ => UuidField::None,
            })
            .unwrap_or(UuidField::None);
        let root = compile(schema.root(), schema, strict);
        let rules = records.iter().flatten().chain([&root]).any(Node::is_rule);
        BodyCheck {
            root,
            records,
            uuid,
            rules,
        }
    }

    /// Whether the check holds rules beyond the schema's Avro types ([`Self::strict`]): a body
    /// that a plain check passed still needs this one.
    pub fn has_rules(&self) -> bool {
        self.rules
    }

    /// Whether the schema has a usable top-level `uuid` field.
    pub fn has_uuid(&self) -> bool {
        self.uuid != UuidField::None
    }

    /// Checks that `body` is exactly one value of the schema: no truncation, no trailing
    /// bytes, every union branch, enum index, length and UTF-8 string valid.
    #[inline]
    pub fn check(&self, body: &[u8]) -> Result<CheckedBody> {
        let (checked, end) = self.check_prefix(body)?;
        if end != body.len() {
            return Err(Error::TrailingBytes {
                count: body.len() - end,
            });
        }
        Ok(checked)
    }

    /// Checks that `bytes` starts with one whole value of the schema and returns where it
    /// ends: how the records of an object container block are told apart.
    #[inline]
    pub fn check_prefix(&self, body: &[u8]) -> Result<(CheckedBody, usize)> {
        let mut c = Cursor {
            buf: body,
            pos: 0,
            items: 0,
        };
        let mut uuid = None;
        match (&self.root, self.uuid) {
            (Node::Record(r), UuidField::Fixed(k) | UuidField::String(k)) => {
                for (i, node) in self.records[*r].iter().enumerate() {
                    if i == k {
                        let start = c.pos;
                        // The event id's own parse below says what is wrong with it.
                        let node = match node {
                            Node::UuidString => &Node::String,
                            other => other,
                        };
                        self.skip(node, &mut c)?;
                        let raw = &body[start..c.pos];
                        uuid = Some(match self.uuid {
                            UuidField::Fixed(_) => raw.try_into().expect("fixed(16)"),
                            _ => {
                                // Skip the length prefix: a 36-character string has a 1-byte one.
                                let text = &raw[raw.len().saturating_sub(36)..];
                                match (raw.len(), timeuuid::parse_ascii(text)) {
                                    (37, Some(u)) => u,
                                    _ => {
                                        // The whole string, read past its own length prefix
                                        // (which the skip above checked).
                                        let mut at = Cursor {
                                            buf: raw,
                                            pos: 0,
                                            items: 0,
                                        };
                                        at.len()?;
                                        return Err(Error::BadUuid {
                                            reason: format!(
                                                "field `uuid` is not a UUID string: {:?}",
                                                String::from_utf8_lossy(&raw[at.pos..])
                                            ),
                                        });
                                    }
                                }
                            }
                        });
                    } else {
                        self.skip(node, &mut c)?;
                    }
                }
            }
            (root, _) => self.skip(root, &mut c)?,
        }
        Ok((CheckedBody { uuid }, c.pos))
    }

    /// Moves past one value of `node`. The values events are mostly made of (numbers,
    /// strings, fixed, enums, and unions of these with null) are checked here, inline in the
    /// caller's loop; nested types and decimals go through [`Self::skip_nested`].
    #[inline(always)]
    fn skip(&self, node: &Node, c: &mut Cursor<'_>) -> Result<()> {
        match node {
            Node::Union(branches) => {
                let at = c.pos;
                let i = c.varint()?;
                match usize::try_from(i).ok().and_then(|i| branches.get(i)) {
                    Some(b) => self.skip_plain(b, c),
                    None => Err(bad(at, "union branch index out of range")),
                }
            }
            other => self.skip_plain(other, c),
        }
    }

    /// [`Self::skip`] for anything but a union at the top.
    #[inline(always)]
    fn skip_plain(&self, node: &Node, c: &mut Cursor<'_>) -> Result<()> {
        match node {
            Node::Null => {}
            Node::Boolean => {
                let at = c.pos;
                if c.take(1)?[0] > 1 {
                    return Err(bad(at, "a boolean must be 0 or 1"));
                }
            }
            Node::Int => {
                let at = c.pos;
                let v = c.varint()?;
                if i32::try_from(v).is_err() {
                    return Err(bad(at, "an int is out of range"));
                }
            }
            Node::Long => {
                c.varint()?;
            }
            Node::Float => {
                c.take(4)?;
            }
            Node::Double => {
                c.take(8)?;
            }
            Node::Bytes => {
                let n = c.len()?;
                c.take(n)?;
            }
            Node::String => {
                let n = c.len()?;
                let at = c.pos;
                // SIMD validation: several times std's on the 100-200 byte strings of
                // typical events (URLs, names), and the same answer.
                if simdutf8::basic::from_utf8(c.take(n)?).is_err() {
                    return Err(bad(at, "a string is not valid UTF-8"));
                }
            }
            Node::UuidString => {
                let n = c.len()?;
                let at = c.pos;
                if timeuuid::parse_ascii(c.take(n)?).is_none() {
                    return Err(bad(at, "a string of logical type uuid is not a UUID"));
                }
            }
            Node::Fixed(n) => {
                c.take(*n)?;
            }
            Node::Currency => {
                let n = c.len()?;
                let at = c.pos;
                let code = c.take(n)?;
                if !is_currency_code(code) {
                    return Err(Error::BrokenRule {
                        offset: at,
                        reason: format!(
                            "the currency {:?} of a gfc.avro.Money is not an ISO 4217 code (three capital letters, e.g. USD)",
                            String::from_utf8_lossy(code)
                        ),
                    });
                }
            }
            Node::Enum(count) => {
                let at = c.pos;
                let i = c.varint()?;
                if i < 0 || i as u64 >= *count {
                    return Err(bad(at, "enum index out of range"));
                }
            }
            Node::Union(_)
            | Node::Decimal { .. }
            | Node::Ranged { .. }
            | Node::Array(_)
            | Node::Map(_)
            | Node::Record(_) => self.skip_nested(node, c)?,
        }
        Ok(())
    }

    /// Decimals, arrays, maps, records (and a union directly within a union): a call of its
    /// own, so that the inline checks above stay small.
    #[inline(never)]
    fn skip_nested(&self, node: &Node, c: &mut Cursor<'_>) -> Result<()> {
        match node {
            Node::Decimal { size, precision } => {
                let n = match size {
                    Some(n) => *n,
                    None => c.len()?,
                };
                let at = c.pos;
                check_decimal(c.take(n)?, *precision).map_err(|reason| bad(at, &reason))?;
            }
            Node::Ranged { int, logical } => {
                let at = c.pos;
                let v = c.varint()?;
                if *int && i32::try_from(v).is_err() {
                    return Err(bad(at, "an int is out of range"));
                }
                if !logical.range().is_some_and(|r| r.contains(&v)) {
                    return Err(Error::BrokenRule {
                        offset: at,
                        reason: logical.out_of_range(v),
                    });
                }
            }
            Node::Array(items) => self.skip_blocks(c, |c| self.skip(items, c))?,
            Node::Map(values) => self.skip_blocks(c, |c| {
                self.skip_plain(&Node::String, c)?;
                self.skip(values, c)
            })?,
            Node::Record(r) => {
                for f in &self.records[*r] {
                    self.skip(f, c)?;
                }
            }
            // A union directly within a union (Avro does not allow one; the branch is read
            // all the same). Leaves never come here: `skip_plain` checks them.
            _ => self.skip(node, c)?,
        }
        Ok(())
    }

    fn skip_blocks(
        &self,
        c: &mut Cursor<'_>,
        mut item: impl FnMut(&mut Cursor<'_>) -> Result<()>,
    ) -> Result<()> {
        loop {
            let at = c.pos;
            let mut count = c.varint()?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                count = count
                    .checked_neg()
                    .ok_or_else(|| bad(at, "bad block count"))?;
                c.len()?; // block size in bytes
            }
            // Zero-width items (null, empty records) could make a tiny body claim billions of
            // items, and so could many blocks, or many arrays, each claiming no more than the
            // body's length; no real event has more items, all together, than bytes in its
            // body.
            c.items = c.items.saturating_add(count as u64);
            if c.items > c.buf.len() as u64 {
                return Err(bad(
                    at,
                    "more array or map items than bytes in the body (a block count too large)",
                ));
            }
            for _ in 0..count {
                item(c)?;
            }
        }
    }
}

/// Whether a decimal's big-endian two's-complement bytes hold a value within `precision`
/// digits. Up to 38 digits the value is compared with 10^precision; wider decimals (Arrow's
/// 32-byte ones) need only fit in 32 bytes.
fn check_decimal(raw: &[u8], precision: u32) -> std::result::Result<(), String> {
    let width = if precision <= 38 { 16 } else { 32 };
    let too_wide = || {
        format!(
            "a decimal of precision {precision} holds a {}-byte value, more than fits in {width} bytes",
            raw.len()
        )
    };
    if precision > 38 {
        let (_, rest, sign_kept) = significant(raw);
        if rest.len() > width || (rest.len() == width && !sign_kept) {
            return Err(too_wide());
        }
        return Ok(());
    }
    let value = decimal_i128(raw).ok_or_else(too_wide)?;
    let limit = 10i128.pow(precision);
    if value >= limit || value <= -limit {
        return Err(format!(
            "a decimal value of {} digits is beyond its precision {precision}",
            value.unsigned_abs().to_string().len()
        ));
    }
    Ok(())
}

/// A decimal's two's-complement big-endian bytes without the leading sign bytes that carry
/// no value: whether it is negative, what is left, and whether what is left still starts with
/// the sign bit.
fn significant(raw: &[u8]) -> (bool, &[u8], bool) {
    let negative = raw.first().is_some_and(|b| b & 0x80 != 0);
    let sign = if negative { 0xff } else { 0x00 };
    let skip = raw
        .iter()
        .take_while(|&&b| b == sign)
        .count()
        .min(raw.len().saturating_sub(1));
    let rest = &raw[skip..];
    let sign_kept = rest.first().is_none_or(|b| (b & 0x80 != 0) == negative);
    (negative, rest, sign_kept)
}

/// The value of an Avro decimal's bytes (two's-complement, big-endian; none is 0), when it
/// fits in 128 bits.
pub fn decimal_i128(raw: &[u8]) -> Option<i128> {
    let (negative, rest, sign_kept) = significant(raw);
    if rest.len() > 16 || (rest.len() == 16 && !sign_kept) {
        return None;
    }
    let mut value: i128 = if negative { -1 } else { 0 };
    for &b in rest {
        value = (value << 8) | b as i128;
    }
    Some(value)
}

fn compile(ty: &Type, schema: &Schema, strict: bool) -> Node {
    match ty {
        Type::Primitive(p @ (Primitive::Int | Primitive::Long), Some(logical))
            if strict && logical.range().is_some() =>
        {
            Node::Ranged {
                int: *p == Primitive::Int,
                logical: logical.clone(),
            }
        }
        Type::Primitive(Primitive::String, Some(Logical::Uuid)) => Node::UuidString,
        Type::Primitive(Primitive::Bytes, Some(Logical::Decimal { precision, .. })) => {
            Node::Decimal {
                size: None,
                precision: *precision,
            }
        }
        Type::Primitive(p, _) => match p {
            Primitive::Null => Node::Null,
            Primitive::Boolean => Node::Boolean,
            Primitive::Int => Node::Int,
            Primitive::Long => Node::Long,
            Primitive::Float => Node::Float,
            Primitive::Double => Node::Double,
            Primitive::Bytes => Node::Bytes,
            Primitive::String => Node::String,
        },
        Type::Array(items) => Node::Array(Box::new(compile(items, schema, strict))),
        Type::Map(values) => Node::Map(Box::new(compile(values, schema, strict))),
        Type::Union(b) => Node::Union(b.iter().map(|t| compile(t, schema, strict)).collect()),
        Type::Named(i) => match &schema.named_type(*i).kind {
            NamedKind::Record(_) => Node::Record(*i),
            NamedKind::Enum { symbols, .. } => Node::Enum(symbols.len() as u64),
            NamedKind::Fixed {
                size,
                logical: Some(Logical::Decimal { precision, .. }),
            } => Node::Decimal {
                size: Some(*size),
                precision: *precision,
            },
            NamedKind::Fixed { size, .. } => Node::Fixed(*size),
        },
    }
}

/// Minimal Avro binary writers, for producers of test and demo events.
pub mod encode {
    /// Appends a zig-zag varint `long` (also used for `int`, lengths and indexes).
    #[inline]
    pub fn long(v: i64, out: &mut Vec<u8>) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            out.push((z as u8) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
    }

    /// Appends `bytes` or `string`: length then content.
    #[inline]
    pub fn bytes(v: &[u8], out: &mut Vec<u8>) {
        long(v.len() as i64, out);
        out.extend_from_slice(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = r#"{"type":"record","name":"E","namespace":"t","fields":[
        {"name":"uuid","type":{"type":"fixed","name":"UUID","namespace":"gfc.avro","size":16}},
        {"name":"n","type":"int"},
        {"name":"tags","type":{"type":"array","items":"string"}},
        {"name":"kind","type":{"type":"enum","name":"K","symbols":["A","B"]}},
        {"name":"opt","type":["null","double"]}]}"#;

    fn good() -> Vec<u8> {
        let mut b = vec![0x11; 16];
        b[6] = 0x11; // version 1
        encode::long(5, &mut b);
        encode::long(2, &mut b);
        encode::bytes(b"x", &mut b);
        encode::bytes(b"yz", &mut b);
        encode::long(0, &mut b);
        encode::long(1, &mut b);
        encode::long(1, &mut b);
        b.extend_from_slice(&1.5f64.to_le_bytes());
        b
    }

    #[test]
    fn zero_width_items_are_held_to_the_bodys_length_across_blocks_and_arrays() {
        // Arrays of null and of empty records: their items take no bytes, so a count is all
        // a body needs to claim them.
        let schema = Schema::parse(
            r#"{"type":"record","name":"Z","fields":[{"name":"uuid","type":"gfc.avro.UUID"},
                {"name":"nulls","type":{"type":"array","items":"null"}},
                {"name":"marks","type":{"type":"array","items":
                    {"type":"record","name":"Mark","fields":[]}}}]}"#,
        )
        .unwrap();
        let check = BodyCheck::new(&schema);
        // `blocks` blocks of `count` nulls each, then no marks.
        let body = |count: i64, blocks: usize| {
            let mut b = vec![0x11; 16];
            for _ in 0..blocks {
                encode::long(count, &mut b);
            }
            encode::long(0, &mut b);
            encode::long(0, &mut b);
            b
        };
        // A few items in a few blocks: as many as bytes, or fewer.
        assert!(check.check(&body(3, 2)).is_ok());
        // Blocks each claiming fewer items than the body has bytes, together millions: a
        // body of some 6 KB made the check walk 20 million items (a 1 MiB body, hundreds of
        // billions: minutes of a core, at the gateway and again in every job).
        let many = body(3000, 2000);
        assert!(many.len() < 3000 * 3, "{}", many.len());
        match check.check(&many) {
            Err(Error::BadBody { reason, .. }) => {
                assert!(
                    reason.contains("more array or map items than bytes"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
        // The same held across two arrays: each within the body's length, the two not.
        let len = body(20, 1).len() as i64;
        let mut two = vec![0x11; 16];
        encode::long(len, &mut two);
        encode::long(0, &mut two);
        encode::long(len, &mut two);
        encode::long(0, &mut two);
        assert!(matches!(check.check(&two), Err(Error::BadBody { .. })));
    }

    #[test]
    fn accepts_exact_body_and_extracts_uuid() {
        let check = BodyCheck::new(&Schema::parse(SCHEMA).unwrap());
        let body = good();
        assert_eq!(check.check(&body).unwrap().uuid.unwrap()[0], 0x11);
    }

    #[test]
    fn a_string_uuid_that_is_no_uuid_is_quoted_whole_without_its_length_prefix() {
        let schema = Schema::parse(
            r#"{"type":"record","name":"S","fields":[{"name":"uuid","type":"string"}]}"#,
        )
        .unwrap();
        let check = BodyCheck::new(&schema);
        for text in [
            "abc",
            "8b6c7224-eb8d-11f1-89ad-02fc00000001 and more text, 64+ chars",
        ] {
            let mut b = Vec::new();
            encode::bytes(text.as_bytes(), &mut b);
            match check.check(&b) {
                Err(Error::BadUuid { reason }) => assert_eq!(
                    reason,
                    format!("field `uuid` is not a UUID string: {text:?}")
                ),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_strict_check_refuses_a_money_currency_that_is_not_an_iso_code() {
        let schema = Schema::parse(
            r#"{"type":"record","name":"O","fields":[{"name":"total","type":"gfc.avro.Money"},
                {"name":"currency","type":"string"}]}"#,
        )
        .unwrap();
        let body = |code: &str| {
            let mut b = Vec::new();
            encode::bytes(&[0x07, 0xcf], &mut b); // 19.99 at scale 4
            encode::bytes(code.as_bytes(), &mut b);
            encode::bytes(b"any text", &mut b); // a field named currency outside Money
            b
        };
        let (plain, strict) = (BodyCheck::new(&schema), BodyCheck::strict(&schema));
        assert!(strict.has_rules() && !plain.has_rules());
        for good in ["USD", "XAU"] {
            strict.check(&body(good)).unwrap();
        }
        for bad in ["usd", "USDX", "US", "U$D"] {
            plain.check(&body(bad)).unwrap();
            let e = strict.check(&body(bad)).unwrap_err();
            assert!(
                matches!(e, Error::BrokenRule { offset: 4, .. })
                    && e.to_string().contains("ISO 4217"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn a_strict_check_holds_dates_times_and_timestamps_to_what_readers_read() {
        let schema = Schema::parse(
            r#"{"type":"record","name":"T","fields":[
                {"name":"day","type":{"type":"int","logicalType":"date"}},
                {"name":"at","type":["null",{"type":"long","logicalType":"timestamp-millis"}]},
                {"name":"times","type":{"type":"array","items":{"type":"long","logicalType":"time-micros"}}},
                {"name":"plain","type":"long"}]}"#,
        )
        .unwrap();
        let body = |day: i64, at: i64, time: i64| {
            let mut b = Vec::new();
            encode::long(day, &mut b);
            encode::long(1, &mut b);
            encode::long(at, &mut b);
            encode::long(1, &mut b);
            encode::long(time, &mut b);
            encode::long(0, &mut b);
            encode::long(i64::MAX, &mut b);
            b
        };
        let (plain, strict) = (BodyCheck::new(&schema), BodyCheck::strict(&schema));
        assert!(strict.has_rules() && !plain.has_rules());
        // The first and last of each range: 0001-01-01, 9999-12-31T23:59:59.999Z, a time of
        // day's last microsecond.
        for (day, at, time) in [
            (-719_162, -62_135_596_800_000, 0),
            (2_932_896, 253_402_300_799_999, 86_399_999_999),
            (20_420, 1_764_108_000_123, 45_296_789_123),
        ] {
            strict.check(&body(day, at, time)).unwrap();
        }
        for (b, words) in [
            (body(2_932_897, 0, 0), "date 2932897 (days since 1970-01-01) is not of a year from 1 to 9999"),
            // Microseconds sent as milliseconds: year 57872.
            (body(0, 1_764_108_000_123_456, 0), "timestamp-millis 1764108000123456 is not of a year from 1 to 9999 (a finer unit sent as milliseconds?)"),
            (body(0, -62_135_596_800_001, 0), "is not of a year from 1 to 9999"),
            (body(0, 0, 86_400_000_000), "time-micros 86400000000 is not a time of day"),
            (body(0, 0, -1), "time-micros -1 is not a time of day"),
        ] {
            plain.check(&b).unwrap();
            let e = strict.check(&b).unwrap_err();
            assert!(
                matches!(e, Error::BrokenRule { .. }) && e.to_string().contains(words),
                "{words}: {e}"
            );
        }
    }

    #[test]
    fn every_truncation_and_any_trailing_byte_is_rejected() {
        let check = BodyCheck::new(&Schema::parse(SCHEMA).unwrap());
        let body = good();
        for n in 0..body.len() {
            assert!(
                check.check(&body[..n]).is_err(),
                "prefix of {n} bytes accepted"
            );
        }
        let mut long = body.clone();
        long.push(0);
        assert!(matches!(
            check.check(&long),
            Err(Error::TrailingBytes { count: 1 })
        ));
    }

    #[test]
    fn varints_of_one_and_of_many_bytes_read_back() {
        for v in [
            0,
            1,
            -1,
            63,
            -64,
            64,
            -65,
            300,
            8191,
            -8192,
            8192,
            -8193,
            i32::MAX as i64,
            i32::MIN as i64,
            i64::MAX,
            i64::MIN,
        ] {
            let mut buf = vec![0xAA];
            encode::long(v, &mut buf);
            let mut pos = 1;
            assert_eq!(zigzag(&buf, &mut pos), Ok(v), "{v}");
            assert_eq!(pos, buf.len(), "{v}");
        }
        for truncated in [&[0x80][..], &[0x80, 0x80], &[0xff, 0xff, 0xff]] {
            let mut pos = 0;
            assert_eq!(
                zigzag(truncated, &mut pos),
                Err("truncated: ends inside a number")
            );
        }
        let mut pos = 0;
        assert_eq!(
            zigzag(&[], &mut pos),
            Err("truncated: ends inside a number")
        );
        let mut pos = 0;
        assert_eq!(
            zigzag(&[0xff; 11], &mut pos),
            Err("a number is longer than 10 bytes")
        );
    }

    #[test]
    fn maps_of_arrays_of_nested_records_are_checked_throughout() {
        let s = Schema::parse(
            r#"{"type":"record","name":"O","fields":[
                {"name":"uuid","type":{"type":"fixed","name":"U","size":16}},
                {"name":"m","type":{"type":"map","values":{"type":"array","items":
                    {"type":"record","name":"I","fields":[
                        {"name":"b","type":["null","boolean"]},
                        {"name":"d","type":["null",{"type":"bytes","logicalType":"decimal","precision":3,"scale":0}]}]}}}},
                {"name":"tail","type":"long"}]}"#,
        )
        .unwrap();
        let check = BodyCheck::new(&s);
        // m = {"k": [{b: true, d: 999}, {b: null, d: null}]}, tail = 7; `key` and the
        // first item's boolean and decimal bytes are what the cases below spoil.
        let body = |key: &[u8], boolean: u8, decimal: &[u8]| {
            let mut b = vec![0x11; 16];
            encode::long(1, &mut b); // one map entry
            encode::bytes(key, &mut b);
            encode::long(2, &mut b); // two items
            encode::long(1, &mut b);
            b.push(boolean);
            encode::long(1, &mut b);
            encode::bytes(decimal, &mut b);
            encode::long(0, &mut b);
            encode::long(0, &mut b);
            encode::long(0, &mut b); // end of the array
            encode::long(0, &mut b); // end of the map
            encode::long(7, &mut b);
            b
        };
        let good = body(b"k", 1, &999i16.to_be_bytes());
        assert_eq!(check.check(&good).unwrap().uuid, Some([0x11; 16]));
        for (bad, words) in [
            (body(b"\xff", 1, &999i16.to_be_bytes()), "not valid UTF-8"),
            (
                body(b"k", 2, &999i16.to_be_bytes()),
                "a boolean must be 0 or 1",
            ),
            (
                body(b"k", 1, &1000i16.to_be_bytes()),
                "beyond its precision 3",
            ),
        ] {
            let e = check.check(&bad).unwrap_err();
            assert!(e.to_string().contains(words), "{words}: {e}");
        }
        for cut in 17..good.len() {
            assert!(check.check(&good[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn bad_union_enum_and_utf8_are_named() {
        let check = BodyCheck::new(&Schema::parse(SCHEMA).unwrap());
        let mut b = good();
        let n = b.len();
        b[n - 9] = 4; // union index 2
        assert!(check
            .check(&b)
            .unwrap_err()
            .to_string()
            .contains("union branch index"));
        let mut b = good();
        b[19] = 0xff; // the first tag's only byte: invalid UTF-8
        assert!(check.check(&b).unwrap_err().to_string().contains("UTF-8"));
    }

    #[test]
    fn string_uuid_is_parsed() {
        let s = Schema::parse(
            r#"{"type":"record","name":"S","fields":[{"name":"uuid","type":{"type":"string","logicalType":"uuid"}}]}"#,
        )
        .unwrap();
        let check = BodyCheck::new(&s);
        let mut b = Vec::new();
        encode::bytes(b"165c0cf3-ca4a-11f0-bb9a-0242ac110002", &mut b);
        let id = check.check(&b).unwrap().uuid.unwrap();
        assert_eq!(
            crate::timeuuid::to_string(&id),
            "165c0cf3-ca4a-11f0-bb9a-0242ac110002"
        );
        let mut b = Vec::new();
        encode::bytes(b"not-a-uuid", &mut b);
        assert!(matches!(check.check(&b), Err(Error::BadUuid { .. })));
    }

    /// What arrow-avro parses when it decodes (uuid strings anywhere, decimals into 16 or 32
    /// bytes) is checked here, so that such a record is rejected rather than failing the batch
    /// it would be decoded in.
    #[test]
    fn nested_uuid_strings_and_decimals_beyond_their_precision_are_rejected() {
        let s = Schema::parse(
            r#"{"type":"record","name":"L","fields":[
                {"name":"uuid","type":{"type":"fixed","name":"U","size":16}},
                {"name":"ref","type":{"type":"string","logicalType":"uuid"}},
                {"name":"amount","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}},
                {"name":"big","type":{"type":"fixed","name":"B","size":20,"logicalType":"decimal","precision":40}}]}"#,
        )
        .unwrap();
        let check = BodyCheck::new(&s);
        let body = |reference: &[u8], amount: &[u8], big: &[u8; 20]| {
            let mut b = vec![0x11; 16];
            encode::bytes(reference, &mut b);
            encode::bytes(amount, &mut b);
            b.extend_from_slice(big);
            b
        };
        let uuid = b"165c0cf3-ca4a-11f0-bb9a-0242ac110002";
        // 12345678.99 (9,999,999,999 is the largest unscaled value of precision 10), and its
        // negative; a sign-extended 20-byte form of a small value is fine too.
        let fits = 1_234_567_899i64.to_be_bytes();
        let negative = (-9_999_999_999i64).to_be_bytes();
        let mut wide = [0xffu8; 20];
        wide[19] = 0xfe; // -2
        for amount in [&fits[..], &negative[..], &wide[..], &[]] {
            check
                .check(&body(uuid, amount, &[0; 20]))
                .unwrap_or_else(|e| panic!("{amount:?}: {e}"));
        }
        // A 20-byte decimal of precision 40 is read into 32 bytes: any value fits.
        check.check(&body(uuid, &fits, &[0x7f; 20])).unwrap();
        let cases: [(&[u8], &[u8], &str); 4] = [
            (b"not-a-uuid", &fits, "logical type uuid is not a UUID"),
            (
                uuid,
                &10_000_000_000i64.to_be_bytes(),
                "beyond its precision 10",
            ),
            (
                uuid,
                &(-10_000_000_000i64).to_be_bytes(),
                "beyond its precision 10",
            ),
            (uuid, &[0x7f; 20], "more than fits in 16 bytes"),
        ];
        for (reference, amount, words) in cases {
            let e = check.check(&body(reference, amount, &[0; 20])).unwrap_err();
            assert!(
                matches!(e, Error::BadBody { .. }) && e.to_string().contains(words),
                "{words}: {e}"
            );
        }
    }
}
