//! A private Redis Cluster for one test: three real `redis-server` nodes on free loopback
//! ports, made by `scripts/ensure-redis-cluster.sh`. Pausing every node (SIGSTOP) is a real
//! outage that other tests do not feel; the nodes are killed and their folder removed on drop.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

pub struct RedisCluster {
    /// `redis-cluster://…` URL of the three nodes.
    pub url: String,
    pids: Vec<String>,
    dir: PathBuf,
}

/// A port whose cluster bus port (+10000) is free as well.
fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

fn kill(signal: &str, pid: &str) {
    let _ = Command::new("kill").args([signal, pid]).status();
}

impl RedisCluster {
    /// Starts three nodes and creates the cluster; panics when Redis is not installed.
    pub fn start() -> RedisCluster {
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let dir = std::env::temp_dir().join(format!("redis-cluster-{}", ports[0]));
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/ensure-redis-cluster.sh");
        let ports_arg = ports.iter().map(u16::to_string).collect::<Vec<_>>().join(" ");
        let output = Command::new(script)
            .env("REDIS_CLUSTER_PORTS", &ports_arg)
            .env("REDIS_CLUSTER_DIR", &dir)
            // A pause of a few seconds must not make the nodes give up on each other.
            .env("REDIS_CLUSTER_NODE_TIMEOUT", "60000")
            .output()
            .expect("run ensure-redis-cluster.sh");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let url = String::from_utf8(output.stdout).expect("utf-8").trim().to_owned();
        let pids = ports
            .iter()
            .map(|port| {
                let info = Command::new("redis-cli")
                    .args(["-p", &port.to_string(), "info", "server"])
                    .output()
                    .expect("redis-cli");
                String::from_utf8_lossy(&info.stdout)
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("process_id:").map(str::to_owned))
                    .expect("process_id")
            })
            .collect();
        RedisCluster { url, pids, dir }
    }

    /// Freezes every node: connections stay open and nothing answers.
    pub fn pause(&self) {
        self.pids.iter().for_each(|pid| kill("-STOP", pid));
    }

    /// Lets the nodes answer again.
    pub fn resume(&self) {
        self.pids.iter().for_each(|pid| kill("-CONT", pid));
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.pids.iter().for_each(|pid| kill("-KILL", pid));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
