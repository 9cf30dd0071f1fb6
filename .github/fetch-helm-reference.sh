#!/usr/bin/env bash
# The official Dagster Helm chart's reference files that tests/helm_chart.py reads, fetched from
# dagster-io/dagster at the commits recorded with the copies this project keeps in
# ../shared/reference/helm/SOURCES.txt, each checked against its SHA-256 (a mismatch fails).
# Used by the GitHub matrix (.github/workflows/ci.yml), where that directory is not present.
# Usage: .github/fetch-helm-reference.sh DEST   (then LAUNCHPAD_HELM_REFERENCE=DEST)
set -euo pipefail
dest=${1:?usage: $0 DEST}
# local path | path in dagster-io/dagster | commit | sha256
files="
dagster/values.schema.json|helm/dagster/values.schema.json|bdb8547fab497826eeec292bc160b549a0a329ef|cccbf9a9956cf32b240ef7fc2f4735e03c02db369f15ff444b06492544f8503a
dagster-user-deployments/values.schema.json|helm/dagster/charts/dagster-user-deployments/values.schema.json|03ec7fc9e6bb0e95ba22e72fae2159b3188bc4fb|4f37a3c370bdf7547b1d431f1858b55cb2b1aca10b32e9f51894ad1843b5c856
dagster/values.yaml|helm/dagster/values.yaml|835892b45aaa0917bc97102968fe062155b64e19|5d3a14c8e519c3c0bbde59fedea0090a407af56b43c5bf802d0b25c36c1a0983
"
while IFS='|' read -r local path commit sha256; do
  [ -n "$local" ] || continue
  mkdir -p "$dest/$(dirname "$local")"
  curl -fsSL --retry 3 -o "$dest/$local" "https://raw.githubusercontent.com/dagster-io/dagster/$commit/$path"
  echo "$sha256  $dest/$local" | sha256sum -c --quiet - || {
    echo "error: $path at $commit is not the copy the tests were written against" >&2
    exit 1
  }
  echo "$local: dagster-io/dagster@$commit, sha256 checked"
done <<<"$files"
