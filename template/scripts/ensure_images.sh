#!/bin/sh
# Usage: ensure_images.sh ENGINE IMAGE...
# Make sure each base image is in the local image store: pull what is missing and,
# where that is impossible (offline, air-gapped or mirror-only networks), say so clearly.
set -eu
engine=$1
shift
for image in "$@"; do
  if "$engine" image inspect "$image" >/dev/null 2>&1; then
    continue
  fi
  echo "Pulling $image ..."
  if ! err=$("$engine" pull "$image" 2>&1 >/dev/null); then
    reason=$(printf '%s\n' "$err" | tail -n 1)
    cat >&2 <<MSG
error: the image $image is not in the local $engine image store, and pulling it failed:
    $reason
If this machine cannot reach that registry (offline, air-gapped or mirror-only network):
  - point BASE_IMAGE / POSTGRES_IMAGE in .env at your organisation's mirror, or
  - load the image into $engine ($engine load -i image.tar).
See "Offline, air-gapped and mirrored registries" in README.md.
MSG
    exit 1
  fi
done
