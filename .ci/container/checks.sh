#!/usr/bin/env bash
# Static checks of the container deliverables:
#   hadolint on the Dockerfile; the compose files against the Compose Specification schema
#   (and docker-compose's own `config`); the kustomize base rendered and validated against the
#   Kubernetes schemas (strict) and the CRD schemas, plus the issue's policies; shellcheck of
#   these scripts; a vulnerability audit of the locked runtime dependencies (pip-audit); a
#   CycloneDX SBOM of them.
#
#   .ci/container/checks.sh          # reports go to .ci/.tools/reports/ (git-ignored)
#
# Installs its tools (pinned in tools.txt) into .ci/.tools/venv, and shellcheck and
# docker-compose from Debian when missing. Last line: "checks: N passed, N failed".
# AUDIT_REQUIRED=1 fails the audit when no advisory source could be reached.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

VENV="$TOOLS_DIR/venv"
REPORTS="$TOOLS_DIR/reports"
K8S_VERSIONS=(1.30.0 1.37.0)
PASSED=0 FAILED=0
pass() { PASSED=$((PASSED + 1)); log "ok   $*"; }
fail() { FAILED=$((FAILED + 1)); log "FAIL $*"; }
run() {  # run DESCRIPTION COMMAND...: count it, show its output indented
    local what=$1 out; shift
    out=$(mktemp)
    if "$@" >"$out" 2>&1; then pass "$what"; else fail "$what"; fi
    sed 's/^/       /' "$out" | tail -25 >&2
    rm -f "$out"
}

# ------------------------------------------------------------------------------ tools
apt_install shellcheck
apt_install --no-install-recommends docker-compose
stamp="$VENV/.tools-$(sha256sum .ci/container/tools.txt | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    log "installing the CI tools into $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r .ci/container/tools.txt
    touch "$stamp"
fi
T="$VENV/bin"
mkdir -p "$REPORTS"

# ------------------------------------------------------------------------------ Dockerfile
run "hadolint $("$T/hadolint" --version | awk '{print $NF}'): Dockerfile" "$T/hadolint" --failure-threshold info Dockerfile

# ------------------------------------------------------------------------------ compose
run "compose files valid against the Compose Specification schema" \
    "$T/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml deploy/compose/dev.yml
compose_config() {  # docker-compose reads, interpolates and validates every profile and the dev overlay
    local env
    env=$(mktemp)
    cp .env.example "$env"
    docker-compose --env-file "$env" config -q
    docker-compose --env-file "$env" --profile demo --profile observability config -q
    docker-compose --env-file "$env" -f docker-compose.yml -f deploy/compose/dev.yml config -q
    docker-compose --env-file "$env" --profile demo --profile observability config --services | sort | tr '\n' ' '
    echo
    rm -f "$env"
}
run "docker-compose $(docker-compose version --short 2>/dev/null) config: default, demo+observability, dev overlay" compose_config

# ------------------------------------------------------------------------------ Kubernetes
run "kustomize build deploy/kubernetes" sh -c "'$T/kubectl' kustomize deploy/kubernetes > '$REPORTS/kubernetes.yaml' && grep '^kind:' '$REPORTS/kubernetes.yaml' | sort | uniq -c"
for version in "${K8S_VERSIONS[@]}"; do
    run "manifests valid against the Kubernetes $version schemas (strict)" \
        "$T/kubernetes-validate" --strict --quiet --no-warn -k "$version" "$REPORTS/kubernetes.yaml"
done
run "custom resources, policies, alert rules, dashboard, compose hardening" \
    "$T/python" .ci/container/validate_manifests.py "$REPORTS/kubernetes.yaml"
prometheus_files() {  # syntax of the Prometheus and Grafana provisioning files
    "$T/python" - <<'PY'
import json, pathlib, yaml
for path in ["deploy/prometheus/prometheus.yml", "deploy/prometheus/alerts.yml",
             *map(str, pathlib.Path("deploy/grafana/provisioning").rglob("*.yml"))]:
    assert yaml.safe_load(pathlib.Path(path).read_text()), path
    print("parsed", path)
json.loads(pathlib.Path("deploy/kubernetes/grafana-dashboard.json").read_text())
PY
}
run "Prometheus and Grafana provisioning files parse" prometheus_files

# ------------------------------------------------------------------------------ scripts
run "shellcheck of the container scripts" shellcheck -x -S warning \
    .ci/container/test.sh .ci/container/checks.sh .ci/container/lib.sh

# ------------------------------------------------------------------------------ audit, SBOM
audit() {
    local code=0
    "$T/pip-audit" --no-deps --disable-pip -r requirements.lock --progress-spinner off \
        -f json -o "$REPORTS/pip-audit.json" >/dev/null 2>&1 || code=$?
    "$T/python" - "$REPORTS/pip-audit.json" "$code" "${AUDIT_REQUIRED:-0}" <<'PY'
import json, sys
report, code, required = json.load(open(sys.argv[1])), int(sys.argv[2]), sys.argv[3] == "1"
deps = report["dependencies"]
vulns = [(d["name"], d["version"], v["id"], v.get("fix_versions")) for d in deps for v in d.get("vulns", [])]
skipped = [d for d in deps if "skip_reason" in d]
for name, version, vid, fixes in vulns:
    print(f"VULNERABLE {name} {version}: {vid} (fixed in {', '.join(fixes) or 'no release yet'})")
print(f"{len(deps)} locked packages, {len(deps) - len(skipped)} audited, {len(vulns)} known vulnerabilities")
if skipped:
    print(f"WARNING: {len(skipped)} not audited: the advisory source (PyPI's per-release JSON API) "
          f"did not answer for them, e.g. {skipped[0]['skip_reason']}")
sys.exit(1 if vulns or (required and skipped) or code not in (0, 1) else 0)
PY
}
run "pip-audit $("$T/pip-audit" --version | awk '{print $2}') of requirements.lock (report: .ci/.tools/reports/pip-audit.json)" audit
sbom() {
    "$T/cyclonedx-py" requirements --pyproject pyproject.toml --mc-type application \
        --of JSON --sv 1.6 --output-reproducible --validate -o "$REPORTS/sbom.cdx.json" requirements.lock 2>/dev/null
    "$T/python" - "$REPORTS/sbom.cdx.json" <<'PY'
import json, sys
bom = json.load(open(sys.argv[1]))
root = bom["metadata"]["component"]
print(f"CycloneDX {bom['specVersion']}: {root['name']} {root['version']}, {len(bom['components'])} components")
PY
}
run "CycloneDX SBOM of the locked runtime dependencies (.ci/.tools/reports/sbom.cdx.json)" sbom

echo "checks: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
