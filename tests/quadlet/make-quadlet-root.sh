#!/usr/bin/env bash
# Build (once) a Debian trixie root with Podman 5.4, whose Quadlet generator
# (/usr/libexec/podman/quadlet) checks the generated Quadlet units: this host's Podman 4.3
# has no Quadlet. Only the generator's -dryrun is used (it needs no systemd and starts
# nothing): tests/test_kube.py runs
#   chroot ROOT env QUADLET_UNIT_DIRS=DIR /usr/libexec/podman/quadlet -dryrun
#
# Idempotent: a finished root (marked by ROOT/.launchpad-quadlet-ready) is reused; an
# interrupted debootstrap is started afresh. About 380 MB, a few minutes.
# While it builds it holds an exclusive lock on ROOT.lock: .ci/run starts it in the background
# and the Quadlet tests wait on that lock (test_kube.quadlet_generator), so the build overlaps
# the first tests instead of delaying them all.
#
# Usage (root): tests/quadlet/make-quadlet-root.sh
# Env:
#   QUADLET_ROOT  where the root goes (default: /var/cache/launchpad/quadlet-trixie)
#   MIRROR        Debian mirror (default: http://deb.debian.org/debian)
set -Eeuo pipefail

QUADLET_ROOT=${QUADLET_ROOT:-/var/cache/launchpad/quadlet-trixie}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
READY=$QUADLET_ROOT/.launchpad-quadlet-ready

log() { printf '[make-quadlet-root] %s\n' "$*" >&2; }

ready() { [ -f "$READY" ] && [ -x "$QUADLET_ROOT/usr/libexec/podman/quadlet" ]; }
if ready; then
  log "reusing $QUADLET_ROOT ($(cat "$READY"))"
  exit 0
fi
mkdir -p "$(dirname "$QUADLET_ROOT")"
exec 9>"$QUADLET_ROOT.lock"
flock 9  # one build at a time; a second caller waits, then finds the root ready
if ready; then
  log "reusing $QUADLET_ROOT ($(cat "$READY")), built meanwhile"
  exit 0
fi
command -v debootstrap >/dev/null || { log "ERROR: debootstrap is not installed (apt-get install debootstrap)"; exit 1; }
[ "$(id -u)" = 0 ] || { log "ERROR: debootstrap needs root"; exit 1; }

start=$SECONDS
rm -rf "$QUADLET_ROOT.partial"
mkdir -p "$(dirname "$QUADLET_ROOT")"
log "debootstrap trixie with podman into $QUADLET_ROOT (about 380 MB, a few minutes)"
debootstrap --variant=minbase --include=podman trixie "$QUADLET_ROOT.partial" "$MIRROR" \
  > "$(dirname "$QUADLET_ROOT")/quadlet-debootstrap.log" 2>&1 \
  || { log "ERROR: debootstrap failed; see $(dirname "$QUADLET_ROOT")/quadlet-debootstrap.log"; exit 1; }
# (podman --version needs /proc; the package's version says the same)
version="podman $(chroot "$QUADLET_ROOT.partial" dpkg-query -W -f='${Version}' podman)"
rm -rf "$QUADLET_ROOT"
mv "$QUADLET_ROOT.partial" "$QUADLET_ROOT"
echo "$version" > "$READY"
log "done in $((SECONDS - start)) s: $version"
