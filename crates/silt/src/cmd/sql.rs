//! `silt sql`: an interactive SQL shell over the lake (history, multi-line statements ending
//! with `;`, `\d [TABLE]` to describe, `\q` to quit).

use std::io::IsTerminal;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use rustyline::error::ReadlineError;

use crate::cmd::query::{
    lake_session, print, run_statement, Format, Session, Unreadable, DEFAULT_LAKE,
};

#[derive(Debug, clap::Args)]
pub struct SqlArgs {
    /// The lake's root.
    #[arg(long, env = "SILT_LAKE", default_value = DEFAULT_LAKE)]
    pub lake: String,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

pub async fn run(args: SqlArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let lake = silt_storage::open(&args.lake, Path::new("."))
        .with_context(|| format!("lake {}", args.lake))?;
    let mut session = lake_session(&lake).await?;
    warn(&session.2);
    let mut editor = rustyline::DefaultEditor::new()?;
    let history = std::env::var_os("HOME").map(|h| Path::new(&h).join(".silt_history"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    writeln!(
        out,
        "silt sql on {} ({} tables: {}). End statements with ';'. \\d lists tables, \\d NAME shows one, \\r reloads commits, \\q quits.",
        lake.url,
        session.1.tables.len(),
        session.1.tables.keys().cloned().collect::<Vec<_>>().join(", ")
    )?;
    let mut buffer = String::new();
    let (mut statements, mut failed) = (0usize, 0usize);
    let mut at_end = false;
    while !at_end {
        let prompt = if buffer.is_empty() {
            "silt> "
        } else {
            "  ... "
        };
        let line = match editor.readline(prompt) {
            Ok(l) => l,
            Err(ReadlineError::Interrupted) => {
                buffer.clear();
                continue;
            }
            // A last statement without its ';' is run, as psql runs one (a script's last
            // line is easily left without it; it was dropped without a word).
            Err(ReadlineError::Eof) if !buffer.trim().is_empty() => {
                at_end = true;
                ";".to_string()
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let trimmed = line.trim();
        if buffer.is_empty() {
            match trimmed {
                "" => continue,
                "\\q" | "quit" | "exit" => break,
                "\\d" => {
                    session = latest(&lake, &session).await?;
                    for (t, (state, _)) in &session.1.tables {
                        writeln!(
                            out,
                            "{t}\t{} files\tpartitioned by {:?}",
                            state.files.len(),
                            state.partition_by
                        )?;
                    }
                    continue;
                }
                d if d.starts_with("\\d ") => {
                    session = latest(&lake, &session).await?;
                    let (ctx, snapshot, unreadable) = &session;
                    let name = d["\\d ".len()..].trim();
                    match (snapshot.tables.get(name), ctx.table(name).await) {
                        (Some((state, _)), Ok(table)) => {
                            let rows: u64 = state.files.iter().map(|f| f.rows).sum();
                            let bytes: u64 = state.files.iter().map(|f| f.bytes).sum();
                            writeln!(
                                out,
                                "{name}: {rows} rows in {} files ({bytes} bytes), partitioned by {:?}",
                                state.files.len(),
                                state.partition_by
                            )?;
                            for field in table.schema().fields() {
                                writeln!(
                                    out,
                                    "  {}\t{}{}",
                                    field.name(),
                                    field.data_type(),
                                    if field.is_nullable() { "" } else { " not null" }
                                )?;
                            }
                        }
                        (Some(_), Err(_)) if unreadable.contains_key(name) => {
                            writeln!(out, "{name}: cannot be read: {}", unreadable[name])?
                        }
                        _ => writeln!(
                            out,
                            "no table `{name}`; the lake's tables: {}",
                            snapshot
                                .tables
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        )?,
                    }
                    continue;
                }
                "\\r" => {
                    session = lake_session(&lake).await?;
                    writeln!(out, "reloaded: {} tables", session.1.tables.len())?;
                    warn(&session.2);
                    continue;
                }
                _ => {}
            }
        }
        buffer.push_str(&line);
        buffer.push('\n');
        if !trimmed.ends_with(';') {
            continue;
        }
        let statement = std::mem::take(&mut buffer);
        let _ = editor.add_history_entry(statement.trim());
        let started = std::time::Instant::now();
        statements += 1;
        // Each statement reads the latest commits, as a one-shot `silt query` does: a session
        // left open beside a running job sees its micro-batches (and never files they replaced).
        let result = match latest(&lake, &session).await {
            Ok(fresh) => {
                session = fresh;
                run_statement(&mut session, &lake, &statement).await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(batches) => {
                print(&batches, args.format, out)?;
                let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
                writeln!(
                    out,
                    "{rows} row(s) in {:.3}s",
                    started.elapsed().as_secs_f64()
                )?;
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: {}", silt_transform::sql_error_text(&e.to_string()));
            }
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    // Statements piped in (a script, a scheduler's check) fail the command when one failed,
    // as `psql -v ON_ERROR_STOP` does; at a terminal each error was shown where it happened.
    if failed > 0 && !std::io::stdin().is_terminal() {
        anyhow::bail!("{failed} of {statements} statement(s) failed");
    }
    Ok(())
}

/// The session at the lake's latest commits; says which tables it leaves out that `old` did
/// not (or for another reason).
async fn latest(lake: &silt_storage::Location, old: &Session) -> anyhow::Result<Session> {
    let new = lake_session(lake).await?;
    let fresh: Unreadable = new
        .2
        .iter()
        .filter(|(t, why)| old.2.get(*t) != Some(*why))
        .map(|(t, why)| (t.clone(), why.clone()))
        .collect();
    warn(&fresh);
    Ok(new)
}

/// Says on stderr which tables the session left out, and why.
fn warn(unreadable: &Unreadable) {
    for (table, why) in unreadable {
        eprintln!("warning: table `{table}` cannot be read and is left out: {why}");
    }
}
