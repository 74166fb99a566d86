//! `/v1/agent/host`: facts about the machine, read from /proc and statvfs.

use serde_json::{Value, json};

fn meminfo() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let get = |k: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kib| kib * 1024)
            .unwrap_or(0)
    };
    (get("MemTotal:"), get("MemAvailable:"))
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The host information, with `Errors` listing what could not be read.
pub fn info(data_dir: &str) -> Value {
    let mut errors: Vec<String> = Vec::new();
    let (total, available) = meminfo();
    let used = total.saturating_sub(available);
    let uptime = read_trim("/proc/uptime")
        .split_whitespace()
        .next()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0) as u64;
    let now = crate::store::now_ms() / 1000;
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpus: Vec<Value> = cpuinfo
        .split("\n\n")
        .filter(|b| b.contains("processor"))
        .map(|block| {
            let get = |k: &str| {
                block
                    .lines()
                    .find(|l| l.starts_with(k))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
                    .unwrap_or_default()
            };
            json!({
                "cpu": get("processor").parse::<i64>().unwrap_or(0),
                "vendorId": get("vendor_id"),
                "family": get("cpu family"),
                "model": get("model"),
                "modelName": get("model name"),
                "mhz": get("cpu MHz").parse::<f64>().unwrap_or(0.0),
                "cores": get("cpu cores").parse::<i64>().unwrap_or(1),
            })
        })
        .collect();
    let path = if data_dir.is_empty() { "/" } else { data_dir };
    let disk = match rustix::fs::statvfs(path) {
        Ok(s) => {
            let total = s.f_blocks * s.f_frsize;
            let free = s.f_bavail * s.f_frsize;
            let used = total.saturating_sub(s.f_bfree * s.f_frsize);
            json!({
                "path": path,
                "total": total,
                "free": free,
                "used": used,
                "usedPercent": if total > 0 { used as f64 * 100.0 / total as f64 } else { 0.0 },
            })
        }
        Err(e) => {
            errors.push(format!("disk: {e}"));
            Value::Null
        }
    };
    json!({
        "Memory": {
            "total": total,
            "available": available,
            "used": used,
            "usedPercent": if total > 0 { used as f64 * 100.0 / total as f64 } else { 0.0 },
        },
        "CPU": cpus,
        "Host": {
            "hostname": read_trim("/proc/sys/kernel/hostname"),
            "uptime": uptime,
            "bootTime": now.saturating_sub(uptime),
            "os": std::env::consts::OS,
            "kernelVersion": read_trim("/proc/sys/kernel/osrelease"),
            "kernelArch": std::env::consts::ARCH,
        },
        "Disk": disk,
        "CollectionTime": crate::store::now_ms() * 1_000_000,
        "Errors": errors,
    })
}
