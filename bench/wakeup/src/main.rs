//! Opens N watchers on one key over raw HTTP/1.1 connections — meshgate blocking
//! queries (`GET /v1/kv/k?index=I`) or etcd v3 watches (`POST /v3/watch`) — then
//! writes the key once and reports how long each watcher took to see the change.
//!
//! The measuring side is one `mio` event loop: when a watcher's socket turns
//! readable its time is taken, before reading, so the tool's own work adds as
//! little as possible to the figures of either server.
//!
//! How the loop waits is the last argument:
//! - `poll` (default): it never sleeps inside `epoll_wait`; it checks its
//!   sockets and, when none is ready, naps 0.2 ms. On loopback the kernel runs
//!   the receiver's TCP input and its wake-up inside the sender's `writev`, so
//!   a measuring process asleep in `epoll_wait` makes every answer the server
//!   writes also pay for waking that process on the other core (about a tenth
//!   of the server's time in a profile) — work that watchers on other hosts
//!   never put on a server. A figure can only come out later for the nap
//!   (at most 0.2 ms), never earlier.
//! - `epoll`: it sleeps in `epoll_wait` until a socket is ready (the plain
//!   way, and the tool's only mode before 2026-11-26).
//!
//! Usage: wakeup meshgate|etcd HOST:PORT WATCHERS [poll|epoll]
//! (`HOLD_S=SECONDS` keeps the sockets open that long after measuring, for a
//! profiler attached to the server to see the wake-up alone.)
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

const KEY: &str = "wake/key";
const KEY_B64: &str = "d2FrZS9rZXk="; // base64("wake/key")

fn request(addr: &str, req: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(req.as_bytes()).expect("write");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
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

fn put_request(target: &str, value: &str) -> String {
    match target {
        "meshgate" => format!(
            "PUT /v1/kv/{KEY} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{value}",
            value.len()
        ),
        _ => {
            let body = format!(
                r#"{{"key":"{KEY_B64}","value":"{}"}}"#,
                b64(value.as_bytes())
            );
            format!(
                "POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        }
    }
}

/// Opens one watcher; returns the connected socket with the watch in place.
fn open_watch(target: &str, addr: &str, index: u64) -> Option<TcpStream> {
    let mut s = TcpStream::connect(addr).ok()?;
    let _ = s.set_nodelay(true);
    let req = if target == "meshgate" {
        format!("GET /v1/kv/{KEY}?index={index}&wait=120s HTTP/1.1\r\nHost: x\r\n\r\n")
    } else {
        let body = format!(r#"{{"create_request":{{"key":"{KEY_B64}"}}}}"#);
        format!(
            "POST /v3/watch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    s.write_all(req.as_bytes()).ok()?;
    if target != "meshgate" {
        // etcd acknowledges the watch first; consume that before measuring.
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        while !String::from_utf8_lossy(&buf).contains("\"created\":true") {
            let n = s.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }
    Some(s)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !(4..=5).contains(&args.len()) {
        eprintln!("usage: wakeup meshgate|etcd HOST:PORT WATCHERS [poll|epoll]");
        std::process::exit(2);
    }
    let nap = match args.get(4).map(String::as_str) {
        None | Some("poll") => Some(Duration::from_micros(200)),
        Some("epoll") => None,
        Some(other) => {
            eprintln!("unknown client mode {other}: poll or epoll");
            std::process::exit(2);
        }
    };
    let (target, addr) = (args[1].as_str(), args[2].as_str());
    let n: usize = args[3].parse().expect("WATCHERS is a number");
    let resp = request(addr, &put_request(target, "v0"));
    assert!(
        resp.starts_with("HTTP/1.1 200"),
        "initial write failed: {resp}"
    );
    let index: u64 = if target == "meshgate" {
        let r = request(
            addr,
            &format!("GET /v1/kv/{KEY} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        );
        r.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("x-consul-index")
                    .then(|| v.trim().to_string())
            })
            .and_then(|v| v.parse().ok())
            .expect("X-Consul-Index")
    } else {
        0
    };

    let mut poll = Poll::new().expect("poll");
    let mut socks = Vec::with_capacity(n);
    let mut failed = 0;
    for i in 0..n {
        match open_watch(target, addr, index) {
            Some(s) => {
                s.set_nonblocking(true).expect("nonblocking");
                let mut ms = mio::net::TcpStream::from_std(s);
                poll.registry()
                    .register(&mut ms, Token(i), Interest::READABLE)
                    .expect("register");
                socks.push(Some(ms));
            }
            None => {
                failed += 1;
                socks.push(None);
            }
        }
    }
    // Let the last requests reach the server's wait loop.
    std::thread::sleep(Duration::from_secs(2));

    let t0 = Instant::now();
    let mut writer = TcpStream::connect(addr).expect("connect writer");
    writer
        .write_all(put_request(target, "v1").as_bytes())
        .expect("write");
    let mut lat: Vec<Duration> = Vec::with_capacity(n);
    let mut seen = vec![false; n];
    let mut events = Events::with_capacity(1024);
    let deadline = t0 + Duration::from_secs(60);
    let mut chunk = [0u8; 8192];
    while lat.len() + failed < n && Instant::now() < deadline {
        match nap {
            Some(nap) => {
                poll.poll(&mut events, Some(Duration::ZERO)).expect("poll");
                if events.is_empty() {
                    std::thread::sleep(nap);
                    continue;
                }
            }
            None => poll
                .poll(&mut events, Some(Duration::from_millis(100)))
                .expect("poll"),
        }
        let now = Instant::now();
        for ev in events.iter() {
            let i = ev.token().0;
            if seen[i] {
                continue;
            }
            seen[i] = true;
            lat.push(now.saturating_duration_since(t0));
            if let Some(s) = socks[i].as_mut() {
                let _ = s.read(&mut chunk);
            }
        }
    }
    let mut resp = Vec::new();
    let _ = writer.read_to_end(&mut resp);
    assert!(resp.starts_with(b"HTTP/1.1 200"), "write failed");
    let lost = n - lat.len();
    lat.sort();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return f64::NAN;
        }
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[i].as_secs_f64() * 1000.0
    };
    println!(
        "{target} client={} watchers={n} woken={} lost={lost} p50_ms={:.1} p99_ms={:.1} max_ms={:.1}",
        if nap.is_some() { "poll" } else { "epoll" },
        lat.len(),
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
    // Sockets stay open until here, so closing them adds no work to the server
    // while it is being measured. HOLD_S keeps them open longer (for a
    // profiler attached to the server to see only the wake-up).
    if let Some(secs) = std::env::var("HOLD_S").ok().and_then(|v| v.parse().ok()) {
        std::thread::sleep(Duration::from_secs_f64(secs));
    }
    drop(socks);
}
