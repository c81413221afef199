//! The Markdown section of a run, and its place between the markers of
//! `docs/benchmarks.md`.

use std::{fmt::Write as _, path::Path};

use anyhow::{Result, bail};

use super::{BenchArgs, Findings, Phase, cpu::machine_description, seatmap, tickets};

/// Markers around the part of `docs/benchmarks.md` this command owns. The
/// text predates the move of the benchmark into `loadtest`; it stays, so
/// that the file's existing block is found and replaced.
const BEGIN: &str = "<!-- devstack bench: begin -->";
const END: &str = "<!-- devstack bench: end -->";

/// CPU per sold ticket the stack may spend, ms.
const TICKET_CPU_TARGET_MS: f64 = 2.0;

pub(super) fn render(
    phases: &[Phase],
    findings: &Findings,
    args: &BenchArgs,
    load_before: &str,
) -> String {
    let find = |name: &str| phases.iter().find(|p| p.name.starts_with(name));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Service load against raw baselines (`loadtest bench`)\n\n\
         Written by `cargo run --release -p loadtest -- bench` on {} UTC; \
         everything between the markers is replaced by the next run.\n\n\
         - Machine: {}; the load generators, both services, six Redis nodes, \
         Postgres and the broker share it. Load average before the run: {}.\n\
         - Waiting room: {} connections; redis-benchmark {} requests per script on the \
         master owning the event's slot; wrk {} s per phase, one thread.\n\
         - Booking core: {} connections (pgbench clients) on both sides; holds in {} \
         rounds, each a pgbench round right before a wrk round of {} s; payments in one \
         round, wrk {} s. Each pgbench client holds {} seats interleaved with the other \
         clients' (as wrk's connections), then pays those reservations. Every \
         booking-core phase starts right after a `CHECKPOINT`. Over rounds, p50 is the \
         median round's and p99 the worst round's.\n\
         - CPU/request: machine CPU minus the load generator's, per request \
         (µs); for the service phases also the service process alone.",
        chrono::Utc::now().format("%Y-%m-%d %H:%M"),
        machine_description(),
        load_before
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        args.queue_connections,
        args.redis_requests,
        args.seconds,
        args.core_connections,
        args.rounds,
        args.hold_round_seconds(),
        args.seconds,
        args.seats / args.core_connections,
    );
    if find("claim (HTTP)").is_some() {
        let _ = writeln!(
            out,
            "- Coupon claims: issued with {} connections (wrk, redis-benchmark, pgbench), \
             wrk {} s, each claim a different fan against a campaign of {} coupons, so every \
             claim issues one; sold out with {} connections against a campaign whose one \
             coupon was claimed before, so Redis answers every claim (409 `sold_out`, \
             counted from core-service's metrics, not as errors).",
            args.claim_connections,
            args.seconds,
            args.claim_fans(),
            args.queue_connections,
        );
    }
    if find("seat map br (HTTP)").is_some() {
        let _ = writeln!(
            out,
            "- Seat map: one performance of {} seats; wrk {} s per phase, {} connections, one \
             thread, `Accept-Encoding: br`, anonymous; the baseline is nginx ({} workers, access log \
             off, keep-alive unlimited) serving the very bytes core-service sent, with \
             `Content-Encoding: br`, as a static file; nginx first, then core-service. The 304 pair \
             sends `If-None-Match` with each side's own ETag.",
            args.seatmap_seats,
            args.seconds,
            args.seatmap_connections,
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        );
    }
    out.push('\n');
    let mut table = String::new();
    let _ = writeln!(
        table,
        "| operation | service req/s | baseline req/s | ratio | target | service p50 / p99 ms | baseline p50 / p99 ms | CPU µs/req service (process) | CPU µs/req baseline | errors |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    let mut rows = 0;
    for (label, service, baseline, target) in [
        ("entry", "entry (HTTP)", "entry (redis", Some(0.45)),
        ("status poll", "status (HTTP)", "status (redis", Some(0.45)),
        ("hold", "hold (HTTP)", "hold (pgbench", Some(0.6)),
        ("payment", "payment (HTTP)", "payment (pgbench", Some(0.6)),
        (
            "coupon claim, issued",
            "claim (HTTP)",
            "claim (redis",
            Some(0.45),
        ),
        (
            "coupon claim, issued, vs its Postgres write",
            "claim (HTTP)",
            "claim (pgbench",
            None,
        ),
        (
            "coupon claim, sold out",
            "claim sold out (HTTP)",
            "claim sold out (redis",
            Some(0.45),
        ),
        (
            "seat map, br",
            "seat map br (HTTP)",
            "seat map br (nginx",
            Some(0.5),
        ),
        (
            "seat map, If-None-Match (304)",
            "seat map 304 (HTTP)",
            "seat map 304 (nginx",
            None,
        ),
    ] {
        let (Some(s), Some(b)) = (find(service), find(baseline)) else {
            continue;
        };
        let ratio = s.rate / b.rate;
        let target = target.map_or("—".to_owned(), |t: f64| {
            format!("≥ {t}×: {}", if ratio >= t { "met" } else { "**not met**" })
        });
        rows += 1;
        let _ = writeln!(
            table,
            "| {label} | {:.0} | {:.0} | **{ratio:.2}×** | {target} | {:.2} / {:.2} | {:.2} / {:.2} | {:.0} ({:.0}) | {:.0} | {} / {} |",
            s.rate,
            b.rate,
            s.p50_ms,
            s.p99_ms,
            b.p50_ms,
            b.p99_ms,
            s.cpu_us_per_request,
            s.service_cpu_us_per_request.unwrap_or(f64::NAN),
            b.cpu_us_per_request,
            s.errors,
            b.errors,
        );
    }
    if rows > 0 {
        out.push_str(&table);
    }
    if let (Some(s), Some(b)) = (find("hold (HTTP)"), find("hold (pgbench"))
        && s.round_rates.len() > 1
        && s.round_rates.len() == b.round_rates.len()
    {
        let ratios: Vec<String> = s
            .round_rates
            .iter()
            .zip(&b.round_rates)
            .map(|(s, b)| format!("{:.2}× ({s:.0} vs {b:.0}/s)", s / b))
            .collect();
        let _ = writeln!(out, "\nHold ratio by round: {}.", ratios.join(", "));
    }
    let _ = writeln!(
        out,
        "\nBaselines: entry and status run queue-service's own Lua (prelude + \
         script) with `EVALSHA`, status for fans already in line; hold and \
         payment run core-service's own SQL files under `pgbench -M prepared`, \
         every statement the service sends on the success path, each client \
         as its own user, the clients on neighbouring seats like wrk's \
         connections (pgbench's hold opens with a plain \
         `BEGIN`: its `ARRAY[:seat]` claim already runs on a generic plan, \
         which the service's `hold_begin.sql` has to ask for; its purchase-limit \
         lock and count run for a fan and session of each transaction's own, \
         as each service hold is a fresh fan's). Service: every request is a \
         signed-in fan's, with an identity token of its own (RS256, as Cognito signs; signed in \
         with the stack's issuer before the phase, verified by the service); \
         one seat per hold, each \
         hold by a different admitted fan, each payment of one of those holds \
         with its own Idempotency-Key; every hold and payment verified its \
         access token with queue-service over gRPC."
    );
    if find("claim (HTTP)").is_some() {
        let _ = writeln!(
            out,
            "\nCoupon baselines: core-service's own `claim.lua` under `EVALSHA` on the \
             master owning the campaign keys' slot, fan ids `fan:__rand_int__` from 10^8 \
             (about 0.1 % repeat and answer `already`), against a counter far below its \
             quantity (reserving) or at it (sold out); `coupon_issue.sql` under \
             `pgbench -M prepared`, a new fan and code per transaction, all on one campaign \
             row as the service's claims are. The service's issued claim runs that script, \
             then that statement."
        );
    }
    if let Some(sizes) = &findings.seatmap {
        out.push_str(&seatmap::render(sizes));
    }
    out.push_str(&tickets::render(&findings.sales, TICKET_CPU_TARGET_MS));
    out
}

pub(super) fn write_section(path: &Path, section: &str) -> Result<()> {
    let current = std::fs::read_to_string(path).unwrap_or_default();
    let block = format!("{BEGIN}\n{section}{END}\n");
    let updated = match (current.find(BEGIN), current.find(END)) {
        (Some(start), Some(end)) if end > start => {
            format!(
                "{}{block}{}",
                &current[..start],
                current[end + END.len()..].trim_start_matches('\n')
            )
        }
        (None, None) => format!("{}\n{block}", current.trim_end()),
        _ => bail!("{} has only one of the bench markers", path.display()),
    };
    std::fs::write(path, updated)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_section_replaces_only_what_lies_between_the_markers() {
        let dir = std::env::temp_dir().join(format!("bench-md-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("b.md");
        std::fs::write(&path, "# Title\n\nhand-written\n").unwrap();
        write_section(&path, "first\n").unwrap();
        std::fs::write(
            &path,
            std::fs::read_to_string(&path).unwrap() + "\n## Later\nkept\n",
        )
        .unwrap();
        write_section(&path, "second\n").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# Title\n\nhand-written\n"));
        assert!(text.contains(&format!("{BEGIN}\nsecond\n{END}\n")));
        assert!(!text.contains("first"));
        assert!(text.ends_with("## Later\nkept\n"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
