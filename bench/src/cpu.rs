//! Where the machine's CPU went during a run: each program's share, from `/proc` (Linux).
//!
//! A sample is the machine's total CPU time (`/proc/stat`) and every process's user + system
//! time (`/proc/<pid>/stat`), summed by program; the difference of two samples says which
//! program used what share of the machine between them.

use std::collections::HashMap;

/// Linux reports process times in 1/100 s (`USER_HZ`).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU times in clock ticks.
#[derive(Debug, Default)]
pub struct Sample {
    total: u64,
    idle: u64,
    by_program: HashMap<&'static str, u64>,
}

/// The programs the bench names; everything else is "other".
fn program(comm: &str) -> &'static str {
    match comm {
        "beam.smp" | "erl_child_setup" | "inet_gethost" => "RabbitMQ",
        "command-svc" => "command-svc",
        "query-redis-svc" => "query-redis-svc",
        "postgres" => "PostgreSQL",
        "redis-server" => "Redis",
        "bench" => "load generator",
        _ => "other",
    }
}

/// Takes a sample (an empty one where `/proc` is not readable).
pub fn sample() -> Sample {
    let mut sample = Sample::default();
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else { return sample };
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|t| t.parse().ok())
        .collect();
    sample.total = ticks.iter().sum();
    // idle + iowait
    sample.idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    let Ok(entries) = std::fs::read_dir("/proc") else { return sample };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        if let Some((comm, used)) = process_ticks(&stat) {
            *sample.by_program.entry(program(comm)).or_default() += used;
        }
    }
    sample
}

/// The command name and user + system ticks of one `/proc/<pid>/stat` line.
fn process_ticks(stat: &str) -> Option<(&str, u64)> {
    let (head, rest) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

/// Each program's share of the machine between `before` and `after`, largest first, with the
/// idle share last; empty when nothing was measured.
pub fn shares(before: &Sample, after: &Sample) -> Vec<(&'static str, f64)> {
    let total = after.total.saturating_sub(before.total) as f64;
    if total == 0.0 {
        return Vec::new();
    }
    let mut shares: Vec<(&'static str, f64)> = after
        .by_program
        .iter()
        .map(|(name, used)| {
            let was = before.by_program.get(name).copied().unwrap_or(0);
            (*name, used.saturating_sub(was) as f64 / total)
        })
        .filter(|(_, share)| *share >= 0.005)
        .collect();
    shares.sort_by(|a, b| b.1.total_cmp(&a.1));
    shares.push(("idle", after.idle.saturating_sub(before.idle) as f64 / total));
    shares
}

/// The share of the machine that was busy between `before` and `after` (0 when unknown).
pub fn busy(before: &Sample, after: &Sample) -> f64 {
    let total = after.total.saturating_sub(before.total) as f64;
    if total == 0.0 {
        return 0.0;
    }
    1.0 - after.idle.saturating_sub(before.idle) as f64 / total
}

/// Waits (for at most `timeout`) until the services the bench names use less than `share` of
/// the machine over half a second, such as when the mesh has drained what a load wrote; returns
/// their share in the last half second.
pub async fn until_quiet(share: f64, timeout: std::time::Duration) -> f64 {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let before = sample();
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let services: f64 = shares(&before, &sample())
            .iter()
            .filter(|(name, _)| !matches!(*name, "idle" | "other" | "load generator"))
            .map(|(_, s)| s)
            .sum();
        if services < share || tokio::time::Instant::now() >= deadline {
            return services;
        }
    }
}

/// This machine's cores.
pub fn cores() -> f64 {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64
}

/// `RabbitMQ 148 us, command-svc 109 us, ..., all 479 us`: each program's CPU time per
/// operation, at `rate` operations per second.
pub fn per_operation(shares: &[(&str, f64)], rate: f64) -> String {
    let micros = |share: f64| share * cores() * 1e6 / rate;
    let busy: Vec<_> = shares.iter().filter(|(name, _)| *name != "idle").collect();
    let all: f64 = busy.iter().map(|(_, share)| micros(*share)).sum();
    let mut parts: Vec<String> =
        busy.iter().map(|(name, share)| format!("{name} {:.0} us", micros(*share))).collect();
    parts.push(format!("all {all:.0} us"));
    parts.join(", ")
}

/// Seconds of CPU `program` used between `before` and `after`.
pub fn program_seconds(before: &Sample, after: &Sample, program: &str) -> f64 {
    let used = |sample: &Sample| sample.by_program.get(program).copied().unwrap_or(0);
    used(after).saturating_sub(used(before)) as f64 / TICKS_PER_SECOND
}

/// `RabbitMQ 25%, command-svc 24%, ..., idle 6%`
pub fn describe(shares: &[(&str, f64)]) -> String {
    shares
        .iter()
        .map(|(name, share)| format!("{name} {:.0}%", share * 100.0))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_with_spaces_and_parentheses_in_the_command_is_parsed() {
        let line = "42 (my (odd) prog) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 4 0 100";
        assert_eq!(process_ticks(line), Some(("my (odd) prog", 325)));
    }

    #[test]
    fn shares_are_of_the_whole_machine_and_end_with_idle() {
        let before =
            Sample { total: 1_000, idle: 500, by_program: HashMap::from([("Redis", 100)]) };
        let after = Sample {
            total: 2_000,
            idle: 800,
            by_program: HashMap::from([("Redis", 300), ("RabbitMQ", 500)]),
        };
        assert_eq!(shares(&before, &after), vec![("RabbitMQ", 0.5), ("Redis", 0.2), ("idle", 0.3)]);
        assert_eq!(describe(&shares(&before, &after)), "RabbitMQ 50%, Redis 20%, idle 30%");
    }

    #[test]
    fn cpu_per_operation_counts_every_program_but_idle() {
        let shares = [("RabbitMQ", 0.25), ("Redis", 0.25), ("idle", 0.5)];
        assert_eq!(
            per_operation(&shares, 1_000.0 * cores()),
            "RabbitMQ 250 us, Redis 250 us, all 500 us"
        );
    }

    #[test]
    fn this_process_is_seen() {
        let sample = sample();
        assert!(sample.total > 0);
        assert!(!sample.by_program.is_empty());
    }
}
