"""Schema and policy checks of deploy/ and docker-compose.yml that the generic validators miss.

Usage: validate_manifests.py RENDERED_KUSTOMIZE_YAML
- custom resources (KEDA ScaledObject, Prometheus Operator PodMonitor and PrometheusRule)
  against the CRDs' schemas as generated pydantic models (cloudcoil), strictly: a field the
  schema does not know fails;
- the policies the container issue asks for (non-root, read-only, capabilities, seccomp,
  probes, grace period, max replicas <= partitions, ...);
- the compose file's worker, the alert rules' two copies, the Grafana dashboard, .env.example.
Exits 1 listing every failure.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml
from cloudcoil.models.keda.v1alpha1 import ScaledObject
from cloudcoil.models.prometheus_operator.v1 import PodMonitor, PrometheusRule

ROOT = Path(__file__).resolve().parents[2]
CRDS: dict[str, Any] = {
    "ScaledObject": ScaledObject,
    "PodMonitor": PodMonitor,
    "PrometheusRule": PrometheusRule,
}
failures: list[str] = []


def expect(ok: bool, message: str) -> None:
    if not ok:
        failures.append(message)


def unknown_fields(given: Any, kept: Any, path: str = "") -> list[str]:
    """Keys of `given` that the model dropped (pydantic ignores unknown fields)."""
    if isinstance(given, dict):
        if not isinstance(kept, dict):
            return [path or "."]
        out = []
        for key, value in given.items():
            if key not in kept:
                out.append(f"{path}.{key}")
            else:
                out.extend(unknown_fields(value, kept[key], f"{path}.{key}"))
        return out
    if isinstance(given, list) and isinstance(kept, list):
        pairs = enumerate(zip(given, kept, strict=False))
        return [u for i, (g, k) in pairs for u in unknown_fields(g, k, f"{path}[{i}]")]
    return []


def check_crds(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        model = CRDS.get(doc["kind"])
        if model is None:
            continue
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        try:
            parsed = model.model_validate(doc)
        except Exception as exc:  # pydantic.ValidationError
            failures.append(f"{name}: {exc}")
            continue
        dumped = parsed.model_dump(by_alias=True, exclude_unset=True, mode="json")
        for field in unknown_fields(doc, dumped):
            failures.append(f"{name}: unknown field {field}")
        print(f"ok   {name} valid against its CRD schema")


def check_policies(docs: list[dict[str, Any]]) -> None:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    for kind in (
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "ScaledObject",
        "ConfigMap",
        "PodMonitor",
        "PrometheusRule",
        "ServiceAccount",
    ):
        expect(kind in by_kind, f"no {kind} in the kustomize base")
    config = next(c["data"] for c in by_kind["ConfigMap"] if "INSIGHTS_APP_ID" in c.get("data", {}))
    deployment = by_kind["Deployment"][0]
    pod = deployment["spec"]["template"]["spec"]
    psc = pod.get("securityContext", {})
    expect(psc.get("runAsNonRoot") is True, "pod: runAsNonRoot")
    expect(psc.get("runAsUser") == 10001 and psc.get("runAsGroup") == 10001, "pod: runAs 10001")
    expect(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "pod: seccomp")
    bound = float(config.get("INSIGHTS_SHUTDOWN_TIMEOUT", "20s").rstrip("s"))
    expect(
        pod.get("terminationGracePeriodSeconds", 30) > bound,
        f"terminationGracePeriodSeconds above INSIGHTS_SHUTDOWN_TIMEOUT ({bound:g} s)",
    )
    expect(pod.get("automountServiceAccountToken") is False, "no service account token")
    for container in pod["containers"]:
        sc = container.get("securityContext", {})
        expect(sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem")
        expect(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation false")
        expect(sc.get("capabilities", {}).get("drop") == ["ALL"], "capabilities: drop ALL")
        res = container.get("resources", {})
        expect({"cpu", "memory"} <= set(res.get("requests", {})), "resource requests")
        expect("memory" in res.get("limits", {}), "memory limit")
        expect(
            container.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz",
            "liveness probe on /healthz",
        )
        expect(
            container.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz",
            "readiness probe on /readyz",
        )
        sources = container.get("envFrom", [])
        refs = [e["configMapRef"]["name"] for e in sources if "configMapRef" in e]
        expect(bool(refs), "ConfigMap reference")
        secrets = [e for e in container.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})]
        expect(bool(secrets), "Secret reference")
        mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
        expect({"/tmp", "/var/lib/observer-insights"} <= mounts, "writable /tmp and state mounts")
    scaled = by_kind["ScaledObject"][0]["spec"]
    trigger = scaled["triggers"][0]
    expect(trigger["type"] == "kafka", "ScaledObject: kafka trigger")
    partitions = int(config["INSIGHTS_TOPIC_PARTITIONS"])
    expect(
        scaled["maxReplicaCount"] <= partitions,
        f"maxReplicaCount {scaled['maxReplicaCount']} > partitions {partitions}",
    )
    expect(
        trigger["metadata"]["consumerGroup"] == config["INSIGHTS_APP_ID"],
        "ScaledObject consumerGroup = INSIGHTS_APP_ID",
    )
    expect(
        trigger["metadata"]["topic"] == config.get("INSIGHTS_INPUT_TOPIC", "observations"),
        "ScaledObject topic = INSIGHTS_INPUT_TOPIC",
    )
    expect(
        trigger["metadata"]["bootstrapServers"] == config["KAFKA_BOOTSTRAP_SERVERS"],
        "ScaledObject bootstrapServers = KAFKA_BOOTSTRAP_SERVERS",
    )
    expect(scaled["scaleTargetRef"]["name"] == deployment["metadata"]["name"], "scale target")
    expect("replicas" not in deployment["spec"], "Deployment leaves replicas to the autoscaler")
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    expect(
        by_kind["PrometheusRule"][0]["spec"] == rules,
        "deploy/kubernetes/prometheusrule.yaml differs from deploy/prometheus/alerts.yml",
    )
    alerts = " ".join(r["expr"] for g in rules["groups"] for r in g["rules"])
    for metric in ("insights_consumer_lag", "insights_dead_letters_total", "insights_ready"):
        expect(metric in alerts, f"an alert on {metric}")
    print("ok   policies of the Deployment, ScaledObject, PDB, alert rules")


def check_dashboard() -> None:
    dashboard = json.loads((ROOT / "deploy/kubernetes/grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    expect(bool(exprs), "dashboard has queries")
    known = set(
        re.findall(r'f"\{PREFIX\}_(\w+)"', (ROOT / "streams/runtime/metrics.py").read_text())
    )
    counters = {
        "events_received",
        "events_valid",
        "dead_letters",
        "records_emitted",
        "duplicates",
        "late_events",
        "anomalies",
    }
    for expr in exprs:
        for name in re.findall(r"\binsights_(\w+?)(?:_total|_bucket|_sum|_count)?\b", expr):
            expect(
                name in known,
                f"dashboard uses insights_{name}, which streams/runtime/metrics.py lacks",
            )
            if name in counters:
                expect(f"insights_{name}_total" in expr, f"counter insights_{name} without _total")
    print(f"ok   Grafana dashboard: {len(exprs)} queries on metrics the worker exports")


def check_compose() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    worker = services["worker"]
    expect(worker.get("read_only") is True and worker.get("init") is True, "worker read_only, init")
    grace = worker.get("stop_grace_period", "10s")
    expect(float(grace.rstrip("s")) > 20, f"compose stop_grace_period {grace} above the 20 s bound")
    expect("ports" not in worker, "worker publishes no host port (replicas would clash)")
    expect("limits" in worker.get("deploy", {}).get("resources", {}), "worker CPU/memory limits")
    expect(worker["depends_on"]["redpanda"]["condition"] == "service_healthy", "healthy broker")
    expect("healthcheck" in services["redpanda"], "redpanda health check")
    expect(services.get("loadgen", {}).get("profiles") == ["demo"], "loadgen in the demo profile")
    for name in ("prometheus", "grafana", "jaeger"):
        expect(services.get(name, {}).get("profiles") == ["observability"], f"{name} profile")
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    example = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^([A-Z0-9_]+)=", example, re.M))
    expect(used <= documented, f".env.example lacks {sorted(used - documented)}")
    for line in example.splitlines():
        if re.match(r"^[A-Z0-9_]*(PASSWORD|SECRET|TOKEN)[A-Z0-9_]*=.+", line):
            failures.append(f".env.example holds a secret value: {line.split('=')[0]}")
    expect(
        not re.search(r"^\s*\w*(PASSWORD|SECRET|TOKEN)\w*:\s*[\"']?[^$\s\"']", text, re.M),
        "a literal secret in docker-compose.yml",
    )
    print("ok   compose: worker hardening, profiles, .env.example covers every variable, no secret")


def main() -> int:
    docs = [d for d in yaml.safe_load_all(Path(sys.argv[1]).read_text()) if d]
    check_crds(docs)
    check_policies(docs)
    check_dashboard()
    check_compose()
    for failure in failures:
        print(f"FAIL {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
