"""Checking generated Helm values against Dagster's official chart, offline.

- `reference()`: the chart's own files (values.schema.json of the chart and of its
  dagster-user-deployments subchart, its default values.yaml), copied from dagster-io/dagster
  (Apache-2.0) into tests/helm_reference/ (commits and SHA-256 in SOURCES.txt there), or
  LAUNCHPAD_HELM_REFERENCE.
- `problems(values)`: what Helm's own schema validation would refuse, plus what the Kubernetes
  API would refuse in the parts that are Kubernetes objects. The chart's schemas point their
  Kubernetes types at kubernetesjsonschema.dev (v1.18.0); those references resolve here to the
  Kubernetes schemas bundled in PyPI's kubernetes-validate (K8S_VERSION), never to the network,
  and a reference to anything else is an error, never a silent pass.
- `chart_instance(values)`: the dagster.yaml that the chart renders from the values (its
  templates/configmap-instance.yaml and helpers/instance/*.tpl, for the settings used here),
  for Dagster's own config validation (tests/check_instance_config.py).
"""

from __future__ import annotations

import copy
import json
import os
import re
from functools import cache
from pathlib import Path

import yaml

from launchpad_dev import matrix

# The Kubernetes version whose bundled schemas stand in for kubernetesjsonschema.dev/v1.18.0.
K8S_VERSION = "1.33.0"
K8S_REMOTE = "https://kubernetesjsonschema.dev/v1.18.0/_definitions.json"
REFERENCE_ENV = "LAUNCHPAD_HELM_REFERENCE"


def reference_dir() -> Path:
    return Path(os.environ.get(REFERENCE_ENV) or matrix.ROOT / "tests" / "helm_reference")


def reference_missing() -> str | None:
    """Why the chart's reference files cannot be used (None: they can)."""
    root = reference_dir()
    needed = [
        "dagster/values.schema.json",
        "dagster/values.yaml",
        "dagster-user-deployments/values.schema.json",
    ]
    absent = [name for name in needed if not (root / name).is_file()]
    if absent:
        return (
            f"the official chart's reference files are not in {root} ({', '.join(absent)} missing; "
            f"set {REFERENCE_ENV} to a copy of dagster-io/dagster's helm/ files)"
        )
    return None


@cache
def reference() -> dict:
    root = reference_dir()
    return {
        "schema": json.loads((root / "dagster/values.schema.json").read_text()),
        "subchart_schema": json.loads((root / "dagster-user-deployments/values.schema.json").read_text()),
        "defaults": yaml.safe_load((root / "dagster/values.yaml").read_text()),
        "concurrency_schema": concurrency_schema(root / CONCURRENCY_MODEL),
    }


# The chart's pydantic model of its `concurrency:` values (the chart generates values.schema.json
# from such models). The reference values.schema.json predates the block (SOURCES.txt).
CONCURRENCY_MODEL = "dagster/schema/concurrency.py"


def concurrency_schema(path: Path) -> dict | None:
    """The JSON schema of the chart's Concurrency model (None: no copy of the model)."""
    if not path.is_file():
        return None
    import importlib.util

    # The chart's own model file, run as a module (its annotations are objects, not strings:
    # pydantic needs no entry in sys.modules to resolve them).
    spec = importlib.util.spec_from_file_location("launchpad_chart_concurrency", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Concurrency.model_json_schema()


@cache
def kubernetes_definitions(strict: bool) -> dict:
    """The bundled Kubernetes definitions ({'$defs': ...}), non-strict (as kubernetesjsonschema.dev's
    _definitions.json, which the chart names) or strict (unknown fields refused)."""
    import kubernetes_validate

    folder = f"v{K8S_VERSION}-local" + ("-strict" if strict else "")
    path = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / folder / "_definitions.json"
    return json.loads(path.read_text())


def _registry():
    """A referencing registry that serves kubernetesjsonschema.dev from the bundled schemas (with
    `definitions` as the chart's pointers spell it) and refuses every other remote reference."""
    from referencing import Registry, Resource
    from referencing.exceptions import NoSuchResource

    def retrieve(uri: str):
        if uri != K8S_REMOTE:
            raise NoSuchResource(ref=uri)
        bundled = kubernetes_definitions(strict=False)
        return Resource.from_contents({**bundled, "definitions": bundled["$defs"]})

    return Registry(retrieve=retrieve)


def helm_merge(defaults, overrides):
    """Values as Helm coalesces them: mappings merged key by key, anything else (lists
    included) replaced, and a null override deleting the key."""
    if not (isinstance(defaults, dict) and isinstance(overrides, dict)):
        return copy.deepcopy(overrides)
    merged = copy.deepcopy(defaults)
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        elif key in merged:
            merged[key] = helm_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _errors(schema: dict, instance, label: str) -> list[str]:
    from jsonschema import Draft7Validator
    from jsonschema.validators import validator_for

    cls = validator_for(schema, default=Draft7Validator)
    validator = cls(schema, registry=_registry())
    found = []
    for error in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path)):
        path = "/".join(map(str, error.absolute_path)) or "/"
        found.append(f"{label}: {path}: {error.message[:300]}")
    return found


# The parts of the values that are Kubernetes objects (key -> Kubernetes definition), checked
# again against the strict Kubernetes schema: a misspelt field (readOnlyRootFilesytem) passes
# the chart's schema, which does not refuse unknown fields, but would be dropped by the API.
KUBERNETES_FIELDS = {
    "securityContext": "io.k8s.api.core.v1.SecurityContext",
    "podSecurityContext": "io.k8s.api.core.v1.PodSecurityContext",
    "resources": "io.k8s.api.core.v1.ResourceRequirements",
    "readinessProbe": "io.k8s.api.core.v1.Probe",
    "livenessProbe": "io.k8s.api.core.v1.Probe",
    "startupProbe": "io.k8s.api.core.v1.Probe",
    "volumes": "io.k8s.api.core.v1.Volume",  # a list of them
    "volumeMounts": "io.k8s.api.core.v1.VolumeMount",  # a list of them
    # run_k8s_config's pod_spec_config is a PodSpec in the Kubernetes client's snake_case
    "podSpecConfig": "io.k8s.api.core.v1.PodSpec",
}


def camel(node):
    """snake_case keys (the Kubernetes Python client's, which dagster-k8s reads) in camelCase."""
    if isinstance(node, dict):
        return {re.sub(r"_([a-z])", lambda m: m[1].upper(), k): camel(v) for k, v in node.items()}
    if isinstance(node, list):
        return [camel(item) for item in node]
    return node


# extraManifests' objects (the chart adds them to the release as they are) by apiVersion/kind.
MANIFEST_KINDS = {
    "v1/ConfigMap": "io.k8s.api.core.v1.ConfigMap",
    "v1/Secret": "io.k8s.api.core.v1.Secret",
    "v1/Service": "io.k8s.api.core.v1.Service",
    "apps/v1/Deployment": "io.k8s.api.apps.v1.Deployment",
    "batch/v1/CronJob": "io.k8s.api.batch.v1.CronJob",
    "networking.k8s.io/v1/Ingress": "io.k8s.api.networking.v1.Ingress",
    "networking.k8s.io/v1/NetworkPolicy": "io.k8s.api.networking.v1.NetworkPolicy",
}


def kubernetes_objects(values, path: str = "") -> list[tuple[str, str, object]]:
    """(path, Kubernetes definition, object) of every Kubernetes object in the values. Probes
    lose the chart's own `enabled` switch, which the chart removes before rendering them.
    extraManifests' objects are whole ones, of their own kind (another kind: an error)."""
    found = []
    if isinstance(values, dict):
        for key, value in values.items():
            where = f"{path}/{key}"
            definition = KUBERNETES_FIELDS.get(key)
            if key == "extraManifests" and not path:
                for i, item in enumerate(value or []):
                    kind = f"{item.get('apiVersion')}/{item.get('kind')}"
                    if kind not in MANIFEST_KINDS:
                        raise ValueError(f"{where}[{i}]: no strict schema named for {kind}")
                    found.append((f"{where}[{i}]", MANIFEST_KINDS[kind], item))
                continue
            if definition and isinstance(value, list):
                found += [(f"{where}[{i}]", definition, item) for i, item in enumerate(value)]
            elif definition and isinstance(value, dict):
                if key.endswith("Probe"):
                    value = {k: v for k, v in value.items() if k != "enabled"}
                if key == "podSpecConfig":
                    value = camel(value)
                found.append((where, definition, value))
            else:
                found += kubernetes_objects(value, where)
    elif isinstance(values, list):
        for index, item in enumerate(values):
            found += kubernetes_objects(item, f"{path}[{index}]")
    return found


def problems(values: dict) -> list[str]:
    """Everything the chart's schemas (on the values merged over the chart's defaults, as Helm
    validates them) and the strict Kubernetes schemas find wrong with `values`."""
    ref = reference()
    found = _errors(ref["schema"], helm_merge(ref["defaults"], values), "chart schema")
    # The subchart validates its own section (with the parent's globals). Its top-level keys
    # that only its own values.yaml supplies (not among the reference files) are not required here.
    section = values.get("dagster-user-deployments", {})
    subchart = {k: v for k, v in ref["subchart_schema"].items() if k != "required"}
    subchart["required"] = [k for k in ref["subchart_schema"].get("required", []) if k in section]
    found += _errors(subchart, section, "dagster-user-deployments schema")
    # The chart's concurrency block, against its model (values.schema.json's own part of it in
    # charts that have the block; extra keys refused).
    if ref["concurrency_schema"] and "concurrency" in values:
        found += _errors(ref["concurrency_schema"], values["concurrency"], "chart schema: concurrency")
    strict = kubernetes_definitions(strict=True)
    for where, definition, obj in kubernetes_objects(values):
        schema = {**strict, **strict["$defs"][definition]}
        if definition.endswith(".PodSpec"):  # a part, merged into the run pod's spec
            schema.pop("required", None)
        found += [
            f"{where}: {error}"
            for error in _errors(schema, obj, f"Kubernetes {definition.rsplit('.', 1)[1]} (strict)")
        ]
    return found


# s3ComputeLogManager's keys as the chart's _compute-log-manager.tpl writes them (SOURCES.txt 7):
# value keys (a string, or a mapping such as {env: NAME} that "stringSource" keeps) and plain
# keys, each written only when set; `verify` always (true unless false).
S3_SOURCE_KEYS = {
    "bucket": "bucket",
    "localDir": "local_dir",
    "prefix": "prefix",
    "verifyCertPath": "verify_cert_path",
    "endpointUrl": "endpoint_url",
}
S3_PLAIN_KEYS = {
    "useSsl": "use_ssl",
    "skipEmptyFiles": "skip_empty_files",
    "uploadInterval": "upload_interval",
    "uploadExtraArgs": "upload_extra_args",
    "showUrlOnly": "show_url_only",
    "region": "region",
}


def chart_compute_logs(values: dict) -> dict:
    """The instance's compute_logs from the values' computeLogManager, for the two types the
    template writes (NoOpComputeLogManager, S3ComputeLogManager)."""
    kind = values["type"]
    if kind == "NoOpComputeLogManager":
        return {"module": "dagster._core.storage.noop_compute_log_manager", "class": "NoOpComputeLogManager"}
    assert kind == "S3ComputeLogManager", kind
    s3 = values["config"]["s3ComputeLogManager"]
    # The chart writes region as is: a mapping would come out as Go's map[...] text.
    assert not isinstance(s3.get("region"), dict), "the chart cannot write a region from a Source"
    config = {"bucket": s3["bucket"]}
    config |= {name: s3[key] for key, name in S3_SOURCE_KEYS.items() if key != "bucket" and s3.get(key)}
    config |= {name: s3[key] for key, name in S3_PLAIN_KEYS.items() if s3.get(key)}
    config["verify"] = s3.get("verify") is not False
    return {"module": "dagster_aws.s3.compute_log_manager", "class": "S3ComputeLogManager", "config": config}


def chart_instance(values: dict, release: str = "release", namespace: str = "namespace") -> dict:
    """The dagster.yaml the chart renders from `values` (merged over its defaults), for the
    settings these values use: storage, K8sRunLauncher, the run coordinator, compute logs,
    scheduler, run monitoring, run retries, retention, telemetry, concurrency (chart_concurrency)
    and additionalInstanceConfig.
    Other choices (another launcher, coordinator, compute log manager) fail loudly."""
    v = helm_merge(reference()["defaults"], values)
    postgres = {
        "postgres_db": {
            "username": {"env": "DAGSTER_PG_USER"},
            "password": {"env": "DAGSTER_PG_PASSWORD"},
            "hostname": {"env": "DAGSTER_PG_HOST"},
            "db_name": {"env": "DAGSTER_PG_DB_NAME"},
            "port": {"env": "DAGSTER_PG_PORT"},
            "params": v["postgresql"]["postgresqlParams"],
        }
    }
    assert v["runLauncher"]["type"] == "K8sRunLauncher", v["runLauncher"]["type"]
    k8s = v["runLauncher"]["config"]["k8sRunLauncher"]
    launcher: dict = {
        "load_incluster_config": k8s["loadInclusterConfig"],
        "job_namespace": k8s.get("jobNamespace") or namespace,
        "image_pull_policy": k8s["imagePullPolicy"],
        "service_account_name": v["serviceAccount"].get("name") or f"{release}-dagster",
        "dagster_home": v["global"]["dagsterHome"],
        "instance_config_map": f"{release}-dagster-instance",
        "postgres_password_secret": v["global"]["postgresqlSecretName"],
    }
    optional = {
        "envConfigMaps": ("env_config_maps", lambda items: [i["name"] for i in items if "name" in i]),
        "envSecrets": ("env_secrets", lambda items: [i["name"] for i in items if "name" in i]),
        "envVars": ("env_vars", list),
        "volumeMounts": ("volume_mounts", list),
        "volumes": ("volumes", list),
        "labels": ("labels", dict),
        "resources": ("resources", dict),
        "schedulerName": ("scheduler_name", str),
        "securityContext": ("security_context", dict),
    }
    for key, (name, convert) in optional.items():
        if k8s.get(key):
            launcher[name] = convert(k8s[key])
    if k8s.get("failPodOnRunFailure"):
        launcher["fail_pod_on_run_failure"] = True
    if k8s.get("runK8sConfig"):
        names = {
            "containerConfig": "container_config",
            "podSpecConfig": "pod_spec_config",
            "podTemplateSpecMetadata": "pod_template_spec_metadata",
            "jobSpecConfig": "job_spec_config",
            "jobMetadata": "job_metadata",
        }
        launcher["run_k8s_config"] = {names[k]: c for k, c in k8s["runK8sConfig"].items() if c}
    daemon = v["dagsterDaemon"]
    coordinator = daemon["runCoordinator"]
    assert coordinator["type"] == "CustomRunCoordinator", coordinator["type"]
    custom = coordinator["config"]["customRunCoordinator"]
    compute_logs = chart_compute_logs(v["computeLogManager"])
    assert v["scheduler"]["type"] == "DagsterDaemonScheduler", v["scheduler"]["type"]
    instance = {
        "scheduler": {"module": "dagster._core.scheduler", "class": "DagsterDaemonScheduler"},
        "schedule_storage": {
            "module": "dagster_postgres.schedule_storage",
            "class": "PostgresScheduleStorage",
            "config": postgres,
        },
        "run_launcher": {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": launcher},
        "run_storage": {
            "module": "dagster_postgres.run_storage",
            "class": "PostgresRunStorage",
            "config": postgres,
        },
        "event_log_storage": {
            "module": "dagster_postgres.event_log",
            "class": "PostgresEventLogStorage",
            "config": postgres,
        },
        "run_coordinator": {"module": custom["module"], "class": custom["class"], "config": custom["config"]},
        "compute_logs": compute_logs,
        "telemetry": {"enabled": v["telemetry"]["enabled"]},
    }
    monitoring = daemon["runMonitoring"]
    if monitoring["enabled"]:
        instance["run_monitoring"] = {
            "enabled": True,
            "start_timeout_seconds": monitoring["startTimeoutSeconds"],
            **(
                {"cancel_timeout_seconds": monitoring["cancelTimeoutSeconds"]}
                if "cancelTimeoutSeconds" in monitoring
                else {}
            ),
            **(
                {"max_resume_run_attempts": monitoring["maxResumeRunAttempts"]}
                if "maxResumeRunAttempts" in monitoring
                else {}
            ),
            "poll_interval_seconds": monitoring["pollIntervalSeconds"],
            "free_slots_after_run_end_seconds": monitoring["freeSlotsAfterRunEndSeconds"],
        }
    retries = daemon["runRetries"]
    if retries["enabled"]:
        instance["run_retries"] = {
            "enabled": True,
            **({"max_retries": retries["maxRetries"]} if retries.get("maxRetries") else {}),
        }
    for kind in ("sensors", "schedules"):
        if daemon[kind].get("useThreads"):
            instance[kind] = {"use_threads": True, "num_workers": daemon[kind]["numWorkers"]}
    if (concurrency := chart_concurrency(v)) is not None:
        instance["concurrency"] = concurrency
    # The chart appends additionalInstanceConfig to its instance as it is.
    for key, section in (v.get("additionalInstanceConfig") or {}).items():
        assert key not in instance, f"additionalInstanceConfig repeats {key}"
        instance[key] = section
    retention = v["retention"]
    if retention["enabled"]:
        names = {"sensor": "sensor", "schedule": "schedule", "autoMaterialize": "auto_materialize"}
        instance["retention"] = {
            names[k]: {"purge_after_days": retention[k]["purgeAfterDays"]} for k in names if retention.get(k)
        }
    return instance


class ChartRefused(ValueError):
    """What the chart's templates refuse to render (their `fail`)."""


def chart_concurrency(v: dict) -> dict | None:
    """The instance's `concurrency:` that the chart renders from merged values `v`
    (templates/helpers/instance/_concurrency.tpl; None when concurrency.enabled is not true),
    with the conflicts with queuedRunCoordinator that the chart refuses raised as ChartRefused."""
    block = v.get("concurrency") or {}
    if not block.get("enabled"):
        return None
    pools, runs = block.get("pools") or {}, block.get("runs") or {}
    tags = runs.get("tagConcurrencyLimits") or []
    coordinator = v["dagsterDaemon"]["runCoordinator"]
    if coordinator.get("enabled") and coordinator.get("type") == "QueuedRunCoordinator":
        queued = coordinator["config"].get("queuedRunCoordinator") or {}
        if runs.get("maxConcurrentRuns") is not None and queued.get("maxConcurrentRuns") is not None:
            raise ChartRefused("Cannot set both concurrency.runs.maxConcurrentRuns and ...maxConcurrentRuns")
        if tags and queued.get("tagConcurrencyLimits"):
            raise ChartRefused("Cannot set both concurrency.runs.tagConcurrencyLimits and ...")
        blocking = queued.get("blockOpConcurrencyLimitedRuns") or {}
        if (
            pools.get("opGranularityRunBuffer") is not None
            and blocking.get("opConcurrencySlotBuffer") is not None
        ):
            raise ChartRefused("Cannot set both concurrency.pools.opGranularityRunBuffer and ...")
    out: dict = {}
    rendered = {
        "default_limit": pools.get("defaultLimit"),
        "granularity": pools.get("granularity") or None,
        "op_granularity_run_buffer": pools.get("opGranularityRunBuffer"),
    }
    if any(value is not None for value in rendered.values()):
        out["pools"] = {k: value for k, value in rendered.items() if value is not None}
    if runs.get("maxConcurrentRuns") is not None or tags:
        out["runs"] = {}
        if runs.get("maxConcurrentRuns") is not None:
            out["runs"]["max_concurrent_runs"] = runs["maxConcurrentRuns"]
        if tags:
            out["runs"]["tag_concurrency_limits"] = [
                {
                    "key": str(t["key"]),
                    **({"value": t["value"]} if t.get("value") else {}),
                    "limit": t["limit"],
                }
                for t in tags
            ]
    return out
