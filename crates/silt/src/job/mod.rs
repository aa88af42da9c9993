//! Jobs: a job file resolved into its parts, and the micro-batch loop that runs it.

mod backfill;
pub mod config;
mod plan;
mod redrive;
mod run;

pub use backfill::{backfill, parse_hour, BackfillSummary, EarlierSql};
pub use plan::{plan, JobPlan, PlannedColumn, PlannedTransform, Runs};
pub use redrive::{parse_reasons, redrive, RedriveOptions, RedriveSummary};
pub(crate) use run::rejected_partitions;
pub use run::{run, throttles_since, BatchReport, Job, RunOptions, RunSummary, TableSeconds};
