#!/usr/bin/env bash
# Builds the Debian package (PROFILE=dev by default, for speed) and checks it:
# its files, conffiles, dependencies and maintainer scripts; the systemd units
# with `systemd-analyze verify` (when systemd-analyze exists); and that the
# packaged binary, man pages and completions work. Exits non-zero on the first
# problem, saying what it is.
set -euo pipefail
cd "$(dirname "$0")/.."
deb=$(PROFILE=${PROFILE:-dev} packaging/build-deb.sh | tail -1)
[ -f "$deb" ] || { echo "check-deb: no package built ($deb)" >&2; exit 1; }
fail() { echo "check-deb: $*" >&2; exit 1; }
contents=$(dpkg-deb -c "$deb")
for path in ./usr/bin/meshgate \
            ./lib/systemd/system/meshgate.service \
            ./lib/systemd/system/meshgate-gateway@.service \
            ./etc/meshgate/meshgate.hcl \
            ./usr/share/man/man1/meshgate.1.gz \
            ./usr/share/man/man1/meshgate-gateway-external-add.1.gz \
            ./usr/share/bash-completion/completions/meshgate \
            ./usr/share/zsh/vendor-completions/_meshgate \
            ./usr/share/fish/vendor_completions.d/meshgate.fish \
            ./usr/share/doc/meshgate/README.md \
            ./usr/share/doc/meshgate/docs/gateway.md; do
  grep -q " $path\$" <<<"$contents" || fail "missing $path"
done
grep -q "^-rwxr-xr-x .* ./usr/bin/meshgate$" <<<"$contents" || fail "/usr/bin/meshgate is not 0755"
man_pages=$(grep -c "usr/share/man/man1/meshgate.*\.1\.gz$" <<<"$contents")
[ "$man_pages" -ge 50 ] || fail "only $man_pages man pages"
info=$(dpkg-deb -I "$deb")
grep -q "^ Depends:.*adduser" <<<"$info" || fail "Depends lacks adduser"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -e "$deb" "$tmp/DEBIAN"
grep -qx "/etc/meshgate/meshgate.hcl" "$tmp/DEBIAN/conffiles" || fail "meshgate.hcl is not a conffile"
grep -q "adduser --system" "$tmp/DEBIAN/postinst" || fail "postinst does not create the system user"
grep -q "install -d -m 0750 -o meshgate -g meshgate /var/lib/meshgate" "$tmp/DEBIAN/postinst" || fail "postinst does not create the data directory"
if grep -Eq "systemctl (start|enable)|deb-systemd-invoke" "$tmp/DEBIAN/postinst"; then
  fail "postinst starts or enables something"
fi
sh -n "$tmp/DEBIAN/postinst" && sh -n "$tmp/DEBIAN/postrm" || fail "a maintainer script does not parse"
dpkg-deb -x "$deb" "$tmp/root"
# (Captured first: `grep -q` closing the pipe early would kill the writer
# with SIGPIPE, which pipefail reports as a failure.)
version=$("$tmp/root/usr/bin/meshgate" version) || fail "the packaged binary does not run"
grep -q "^meshgate v" <<<"$version" || fail "the packaged binary printed: $version"
bash -n "$tmp/root/usr/share/bash-completion/completions/meshgate" || fail "the bash completion does not parse"
if command -v systemd-analyze >/dev/null 2>&1; then
  # Verify the units as installed, with the packaged binary in place of /usr/bin/meshgate.
  mkdir -p "$tmp/units"
  for u in meshgate.service meshgate-gateway@.service; do
    sed "s#/usr/bin/meshgate#$tmp/root/usr/bin/meshgate#g" "$tmp/root/lib/systemd/system/$u" >"$tmp/units/$u"
  done
  cp "$tmp/units/meshgate-gateway@.service" "$tmp/units/meshgate-gateway@carbonio-gateway.service"
  # verify exits 0 on unknown keys and bad values (it only warns): any
  # output is a failure here.
  out=$(cd "$tmp/units" && systemd-analyze verify --man=no meshgate.service meshgate-gateway@carbonio-gateway.service 2>&1) ||
    fail "systemd-analyze verify refused a unit: $out"
  [ -z "$out" ] || fail "systemd-analyze verify warns: $out"
  echo "check-deb: units verified with systemd-analyze"
else
  echo "check-deb: systemd-analyze not found; units not verified (apt-get install systemd)"
fi
echo "check-deb: $deb is fine ($man_pages man pages)"
