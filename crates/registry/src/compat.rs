//! Per-subject compatibility rules (SPEC 4) on top of the resolution report.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use silt_wire::resolution::{incompatibilities, Incompatibility};
use silt_wire::Schema;

/// Which earlier versions a new schema must stay compatible with, and in which direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Compatibility {
    /// The new schema reads data written with the latest one (consumers upgrade first).
    #[default]
    Backward,
    /// The new schema reads data written with every earlier one.
    BackwardTransitive,
    /// The latest schema reads data written with the new one (producers upgrade first).
    Forward,
    /// Every earlier schema reads data written with the new one.
    ForwardTransitive,
    /// Both backward and forward with the latest.
    Full,
    /// Both backward and forward with every earlier one.
    FullTransitive,
    /// No check.
    None,
}

impl Compatibility {
    pub const ALL: [Compatibility; 7] = [
        Compatibility::Backward,
        Compatibility::BackwardTransitive,
        Compatibility::Forward,
        Compatibility::ForwardTransitive,
        Compatibility::Full,
        Compatibility::FullTransitive,
        Compatibility::None,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Compatibility::Backward => "BACKWARD",
            Compatibility::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Compatibility::Forward => "FORWARD",
            Compatibility::ForwardTransitive => "FORWARD_TRANSITIVE",
            Compatibility::Full => "FULL",
            Compatibility::FullTransitive => "FULL_TRANSITIVE",
            Compatibility::None => "NONE",
        }
    }

    /// Every reason `new` may not follow `previous` (oldest first) under this rule. Reasons
    /// found against an older version than the latest say which version.
    pub fn check(self, new: &Schema, previous: &[&Schema]) -> Vec<Incompatibility> {
        let Some(latest) = previous.last() else {
            return Vec::new();
        };
        let (against, backward, forward): (Vec<(usize, &Schema)>, bool, bool) = match self {
            Compatibility::None => return Vec::new(),
            Compatibility::Backward => (vec![(previous.len(), *latest)], true, false),
            Compatibility::Forward => (vec![(previous.len(), *latest)], false, true),
            Compatibility::Full => (vec![(previous.len(), *latest)], true, true),
            Compatibility::BackwardTransitive => (enumerate(previous), true, false),
            Compatibility::ForwardTransitive => (enumerate(previous), false, true),
            Compatibility::FullTransitive => (enumerate(previous), true, true),
        };
        let mut out = Vec::new();
        for (version, old) in against {
            let suffix = if version == previous.len() {
                String::new()
            } else {
                format!(" (against version {version})")
            };
            // Under a FULL rule both directions are checked: each reason says which failed.
            let direction = if forward {
                "the new schema cannot read the previous one: "
            } else {
                ""
            };
            if backward {
                for i in incompatibilities(new, old) {
                    out.push(Incompatibility {
                        path: i.path,
                        reason: format!("{direction}{}{suffix}", i.reason),
                    });
                }
            }
            if forward {
                for i in incompatibilities(old, new) {
                    out.push(Incompatibility {
                        path: i.path,
                        reason: format!(
                            "the previous schema cannot read the new one: {}{suffix}",
                            i.reason
                        ),
                    });
                }
            }
        }
        out.dedup();
        out
    }
}

fn enumerate<'a>(previous: &[&'a Schema]) -> Vec<(usize, &'a Schema)> {
    previous
        .iter()
        .enumerate()
        .map(|(i, s)| (i + 1, *s))
        .collect()
}

impl fmt::Display for Compatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Compatibility {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Compatibility::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!(
                    "unknown compatibility `{s}` (one of {})",
                    Compatibility::ALL.map(|c| c.as_str()).join(", ")
                )
            })
    }
}
