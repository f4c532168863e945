#!/usr/bin/env bash
# Validates the manifests under k8s/ against the OpenAPI schemas of a
# Kubernetes release, with kubernetes-validate from PyPI in strict mode
# (unknown fields are errors).
#
# Usage: k8s/validate.sh
#
# It checks
#   - every built-in resource in a YAML file under k8s/, one document at a
#     time, including secret.example.yaml, which no kustomization lists;
#   - the output of `kubectl kustomize` for every directory with a
#     kustomization.yaml, so that overlays and patches are checked as they
#     are applied. This step is skipped, with a message, when kubectl is
#     not installed.
# It skips documents that are not Kubernetes objects (no kind, such as the
# plain Prometheus rules file or a JSON patch) and Kustomization files. It
# also skips patch files that a kustomization names, because they are
# partial objects, and custom resources such as ServiceMonitor and
# PrometheusRule, which have no built-in schema.
#
# Environment:
#   KUBERNETES_VERSION  release to validate against (default below)

set -euo pipefail

# kubernetes-validate 1.37.0 ships schemas up to Kubernetes 1.37. Native
# sidecars (an init container with restartPolicy: Always) need 1.29 or
# later, and the preStop sleep action 1.30 or later.
VALIDATOR_VERSION=1.37.0
KUBERNETES_VERSION=${KUBERNETES_VERSION:-1.37.0}

ROOT=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

if ! python3 -c 'import kubernetes_validate' 2>/dev/null ||
    [ "$(python3 -c 'import kubernetes_validate.version as v; print(v.__version__)')" != "$VALIDATOR_VERSION" ]; then
    python3 -m pip install --quiet "kubernetes-validate==$VALIDATOR_VERSION"
fi

# Splits YAML files (or standard input, as "-") into one file per document
# to validate, under the directory given first, and prints how many it
# wrote. Documents listed above as skipped are left out.
cat >"$WORK/split.py" <<'PY'
import os
import sys

import yaml

out_dir, sources = sys.argv[1], sys.argv[2:]


def patch_files(directory):
    """Return the patch files that the kustomization in `directory` names."""
    path = os.path.join(directory, "kustomization.yaml")
    if not os.path.exists(path):
        return set()
    with open(path) as f:
        kustomization = yaml.safe_load(f) or {}
    names = set()
    for entry in kustomization.get("patches", []) + kustomization.get("patchesStrategicMerge", []):
        name = entry.get("path") if isinstance(entry, dict) else entry
        if name:
            names.add(os.path.normpath(os.path.join(directory, name)))
    return names


written = 0
for source in sources:
    if source == "-":
        text, label = sys.stdin.read(), "stdin"
    else:
        if os.path.normpath(source) in patch_files(os.path.dirname(source)):
            continue
        with open(source) as f:
            text, label = f.read(), source
    for index, doc in enumerate(yaml.safe_load_all(text)):
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            continue
        if doc["kind"] == "Kustomization" or doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue
        name = "%03d-%s-%d-%s-%s.yaml" % (
            written,
            label.replace("/", "_"),
            index,
            doc["kind"].lower(),
            doc.get("metadata", {}).get("name", "unnamed"),
        )
        with open(os.path.join(out_dir, name), "w") as f:
            yaml.safe_dump(doc, f)
        written += 1
print(written)
PY
split_documents() {
    python3 "$WORK/split.py" "$@"
}

# Runs kubernetes-validate on every file in a directory. Any WARN line (a
# kind or apiVersion without a schema, such as a typo in apiVersion) counts
# as a failure, like ERROR.
validate_dir() {
    local dir=$1 output status=0
    output=$(python3 -m kubernetes_validate --strict --kubernetes-version "$KUBERNETES_VERSION" "$dir"/*.yaml) || status=$?
    printf '%s\n' "$output"
    if [ "$status" -ne 0 ] || grep -q '^\(WARN\|ERROR\|FATAL\)' <<<"$output"; then
        echo "error: manifests in $dir failed validation against Kubernetes $KUBERNETES_VERSION" >&2
        return 1
    fi
}

failed=0

mkdir "$WORK/files"
mapfile -t files < <(find "$ROOT" -name '*.yaml' -o -name '*.yml' | sort)
count=$(split_documents "$WORK/files" "${files[@]}")
if [ "$count" -eq 0 ]; then
    echo "error: no manifests found under $ROOT" >&2
    exit 1
fi
echo "validating $count resources from files under $ROOT"
validate_dir "$WORK/files" || failed=1

if command -v kubectl >/dev/null; then
    while read -r kustomization; do
        dir=$(dirname "$kustomization")
        out="$WORK/build-$(basename "$dir")"
        mkdir "$out"
        if ! kubectl kustomize "$dir" >"$out.yaml"; then
            echo "error: kubectl kustomize $dir failed" >&2
            failed=1
            continue
        fi
        count=$(split_documents "$out" - <"$out.yaml")
        if [ "$count" -eq 0 ]; then
            echo "error: kubectl kustomize $dir built no built-in resource to validate" >&2
            failed=1
            continue
        fi
        echo "validating $count resources of kubectl kustomize $dir"
        validate_dir "$out" || failed=1
    done < <(find "$ROOT" -name kustomization.yaml | sort)
else
    echo "kubectl not found; skipping validation of the kustomize builds"
fi

if [ "$failed" -ne 0 ]; then
    exit 1
fi
echo "all manifests are valid for Kubernetes $KUBERNETES_VERSION"
