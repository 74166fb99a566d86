//! Consul's CLI takes single-dash long flags (`-http-addr`, `-recurse`); clap takes
//! `--http-addr`. [`normalize`] rewrites the first form into the second before
//! clap parses, so both spellings work.

/// Commands whose arguments after the first positional one are another
/// command's (`lock PREFIX CHILD...`, `watch ... HANDLER...`): as with Go's
/// flag parsing, flags end there and the child's own flags are left alone.
const CHILD_COMMANDS: [&str; 2] = ["lock", "watch"];

/// Rewrites `-long-flag[=v]` to `--long-flag[=v]`. Left alone: `-` (stdin), `--`
/// and everything after it, one-letter flags (`-h`), negative numbers (`-1`),
/// arguments after the `connect envoy` passthrough separator, and for `lock`
/// and `watch` everything from their first positional argument on (`cli`
/// tells which of their flags take the next argument as value).
pub fn normalize(args: Vec<String>, cli: impl FnOnce() -> clap::Command) -> Vec<String> {
    // (The whole command tree is built only for these: the agent and the
    // proxies do without it.)
    let tree = args
        .get(1)
        .filter(|s| CHILD_COMMANDS.contains(&s.as_str()))
        .map(|_| cli());
    let sub = tree
        .as_ref()
        .zip(args.get(1))
        .and_then(|(t, s)| t.find_subcommand(s));
    let mut out = Vec::with_capacity(args.len());
    let mut passthrough = false;
    let mut value_next = false;
    for (i, a) in args.into_iter().enumerate() {
        if i == 0 || passthrough {
            out.push(a);
            continue;
        }
        if let Some(sub) = sub
            && i >= 2
        {
            if value_next {
                value_next = false;
                out.push(a);
                continue;
            }
            if !a.starts_with('-') || a == "-" {
                // The first positional argument: the rest is verbatim.
                passthrough = true;
                out.push(a);
                continue;
            }
            value_next = !a.contains('=') && takes_next_value(sub, &a);
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

/// Whether flag `flag` (`-x`, `-name`, `--name`) of `sub` reads the next
/// argument as its value.
fn takes_next_value(sub: &clap::Command, flag: &str) -> bool {
    let name = flag.trim_start_matches('-');
    sub.get_arguments()
        .find(|a| {
            a.get_long() == Some(name)
                || a.get_all_aliases().is_some_and(|al| al.contains(&name))
                || (name.chars().count() == 1
                    && a.get_short().map(String::from).as_deref() == Some(name))
        })
        .is_some_and(|a| a.get_action().takes_values() && !a.is_require_equals_set())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(v: &[&str]) -> Vec<String> {
        normalize(
            v.iter().map(|s| s.to_string()).collect(),
            <crate::Cli as clap::CommandFactory>::command,
        )
    }

    #[test]
    fn a_child_commands_flags_are_its_own() {
        assert_eq!(
            n(&[
                "meshgate",
                "lock",
                "-n",
                "2",
                "-name",
                "job",
                "-verbose",
                "-timeout=5s",
                "locks/job",
                "./job.sh",
                "-force",
                "-x=1",
                "--",
                "-y"
            ]),
            vec![
                "meshgate",
                "lock",
                "-n",
                "2",
                "--name",
                "job",
                "--verbose",
                "--timeout=5s",
                "locks/job",
                "./job.sh",
                "-force",
                "-x=1",
                "--",
                "-y"
            ]
        );
        assert_eq!(
            n(&[
                "meshgate", "watch", "-type", "key", "-key", "k", "sh", "-c", "cat -"
            ]),
            vec![
                "meshgate", "watch", "--type", "key", "--key", "k", "sh", "-c", "cat -"
            ]
        );
        // Other commands as before.
        assert_eq!(
            n(&["meshgate", "kv", "get", "k", "-recurse"]),
            vec!["meshgate", "kv", "get", "k", "--recurse"]
        );
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
