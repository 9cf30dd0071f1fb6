"""Print the Kubernetes Job that the K8sRunLauncher of an instance would create for a run.

Usage: python check_run_pod.py DAGSTER_YAML IMAGE   (run in a venv with dagster-k8s)
Builds the launcher from the instance's run_launcher section (Dagster's config processing,
defaults included) and the Job as K8sRunLauncher._launch_k8s_job_with_args builds it, for a
run of a job whose code location's image is IMAGE, then prints the Job as the Kubernetes API
receives it (JSON). Nothing connects anywhere: the launcher's cluster configuration is not
loaded.
"""

import json
import os
import shutil
import sys
import tempfile
from unittest import mock

import kubernetes
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config
from dagster_k8s import K8sRunLauncher
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import UserDefinedDagsterK8sConfig, construct_dagster_k8s_job

path, image = sys.argv[1:3]
with tempfile.TemporaryDirectory() as home:
    shutil.copy(path, os.path.join(home, "dagster.yaml"))
    config, _ = dagster_instance_config(home)
section = config["run_launcher"]
assert section["class"] == "K8sRunLauncher", section["class"]
processed = process_config(K8sRunLauncher.config_type(), section.get("config") or {})
assert processed.success, [error.message for error in processed.errors]
with (
    mock.patch.object(kubernetes.config, "load_incluster_config"),
    mock.patch.object(kubernetes.config, "load_kube_config"),
):
    launcher = K8sRunLauncher.from_config_value(None, processed.value)

# K8sContainerContext.create_for_run, for a run with no container context or tags of its own.
context = K8sContainerContext().merge(
    K8sContainerContext(
        image_pull_policy=launcher.image_pull_policy,
        image_pull_secrets=launcher.image_pull_secrets,
        service_account_name=launcher.service_account_name,
        env_config_maps=launcher.env_config_maps,
        env_secrets=launcher.env_secrets,
        env_vars=launcher.env_vars,
        volume_mounts=launcher.volume_mounts,
        volumes=launcher.volumes,
        labels=launcher.labels,
        namespace=launcher.job_namespace,
        resources=launcher.resources,
        scheduler_name=launcher.scheduler_name,
        security_context=launcher.security_context,
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(launcher.run_k8s_config or {}),
    )
)
job = construct_dagster_k8s_job(
    job_config=context.get_k8s_job_config(job_image=image, run_launcher=launcher),
    args=["dagster", "api", "execute_run", "{}"],
    job_name="dagster-run-0123456789abcdef",
    pod_name="dagster-run-0123456789abcdef",
    component="run_worker",
    user_defined_k8s_config=context.run_k8s_config,
    labels={"dagster/job": "example_job", "dagster/run-id": "0123456789abcdef"},
    env_vars=[{"name": "DAGSTER_RUN_JOB_NAME", "value": "example_job"}],
)
body = kubernetes.client.ApiClient().sanitize_for_serialization(job)
print(json.dumps({"apiVersion": "batch/v1", "kind": "Job", **body}))
