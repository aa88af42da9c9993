//! Avro schema resolution as a field-by-field report: can a reader schema read data written
//! with a writer schema, and if not, which fields stop it and why.
//!
//! The rules are the Avro specification's "Schema Resolution": fields matched by name or by
//! the reader's aliases, reader-only fields need defaults, writer-only fields are skipped,
//! primitives promote (int to long, float, double; long to float, double; float to double;
//! string to and from bytes), unions resolve branch by branch, enums need the writer's symbols
//! or a reader default, fixed types keep their size, named types their (unqualified) name.

use std::collections::HashSet;

use serde_json::Value;

use crate::schema::{Logical, NamedKind, Primitive, Schema, Type};

/// One reason a reader cannot read a writer's data.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Incompatibility {
    /// JSON-pointer-like path in the reader schema, e.g. `/fields/saleId/type`.
    pub path: String,
    /// Plain words: what is wrong there.
    pub reason: String,
}

impl std::fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}",
            if self.path.is_empty() {
                "/"
            } else {
                &self.path
            },
            self.reason
        )
    }
}

/// Every reason `reader` cannot read data written with `writer`; empty when it can.
pub fn incompatibilities(reader: &Schema, writer: &Schema) -> Vec<Incompatibility> {
    let mut c = Checker {
        reader,
        writer,
        seen: HashSet::new(),
        out: Vec::new(),
    };
    c.check(reader.root(), writer.root(), "");
    c.out
}

struct Checker<'a> {
    reader: &'a Schema,
    writer: &'a Schema,
    seen: HashSet<(usize, usize)>,
    out: Vec<Incompatibility>,
}

/// The unit of a time logical type: 1 for microseconds, 1000 for milliseconds.
fn time_unit(l: &Logical) -> Option<u32> {
    match l {
        Logical::TimeMillis | Logical::TimestampMillis | Logical::LocalTimestampMillis => {
            Some(1000)
        }
        Logical::TimeMicros | Logical::TimestampMicros | Logical::LocalTimestampMicros => Some(1),
        _ => None,
    }
}

fn promotes(writer: Primitive, reader: Primitive) -> bool {
    use Primitive::*;
    writer == reader
        || matches!(
            (writer, reader),
            (Int, Long | Float | Double)
                | (Long, Float | Double)
                | (Float, Double)
                | (String, Bytes)
                | (Bytes, String)
        )
}

impl Checker<'_> {
    fn push(&mut self, path: &str, reason: String) {
        self.out.push(Incompatibility {
            path: path.to_string(),
            reason,
        });
    }

    fn rdesc(&self, t: &Type) -> String {
        t.describe(self.reader)
    }

    fn wdesc(&self, t: &Type) -> String {
        t.describe(self.writer)
    }

    fn names_match(&self, r: usize, w: usize) -> bool {
        let rn = self.reader.named_type(r);
        let wn = self.writer.named_type(w);
        rn.short_name() == wn.short_name()
            || rn
                .aliases
                .iter()
                .any(|a| a == &wn.name || a.rsplit('.').next() == Some(wn.short_name()))
    }

    /// Whether a reader type is a candidate for a writer type (shallow: same kind and name,
    /// or a promotion), as used to pick a union branch.
    fn matches(&self, r: &Type, w: &Type) -> bool {
        match (r, w) {
            (Type::Primitive(rp, _), Type::Primitive(wp, _)) => promotes(*wp, *rp),
            (Type::Array(_), Type::Array(_)) | (Type::Map(_), Type::Map(_)) => true,
            (Type::Named(ri), Type::Named(wi)) => {
                std::mem::discriminant(&self.reader.named_type(*ri).kind)
                    == std::mem::discriminant(&self.writer.named_type(*wi).kind)
                    && self.names_match(*ri, *wi)
            }
            _ => false,
        }
    }

    /// Whether a reader type is the writer's own: as [`Self::matches`], of the very primitive
    /// or, for a named type, of the same full name (a union may hold `a.Item` and `b.Item`,
    /// which match each other by name; each writer branch goes to its own, as Java's Avro
    /// picks branches).
    fn exact(&self, r: &Type, w: &Type) -> bool {
        match (r, w) {
            (Type::Primitive(rp, _), Type::Primitive(wp, _)) => rp == wp,
            (Type::Named(ri), Type::Named(wi)) => {
                self.matches(r, w)
                    && self.reader.named_type(*ri).name == self.writer.named_type(*wi).name
            }
            _ => self.matches(r, w),
        }
    }

    fn check(&mut self, r: &Type, w: &Type, path: &str) {
        match (r, w) {
            (_, Type::Union(wb)) => {
                for wt in wb {
                    match r {
                        Type::Union(rb) => {
                            let pick = rb
                                .iter()
                                .find(|rt| self.exact(rt, wt))
                                .or_else(|| rb.iter().find(|rt| self.matches(rt, wt)));
                            match pick {
                                Some(rt) => self.check(rt, wt, path),
                                None => {
                                    let reason = format!(
                                        "the writer's union branch `{}` has no matching branch in the reader's union {}",
                                        self.wdesc(wt),
                                        self.rdesc(r)
                                    );
                                    self.push(path, reason)
                                }
                            }
                        }
                        _ if self.matches(r, wt) => self.check(r, wt, path),
                        _ => {
                            let reason = format!(
                                "the writer may write `{}` (a branch of its union {}), which the reader's `{}` cannot read",
                                self.wdesc(wt),
                                self.wdesc(w),
                                self.rdesc(r)
                            );
                            self.push(path, reason)
                        }
                    }
                }
            }
            (Type::Union(rb), _) => {
                let pick = rb
                    .iter()
                    .find(|rt| self.exact(rt, w))
                    .or_else(|| rb.iter().find(|rt| self.matches(rt, w)));
                match pick {
                    Some(rt) => self.check(rt, w, path),
                    None => {
                        let reason = format!(
                            "the reader's union {} has no branch for the writer's `{}`",
                            self.rdesc(r),
                            self.wdesc(w)
                        );
                        self.push(path, reason)
                    }
                }
            }
            (Type::Primitive(rp, rl), Type::Primitive(wp, wl)) => {
                if !promotes(*wp, *rp) {
                    self.push(
                        path,
                        format!(
                            "type changed from `{}` to `{}`, which Avro cannot promote",
                            wp.name(),
                            rp.name()
                        ),
                    );
                } else {
                    self.check_logical(rl.as_ref(), wl.as_ref(), path);
                }
            }
            (Type::Array(ri), Type::Array(wi)) => self.check(ri, wi, &format!("{path}/items")),
            (Type::Map(rv), Type::Map(wv)) => self.check(rv, wv, &format!("{path}/values")),
            (Type::Named(ri), Type::Named(wi)) => self.check_named(*ri, *wi, path),
            _ => {
                let reason = format!(
                    "type changed from `{}` to `{}`",
                    self.wdesc(w),
                    self.rdesc(r)
                );
                self.push(path, reason)
            }
        }
    }

    /// What a logical type change does to values the binary encoding keeps: a decimal read
    /// with another scale, or a time read in another unit, would read wrong numbers.
    fn check_logical(&mut self, r: Option<&Logical>, w: Option<&Logical>, path: &str) {
        let reason = match (r, w) {
            (
                Some(Logical::Decimal {
                    precision: rp,
                    scale: rs,
                }),
                Some(Logical::Decimal {
                    precision: wp,
                    scale: ws,
                }),
            ) if rs != ws || rp < wp => Some(format!(
                "decimal changed from ({wp}, {ws}) to ({rp}, {rs}): the scale must stay and the precision may only grow"
            )),
            (Some(rl), Some(wl)) => match (time_unit(rl), time_unit(wl)) {
                (Some(ru), Some(wu)) if ru != wu => Some(format!(
                    "the unit changed from {wl} to {rl}: values written before would read 1000 times off (add a field for the new unit instead)"
                )),
                _ => None,
            },
            _ => None,
        };
        if let Some(reason) = reason {
            self.push(path, reason);
        }
    }

    fn check_named(&mut self, ri: usize, wi: usize, path: &str) {
        let (reader, writer) = (self.reader, self.writer);
        let rn = reader.named_type(ri);
        let wn = writer.named_type(wi);
        if std::mem::discriminant(&rn.kind) != std::mem::discriminant(&wn.kind) {
            self.push(
                path,
                format!("type changed from `{}` to `{}`", wn.name, rn.name),
            );
            return;
        }
        if !self.names_match(ri, wi) {
            self.push(
                path,
                format!("named type `{}` cannot read `{}`: the names differ (an alias would match them)", rn.name, wn.name),
            );
            return;
        }
        if !self.seen.insert((ri, wi)) {
            return; // recursive type: already being checked
        }
        match (&rn.kind, &wn.kind) {
            (NamedKind::Record(rf), NamedKind::Record(wf)) => {
                for f in rf {
                    let found = wf
                        .iter()
                        .find(|w| w.name == f.name)
                        .or_else(|| wf.iter().find(|w| f.aliases.contains(&w.name)));
                    match found {
                        Some(w) => {
                            self.check(&f.ty, &w.ty, &format!("{path}/fields/{}/type", f.name))
                        }
                        None if f.default.is_some() => {}
                        None => self.push(
                            &format!("{path}/fields/{}", f.name),
                            "reader field has no default and the writer does not write it"
                                .to_string(),
                        ),
                    }
                }
            }
            (
                NamedKind::Enum {
                    symbols: rs,
                    default: rd,
                },
                NamedKind::Enum { symbols: ws, .. },
            ) => {
                if rd.is_none() {
                    for s in ws.iter().filter(|s| !rs.contains(s)) {
                        self.push(
                            &format!("{path}/symbols"),
                            format!("writer symbol `{s}` is not in the reader's enum `{}`, which has no default", rn.name),
                        );
                    }
                }
            }
            (
                NamedKind::Fixed {
                    size: rsz,
                    logical: rl,
                },
                NamedKind::Fixed {
                    size: wsz,
                    logical: wl,
                },
            ) => {
                if rsz != wsz {
                    self.push(
                        &format!("{path}/size"),
                        format!("fixed `{}` changed size from {wsz} to {rsz}", rn.name),
                    );
                } else {
                    self.check_logical(rl.as_ref(), wl.as_ref(), path);
                }
            }
            _ => unreachable!("kinds compared above"),
        }
    }
}

/// Every difference between two schemas of one Parsing Canonical Form (one fingerprint) in
/// what that form leaves out but readers depend on: logical types (a decimal's precision and
/// scale, a timestamp's unit) and defaults (of fields and enums). A stream record names its
/// writer schema by fingerprint alone, so two such schemas cannot both be registered; empty
/// when `new` is `registered` again (docs and aliases apart, which change no value read).
pub fn beyond_fingerprint(registered: &Schema, new: &Schema) -> Vec<Incompatibility> {
    let mut d = Differ {
        old: registered,
        new,
        seen: HashSet::new(),
        out: Vec::new(),
    };
    d.diff(registered.root(), new.root(), "");
    d.out
}

struct Differ<'a> {
    old: &'a Schema,
    new: &'a Schema,
    seen: HashSet<(usize, usize)>,
    out: Vec<Incompatibility>,
}

impl Differ<'_> {
    fn push(&mut self, path: String, reason: String) {
        self.out.push(Incompatibility { path, reason });
    }

    fn logical(&mut self, old: Option<&Logical>, new: Option<&Logical>, path: &str) {
        if old != new {
            let say = |l: Option<&Logical>| l.map_or("none".to_string(), |l| l.to_string());
            self.push(
                path.to_string(),
                format!("logical type changed from {} to {}", say(old), say(new)),
            );
        }
    }

    fn default(&mut self, old: Option<&Value>, new: Option<&Value>, path: String) {
        let same = match (old, new) {
            (Some(a), Some(b)) => same_json(a, b),
            (a, b) => a.is_none() && b.is_none(),
        };
        if !same {
            let say = |v: Option<&Value>| v.map_or("none".to_string(), |v| v.to_string());
            self.push(
                path,
                format!("default changed from {} to {}", say(old), say(new)),
            );
        }
    }

    fn diff(&mut self, old: &Type, new: &Type, path: &str) {
        match (old, new) {
            (Type::Primitive(_, ol), Type::Primitive(_, nl)) => {
                self.logical(ol.as_ref(), nl.as_ref(), path)
            }
            (Type::Array(o), Type::Array(n)) => self.diff(o, n, &format!("{path}/items")),
            (Type::Map(o), Type::Map(n)) => self.diff(o, n, &format!("{path}/values")),
            (Type::Union(o), Type::Union(n)) => {
                for (o, n) in o.iter().zip(n) {
                    self.diff(o, n, path);
                }
            }
            (Type::Named(o), Type::Named(n)) => self.diff_named(*o, *n, path),
            // One canonical form: the shapes agree.
            _ => {}
        }
    }

    fn diff_named(&mut self, oi: usize, ni: usize, path: &str) {
        if !self.seen.insert((oi, ni)) {
            return;
        }
        let (old, new) = (self.old, self.new);
        match (&old.named_type(oi).kind, &new.named_type(ni).kind) {
            (NamedKind::Record(of), NamedKind::Record(nf)) => {
                for (o, n) in of.iter().zip(nf) {
                    let at = format!("{path}/fields/{}", n.name);
                    self.default(
                        o.default.as_ref(),
                        n.default.as_ref(),
                        format!("{at}/default"),
                    );
                    self.diff(&o.ty, &n.ty, &format!("{at}/type"));
                }
            }
            (NamedKind::Enum { default: od, .. }, NamedKind::Enum { default: nd, .. })
                if od != nd =>
            {
                let say = |d: &Option<String>| d.clone().unwrap_or_else(|| "none".into());
                self.push(
                    format!("{path}/default"),
                    format!("the enum's default changed from {} to {}", say(od), say(nd)),
                );
            }
            (NamedKind::Fixed { logical: ol, .. }, NamedKind::Fixed { logical: nl, .. }) => {
                self.logical(ol.as_ref(), nl.as_ref(), path)
            }
            _ => {}
        }
    }
}

/// JSON values equal as Avro reads them: numbers by value (`1` and `1.0` are one default).
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}
