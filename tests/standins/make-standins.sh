#!/usr/bin/env bash
# Build the stand-in base images the test suite needs on machines that reach Debian's apt
# mirrors and PyPI but no container registry (CI, sandboxes).
#
# What a stand-in is: an image built here from Debian packages and tagged with the exact
# upstream name the template refers to (docker.io/library/python:3.13-slim-trixie, ...), so
# the rendered project is tested unchanged -- byte for byte what users get -- and its
# FROM lines resolve from the local store without a pull.
#
# Why they are honest: a stand-in only gets a tag whose distribution and major versions it
# really has, and the script checks them before tagging:
#   bookworm rootfs, Python 3.11         -> python:3.11-slim-bookworm
#   trixie rootfs,   Python 3.13         -> python:3.13-slim-trixie, python:3.13-slim
#   trixie + postgresql-17 (Containerfile in postgres/) -> postgres:17-trixie
#   (bookworm + postgresql-15 -> postgres:15-bookworm is available via POSTGRES=15-bookworm)
#   Debian bookworm's caddy 2.6.2 (one static binary) + busybox -> caddy:2.6.2 (the login proxy)
# Tags that cannot be made honestly here (Python 3.12, UBI, Alpine) are not faked.
# Known differences from the official images: python3 lives in /usr/bin (Debian's package)
# instead of /usr/local/bin, and Debian marks it EXTERNALLY-MANAGED, so `pip install` needs
# a venv -- which is what the template's Containerfiles do anyway. Each stand-in carries
# the label launchpad.standin.
#
# Air-gapped or registry-less setups in real life do not need this: an organisation's own
# registry mirror (or a pull-through cache) provides the real upstream images.
#
# The host's extra CA certificates (/usr/local/share/ca-certificates/*.crt) are added to
# every stand-in's CA store, because PyPI is reached through a TLS-intercepting proxy here
# and pip inside image builds must trust it.
#
# Idempotent: a stand-in whose tags already exist in Podman's store is skipped; debootstrap
# results are cached as tarballs in $STANDIN_CACHE; Docker (if `docker info` answers) gets
# each image with `podman save | docker load` unless it already has the same image ID.
#
# Usage (root): tests/standins/make-standins.sh
# Env:
#   SUITES         Debian suites to build Python stand-ins for (default: "bookworm trixie")
#   POSTGRES       PostgreSQL stand-ins as <major>-<suite> (default: "17-trixie"; "" for none)
#   MIRROR         Debian mirror for debootstrap and for the images' apt sources
#                  (default: http://deb.debian.org/debian)
#   STANDIN_CACHE  cache of rootfs tarballs and logs (default: /var/cache/launchpad-standins);
#                  delete it to debootstrap afresh
#   CADDY          the Caddy stand-in's version, which Debian's package must have (default:
#                  "2.6.2"; "" for none)
#   FORCE=1        rebuild (and reload into Docker) even if the tags exist
#   EXTRA_CA_DIR   directory of *.crt to trust (default: /usr/local/share/ca-certificates)
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SUITES=${SUITES:-bookworm trixie}
POSTGRES=${POSTGRES-17-trixie}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
STANDIN_CACHE=${STANDIN_CACHE:-/var/cache/launchpad-standins}
CADDY=${CADDY-2.6.2}
FORCE=${FORCE:-0}
EXTRA_CA_DIR=${EXTRA_CA_DIR:-/usr/local/share/ca-certificates}

# Debian suite -> Python minor version it ships, and the upstream tags that promise it
declare -A SUITE_PYTHON=([bookworm]=3.11 [trixie]=3.13)
declare -A SUITE_TAGS=(
  [bookworm]="docker.io/library/python:3.11-slim-bookworm"
  [trixie]="docker.io/library/python:3.13-slim-trixie docker.io/library/python:3.13-slim"
)
# python-is-python3: the official images have `python` too
INCLUDE=python3,python3-venv,python3-pip,python-is-python3,ca-certificates
PATH_ENV=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() { printf '[standins] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

TIMINGS=()
timed() {  # timed LABEL CMD...: run CMD, remember how long it took
  local label=$1 start=$SECONDS
  shift
  "$@"
  TIMINGS+=("$label|$((SECONDS - start))")
  log "$label: $((SECONDS - start))s"
}

# Images a rebuild replaced; removed at the end if nothing refers to them any more.
REPLACED=()
remember_replaced() {  # remember_replaced ENGINE TAG...
  local engine=$1 tag id
  shift
  for tag in "$@"; do
    id=$("$engine" image inspect --format '{{.Id}}' "$tag" 2>/dev/null) && REPLACED+=("$engine $id")
  done
  return 0
}
drop_replaced() {  # newest first, so a replaced child goes before its replaced parent
  local i engine id
  for ((i = ${#REPLACED[@]} - 1; i >= 0; i--)); do
    read -r engine id <<<"${REPLACED[i]}"
    # only if untagged now; rmi refuses (and we ignore it) while containers or children use it
    if [ "$("$engine" image inspect --format '{{len .RepoTags}}' "$id" 2>/dev/null)" = 0 ]; then
      if "$engine" rmi "$id" >/dev/null 2>&1; then
        log "removed replaced $engine image ${id#sha256:}"
      fi
    fi
  done
}

docker_answers() { command -v docker >/dev/null && docker info >/dev/null 2>&1; }

have_all_tags() {
  local tag
  for tag in "$@"; do
    podman image exists "$tag" || return 1
  done
}

# ---------------------------------------------------------------- work dir and cleanup
WORK=
cleanup() {
  [ -n "$WORK" ] && [ -d "$WORK" ] || return 0
  # debootstrap mounts proc/sys inside the target; never delete through a mount
  local mnt
  while read -r mnt; do
    umount -l "$mnt" || true
  done < <(awk -v w="$WORK/" 'index($2, w) == 1 { print $2 }' /proc/self/mounts | sort -r)
  rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT

# ---------------------------------------------------------------- rootfs
debootstrap_to_cache() {  # debootstrap SUITE into ROOT and keep it as CACHE_TAR
  local suite=$1 root=$2 cache_tar=$3 logf=$STANDIN_CACHE/debootstrap-$1.log
  log "debootstrap $suite from $MIRROR (log: $logf)"
  if ! debootstrap --variant=minbase --include="$INCLUDE" "$suite" "$root" "$MIRROR" \
    >"$logf" 2>&1; then
    tail -n 20 "$logf" >&2
    die "debootstrap $suite failed (log: $logf)"
  fi
  echo "deb $MIRROR $suite main" >"$root/etc/apt/sources.list"
  chroot "$root" apt-get clean
  rm -rf "$root"/var/lib/apt/lists/*
  tar --numeric-owner -C "$root" -cf "$cache_tar.tmp" .
  mv "$cache_tar.tmp" "$cache_tar"
}

# The cached rootfs is plain debootstrap output; what follows is applied on every build,
# so changing it needs FORCE=1 but no new debootstrap.

slim_rootfs() {  # the dpkg and apt settings of Debian's official (-slim) images
  local root=$1
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'CFG'
# slim image: no docs (except copyright), man pages, info pages or translations
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
CFG
  cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG
  echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
  echo 'Acquire::GzipIndexes "true";' >"$root/etc/apt/apt.conf.d/docker-gzip-indexes"
  echo 'Apt::AutoRemove::SuggestsImportant "false";' \
    >"$root/etc/apt/apt.conf.d/docker-autoremove-suggests"
  find "$root/usr/share/doc" -mindepth 1 -not -type d -not -name copyright -delete
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$root"/usr/share/{groff,info,linda,lintian/overrides,locale,man}/*
  # host specific; the engine provides them at run time
  rm -f "$root"/etc/resolv.conf "$root"/etc/hostname
  rm -rf "$root"/var/log/apt/* "$root"/var/log/dpkg.log "$root"/var/cache/debconf/*-old
}

add_extra_cas() {
  local root=$1 crt n=0
  for crt in "$EXTRA_CA_DIR"/*.crt; do
    [ -e "$crt" ] || continue
    install -m 0644 "$crt" "$root/usr/local/share/ca-certificates/"
    n=$((n + 1))
  done
  # quiet on success; its `openssl rehash` warns about the bundle file every time
  local out
  out=$(chroot "$root" update-ca-certificates 2>&1) || die "update-ca-certificates failed: $out"
  log "added $n extra CA certificate(s) from $EXTRA_CA_DIR"
}

build_python_standin() {
  local suite=$1 arch=$2 root tag py
  local -a tags
  read -r -a tags <<<"${SUITE_TAGS[$suite]}"
  # the cache key: everything that changes what debootstrap produces
  local key
  key=$(printf '%s\n' "$suite" "$arch" "$MIRROR" "$INCLUDE" | sha256sum | cut -c1-12)
  local cache_tar=$STANDIN_CACHE/rootfs-$suite-$arch-$key.tar

  root=$WORK/$suite
  mkdir -p "$root"
  if [ -s "$cache_tar" ]; then
    log "$suite: rootfs from cache $cache_tar"
    timed "$suite: unpack cached rootfs" tar --numeric-owner -C "$root" -xpf "$cache_tar"
  else
    timed "$suite: debootstrap" debootstrap_to_cache "$suite" "$root" "$cache_tar"
  fi
  slim_rootfs "$root"
  add_extra_cas "$root"

  py=$(chroot "$root" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  [ "$py" = "${SUITE_PYTHON[$suite]}" ] ||
    die "$suite has Python $py, not ${SUITE_PYTHON[$suite]}: refusing to tag ${tags[*]}"
  local full
  full=$(chroot "$root" python3 -c 'import platform; print(platform.python_version())')

  # the image: the rootfs without device nodes (the engine provides /dev)
  remember_replaced podman "${tags[@]}"
  timed "$suite: import into podman" import_rootfs "$root" "${tags[0]}" \
    "Debian $suite + Debian python3 $full"
  for tag in "${tags[@]:1}"; do
    podman tag "${tags[0]}" "$tag"
  done
  rm -rf --one-file-system "$root"
}

import_rootfs() {
  local root=$1 tag=$2 what=$3
  tar --numeric-owner -C "$root" --exclude='./dev/*' -cf - . |
    podman import --quiet \
      --change "ENV PATH=$PATH_ENV" \
      --change 'ENV LANG=C.UTF-8' \
      --change "LABEL launchpad.standin=\"$what (debootstrap, not the official image)\"" \
      --change 'CMD ["/bin/bash"]' \
      --message "launchpad stand-in: $what" \
      - "$tag" >/dev/null
}

# ---------------------------------------------------------------- postgres
build_postgres_standin() {
  local major=$1 suite=$2 tag=$3 base got
  base=${SUITE_TAGS[$suite]%% *}
  podman image exists "$base" ||
    die "$tag needs the $suite stand-in $base (add $suite to SUITES)"
  local logf=$STANDIN_CACHE/build-postgres-$major-$suite.log
  remember_replaced podman "$tag"
  log "building $tag FROM $base (log: $logf)"
  # --format docker: OCI image configs cannot carry HEALTHCHECK
  # --layers=false: no intermediate images to keep (the base changes on every rebuild)
  if ! podman build --format docker --pull=never --layers=false \
    --build-arg "BASE=$base" --build-arg "PG_MAJOR=$major" \
    --label "launchpad.standin=Debian $suite + Debian postgresql-$major (not the official image)" \
    -t "$tag" -f "$HERE/postgres/Containerfile" "$HERE/postgres" >"$logf" 2>&1; then
    tail -n 20 "$logf" >&2
    die "building $tag failed (log: $logf)"
  fi
  got=$(podman run --rm --no-healthcheck --entrypoint postgres "$tag" --version)
  if ! [[ $got =~ \(PostgreSQL\)\ $major\. ]]; then
    podman rmi "$tag" >/dev/null
    die "$tag contains '$got', not PostgreSQL $major: removed it"
  fi
  log "$tag: $got"
}

# ---------------------------------------------------------------- caddy
# docker.io/library/caddy:VERSION: the official image is Alpine with busybox, the static caddy
# binary (with the file capability cap_net_bind_service, as the official image sets it), its
# CA certificates, /etc/caddy/Caddyfile, the volumes /data and /config and XDG_* pointing there.
# The stand-in has the same layout from Debian packages: caddy (with the glibc it links) and
# busybox-static (the shell and wget of the official image's busybox), the host's CA bundle.
build_caddy_standin() {
  local version=$1 tag=$2 root got debs
  root=$WORK/caddy
  debs=$WORK/caddy-debs
  mkdir -p "$root" "$debs"
  (cd "$debs" && apt-get download caddy busybox-static >"$STANDIN_CACHE/caddy-download.log" 2>&1) ||
    die "apt-get download caddy busybox-static failed (log: $STANDIN_CACHE/caddy-download.log)"
  dpkg-deb -x "$debs"/caddy_*.deb "$debs/caddy"
  dpkg-deb -x "$debs"/busybox-static_*.deb "$debs/busybox"
  got=$("$debs/caddy/usr/bin/caddy" version | awk '{print $1}')
  [ "${got#v}" = "$version" ] || die "Debian's caddy is $got, not $version: refusing to tag $tag"
  mkdir -p "$root"/{bin,usr/bin,etc/caddy,etc/ssl/certs,data,config,srv,tmp,usr/share/caddy}
  chmod 1777 "$root/tmp"
  install -m 0755 "$debs/caddy/usr/bin/caddy" "$root/usr/bin/caddy"
  # Debian builds it against glibc (and libzstd): this host's (bookworm's) copies of what it
  # links, as the binary of a bookworm package expects.
  local lib
  for lib in $(ldd "$root/usr/bin/caddy" | grep -o '/[^ ]*'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
  setcap cap_net_bind_service=+ep "$root/usr/bin/caddy"
  install -m 0755 "$debs/busybox/bin/busybox" "$root/bin/busybox"
  local applet
  for applet in sh ash cat ls wget mkdir rm cp mv chmod id env ps sleep grep; do
    ln -s busybox "$root/bin/$applet"
  done
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  echo 'hosts: files dns' >"$root/etc/nsswitch.conf"
  # The official image's default Caddyfile: a static file server on :80.
  printf ':80 {\n\troot * /usr/share/caddy\n\tfile_server\n}\n' >"$root/etc/caddy/Caddyfile"
  echo '<!doctype html><title>Caddy works</title>' >"$root/usr/share/caddy/index.html"
  remember_replaced podman "$tag"
  tar --numeric-owner --xattrs --xattrs-include='security.capability' -C "$root" -cf - . |
    podman import --quiet \
      --change "ENV PATH=$PATH_ENV" \
      --change 'ENV XDG_CONFIG_HOME=/config' \
      --change 'ENV XDG_DATA_HOME=/data' \
      --change 'WORKDIR /srv' \
      --change 'EXPOSE 80' --change 'EXPOSE 443' --change 'EXPOSE 443/udp' --change 'EXPOSE 2019' \
      --change "LABEL launchpad.standin=\"Debian bookworm caddy $got + busybox-static (not the official image)\"" \
      --change 'CMD ["caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]' \
      --message "launchpad stand-in: caddy $got" \
      - "$tag" >/dev/null
  got=$(podman run --rm --network=none "$tag" caddy version | awk '{print $1}') || true
  [ "${got#v}" = "$version" ] || { podman rmi "$tag" >/dev/null; die "$tag runs caddy $got: removed it"; }
  log "$tag: caddy $got"
}

# ---------------------------------------------------------------- docker
save_and_load() { podman save --format docker-archive "$1" | docker load >/dev/null; }

load_into_docker() {  # load_into_docker TAG...: all TAGs name the same image
  local first=$1 id tag
  id=$(podman image inspect --format '{{.Id}}' "$first")
  if [ "$FORCE" != 1 ] && [ "$(docker image inspect --format '{{.Id}}' "$first" 2>/dev/null)" = "sha256:$id" ]; then
    log "docker already has $first"
  else
    remember_replaced docker "$@"
    timed "docker load $first" save_and_load "$first"
  fi
  for tag in "${@:2}"; do
    docker tag "$first" "$tag"
  done
}

# ---------------------------------------------------------------- main
main() {
  local start=$SECONDS suite arch spec major pg_suite tag cmd
  local -a made=() pg_tags=() tags=()
  local -A action=() rebuilt=()

  [ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, chroot)"
  for cmd in podman debootstrap chroot tar sha256sum${CADDY:+ setcap dpkg-deb}; do
    command -v "$cmd" >/dev/null || die "$cmd not found (run .ci/install-engines.sh)"
  done
  for suite in $SUITES; do
    [ -n "${SUITE_TAGS[$suite]:-}" ] || die "unknown suite '$suite' (known: ${!SUITE_TAGS[*]})"
  done
  for spec in $POSTGRES; do
    [[ $spec =~ ^[0-9]+-[a-z]+$ ]] || die "POSTGRES entry '$spec' is not <major>-<suite>"
  done
  arch=$(dpkg --print-architecture)

  mkdir -p "$STANDIN_CACHE"
  # one run at a time (parallel test workers may all call this)
  exec 9>"$STANDIN_CACHE/.lock"
  flock 9
  WORK=$(mktemp -d -p "$STANDIN_CACHE" work.XXXXXX)

  for suite in $SUITES; do
    read -r -a tags <<<"${SUITE_TAGS[$suite]}"
    if [ "$FORCE" != 1 ] && have_all_tags "${tags[@]}"; then
      log "$suite: ${tags[*]} already in podman, skipping (FORCE=1 rebuilds)"
      action[$suite]=present
    else
      build_python_standin "$suite" "$arch"
      action[$suite]=built
      rebuilt[$suite]=1
    fi
    made+=("${tags[@]}")
  done

  for spec in $POSTGRES; do
    major=${spec%%-*} pg_suite=${spec#*-}
    tag=docker.io/library/postgres:$spec
    if [ "$FORCE" != 1 ] && [ -z "${rebuilt[$pg_suite]:-}" ] && podman image exists "$tag"; then
      log "$tag already in podman, skipping (FORCE=1 rebuilds)"
      action[$tag]=present
    else
      timed "postgres $spec: build" build_postgres_standin "$major" "$pg_suite" "$tag"
      action[$tag]=built
    fi
    pg_tags+=("$tag")
  done

  local -a caddy_tags=()
  if [ -n "$CADDY" ]; then
    tag=docker.io/library/caddy:$CADDY
    if [ "$FORCE" != 1 ] && podman image exists "$tag"; then
      log "$tag already in podman, skipping (FORCE=1 rebuilds)"
      action[$tag]=present
    else
      timed "caddy $CADDY: build" build_caddy_standin "$CADDY" "$tag"
      action[$tag]=built
    fi
    caddy_tags+=("$tag")
  fi

  local docker=no
  if docker_answers; then
    docker=yes
    for suite in $SUITES; do
      read -r -a tags <<<"${SUITE_TAGS[$suite]}"
      load_into_docker "${tags[@]}"
    done
    for tag in "${pg_tags[@]}" "${caddy_tags[@]}"; do
      load_into_docker "$tag"
    done
  else
    log "docker does not answer: images are in podman only"
  fi

  drop_replaced

  # ---- summary
  local key size id in_docker
  echo
  printf '%-48s %-12s %9s %-8s %s\n' IMAGE ID SIZE ACTION DOCKER
  for tag in "${made[@]}" "${pg_tags[@]}" "${caddy_tags[@]}"; do
    id=$(podman image inspect --format '{{.Id}}' "$tag")
    size=$(podman image inspect --format '{{.Size}}' "$tag" | numfmt --to=si --suffix=B)
    key=$tag
    for suite in $SUITES; do
      [[ " ${SUITE_TAGS[$suite]} " == *" $tag "* ]] && key=$suite
    done
    in_docker=-
    if [ "$docker" = yes ]; then
      in_docker=no
      [ "$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null)" = "sha256:$id" ] && in_docker=yes
    fi
    printf '%-48s %-12s %9s %-8s %s\n' "$tag" "${id:0:12}" "$size" "${action[$key]}" "$in_docker"
  done
  echo
  local t
  for t in "${TIMINGS[@]}"; do
    printf '  %-60s %5ss\n' "${t%|*}" "${t##*|}"
  done
  printf '  %-60s %5ss\n' "total" "$((SECONDS - start))"
}

main "$@"
