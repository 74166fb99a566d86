//! Opens N watchers on one key over raw HTTP/1.1 connections — meshgate blocking
//! queries (`GET /v1/kv/k?index=I`) or etcd v3 watches (`POST /v3/watch`) — then
//! writes the key once and reports how long each watcher took to see the change.
//!
//! Usage: wakeup meshgate|etcd HOST:PORT WATCHERS
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Barrier, watch};

const KEY: &str = "wake/key";
const KEY_B64: &str = "d2FrZS9rZXk="; // base64("wake/key")

async fn request(addr: &str, req: String) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    // Read until the connection closes (requests send Connection: close).
    loop {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn put_request(target: &str, value: &str) -> String {
    match target {
        "meshgate" => format!(
            "PUT /v1/kv/{KEY} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{value}",
            value.len()
        ),
        _ => {
            let body = format!(r#"{{"key":"{KEY_B64}","value":"{}"}}"#, b64(value.as_bytes()));
            format!(
                "POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        }
    }
}

fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

async fn open_watch(target: &str, addr: &str, index: u64) -> Option<TcpStream> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let req = if target == "meshgate" {
        format!("GET /v1/kv/{KEY}?index={index}&wait=120s HTTP/1.1\r\nHost: x\r\n\r\n")
    } else {
        let body = format!(r#"{{"create_request":{{"key":"{KEY_B64}"}}}}"#);
        format!(
            "POST /v3/watch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    s.write_all(req.as_bytes()).await.ok()?;
    if target != "meshgate" {
        // Wait for etcd's "created" acknowledgement before counting as ready.
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        while !String::from_utf8_lossy(&buf).contains("\"created\":true") {
            let n = s.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }
    Some(s)
}

async fn watcher(
    target: String,
    addr: String,
    index: u64,
    ready: Arc<Barrier>,
    start: watch::Receiver<Option<Instant>>,
) -> Option<(Duration, TcpStream)> {
    let opened = open_watch(&target, &addr, index).await;
    // Always reach the barrier, so one failed connection cannot hang the run.
    ready.wait().await;
    let mut s = opened?;
    let _ = target;
    // Nothing else arrives on the connection before the change: the first bytes
    // are the answer (meshgate) or the event (etcd, whose ack was consumed).
    // Taking the time right after the read keeps this tool's own work out of
    // the figure.
    let mut chunk = [0u8; 8192];
    let n = s.read(&mut chunk).await.ok()?;
    let t = Instant::now();
    if n == 0 {
        return None;
    }
    let t0 = (*start.borrow())?;
    // Keep the connection open until every watcher is measured, so closing
    // sockets does not add work to the servers during the measurement.
    Some((t.saturating_duration_since(t0), s))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: wakeup meshgate|etcd HOST:PORT WATCHERS");
        std::process::exit(2);
    }
    let (target, addr) = (args[1].clone(), args[2].clone());
    let n: usize = args[3].parse().expect("WATCHERS is a number");
    let resp = request(&addr, put_request(&target, "v0")).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "initial write failed: {resp}");
    let index = if target == "meshgate" {
        let r = request(
            &addr,
            format!("GET /v1/kv/{KEY} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
        .await;
        r.lines()
            .find_map(|l| l.strip_prefix("x-consul-index: ").or_else(|| l.strip_prefix("X-Consul-Index: ")))
            .and_then(|v| v.trim().parse().ok())
            .expect("X-Consul-Index")
    } else {
        0
    };
    let ready = Arc::new(Barrier::new(n + 1));
    let (tx, rx) = watch::channel(None);
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        tasks.push(tokio::spawn(watcher(
            target.clone(),
            addr.clone(),
            index,
            ready.clone(),
            rx.clone(),
        )));
    }
    ready.wait().await;
    // Let the last requests reach the server's wait loop.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t0 = Instant::now();
    tx.send_replace(Some(t0));
    let resp = request(&addr, put_request(&target, "v1")).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "write failed: {resp}");
    let mut lat: Vec<Duration> = Vec::with_capacity(n);
    let mut open = Vec::with_capacity(n);
    let mut lost = 0;
    for t in tasks {
        match tokio::time::timeout(Duration::from_secs(60), t).await {
            Ok(Ok(Some((d, s)))) => {
                lat.push(d);
                open.push(s);
            }
            _ => lost += 1,
        }
    }
    drop(open);
    lat.sort();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return f64::NAN;
        }
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[i].as_secs_f64() * 1000.0
    };
    println!(
        "{target} watchers={n} woken={} lost={lost} p50_ms={:.1} p99_ms={:.1} max_ms={:.1}",
        lat.len(),
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
}
