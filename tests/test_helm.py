"""Kubernetes with Dagster's official Helm chart (deploy/helm/, docs/kubernetes.md), offline.

No cluster runs here (nor in CI: kind and its node images come from places this network does
not reach); the generated CI workflow's `kubernetes` job does that on GitHub. What is checked
here, on a few projects rendered by Copier (the render tier checks every combination's values:
test_render.helm_values_match_the_project, test_static's schema, instance and actionlint tests):

- the values, merged over the chart's defaults as Helm merges them, pass the chart's own
  values.schema.json and the user-deployments subchart's, with the Kubernetes types they name
  resolved against the schemas bundled in kubernetes-validate, and their Kubernetes objects
  pass the strict Kubernetes schema (launchpad_dev/helm_chart.py); the checks do fail on broken values;
- the instance the chart renders from them passes Dagster's own config validation, with
  dagster-k8s installed (the project's locked set), and the Job its K8sRunLauncher would
  create for a run is a valid, confined Kubernetes Job;
- `make helm-values` fills in the registry and tag, the registry checked as `make push` checks it,
  and without a registry names the local images;
- the generated workflow passes actionlint, with no network.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from launchpad_dev import helm_chart, matrix
from launchpad_dev.common import run
from launchpad_dev.tools import missing, require_tool

# A few projects that differ where the values and the workflow do: one location and several,
# both Dagster versions, both engines, both code deliveries, every storage.
PROJECTS = {
    "default": {},
    "several": {
        "code_locations": ["data_platform", "sales", "ml_models"],
        "container_engine": "docker",
        "code_delivery": "volume",
        "storage": "sqlite",
        "dagster_version": "1.12.22",
        "max_concurrent_runs": 9,
        "pool_default_limit": 1,
        "run_tag_limits": [{"key": "team", "limit": 3}],
    },
    # Pools and tag limits: the chart's concurrency block (dagster-io/dagster#31086, #33225).
    "pools": {"pool_default_limit": 2, "run_tag_limits": [{"key": "source", "value": "crm", "limit": 2}]},
    "external": {"storage": "external-postgres", "project_slug": "lp-helm", "package_name": "lp_helm"},
    # ui_access=login: the login proxy and its Ingress (extraManifests), with and without ui_domain.
    "login": {"ui_access": "login"},
    "login-domain": {"ui_access": "login", "ui_domain": "dagster.example.com", "container_engine": "docker"},
    # Step logs in S3 (compute_logs=s3): the chart's S3ComputeLogManager and the Secret's envSecrets,
    # with Dagster 1.12 and the purge CronJob too.
    "s3": {"compute_logs": "s3", "dagster_version": "1.12.22", "run_retention_days": 30},
}
# As `make helm-values HELM_RELEASE=... UI_HOST=...` fills them in (ui_access=login).
RELEASE, UI_HOST = "lp", "dagster.corp.example"


@pytest.fixture(scope="module")
def projects(template_snapshot, tmp_path_factory):
    import copier

    out = tmp_path_factory.mktemp("helm")
    roots = {}
    for name, answers in PROJECTS.items():
        copier.run_copy(str(template_snapshot), out / name, data=answers, defaults=True, quiet=True)
        roots[name] = out / name
    return roots


@pytest.fixture(scope="module")
def chart():
    if reason := helm_chart.reference_missing():
        missing(reason)
    return helm_chart.reference()


def values_of(root, filled: bool = True) -> dict:
    text = (root / "deploy/helm/values.yaml").read_text()
    if filled:  # as `make helm-values REGISTRY=... IMAGE_TAG=...` writes it
        text = text.replace("@REGISTRY@", "registry.example.com/team").replace("@IMAGE_TAG@", "v1")
        text = text.replace("@RELEASE@", RELEASE).replace("@UI_HOST@", UI_HOST)
    return yaml.safe_load(text)


@pytest.mark.parametrize("name", list(PROJECTS))
def test_values_pass_the_official_charts_schemas(name, projects, chart):
    values = values_of(projects[name])
    assert helm_chart.problems(values) == []
    overlay = yaml.safe_load((projects[name] / "deploy/helm/values-bundled-postgres.yaml").read_text())
    assert helm_chart.problems(helm_chart.helm_merge(values, overlay)) == []


MUTATIONS = {
    # a misspelt Kubernetes field: the chart's schema lets it through, the strict one does not
    "misspelt field": (
        lambda v: v["dagsterWebserver"]["securityContext"].update(readOnlyRootFilesytem=True),
        "'readOnlyRootFilesytem' was unexpected",
    ),
    # a wrong type inside a Kubernetes type the chart's schema names by reference
    "wrong type in a referenced Kubernetes type": (
        lambda v: v["dagsterDaemon"]["securityContext"].update(readOnlyRootFilesystem="yes"),
        "chart schema: dagsterDaemon/securityContext/readOnlyRootFilesystem: 'yes' is not of type",
    ),
    "unknown run launcher setting": (
        lambda v: v["runLauncher"]["config"]["k8sRunLauncher"].update(jobImage="x"),
        "chart schema: runLauncher/config/k8sRunLauncher",
    ),
    "pull policy": (
        lambda v: v["dagster-user-deployments"]["deployments"][0]["image"].update(pullPolicy="Sometimes"),
        "'Sometimes' is not one of",
    ),
    "code location without a port": (
        lambda v: v["dagster-user-deployments"]["deployments"][0].pop("port"),
        "'port' is a required property",
    ),
    # the chart's concurrency block takes its own camelCase keys only (its model forbids others)
    "concurrency key in the instance's spelling": (
        lambda v: v["concurrency"]["pools"].update(default_limit=2),
        "chart schema: concurrency: pools: Additional properties are not allowed ('default_limit'",
    ),
    "tag limit without a limit": (
        lambda v: v["concurrency"]["runs"].update(tagConcurrencyLimits=[{"key": "source"}]),
        "'limit' is a required property",
    ),
    "run pod's security context": (
        lambda v: v["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["podSpecConfig"][
            "security_context"
        ].update(run_as_usr=1),
        "'runAsUsr' was unexpected",
    ),
}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_the_checks_refuse_broken_values(mutation, projects, chart):
    values = values_of(projects["default"])
    mutate, expected = MUTATIONS[mutation]
    mutate(values)
    found = helm_chart.problems(values)
    assert any(expected in problem for problem in found), found


def test_a_reference_outside_the_bundled_schemas_fails_loudly(projects, chart, monkeypatch):
    """The chart's Kubernetes references resolve only to the bundled schemas: pointed elsewhere,
    validation raises instead of passing."""
    from referencing.exceptions import Unresolvable

    monkeypatch.setattr(helm_chart, "K8S_REMOTE", "https://kubernetesjsonschema.dev/elsewhere.json")
    with pytest.raises(Unresolvable):
        helm_chart.problems(values_of(projects["default"]))


@pytest.mark.parametrize("name", list(PROJECTS))
def test_values_mirror_the_project(name, projects, chart):
    """The same images, code servers, queue, run monitoring and retries as compose.yaml and
    config/dagster.yaml (the render tier checks the same on every combination)."""
    import test_render

    project = test_render.Project({}, projects[name])
    test_render.helm_values_match_the_project(project)


LOGIN = [name for name, answers in PROJECTS.items() if answers.get("ui_access") == "login"]


def login_parts(values: dict) -> dict:
    """The login proxy's objects (extraManifests, the first four: the metrics service's come
    last) by kind, and its Caddyfile."""
    parts = {m["kind"]: m for m in values["extraManifests"][:4]}
    assert list(parts) == ["ConfigMap", "Deployment", "Service", "Ingress"], list(parts)
    return {**parts, "Caddyfile": parts["ConfigMap"]["data"]["Caddyfile"]}


def login_problems(values: dict) -> list[str]:
    """What the login promises find missing in filled-in values: the chart's own ingress off
    (one set of annotations for both webservers), the read-only webserver on, one Ingress with
    TLS that leads to the proxy alone, and a proxy that lets each role reach its webserver."""
    found = []
    if values.get("ingress", {}).get("enabled") is not False:
        found.append("the chart's own ingress is not off")
    if values["dagsterWebserver"].get("enableReadOnly") is not True:
        found.append("no read-only webserver (enableReadOnly)")
    parts = login_parts(values)
    ingress, proxy = parts["Ingress"]["spec"], parts["Service"]["metadata"]["name"]
    hosts = [rule["host"] for rule in ingress["rules"]]
    backends = {
        path["backend"]["service"]["name"] for rule in ingress["rules"] for path in rule["http"]["paths"]
    }
    if backends != {proxy}:
        found.append(f"the Ingress leads to {backends}, not to the proxy {proxy} alone")
    if not ingress.get("tls") or [h for t in ingress["tls"] for h in t["hosts"]] != hosts:
        found.append(f"the Ingress's hosts {hosts} lack TLS: {ingress.get('tls')}")
    port = values["dagsterWebserver"]["service"]["port"]
    caddyfile = parts["Caddyfile"]
    # The chart's Service names: <release>-<dagsterWebserver.nameOverride>[-read-only].
    for role, service in (("editor", "dagster-webserver"), ("viewer", "dagster-webserver-read-only")):
        route = f"reverse_proxy @{role} {RELEASE}-{service}:{port} {{\n"
        if route not in caddyfile:
            found.append(f"the {role} does not reach {service}")
    for promise in (
        "import /etc/caddy-users/users.caddy",
        "header_up -Authorization",
        'header Strict-Transport-Security "max-age=31536000"',
        "redir @plain https://{host}{uri} 308",
    ):
        if promise not in caddyfile:
            found.append(f"the Caddyfile lacks {promise!r}")
    pod = parts["Deployment"]["spec"]["template"]["spec"]
    secrets = [v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v]
    if secrets != [f"{RELEASE}-ui-users"]:  # what make helm-users-secret makes
        found.append(f"the proxy mounts {secrets}, not the users Secret of make helm-users-secret")
    (container,) = pod["containers"]
    security = container["securityContext"]
    if security["capabilities"] != {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]} or not (
        security["readOnlyRootFilesystem"] and security["allowPrivilegeEscalation"] is False
    ):
        found.append(f"the proxy is not confined: {security}")
    if not pod["securityContext"].get("runAsNonRoot"):
        found.append("the proxy may run as root")
    return found


@pytest.mark.parametrize("name", LOGIN)
def test_login_puts_a_proxy_with_roles_behind_an_ingress_with_tls(name, projects):
    values = values_of(projects[name])
    assert login_problems(values) == []
    answers = PROJECTS[name]
    ingress = login_parts(values)["Ingress"]
    annotations = ingress["metadata"]["annotations"]
    host = answers.get("ui_domain") or UI_HOST
    assert ingress["spec"]["tls"] == [{"hosts": [host], "secretName": f"{RELEASE}-ui-tls"}]
    # ACME through cert-manager with ui_domain; a TLS Secret of yours without.
    assert ("cert-manager.io/cluster-issuer" in annotations) is bool(answers.get("ui_domain"))
    assert annotations["nginx.ingress.kubernetes.io/force-ssl-redirect"] == "true"
    # The proxy's image and users file are compose's.
    compose = yaml.safe_load((projects[name] / "compose.yaml").read_text())["services"]["proxy"]
    (container,) = login_parts(values)["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert compose["image"] == f"${{PROXY_IMAGE:-{container['image']}}}", (compose["image"], container)
    # Unfilled, the values name no host: make helm-values must fill it in.
    assert (
        "@UI_HOST@"
        in values_of(projects[name], filled=False)["extraManifests"][3]["spec"]["rules"][0]["host"]
    ) is (not answers.get("ui_domain"))


LOGIN_BREAKS = {
    "chart ingress on": (lambda v: v["ingress"].update(enabled=True), "the chart's own ingress is not off"),
    "no read-only webserver": (
        lambda v: v["dagsterWebserver"].pop("enableReadOnly"),
        "no read-only webserver",
    ),
    "no TLS": (lambda v: v["extraManifests"][3]["spec"].pop("tls"), "lack TLS"),
    "a viewer on the webserver": (
        lambda v: v["extraManifests"][0]["data"].update(
            Caddyfile=v["extraManifests"][0]["data"]["Caddyfile"].replace("-read-only:", ":")
        ),
        "the viewer does not reach dagster-webserver-read-only",
    ),
    "the Ingress past the proxy": (
        lambda v: v["extraManifests"][3]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"].update(
            name=f"{RELEASE}-dagster-webserver"
        ),
        "not to the proxy",
    ),
}


@pytest.mark.parametrize("mutation", list(LOGIN_BREAKS))
def test_the_login_checks_refuse_broken_values(mutation, projects):
    values = values_of(projects["login"])
    mutate, expected = LOGIN_BREAKS[mutation]
    mutate(values)
    found = login_problems(values)
    assert any(expected in problem for problem in found), found


def strict_problems(manifests: list, folder: Path) -> str:
    """kubernetes-validate --strict's complaints about `manifests` ('' for none)."""
    validator = require_tool("kubernetes-validate", beside=Path(sys.executable).parent)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifests.yaml").write_text(yaml.safe_dump_all(manifests))
    result = subprocess.run(
        [validator, "--strict", "--no-warn", "-k", helm_chart.K8S_VERSION, str(folder / "manifests.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return "" if result.returncode == 0 else result.stdout + result.stderr


@pytest.mark.parametrize("name", LOGIN)
def test_login_manifests_validate_strictly(name, projects, tmp_path):
    manifests = values_of(projects[name])["extraManifests"]
    assert strict_problems(manifests, tmp_path) == ""
    # and the check does fail: a misspelt field in the proxy's container
    manifests[1]["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesytem"] = (
        True
    )
    assert "readOnlyRootFilesytem" in strict_problems(manifests, tmp_path / "broken")


def test_login_proxy_lets_each_role_reach_its_webserver(projects, tmp_path):
    """The Caddyfile of the values, run by a real Caddy 2.6 (CADDY, or caddy on PATH: Debian's
    package, which .ci/install-engines.sh installs; skipped without one, failed in CI) with
    stand-ins of both webservers: 401 without a valid login, an editor at the webserver, a
    viewer at the read-only one, no Authorization header passed on, HSTS, and a request that
    reached the Ingress over HTTP redirected to HTTPS."""
    import base64
    import http.server
    import os
    import threading
    import time
    import urllib.error
    import urllib.request

    caddy = os.environ.get("CADDY") or shutil.which("caddy")
    if not caddy:
        missing("no caddy binary: apt-get install caddy, or CADDY=/path/to/caddy")
    spec = importlib.util.spec_from_file_location("ui_users", projects["login"] / "scripts/ui_users.py")
    ui_users = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ui_users)

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    servers = {}
    for role in ("editor", "viewer"):

        class Upstream(http.server.BaseHTTPRequestHandler):
            name = role

            def do_GET(self):
                body = json.dumps({"at": self.name, "auth": self.headers.get("Authorization")}).encode()
                self.send_response(200)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        servers[role] = http.server.HTTPServer(("127.0.0.1", 0), Upstream)
        threading.Thread(target=servers[role].serve_forever, daemon=True).start()
    port = free_port()
    caddyfile = login_parts(values_of(projects["login"]))["Caddyfile"]
    caddyfile = (
        caddyfile.replace("/etc/caddy-users/users.caddy", str(tmp_path / "users.caddy"))
        .replace(f"{RELEASE}-dagster-webserver-read-only:3000", f"127.0.0.1:{servers['viewer'].server_port}")
        .replace(f"{RELEASE}-dagster-webserver:3000", f"127.0.0.1:{servers['editor'].server_port}")
        .replace(":8080 {", f":{port} {{")
    )
    (tmp_path / "Caddyfile").write_text(caddyfile)

    def hashed(password: str) -> str:
        done = subprocess.run(
            [caddy, "hash-password", "--plaintext", password], capture_output=True, text=True
        )
        return done.stdout.strip()

    users = {"ed": ("editor", hashed("editor-pass")), "vi": ("viewer", hashed("viewer-pass"))}
    (tmp_path / "users.caddy").write_text(ui_users.render(users))
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    proxy = subprocess.Popen(
        [caddy, "run", "--config", str(tmp_path / "Caddyfile"), "--adapter", "caddyfile"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args):
            return None

    opener = urllib.request.build_opener(NoRedirect)

    def get(login: str = "", proto: str = "https") -> tuple[int, dict, dict]:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql?x=1")
        request.add_header("X-Forwarded-Proto", proto)
        request.add_header("Host", "dagster.example.com")
        if login:
            request.add_header("Authorization", "Basic " + base64.b64encode(login.encode()).decode())
        try:
            with opener.open(request, timeout=10) as answer:
                return answer.status, dict(answer.headers), json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), {}

    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proxy.poll() is None, proxy.stderr.read()
                time.sleep(0.1)
        for login in ("", "ed:wrong-pass", "nobody:editor-pass", "vi:editor-pass"):
            status, headers, _ = get(login)
            assert status == 401 and headers["Strict-Transport-Security"] == "max-age=31536000", login
        status, headers, body = get("ed:editor-pass")
        assert (status, body) == (200, {"at": "editor", "auth": None})
        assert headers["Strict-Transport-Security"] == "max-age=31536000"
        assert get("vi:viewer-pass")[::2] == (200, {"at": "viewer", "auth": None})
        status, headers, _ = get(proto="http")
        assert (status, headers["Location"]) == (308, "https://dagster.example.com/graphql?x=1")
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)
        for server in servers.values():
            server.shutdown()


def test_chart_instance_passes_dagsters_validation(projects, chart, tmp_path):
    """The dagster.yaml the chart renders from the values loads with Dagster's own config
    validation, dagster-k8s installed (the project's locked set, as the images have it)."""
    import test_static

    for name in ("default", "several", "pools", "s3"):  # both Dagster versions, pools, S3 step logs
        root = projects[name]
        instance = tmp_path / f"{name}.yaml"
        rendered = helm_chart.chart_instance(values_of(root))
        # The limits are the concurrency block's alone, as in config/dagster.yaml.
        assert (
            rendered["concurrency"]
            == yaml.safe_load((root / "config/dagster.yaml").read_text())["concurrency"]
        ), rendered["concurrency"]
        instance.write_text(yaml.safe_dump(rendered))
        venv = test_static.dagster_venv(root)
        checker = Path(__file__).parent / "check_instance_config.py"
        result = run([str(venv / "bin/python"), str(checker), str(instance)])
        assert result.returncode == 0 and "run_launcher=K8sRunLauncher" in result.stdout, result.stdout
        logs = rendered["compute_logs"]["class"]
        assert logs == ("S3ComputeLogManager" if name == "s3" else "NoOpComputeLogManager"), logs


@pytest.mark.parametrize("name", ["several", "pools"])  # Dagster 1.12 and 1.13
def test_the_limits_in_both_places_are_refused_as_in_33225(name, projects, chart, tmp_path):
    """dagster-io/dagster#33225 (and #31086): the chart's concurrency block beside a run
    coordinator that has its own max_concurrent_runs. The values keep the limits in the block
    alone; put back into the coordinator's config as well, Dagster's own validation refuses the
    instance, and with the chart's QueuedRunCoordinator type the chart refuses to render."""
    import test_static

    root = projects[name]
    checker = Path(__file__).parent / "check_instance_config.py"
    python = str(test_static.dagster_venv(root) / "bin/python")
    values = values_of(root)
    custom = values["dagsterDaemon"]["runCoordinator"]["config"]["customRunCoordinator"]
    assert not {"max_concurrent_runs", "tag_concurrency_limits"} & set(custom["config"]), custom
    custom["config"]["max_concurrent_runs"] = values["concurrency"]["runs"]["maxConcurrentRuns"]
    instance = tmp_path / "both.yaml"
    instance.write_text(yaml.safe_dump(helm_chart.chart_instance(values)))
    result = run([python, str(checker), str(instance)])
    assert result.returncode != 0, result.stdout
    assert "incompatible with the `concurrency > runs` config" in result.stdout, result.stdout
    # The chart's default coordinator with its own limit: refused by the chart itself.
    queued = copy.deepcopy(values)
    queued["dagsterDaemon"]["runCoordinator"] = {
        "enabled": True,
        "type": "QueuedRunCoordinator",
        "config": {"queuedRunCoordinator": {"maxConcurrentRuns": 4}},
    }
    with pytest.raises(helm_chart.ChartRefused, match="maxConcurrentRuns"):
        helm_chart.chart_concurrency(helm_chart.helm_merge(chart["defaults"], queued))


def test_run_pods_are_confined_and_valid_kubernetes_jobs(projects, chart, tmp_path):
    """The Job that dagster-k8s's K8sRunLauncher builds from the chart's instance for a run
    (check_run_pod.py, the launcher's own code, nothing sent anywhere) starts from the
    location's image as user 10001 with every capability dropped, no privilege escalation, the
    values' resources, and passes the strict Kubernetes Job schema."""
    import test_static

    for name in ("default", "several"):  # both Dagster versions
        root = projects[name]
        values = values_of(root)
        instance = tmp_path / f"{name}.yaml"
        instance.write_text(yaml.safe_dump(helm_chart.chart_instance(values)))
        image = "{repository}:{tag}".format(**values["dagster-user-deployments"]["deployments"][0]["image"])
        checker = Path(__file__).parent / "check_run_pod.py"
        result = subprocess.run(
            [str(test_static.dagster_venv(root) / "bin/python"), str(checker), str(instance), image],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        job = json.loads(result.stdout)
        strict = helm_chart.kubernetes_definitions(strict=True)
        schema = {**strict, **strict["$defs"]["io.k8s.api.batch.v1.Job"]}
        assert helm_chart._errors(schema, job, "Kubernetes Job (strict)") == []
        pod = job["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["image"] == image
        assert pod["securityContext"]["runAsUser"] == 10001 and pod["securityContext"]["runAsNonRoot"] is True
        security = container["securityContext"]
        assert security["capabilities"] == {"drop": ["ALL"]} and security["allowPrivilegeEscalation"] is False
        launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
        assert container["resources"] == launcher["resources"]
        assert job["spec"]["ttlSecondsAfterFinished"] == 86400
        assert "DAGSTER_PG_PASSWORD" in {env["name"] for env in container["env"]}


def test_make_helm_values_fills_in_the_registry_and_tag(projects, tmp_path):
    """`make helm-values` names the images as kube-yaml does: REGISTRY/<slug>-NAME:IMAGE_TAG, the
    images of `make push`, REGISTRY checked as `make push` checks it (one `error: make
    helm-values:` line, nothing written); without REGISTRY the local names, localhost/..."""
    require_tool("make")
    work = tmp_path / "project"
    shutil.copytree(projects["several"], work)
    slug = yaml.safe_load((work / ".copier-answers.yml").read_text())["project_slug"]
    written = work / ".build/helm/values.yaml"
    services = ["webserver", "daemon", "pipes-data-platform", "pipes-sales", "pipes-ml-models"]

    def images() -> list[str]:
        text = written.read_text()
        assert "@REGISTRY@" not in text and "@IMAGE_TAG@" not in text
        values = yaml.safe_load(text)
        found = [values["dagsterWebserver"]["image"], values["dagsterDaemon"]["image"]] + [
            d["image"] for d in values["dagster-user-deployments"]["deployments"]
        ]
        return [f"{image['repository']}:{image['tag']}" for image in found]

    for bad, says in (
        ("myhost/team", "is not a registry reference"),
        ("Not A Registry!", "is not a registry reference"),
        ("127.0.0.1:1/team", "does not answer ("),
    ):
        refused = subprocess.run(
            ["make", "-s", "helm-values", f"REGISTRY={bad}", "IMAGE_TAG=abc"],
            cwd=work, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        errors = [line for line in refused.stderr.splitlines() if line.startswith("error: ")]
        assert refused.returncode != 0 and len(errors) == 1, refused.stderr
        assert errors[0].startswith("error: make helm-values: ") and says in errors[0], errors
        assert not written.exists()
    bad_tag = run(["make", "-s", "helm-values", "REGISTRY=127.0.0.1:1", "IMAGE_TAG=-x"], cwd=work)
    assert bad_tag.returncode != 0 and "IMAGE_TAG='-x' is not a tag" in bad_tag.stdout, bad_tag.stdout
    assert not written.exists()
    assert not (work / ".env").exists(), "helm-values created .env"

    # Without REGISTRY: the names `make build` gives the images (a cluster loaded with them).
    local = run(["make", "-s", "helm-values", "IMAGE_TAG=abc"], cwd=work)
    assert local.returncode == 0, local.stdout
    assert images() == [f"localhost/{slug}-{service}:abc" for service in services]

    # With REGISTRY, something must answer on its port (the check that `make push` makes).
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        registry = f"127.0.0.1:{listener.getsockname()[1]}/team"
        done = run(["make", "-s", "helm-values", f"REGISTRY={registry}", "IMAGE_TAG=abc"], cwd=work)
        assert done.returncode == 0, done.stdout
        assert images() == [f"{registry}/{slug}-{service}:abc" for service in services]
        latest = run(["make", "-s", "helm-values", f"REGISTRY={registry}"], cwd=work)
    assert latest.returncode == 0 and "IMAGE_TAG is 'latest'" in latest.stdout, latest.stdout
    assert images() == [f"{registry}/{slug}-{service}:latest" for service in services]
    assert not (work / ".env").exists(), "helm-values created .env"


@pytest.mark.parametrize("name", list(PROJECTS))
def test_workflow_passes_actionlint_offline(name, projects):
    from test_static import BIN

    actionlint = require_tool("actionlint", BIN)
    unshare = shutil.which("unshare")
    offline = [unshare, "-n"] if unshare and subprocess.run([unshare, "-n", "true"]).returncode == 0 else []
    workflow = projects[name] / ".github/workflows/ci.yml"
    result = run([*offline, actionlint, "-no-color", str(workflow)])
    assert result.returncode == 0, result.stdout
    jobs = yaml.safe_load(workflow.read_text())["jobs"]
    with_code = (
        yaml.safe_load((projects[name] / ".copier-answers.yml").read_text())["code_delivery"] == "image"
    )
    assert ("kubernetes" in jobs) == with_code
    if with_code:
        assert jobs["kubernetes"]["if"] == "github.event_name == 'workflow_dispatch'"


def test_helm_merge_follows_helm():
    defaults = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert helm_chart.helm_merge(defaults, {"a": {"c": [3]}, "d": None}) == {"a": {"b": 1, "c": [3]}}
    assert defaults == {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert copy.deepcopy(defaults) == defaults


def test_launch_run_queries_fit_dagsters_graphql_schema(projects):
    """scripts/launch_run.py (the CI job's launcher) asks only what Dagster's GraphQL schema has
    (dagster-graphql of the test extra, the default Dagster version)."""
    from dagster_graphql.schema import create_schema
    from graphql import parse, validate

    # The queries as the script has them once imported, in a Python of its own started in the
    # scripts directory (launch_run imports wait_ready beside it, as the CI job runs it).
    show = "import json, launch_run; print(json.dumps([launch_run.LAUNCH, launch_run.STATUS]))"
    shown = subprocess.run(
        [sys.executable, "-c", show], cwd=projects["default"] / "scripts", capture_output=True, text=True
    )
    assert shown.returncode == 0, shown.stderr
    launch, status = json.loads(shown.stdout)
    schema = create_schema().graphql_schema
    for query in (launch, status):
        assert validate(schema, parse(query)) == []
    broken = status.replace("status", "state", 1)
    assert validate(schema, parse(broken)) != []


def recorded_copies(sources: str) -> dict[str, str]:
    """SOURCES.txt's entries: the file's path in tests/helm_reference/ -> its recorded SHA-256."""
    entry = r"^\d+\. (\S+)\n(?:.*\n)*?\s+total_chars: \d+\s+sha256: ([0-9a-f]{64})"
    return dict(re.findall(entry, sources, re.M))


def test_reference_copies_are_the_recorded_ones():
    """The chart's files in tests/helm_reference/ are byte for byte the copies SOURCES.txt records
    (dagster-io/dagster at the commits named there), and every file there is recorded."""
    directory = matrix.ROOT / "tests" / "helm_reference"
    recorded = recorded_copies((directory / "SOURCES.txt").read_text())
    files = {str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file()} - {"SOURCES.txt"}
    assert set(recorded) == files, f"recorded {sorted(recorded)}, present {sorted(files)}"
    for name, sha256 in recorded.items():
        assert hashlib.sha256((directory / name).read_bytes()).hexdigest() == sha256, name
    # The check can fail: an altered copy no longer matches.
    altered = recorded_copies((directory / "SOURCES.txt").read_text().replace(sha256, "0" * 64))
    assert altered[name] != hashlib.sha256((directory / name).read_bytes()).hexdigest()


# The order docs/upgrade.md gives for a Dagster upgrade on Kubernetes, as Dagster's chart
# documents its migration Job: each step's words, in this order.
HELM_UPGRADE_ORDER = [
    "Back up the PostgreSQL database",
    "--replicas=0",
    "HELM_FLAGS='--set migrate.enabled=true'",
    "again without the flag",
]


@pytest.mark.parametrize("name", list(PROJECTS))
def test_the_charts_migration_job_is_wired_off_and_its_order_documented(name, projects, chart):
    """The values carry the chart's migration Job (`migrate.enabled`, off: it runs once, for an
    upgrade); switched on as docs/upgrade.md says (`--set migrate.enabled=true`) they still pass
    the chart's schema, a value of the wrong type does not; the page gives the steps in order."""
    values = values_of(projects[name])
    assert values["migrate"] == {"enabled": False}
    assert helm_chart.problems(helm_chart.helm_merge(values, {"migrate": {"enabled": True}})) == []
    broken = helm_chart.problems(helm_chart.helm_merge(values, {"migrate": {"enabled": "yes"}}))
    assert any("migrate" in problem for problem in broken), broken
    page = (projects[name] / "docs/upgrade.md").read_text()
    helm = page.split("## Kubernetes (Helm)", 1)[1]
    places = [helm.find(step) for step in HELM_UPGRADE_ORDER]
    assert -1 not in places and places == sorted(places), list(zip(HELM_UPGRADE_ORDER, places, strict=True))
