//! Consul's CLI takes single-dash long flags (`-http-addr`, `-recurse`); clap takes
//! `--http-addr`. [`normalize`] rewrites the first form into the second before
//! clap parses, so both spellings work.

/// Rewrites `-long-flag[=v]` to `--long-flag[=v]`. Left alone: `-` (stdin), `--`
/// and everything after it, one-letter flags (`-h`), negative numbers (`-1`),
/// and arguments after the `connect envoy` passthrough separator.
pub fn normalize(args: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut passthrough = false;
    for (i, a) in args.into_iter().enumerate() {
        if i == 0 || passthrough {
            out.push(a);
            continue;
        }
        if a == "--" {
            passthrough = true;
            out.push(a);
            continue;
        }
        let bytes = a.as_bytes();
        let single_dash_long = bytes.len() > 2
            && bytes[0] == b'-'
            && bytes[1] != b'-'
            && bytes[1].is_ascii_alphabetic()
            && !a[1..].starts_with(|c: char| c.is_ascii_digit());
        // `-x=...` with a one-letter name is a long flag too.
        let one_letter_eq = bytes.len() > 2 && bytes[0] == b'-' && bytes[2] == b'=';
        if single_dash_long && (bytes[2] != b'=' || one_letter_eq) {
            out.push(format!("-{a}"));
        } else {
            out.push(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(v: &[&str]) -> Vec<String> {
        normalize(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn rewrites_single_dash_long_flags() {
        assert_eq!(
            n(&[
                "meshgate",
                "kv",
                "get",
                "-recurse",
                "-http-addr=x",
                "--keys",
                "k"
            ]),
            vec![
                "meshgate",
                "kv",
                "get",
                "--recurse",
                "--http-addr=x",
                "--keys",
                "k"
            ]
        );
    }

    #[test]
    fn leaves_values_and_passthrough() {
        assert_eq!(
            n(&["meshgate", "kv", "put", "k", "-"]),
            vec!["meshgate", "kv", "put", "k", "-"]
        );
        assert_eq!(
            n(&["meshgate", "agent", "-dns-port", "-1", "-h"]),
            vec!["meshgate", "agent", "--dns-port", "-1", "-h"]
        );
        assert_eq!(
            n(&[
                "meshgate",
                "connect",
                "envoy",
                "-register",
                "--",
                "-l",
                "debug"
            ]),
            vec![
                "meshgate",
                "connect",
                "envoy",
                "--register",
                "--",
                "-l",
                "debug"
            ]
        );
    }
}
