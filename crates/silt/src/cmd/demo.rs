//! `silt demo`: everything embedded. A registry and a file stream in a folder, synthetic
//! events with repeats and bad records, a job run, and query results on screen.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use silt_ingest::FileStream;
use silt_registry::SchemaRegistry;

use crate::cmd::query::{self, Format};
use crate::gen::{self, GenOptions};
use crate::job::{self, Job, RunOptions};

/// The transforms the demo job runs, and the reference table one joins with (the
/// repository's `sql/`).
pub const PAGE_VIEWS_HOURLY_SQL: &str = include_str!("../../../../sql/page_views_hourly.sql");
pub const SALE_VIEWS_SQL: &str = include_str!("../../../../sql/sale_views.sql");
pub const SALE_VIEWS_NAMED_SQL: &str = include_str!("../../../../sql/sale_views_named.sql");
pub const SALES_CSV: &str = include_str!("../../../../sql/sales.csv");

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Where to put the demo's registry, stream, job and lake (default: a new temporary folder).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Distinct events to generate.
    #[arg(long, default_value_t = 20_000)]
    pub events: usize,
}

pub async fn run(args: DemoArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let dir = match args.dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("silt-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot make {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    writeln!(out, "silt demo in {}", dir.display())?;

    // 1. The registry, with both versions of the clickstream schema.
    let registry = silt_registry::open("file://registry", &dir)?;
    for (v, text) in [("v1", gen::V1), ("v2", gen::V2)] {
        let r = registry.register(gen::SUBJECT, text).await?;
        writeln!(
            out,
            "  registry: {} {v} is version {} ({})",
            gen::SUBJECT,
            r.version,
            r.fingerprint
        )?;
    }

    // 2. A file stream with synthetic events: repeats and bad records included.
    // A demo run again in its folder starts afresh: a new stream under the old lake's
    // checkpoint would read as nothing new (or skip the new events), and the queries would
    // show the old lake.
    let stream_dir = dir.join("streams").join(gen::SUBJECT);
    let lake_dir = dir.join("lake");
    let again = stream_dir.exists() || lake_dir.join("_silt").exists();
    if stream_dir.exists() {
        std::fs::remove_dir_all(&stream_dir)?;
    }
    if lake_dir.join("_silt").exists() {
        std::fs::remove_dir_all(&lake_dir)?;
    }
    if again {
        writeln!(
            out,
            "  (a previous demo's stream and lake in this folder were removed: starting afresh)"
        )?;
    }
    let stream = FileStream::create(&stream_dir, 2)?;
    let opts = GenOptions {
        events: args.events,
        ..Default::default()
    };
    let g = gen::generate(&stream, &opts)?;
    writeln!(
        out,
        "  stream:   {} distinct events, {} producer retries, {} bad records ({} bytes, 2 shards)",
        g.distinct, g.repeats, g.bad, g.bytes
    )?;

    // 3. The job: raw table, rejected records, and an hourly aggregate.
    std::fs::create_dir_all(dir.join("jobs"))?;
    std::fs::create_dir_all(dir.join("sql"))?;
    for (name, text) in [
        ("page_views_hourly.sql", PAGE_VIEWS_HOURLY_SQL),
        ("sale_views.sql", SALE_VIEWS_SQL),
        ("sale_views_named.sql", SALE_VIEWS_NAMED_SQL),
        ("sales.csv", SALES_CSV),
    ] {
        std::fs::write(dir.join("sql").join(name), text)?;
    }
    let job_path = dir.join("jobs/clickstream.toml");
    std::fs::write(
        &job_path,
        format!(
            r#"name = "clickstream"

[source]
type = "file"
path = "../streams/{subject}"
start = "earliest"

[schema]
registry = "file://../registry"
subject = "{subject}"

[dedup]
window = "15m"

[lake]
location = "file://../lake"
table = "clickstream"
partition_by = ["dt", "hr"]

[[transform]]
name = "page_views_hourly"
sql = "../sql/page_views_hourly.sql"
mode = "partitions"

[[transform]]
name = "sale_views"
sql = "../sql/sale_views.sql"

[[transform]]
name = "sale_views_named"
sql = "../sql/sale_views_named.sql"

[[reference]]
name = "sales"
path = "../sql/sales.csv"

[batch]
max_records = 5000
"#,
            subject = gen::SUBJECT
        ),
    )?;
    let job = Job::load(&job_path).await?;
    let summary = job::run(&job, &RunOptions::on_terminal()).await?;
    writeln!(out, "  job:      {}", job_path.display())?;
    writeln!(out, "\n{}\n", summary.render())?;

    // 4. What an analyst sees.
    let lake = silt_storage::open("file://lake", &dir)?;
    let sql = r#"SELECT dt, hr, count(*) AS events, count(DISTINCT "productId") AS products, count(channel) AS with_channel
FROM clickstream GROUP BY dt, hr ORDER BY dt, hr"#;
    writeln!(out, "silt query '{sql}'")?;
    query::print(&query::query(&lake, sql).await?, Format::Table, out)?;
    let sql = r#"SELECT "productId", sum(views) AS views FROM page_views_hourly GROUP BY "productId" ORDER BY views DESC, "productId" LIMIT 5"#;
    writeln!(out, "silt query '{sql}'")?;
    query::print(&query::query(&lake, sql).await?, Format::Table, out)?;
    let sql =
        "SELECT brand, count(*) AS sale_views FROM sale_views_named GROUP BY brand ORDER BY brand";
    writeln!(out, "silt query '{sql}'")?;
    query::print(&query::query(&lake, sql).await?, Format::Table, out)?;
    let sql = "SELECT reason_code, count(*) AS records FROM clickstream_rejected GROUP BY reason_code ORDER BY reason_code";
    writeln!(out, "silt query '{sql}'")?;
    query::print(&query::query(&lake, sql).await?, Format::Table, out)?;
    writeln!(
        out,
        "Try: silt query --lake file://{}/lake 'SELECT * FROM clickstream LIMIT 5'",
        dir.display()
    )?;
    writeln!(
        out,
        "     silt run --check {}   (the job's transforms: columns, partitions, how each runs)",
        dir.join("jobs/clickstream.toml").display()
    )?;
    Ok(())
}
