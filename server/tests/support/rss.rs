//! Resident-set readings for the tests that check memory stays bounded (shared by the `api`
//! and `cluster` test binaries through `#[path]`).

/// Resident set of process `pid` (`"self"` for this one), bytes, from `/proc/PID/status`.
pub fn rss_of(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}
