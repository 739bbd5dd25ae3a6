//! The machine's own limit, measured in the same run: `pgbench` doing one durable INSERT
//! (uuid, int, jsonb, unique key) per transaction at the same concurrency as the load.

use std::io::Write;
use std::process::Command;

use anyhow::Context;

/// Runs pgbench against `database_url` with `clients` connections for `seconds`; returns tps.
pub fn pgbench_single_insert(
    database_url: &str,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<f64> {
    let setup = Command::new("psql")
        .args([
            database_url,
            "-qc",
            "DROP TABLE IF EXISTS bench_reference; CREATE TABLE bench_reference \
             (id uuid PRIMARY KEY, n int NOT NULL, payload jsonb NOT NULL)",
        ])
        .status()
        .context("psql runs")?;
    anyhow::ensure!(setup.success(), "psql could not create the reference table");
    let mut script = tempfile_path("bench-reference.sql")?;
    writeln!(
        script.1,
        "INSERT INTO bench_reference (id, n, payload) VALUES (gen_random_uuid(), :client_id, \
         '{{\"type\":\"CourseCommented\",\"text\":\"reference\"}}');"
    )?;
    drop(script.1);
    let before = crate::cpu::sample();
    let output = Command::new("pgbench")
        .args(["-n", "-c", &clients.to_string(), "-j", "2", "-T", &seconds.to_string(), "-f"])
        .arg(&script.0)
        .arg(database_url)
        .output()
        .context("pgbench runs (Debian package postgresql-contrib / postgresql)")?;
    let busy = crate::cpu::busy(&before, &crate::cpu::sample());
    let _ = std::fs::remove_file(&script.0);
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "pgbench failed: {}{}",
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = Command::new("psql").args([database_url, "-qc", "DROP TABLE bench_reference"]).status();
    stdout
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix("tps = ")?;
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
        .with_context(|| format!("no tps line in pgbench's output:\n{stdout}"))
        .inspect(|tps| {
            // On stderr: `make bench` reads the tps alone from stdout.
            eprintln!(
                "pgbench: {tps:.0} tps with the machine {:.0}% busy: {:.0} us of CPU per transaction (pgbench and PostgreSQL)",
                busy * 100.0,
                busy * crate::cpu::cores() * 1e6 / tps
            );
        })
}

fn tempfile_path(name: &str) -> anyhow::Result<(std::path::PathBuf, std::fs::File)> {
    let path = std::env::temp_dir().join(format!("{}-{name}", std::process::id()));
    let file = std::fs::File::create(&path)?;
    Ok((path, file))
}
