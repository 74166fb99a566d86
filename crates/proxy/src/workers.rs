//! The threads that carry a proxy's connections.
//!
//! The proxy runs its control work (the agent's blocking queries, the
//! accept loops, the admin endpoint) on the thread that started it, and that
//! thread is also the first of its connection threads. The others each run
//! their own single-threaded runtime with its own `epoll`: a connection is
//! handed to one of them once, when it is accepted, and stays there.
//!
//! Connections are *packed*: a thread takes up to [`Workers::per_thread`]
//! open connections before the next thread gets any, and only when every
//! thread holds that many do they share the rest evenly. A proxy with a
//! handful of connections thus relays them all on one thread, whose one
//! `epoll_wait` gathers the readiness of all its sockets, with no second
//! thread to wake for each message; a proxy with many busy connections gets
//! a scheduling entity per thread on crowded cores. Both halves were
//! measured (bench/RESULTS.md, the data plane's sixth and seventh runs).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio::task::AbortHandle;

use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tracing::warn;

/// How many open connections a thread takes before the next one is used,
/// unless `MESHGATE_CONNS_PER_THREAD` says otherwise.
pub const DEFAULT_PER_THREAD: usize = 16;

/// The connection threads of one proxy.
pub struct Workers {
    slots: Vec<Slot>,
    per_thread: usize,
    next_id: AtomicU64,
    /// Set by [`Workers::close_all`]: no new connection is started.
    closing: AtomicBool,
}

/// The connections running on one thread, by id: what [`Workers::close_all`]
/// ends.
type Running = Arc<Mutex<HashMap<u64, AbortHandle>>>;

struct Slot {
    /// `None`: the thread that started the proxy (its own runtime).
    handle: Option<Handle>,
    open: Arc<AtomicUsize>,
    running: Running,
}

/// Counts a connection as open on its thread until dropped.
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Workers {
    /// Starts `threads - 1` threads besides the calling one (`threads` is at
    /// least one), each packed with up to `per_thread` connections.
    pub fn start(threads: usize, per_thread: usize) -> std::io::Result<Workers> {
        let mut slots = vec![Slot {
            handle: None,
            open: Arc::default(),
            running: Arc::default(),
        }];
        for i in 1..threads.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = rt.handle().clone();
            std::thread::Builder::new()
                .name(format!("meshgate-conn-{i}"))
                .spawn(move || rt.block_on(std::future::pending::<()>()))?;
            slots.push(Slot {
                handle: Some(handle),
                open: Arc::default(),
                running: Arc::default(),
            });
        }
        Ok(Workers {
            slots,
            per_thread: per_thread.max(1),
            next_id: AtomicU64::new(0),
            closing: AtomicBool::new(false),
        })
    }

    /// Ends every connection still open, on whichever thread it is (its
    /// future is dropped there, so it writes its access log line).
    pub fn close_all(&self) {
        self.closing.store(true, Ordering::Relaxed);
        for s in &self.slots {
            for h in s.running.lock().values() {
                h.abort();
            }
        }
    }

    /// How many threads carry connections.
    pub fn threads(&self) -> usize {
        self.slots.len()
    }

    /// How many open connections a thread takes before the next is used.
    pub fn per_thread(&self) -> usize {
        self.per_thread
    }

    /// Open connections on each thread, first thread first.
    pub fn open(&self) -> Vec<usize> {
        self.slots
            .iter()
            .map(|s| s.open.load(Ordering::Relaxed))
            .collect()
    }

    /// Appends the open connections of each thread to a Prometheus
    /// exposition.
    pub fn render(&self, mode: &str, out: &mut String) {
        use std::fmt::Write;
        let _ = writeln!(
            out,
            "# HELP meshgate_proxy_thread_connections Connections open on each connection thread (0: the main thread)."
        );
        let _ = writeln!(out, "# TYPE meshgate_proxy_thread_connections gauge");
        for (i, n) in self.open().iter().enumerate() {
            let _ = writeln!(
                out,
                "meshgate_proxy_thread_connections{{mode=\"{mode}\",thread=\"{i}\"}} {n}"
            );
        }
    }

    /// The thread a new connection goes to: the first one under its share,
    /// else the one with the fewest; with `spread` (Consul's
    /// `exact_balance`), the one with the fewest.
    fn pick(&self, spread: bool) -> usize {
        if spread {
            return self
                .slots
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.open.load(Ordering::Relaxed))
                .map_or(0, |(i, _)| i);
        }
        let mut best = (0, usize::MAX);
        for (i, s) in self.slots.iter().enumerate() {
            let n = s.open.load(Ordering::Relaxed);
            if n < self.per_thread {
                return i;
            }
            if n < best.1 {
                best = (i, n);
            }
        }
        best.0
    }

    /// Runs `serve` for a connection just accepted on the calling thread's
    /// runtime, on the thread chosen for it (packed; `spread`: on the
    /// thread with the fewest, Consul's `exact_balance`).
    pub fn spawn<F, Fut>(&self, stream: TcpStream, spread: bool, serve: F)
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        // Stopping: what is accepted now is closed at once.
        if self.closing.load(Ordering::Relaxed) {
            return;
        }
        let slot = &self.slots[self.pick(spread)];
        slot.open.fetch_add(1, Ordering::Relaxed);
        let open = Open(slot.open.clone());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // Leaves the running map when the task ends, however it ends.
        let registered = Registered {
            running: slot.running.clone(),
            id,
        };
        // The map is held while the task is spawned and its abort handle
        // put in, so that the task's own removal (on another thread) comes
        // after the insertion. Aborting goes through the task's state: no
        // work for the connection while it runs.
        let Some(handle) = &slot.handle else {
            let mut running = slot.running.lock();
            let task = tokio::spawn(async move {
                let _open = open;
                let _registered = registered;
                serve(stream).await
            });
            running.insert(id, task.abort_handle());
            return;
        };
        // Out of this runtime's epoll, into the other thread's.
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                warn!("cannot hand a connection to another thread: {e}");
                return;
            }
        };
        let mut running = slot.running.lock();
        let task = handle.spawn(async move {
            let _open = open;
            let _registered = registered;
            match TcpStream::from_std(stream) {
                Ok(s) => serve(s).await,
                Err(e) => warn!("cannot take a connection on this thread: {e}"),
            }
        });
        running.insert(id, task.abort_handle());
    }
}

/// A running connection's entry in its thread's map, removed when the task
/// ends (its future dropped: finished, aborted or panicked).
struct Registered {
    running: Running,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.running.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Connections fill a thread up to its share before the next thread
    /// gets any, then go to the least busy; each is served, on the thread
    /// chosen, over the socket it came in on, and leaves its thread's count
    /// when it ends.
    #[tokio::test(flavor = "current_thread")]
    async fn packs_then_shares_and_serves_on_the_chosen_thread() {
        let w = Workers::start(3, 2).expect("threads");
        assert_eq!((w.threads(), w.per_thread()), (3, 2));
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let mut clients = Vec::new();
        for _ in 0..7 {
            let c = TcpStream::connect(addr).await.expect("connect");
            let (s, _) = l.accept().await.expect("accept");
            w.spawn(s, false, |mut s| async move {
                let me = std::thread::current();
                let name = me.name().unwrap_or("?").rsplit("::").next().unwrap_or("?");
                let _ = s.write_all(name.as_bytes()).await;
                let _ = s.shutdown().await;
                // Open until the client closes.
                let mut b = [0u8; 1];
                let _ = s.read(&mut b).await;
            });
            clients.push(c);
        }
        assert_eq!(w.open(), [3, 2, 2]);
        let mut names = Vec::new();
        for c in &mut clients {
            let mut name = String::new();
            c.read_to_string(&mut name).await.expect("read");
            names.push(name);
        }
        let here = std::thread::current();
        let main = here
            .name()
            .unwrap_or("?")
            .rsplit("::")
            .next()
            .unwrap_or("?");
        let (one, two) = ("meshgate-conn-1", "meshgate-conn-2");
        assert_eq!(names, [main, main, one, one, two, two, main]);
        let mut text = String::new();
        w.render("sidecar", &mut text);
        assert!(
            text.contains("meshgate_proxy_thread_connections{mode=\"sidecar\",thread=\"2\"} 2\n"),
            "{text}"
        );
        drop(clients);
        for _ in 0..500 {
            if w.open() == [0, 0, 0] {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(w.open(), [0, 0, 0]);
        assert_eq!(w.pick(false), 0);
    }

    /// `exact_balance`: each new connection goes to the thread with the
    /// fewest, not packed on the first.
    #[tokio::test(flavor = "current_thread")]
    async fn spread_puts_each_connection_on_the_least_busy_thread() {
        let w = Workers::start(3, 16).expect("threads");
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let mut clients = Vec::new();
        for _ in 0..4 {
            let c = TcpStream::connect(addr).await.expect("connect");
            let (s, _) = l.accept().await.expect("accept");
            w.spawn(s, true, |mut s| async move {
                let mut b = [0u8; 1];
                let _ = s.read(&mut b).await;
            });
            clients.push(c);
        }
        let mut open = w.open();
        open.sort_unstable();
        assert_eq!(open, [1, 1, 2]);
        // Ended at stop: the counts go back to zero.
        w.close_all();
        for _ in 0..500 {
            if w.open() == [0, 0, 0] {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(w.open(), [0, 0, 0]);
        drop(clients);
    }
}
