//! The agent's log file (`log_file`, `log_rotate_bytes`,
//! `log_rotate_duration`, `log_rotate_max_files`), rotated as Consul rotates
//! its own: the file being written always has the configured name; when it
//! has grown to `log_rotate_bytes` (0: no limit) or is older than
//! `log_rotate_duration` (default 24 h), the next line first moves it aside
//! as `NAME-<unix nanoseconds>.EXT` and starts a new one, then the oldest
//! moved-aside files beyond `log_rotate_max_files` are removed (0 keeps them
//! all, a negative number keeps none).
//!
//! One difference: Consul truncates the file when it starts, losing the
//! previous run's log (the one an operator wants after a crash); meshgate
//! moves a non-empty file aside first, as a rotation would.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::sync::{Mutex, MutexGuard};

/// When Consul rotates without a `log_rotate_duration`.
pub const DEFAULT_ROTATE_EVERY: Duration = Duration::from_secs(24 * 3600);

/// How the file is rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Size that triggers a rotation (0: none).
    pub bytes: u64,
    /// Age that triggers a rotation.
    pub every: Duration,
    /// Moved-aside files kept (0: all; negative: none).
    pub max_files: i64,
}

/// A log file being written, rotated by [`Rotation`].
#[derive(Debug)]
pub struct LogFile {
    dir: PathBuf,
    /// File name without its extension, and the extension (with its dot;
    /// `.log` when the name has none, for the moved-aside files).
    stem: String,
    ext: String,
    name: String,
    rotation: Rotation,
    state: Mutex<Current>,
}

#[derive(Debug)]
struct Current {
    file: File,
    opened: Instant,
    written: u64,
}

impl LogFile {
    /// Opens `path` for the agent's log. A path ending in `/` names a
    /// directory and the file in it is `consul.log`, as with Consul (so that
    /// log shippers configured for Consul find it).
    pub fn open(path: &str, rotation: Rotation) -> io::Result<LogFile> {
        let (dir, name) = match path.rsplit_once('/') {
            Some((d, n)) => (if d.is_empty() { "/" } else { d }, n),
            None => (".", path),
        };
        let name = if name.is_empty() { "consul.log" } else { name };
        let (stem, ext) = split_name(name);
        let log = LogFile {
            dir: PathBuf::from(dir),
            stem: stem.to_string(),
            ext: ext.to_string(),
            name: name.to_string(),
            rotation,
            state: Mutex::new(Current {
                file: Self::create_in(Path::new(dir), name, true)?,
                opened: Instant::now(),
                written: 0,
            }),
        };
        log.prune()?;
        Ok(log)
    }

    /// Opens the current file: a non-empty one left by an earlier run is
    /// moved aside first (when `keep_old`), then the file is created empty.
    fn create_in(dir: &Path, name: &str, keep_old: bool) -> io::Result<File> {
        let path = dir.join(name);
        if keep_old
            && let Ok(meta) = std::fs::metadata(&path)
            && meta.len() > 0
        {
            let (stem, ext) = split_name(name);
            std::fs::rename(&path, dir.join(aside_name(stem, ext, SystemTime::now())))?;
        }
        let mut o = OpenOptions::new();
        o.create(true).write(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o640);
        }
        o.open(path)
    }

    /// The current file (a panic elsewhere while writing a line does not
    /// stop the log).
    fn current(&self) -> MutexGuard<'_, Current> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The path of the file being written.
    pub fn path(&self) -> PathBuf {
        self.dir.join(&self.name)
    }

    /// Removes the oldest moved-aside files beyond `max_files`.
    pub fn prune(&self) -> io::Result<()> {
        let max = self.rotation.max_files;
        if max == 0 {
            return Ok(());
        }
        let mut old = self.moved_aside()?;
        let keep = usize::try_from(max).unwrap_or(0);
        if old.len() <= keep {
            return Ok(());
        }
        old.sort();
        let remove = old.len() - keep;
        for (_, path) in old.into_iter().take(remove) {
            std::fs::remove_file(path)?;
        }
        Ok(())
    }

    /// The moved-aside files (`STEM-<digits>EXT`), with their timestamps.
    fn moved_aside(&self) -> io::Result<Vec<(u128, PathBuf)>> {
        let prefix = format!("{}-", self.stem);
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(stamp) = name
                .strip_prefix(&prefix)
                .and_then(|r| r.strip_suffix(&self.ext))
            else {
                continue;
            };
            if let Ok(n) = stamp.parse::<u128>()
                && stamp.bytes().all(|b| b.is_ascii_digit())
            {
                out.push((n, entry.path()));
            }
        }
        Ok(out)
    }

    /// Moves the current file aside and starts a new one, when it is due.
    fn rotate_if_due(&self, cur: &mut Current) -> io::Result<()> {
        let r = &self.rotation;
        let full = r.bytes > 0 && cur.written >= r.bytes;
        if !full && cur.opened.elapsed() < r.every {
            return Ok(());
        }
        let _ = cur.file.flush();
        std::fs::rename(
            self.path(),
            self.dir
                .join(aside_name(&self.stem, &self.ext, SystemTime::now())),
        )?;
        self.prune()?;
        cur.file = Self::create_in(&self.dir, &self.name, false)?;
        cur.opened = Instant::now();
        cur.written = 0;
        Ok(())
    }
}

/// A file name's stem and extension (with its dot; `.log` when it has
/// none, for the moved-aside files).
fn split_name(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ".log"),
    }
}

/// `STEM-<unix nanoseconds>EXT`.
fn aside_name(stem: &str, ext: &str, at: SystemTime) -> String {
    let nanos = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("{stem}-{nanos}{ext}")
}

impl Write for &LogFile {
    /// Writes one formatted line (the log layer writes each event whole), a
    /// rotation that is due happening first. A rotation that fails (the
    /// directory gone, permissions changed) leaves the line in the current
    /// file rather than losing it.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut cur = self.current();
        if let Err(e) = self.rotate_if_due(&mut cur) {
            // Try again after another period rather than on every line.
            cur.opened = Instant::now();
            cur.written = 0;
            eprintln!("log file: rotating {}: {e}", self.path().display());
        }
        cur.file.write_all(buf)?;
        cur.written += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.current().file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn rotation(bytes: u64, max_files: i64) -> Rotation {
        Rotation {
            bytes,
            every: DEFAULT_ROTATE_EVERY,
            max_files,
        }
    }

    #[test]
    fn rotates_by_size_and_keeps_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = format!("{}/agent.log", dir.path().display());
        let log = LogFile::open(&path, rotation(10, 2)).unwrap();
        for i in 0..5 {
            (&log)
                .write_all(format!("line {i} 0123456789\n").as_bytes())
                .unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        let all = names(dir.path());
        // The current file and two moved-aside ones: lines 0..3 were each
        // moved aside when the next one came; the two oldest were removed.
        assert_eq!(all.len(), 3, "{all:?}");
        assert!(all.contains(&"agent.log".to_string()));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("agent.log")).unwrap(),
            "line 4 0123456789\n"
        );
        let aside: Vec<_> = all.iter().filter(|n| n.as_str() != "agent.log").collect();
        for n in &aside {
            let stamp = n
                .strip_prefix("agent-")
                .unwrap()
                .strip_suffix(".log")
                .unwrap();
            assert!(stamp.bytes().all(|b| b.is_ascii_digit()), "{n}");
        }
        let contents: Vec<String> = aside
            .iter()
            .map(|n| std::fs::read_to_string(dir.path().join(n)).unwrap())
            .collect();
        assert_eq!(contents, ["line 2 0123456789\n", "line 3 0123456789\n"]);
    }

    #[test]
    fn rotates_by_age_and_negative_max_keeps_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = format!("{}/x", dir.path().display());
        let r = Rotation {
            bytes: 0,
            every: Duration::from_millis(30),
            max_files: -1,
        };
        let log = LogFile::open(&path, r).unwrap();
        (&log).write_all(b"one\n").unwrap();
        (&log).write_all(b"two\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("x")).unwrap(),
            "one\ntwo\n"
        );
        std::thread::sleep(Duration::from_millis(40));
        (&log).write_all(b"three\n").unwrap();
        assert_eq!(names(dir.path()), ["x"]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("x")).unwrap(),
            "three\n"
        );
    }

    #[test]
    fn a_directory_gets_consul_log_and_an_earlier_log_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("consul.log"), "earlier run\n").unwrap();
        std::fs::write(dir.path().join("consul-notastamp.log"), "not ours\n").unwrap();
        let path = format!("{}/", dir.path().display());
        let log = LogFile::open(&path, rotation(0, 0)).unwrap();
        (&log).write_all(b"this run\n").unwrap();
        assert_eq!(log.path(), dir.path().join("consul.log"));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("consul.log")).unwrap(),
            "this run\n"
        );
        let all = names(dir.path());
        assert_eq!(all.len(), 3, "{all:?}");
        let earlier = all
            .iter()
            .find(|n| n.as_str() != "consul.log" && n.as_str() != "consul-notastamp.log")
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(earlier)).unwrap(),
            "earlier run\n"
        );
        // Pruning leaves files that only look alike.
        let log = LogFile::open(&path, rotation(0, -1)).unwrap();
        log.prune().unwrap();
        assert_eq!(names(dir.path()), ["consul-notastamp.log", "consul.log"]);
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = format!("{}/no/such/dir/agent.log", dir.path().display());
        let e = LogFile::open(&path, rotation(0, 0)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_not_world_readable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = format!("{}/a.log", dir.path().display());
        let log = LogFile::open(&path, rotation(0, 0)).unwrap();
        let mode = std::fs::metadata(log.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o007, 0, "{mode:o}");
    }
}
