#!/usr/bin/env bash
# Builds the meshgate Debian package with cargo-deb: generates the man pages
# and shell completions from the CLI definition, then packages.
#
#   packaging/build-deb.sh              # release build (what ships)
#   PROFILE=dev packaging/build-deb.sh  # debug build, for checking the package quickly
#
# Installs cargo-deb with `cargo install` when it is missing. Prints the path
# of the .deb on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${PROFILE:-release}
case "$PROFILE" in
  release) dir=release ;;
  dev) dir=debug ;;
  *) dir=$PROFILE ;;
esac
if ! command -v cargo-deb >/dev/null 2>&1; then
  cargo install cargo-deb --locked
fi
cargo build --profile "$PROFILE" --bin meshgate
bin="target/$dir/meshgate"
out=target/packaging
rm -rf "$out"
mkdir -p "$out/man" "$out/completions"
"$bin" man --dir "$out/man"
"$bin" completion bash >"$out/completions/meshgate.bash"
"$bin" completion zsh >"$out/completions/_meshgate"
"$bin" completion fish >"$out/completions/meshgate.fish"
cargo deb --no-build --profile "$PROFILE" --output target/debian/ 2>&1 | tail -1
