//! wrk, the service side's load generator: row scripts (one request per
//! prepared row), the run itself and its `--latency` output.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use reqwest::RequestBuilder;

use super::{Phase, cpu::measured};

/// The URL `request` goes to, for wrk to send its own requests there.
///
/// # Errors
/// When the request does not build (a bad base URL).
pub(super) fn url_of(request: RequestBuilder) -> Result<String> {
    Ok(request.build()?.url().to_string())
}

/// A wrk script sending one request per row of `rows` (tab-separated in a
/// file beside it), round-robin; `build` is a Lua expression over `r`.
pub(super) fn rows_script(
    dir: &Path,
    name: &str,
    rows: &[Vec<String>],
    build: &str,
) -> Result<PathBuf> {
    let data = dir.join(format!("{name}.tsv"));
    let mut text = String::new();
    for row in rows {
        text.push_str(&row.join("\t"));
        text.push('\n');
    }
    std::fs::write(&data, text)?;
    let script = dir.join(format!("{name}.lua"));
    std::fs::write(
        &script,
        format!(
            r#"local rows = {{}}
for line in io.lines("{data}") do
  local r = {{}}
  for field in string.gmatch(line, "[^\t]+") do r[#r + 1] = field end
  rows[#rows + 1] = r
end
-- Rows before BENCH_OFFSET were used by earlier rounds.
local i = tonumber(os.getenv("BENCH_OFFSET") or "0")
request = function()
  i = i + 1
  local r = rows[(i - 1) % #rows + 1]
  return {build}
end
"#,
            data = data.display()
        ),
    )?;
    Ok(script)
}

/// `wrk -t1 -cN -dS --latency -s script url`. With `rows`, a run that
/// needed more requests than rows (so some were repeats) is an error.
/// Every reply that is not 2xx counts as an error.
pub(super) async fn wrk(
    name: &str,
    url: &str,
    script: &Path,
    connections: u32,
    seconds: u64,
    service_pid: Option<i32>,
    rows: Option<(u64, u64)>,
) -> Result<Phase> {
    let (mut phase, replies) =
        wrk_replies(name, url, script, connections, seconds, service_pid, rows).await?;
    phase.errors = replies.non_2xx + replies.socket_errors;
    Ok(phase)
}

/// What wrk counted besides successes, for a phase whose expected answer is
/// not 2xx (claims of a sold-out campaign: 409).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Replies {
    /// `Non-2xx or 3xx responses`.
    pub(super) non_2xx: u64,
    /// Connect, read, write errors and timeouts.
    pub(super) socket_errors: u64,
}

/// [`wrk`], returning the phase with `errors` left at 0 and the replies
/// that were not 2xx, for the caller to judge.
pub(super) async fn wrk_replies(
    name: &str,
    url: &str,
    script: &Path,
    connections: u32,
    seconds: u64,
    service_pid: Option<i32>,
    rows: Option<(u64, u64)>,
) -> Result<(Phase, Replies)> {
    let mut command = tokio::process::Command::new("wrk");
    if let Some((offset, _)) = rows {
        command.env("BENCH_OFFSET", offset.to_string());
    }
    command
        .args(["-t1", &format!("-c{connections}"), &format!("-d{seconds}s")])
        .args(["--latency", "--timeout", "10s", "-s"])
        .arg(script)
        .arg(url);
    let (output, cpu) = measured(command, &service_pid.into_iter().collect::<Vec<_>>()).await?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    ensure!(output.status.success(), "wrk failed: {text}");
    let parsed =
        WrkOutput::parse(&text).with_context(|| format!("unexpected wrk output: {text}"))?;
    if let Some((offset, rows)) = rows {
        ensure!(
            offset + parsed.requests <= rows,
            "{name}: wrk sent {} requests for the {} prepared rows left; raise --seats (holds, payments) or --entry-rate-bound (entries)",
            parsed.requests,
            rows.saturating_sub(offset)
        );
    }
    Ok((
        Phase {
            name: name.to_owned(),
            requests: parsed.requests,
            rate: parsed.rate,
            p50_ms: parsed.p50_ms,
            p99_ms: parsed.p99_ms,
            errors: 0,
            cpu_us_per_request: cpu.sut_us_per(parsed.requests),
            service_cpu_us_per_request: service_pid.map(|_| cpu.service_us_per(parsed.requests)),
            round_rates: Vec::new(),
        },
        parsed.replies,
    ))
}

/// What `wrk --latency` printed.
#[derive(Debug, PartialEq)]
struct WrkOutput {
    requests: u64,
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    replies: Replies,
}

impl WrkOutput {
    fn parse(text: &str) -> Option<Self> {
        let latency = |label: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(label))
                .and_then(|v| duration_ms(v.trim()))
        };
        let requests = text
            .lines()
            .find(|l| l.contains(" requests in "))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        let rate = text
            .lines()
            .find_map(|l| l.strip_prefix("Requests/sec:"))?
            .trim()
            .parse()
            .ok()?;
        let non_2xx: u64 = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let socket: u64 = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Socket errors:"))
            .map_or(0, |v| {
                v.split(',')
                    .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
                    .sum()
            });
        Some(Self {
            requests,
            rate,
            p50_ms: latency("50%")?,
            p99_ms: latency("99%")?,
            replies: Replies {
                non_2xx,
                socket_errors: socket,
            },
        })
    }
}

/// wrk's durations: `812.00us`, `1.23ms`, `2.01s`, `1.50m`.
fn duration_ms(value: &str) -> Option<f64> {
    let split = value.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => number / 1e3,
        "ms" => number,
        "s" => number * 1e3,
        "m" => number * 60e3,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output_is_parsed_with_its_units_and_errors() {
        let text = "Running 10s test @ http://127.0.0.1:8080/\n  1 threads and 50 connections\n  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency     3.10ms    1.02ms  30.00ms   90.00%\n  Latency Distribution\n     50%  812.00us\n     75%    3.50ms\n     90%    4.00ms\n     99%    1.20s\n  123456 requests in 10.00s, 50.00MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\n  Non-2xx or 3xx responses: 4\nRequests/sec:  12345.60\nTransfer/sec:      5.00MB\n";
        assert_eq!(
            WrkOutput::parse(text),
            Some(WrkOutput {
                requests: 123_456,
                rate: 12_345.6,
                p50_ms: 0.812,
                p99_ms: 1_200.0,
                replies: Replies {
                    non_2xx: 4,
                    socket_errors: 3,
                },
            })
        );
    }
}
