//! pgbench, the baseline of the booking core: core-service's own SQL run
//! as pgbench scripts, with per-transaction logs for the percentiles.

use std::{collections::HashMap, path::Path};

use anyhow::{Context, Result, ensure};

use super::{Phase, cpu::measured};
use crate::stats::nearest_rank;

/// `sql` without its trailing `;`, with `$1…$n` replaced by
/// `values[0…n-1]`, the highest first so that `$1` never eats the start of
/// `$10`.
pub(super) fn bind(sql: &str, values: &[&str]) -> String {
    let mut out = sql.trim_end().trim_end_matches(';').to_owned();
    for (i, value) in values.iter().enumerate().rev() {
        out = out.replace(&format!("${}", i + 1), value);
    }
    out
}

/// How long a pgbench run lasts.
#[derive(Debug, Clone, Copy)]
pub(super) enum Length {
    /// `count` transactions per client (`-t`), its counter `n` running from
    /// `start + 1`.
    Transactions { start: u64, count: u64 },
    /// As many transactions as fit in this many seconds (`-T`), `n` running
    /// from 1.
    Seconds(u64),
}

/// Runs a pgbench script with `-M prepared` and per-transaction logs, for
/// `length`. Returns the phase and the transactions each client completed
/// (the fewest).
pub(super) async fn pgbench(
    binary: &Path,
    work: &Path,
    name: &str,
    script: &str,
    database_url: &str,
    clients: usize,
    length: Length,
) -> Result<(Phase, u64)> {
    let (start, length_args) = match length {
        Length::Transactions { start, count } => (start, ["-t".to_owned(), count.to_string()]),
        Length::Seconds(seconds) => (0, ["-T".to_owned(), seconds.to_string()]),
    };
    let dir = work.join(format!(
        "pgbench-{}",
        name.split_whitespace().next().unwrap_or("x")
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("script.sql");
    std::fs::write(&file, script)?;
    let mut command = tokio::process::Command::new(binary);
    command
        .current_dir(&dir)
        .args(["-n", "-M", "prepared", "-l", "-D", &format!("n={start}")])
        .args(["-c", &clients.to_string(), "-j", "2"])
        .arg("-f")
        .arg(&file);
    command.args(&length_args).arg(database_url);
    let (output, cpu) = measured(command, &[]).await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        output.status.success() && !stderr.contains("aborted"),
        "pgbench {name} failed: {stdout}\n{stderr}"
    );
    let rate: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no tps in pgbench output")?;
    let failed: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("number of failed transactions: "))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    // Log lines: client_id transaction_no time_us script_no time_epoch time_us
    let mut latencies = Vec::new();
    let mut per_client: HashMap<String, u64> = HashMap::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if !path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("pgbench_log"))
        {
            continue;
        }
        for line in std::fs::read_to_string(&path)?.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if let (Some(client), Some(us)) = (
                fields.first(),
                fields.get(2).and_then(|v| v.parse::<f64>().ok()),
            ) {
                latencies.push(us / 1e3);
                *per_client.entry((*client).to_owned()).or_default() += 1;
            }
        }
    }
    ensure!(
        !latencies.is_empty(),
        "pgbench {name} wrote no transaction log"
    );
    latencies.sort_by(f64::total_cmp);
    let fewest = per_client.values().copied().min().unwrap_or(0);
    let requests = latencies.len() as u64;
    Ok((
        Phase {
            name: name.to_owned(),
            requests,
            rate,
            p50_ms: nearest_rank(&latencies, 0.50),
            p99_ms: nearest_rank(&latencies, 0.99),
            errors: failed,
            cpu_us_per_request: cpu.sut_us_per(requests),
            service_cpu_us_per_request: None,
            round_rates: Vec::new(),
        },
        fewest,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_bound_highest_first() {
        assert_eq!(
            bind(
                "f($1, $10, $2)",
                &["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]
            ),
            "f(a, j, b)"
        );
    }

    #[test]
    fn the_trailing_semicolon_is_dropped() {
        assert_eq!(bind("SELECT $1;\n", &["1"]), "SELECT 1");
    }
}
