"""Publishing the platform images (issue 35): for one Dagster version, base image and Python
version, the template renders a project (real Copier, answers `platform_images=prebuilt`), and
its three platform images are built, pushed, signed and attested:

    REGISTRY/launchpad-webserver:TAG, REGISTRY/launchpad-daemon:TAG, REGISTRY/launchpad-pipes-base:TAG

TAG is the rendered Makefile's PLATFORM_TAG (copier.yml's computed answer platform_image_tag),
e.g. 1.13.27-py3.11-slim-bookworm. Each tag is a manifest list (Docker's v2s2 format, which
Docker 20.10 pulls) with one image per platform. Its digest is signed, and two attestations are
attached, by cosign's tag scheme (launchpad_dev/signing.py): an SLSA v1 provenance and an SPDX
2.3 SBOM of the image's Python distributions and OS packages.

    python -m launchpad_dev.publish matrix                 # the GitHub matrix, from copier.yml
    python -m launchpad_dev.publish keygen --out DIR       # DIR/images.key (0600), DIR/images.pub
    python -m launchpad_dev.publish publish --registry REG --dagster V --base B --python P \\
        --key FILE [--platforms linux/amd64,linux/arm64] [--expect-template-pub] [--json OUT]

The key's password comes from IMAGES_SIGNING_PASSWORD (keygen and publish). The registry's
credentials: REGISTRY_USER/REGISTRY_PASSWORD or the engine's auth file (`podman login`);
plain HTTP only for a loopback registry or with --insecure. The release workflow
(.github/workflows/release.yml, job `images`) runs one `publish` per matrix entry; the
procedure is in docs/update.md, "Publishing the platform images".
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from launchpad_dev import matrix, signing
from launchpad_dev.common import ROOT, snapshot_template
from launchpad_dev.oci_registry import DOCKER_LIST, OCI_INDEX, Registry, is_loopback, split_reference

IMAGES = ("webserver", "daemon", "pipes-base")
# The project the images are built from: its name makes the images' labels read
# launchpad-webserver etc., like the published names.
PROJECT = {"project_name": "Launchpad", "project_slug": "launchpad", "container_engine": "podman"}
CONTAINERFILES = {name: f"platform/{name}/Containerfile" for name in IMAGES}
PASSWORD_ENV = "IMAGES_SIGNING_PASSWORD"
# The public key the template ships (a prebuilt project verifies the images with it): the
# release workflow publishes with no other key (--expect-template-pub).
TEMPLATE_PUB = ROOT / "template" / "platform" / "{% if prebuilt %}images.pub{% endif %}"
ENGINES = ("podman",)  # a manifest list built and pushed by the engine itself
# The combination the tests publish (tests/conftest.py, published_platform): a stand-in base
# image exists for it here.
TESTED = {"dagster": "1.13.27", "base": "debian", "python": "3.11"}


class Published(NamedTuple):
    """What tests/conftest.py's `published_platform` yields; unpacks as (registry, pub, result)."""

    registry: str  # REGISTRY, e.g. 127.0.0.1:PORT/launchpad: the images are REGISTRY/launchpad-NAME:TAG
    pub: Path  # the signing key's public half (images.pub)
    result: dict  # publish()'s {name: {"ref": "REGISTRY/launchpad-NAME:TAG", "digest": "sha256:..."}}


def log(message: str) -> None:
    print(f"[publish] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- matrix
def base_images() -> dict:
    """copier.yml's base_images table."""
    return matrix.questions()["base_images"]["default"]


def entries() -> list[dict]:
    """Every (dagster_version, base_image, python_version) that copier.yml accepts with a base
    whose images the template publishes (a public image and a `platform_tag` in the
    base_images table; the custom base has neither), sorted by copier.yml's orders."""
    public = {name for name, spec in base_images().items() if spec.get("image") and spec.get("platform_tag")}
    seen: dict[tuple, dict] = {}
    for answers in matrix.combinations():
        key = (answers["dagster_version"], answers["base_image"], answers["python_version"])
        if answers["base_image"] in public and key not in seen:
            dagster, base, python = key
            seen[key] = {"dagster": dagster, "base": base, "python": python}
    order = {name: i for i, name in enumerate(matrix.choice_values("dagster_version"))}
    bases = list(base_images())
    return sorted(seen.values(), key=lambda e: (order[e["dagster"]], bases.index(e["base"]), e["python"]))


def github_matrix() -> dict:
    """{"include": [{"dagster", "base", "python"}, ...]}: the release workflow's matrix."""
    return {"include": entries()}


# ----------------------------------------------------------------------------- render
def run(argv: list[str], cwd: Path | None = None, timeout: float = 3600, quiet: bool = False) -> str:
    """Run a command; its stdout, or a RuntimeError with the tail of its output."""
    if not quiet:
        log("$ " + " ".join(argv))
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-4000:]
        raise RuntimeError(f"{' '.join(argv[:3])} ... exited {result.returncode}:\n{tail}")
    return result.stdout


def template_commit(ref: str | None) -> dict:
    """{"commit": SHA, "dirty": bool} of the template rendered: the working tree (dirty when
    copier.yml, template/ or migrations/ differ from HEAD) or `ref`."""
    git = ["git", "-C", str(ROOT)]
    commit = run([*git, "rev-parse", f"{ref or 'HEAD'}^{{commit}}"], quiet=True).strip()
    dirty = False
    if ref is None:
        dirty = bool(
            run([*git, "status", "--porcelain", "--", "copier.yml", "template", "migrations"], quiet=True)
        )
    return {"commit": commit, "dirty": dirty}


def answers_for(dagster: str, base: str, python: str) -> dict:
    """The answers of the project the images are built from: prebuilt, whose Makefile states
    PLATFORM_TAG and whose platform/ has the three Containerfiles."""
    return {
        **PROJECT,
        "base_image": base,
        "python_version": python,
        "dagster_version": dagster,
        "platform_images": "prebuilt",
    }


def render(dest: Path, dagster: str, base: str, python: str, ref: str | None = None) -> Path:
    """The project the images are built from: the template's working tree (as the tests
    render it) or the commit `ref`, with the answers above; secrets/pip.conf made by the
    project's own script."""
    import copier

    data = answers_for(dagster, base, python)
    if ref is None:
        source = snapshot_template(dest.parent / "template")
        copier.run_copy(str(source), dest, data=data, defaults=True, quiet=True, unsafe=False)
    else:
        copier.run_copy(str(ROOT), dest, data=data, defaults=True, quiet=True, unsafe=False, vcs_ref=ref)
    if not (dest / "secrets" / "pip.conf").exists():
        run([sys.executable, "scripts/init_env.py", "--project", PROJECT["project_slug"]], cwd=dest)
    return dest


def base_image_of(containerfile: Path) -> str:
    """The Containerfile's default BASE_IMAGE (the answer's public image)."""
    match = re.search(r"^ARG BASE_IMAGE=(\S+)$", containerfile.read_text(), re.M)
    if not match:
        raise RuntimeError(f"{containerfile} has no ARG BASE_IMAGE=<image> default")
    return match.group(1)


def platform_tag(root: Path) -> str:
    """The rendered Makefile's PLATFORM_TAG: copier.yml's computed answer platform_image_tag,
    the one source of the tag (the projects pull the images by it)."""
    match = re.search(r"^PLATFORM_TAG\s*:?=\s*(\S+)\s*$", (root / "Makefile").read_text(), re.M)
    if not match:
        raise RuntimeError(
            f"{root / 'Makefile'} has no PLATFORM_TAG := <tag> line (platform_images=prebuilt)"
        )
    return match.group(1)


def containerfile_of(root: Path, name: str) -> str:
    """The rendered project's Containerfile of one image (relative to the project)."""
    if not (root / CONTAINERFILES[name]).is_file():
        raise RuntimeError(f"the rendered project has no {CONTAINERFILES[name]}")
    return CONTAINERFILES[name]


# ------------------------------------------------------------------------- engine work
def host_platform(engine: str) -> str:
    return run([engine, "info", "--format", "{{.Host.OS}}/{{.Host.Arch}}"], quiet=True).strip()


def tls_flags(registry_host: str, insecure: bool) -> list[str]:
    return ["--tls-verify=false"] if insecure or is_loopback(registry_host) else []


def local_name(name: str, tag: str, platform: str | None = None) -> str:
    suffix = f"-{platform.replace('/', '-')}" if platform else ""
    return f"localhost/launchpad-publish/launchpad-{name}:{tag}{suffix}"


def build_list(engine: str, root: Path, name: str, tag: str, platforms: list[str]) -> dict[str, str]:
    """Build one image per platform and gather them in a local manifest list; {platform: local
    image name}."""
    containerfile = containerfile_of(root, name)
    list_name = local_name(name, tag)
    subprocess.run([engine, "manifest", "rm", list_name], capture_output=True)
    run([engine, "manifest", "create", list_name])
    built = {}
    for platform in platforms:
        image = local_name(name, tag, platform)
        run(
            [
                engine, "build", "--format", "docker", "--platform", platform,
                "--secret", f"id=pip_conf,src={root / 'secrets' / 'pip.conf'}",
                "-f", containerfile, "-t", image, ".",
            ],
            cwd=root,
        )  # fmt: skip
        run([engine, "manifest", "add", list_name, f"containers-storage:{image}"])
        built[platform] = image
    return built


def push_list(engine: str, name: str, tag: str, ref: str, flags: list[str]) -> None:
    run(
        [
            engine,
            "manifest",
            "push",
            "--all",
            "--format",
            "v2s2",
            *flags,
            local_name(name, tag),
            f"docker://{ref}",
        ]
    )


def remove_local(engine: str, name: str, tag: str, built: dict[str, str]) -> None:
    subprocess.run([engine, "manifest", "rm", local_name(name, tag)], capture_output=True)
    subprocess.run([engine, "rmi", *built.values()], capture_output=True)


PYTHON_DISTRIBUTIONS = (
    "import importlib.metadata as m, json\n"
    "print(json.dumps(sorted({(d.metadata['Name'], d.version) for d in m.distributions()})))"
)
# A first line "FORMAT DISTRIBUTION" (deb debian, rpm rhel, apk alpine; none), then name TAB
# version TAB architecture per OS package.
OS_PACKAGES = r"""
distribution=$(. /etc/os-release 2>/dev/null && echo "${ID:-unknown}")
if command -v dpkg-query >/dev/null 2>&1; then
  echo deb "$distribution"; dpkg-query -W -f '${Package}\t${Version}\t${Architecture}\n'
elif command -v rpm >/dev/null 2>&1; then
  echo rpm "$distribution"; rpm -qa --qf '%{NAME}\t%{VERSION}-%{RELEASE}\t%{ARCH}\n'
elif [ -f /lib/apk/db/installed ]; then
  echo apk "$distribution"
  awk -F: '/^P:/{p=$2} /^V:/{v=$2} /^A:/{print p "\t" v "\t" $2}' /lib/apk/db/installed
else
  echo none
fi
"""


def read_packages(engine: str, image: str, platform: str) -> dict:
    """What an image holds, read by running it (no network): {"python": [(name, version)],
    "os": kind, "os_packages": [(name, version, arch)]}."""
    common = [engine, "run", "--rm", "--network=none", "--platform", platform]
    python = json.loads(
        run([*common, "--entrypoint", "python3", image, "-c", PYTHON_DISTRIBUTIONS], quiet=True)
    )
    lines = run([*common, "--entrypoint", "sh", image, "-c", OS_PACKAGES], quiet=True).splitlines()
    kind, _, distribution = (lines[0].strip() if lines else "none").partition(" ")
    packages = [tuple(line.split("\t")) for line in lines[1:] if line.count("\t") == 2]
    return {
        "python": [tuple(p) for p in python],
        "os": kind,
        "distribution": distribution or "unknown",
        "os_packages": sorted(packages),
    }


def base_digests(engine: str, base: str) -> list[str]:
    """The base image's digests as the engine's store has them (the list's and the platform
    image's when it was pulled; its manifest's when it was made here)."""
    info = json.loads(run([engine, "image", "inspect", base], quiet=True))[0]
    digests = [d.split("@", 1)[1] for d in info.get("RepoDigests") or [] if "@" in d]
    if info.get("Digest"):
        digests.insert(0, info["Digest"])
    return list(dict.fromkeys(digests))


# --------------------------------------------------------------------- the predicates
def spdx_id(*parts: str) -> str:
    return "SPDXRef-" + re.sub(r"[^A-Za-z0-9.-]+", "-", "-".join(parts))


def sbom(repository_ref: str, tag: str, digest: str, contents: dict, platform: str) -> dict:
    """An SPDX 2.3 document: the image, and every Python distribution and OS package in it."""
    image_id = spdx_id("Image", repository_ref.rsplit("/", 1)[-1])
    packages = [
        {
            "name": repository_ref,
            "SPDXID": image_id,
            "versionInfo": tag,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False,
            "primaryPackagePurpose": "CONTAINER",
            "checksums": [{"algorithm": "SHA256", "checksumValue": digest.split(":", 1)[1]}],
            "comment": f"manifest list {repository_ref}@{digest}; contents read from its {platform} image",
        }
    ]
    for name, version in contents["python"]:
        packages.append(
            {
                "name": name,
                "SPDXID": spdx_id("Python", name, version),
                "versionInfo": version,
                "downloadLocation": "NOASSERTION",
                "filesAnalyzed": False,
                "primaryPackagePurpose": "LIBRARY",
                "externalRefs": [
                    {
                        "referenceCategory": "PACKAGE-MANAGER",
                        "referenceType": "purl",
                        "referenceLocator": f"pkg:pypi/{name.lower().replace('_', '-')}@{version}",
                    }
                ],
            }
        )
    kind, distribution = contents["os"], contents["distribution"]
    for name, version, arch in contents["os_packages"]:
        packages.append(
            {
                "name": name,
                "SPDXID": spdx_id("OS", contents["os"], name, version, arch),
                "versionInfo": version,
                "downloadLocation": "NOASSERTION",
                "filesAnalyzed": False,
                "primaryPackagePurpose": "OPERATING-SYSTEM"
                if name in ("base-files", "alpine-baselayout")
                else "LIBRARY",
                "externalRefs": [
                    {
                        "referenceCategory": "PACKAGE-MANAGER",
                        "referenceType": "purl",
                        "referenceLocator": f"pkg:{kind}/{distribution}/{name}@{version}?arch={arch}",
                    }
                ],
            }
        )
    relationships = [
        {"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": image_id}
    ]
    relationships += [
        {"spdxElementId": image_id, "relationshipType": "CONTAINS", "relatedSpdxElement": p["SPDXID"]}
        for p in packages[1:]
    ]
    return {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{repository_ref}:{tag}",
        "documentNamespace": f"https://{repository_ref}/spdx/{digest.replace(':', '-')}",
        "creationInfo": {
            "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "creators": ["Tool: dagster-launchpad launchpad_dev.publish"],
        },
        "documentDescribes": [image_id],
        "packages": packages,
        "relationships": relationships,
    }


def repository_url() -> str:
    """This repository's URL: the GitHub one in Actions, else origin's, else a local path."""
    if os.environ.get("GITHUB_REPOSITORY"):
        return (
            f"{os.environ.get('GITHUB_SERVER_URL', 'https://github.com')}/{os.environ['GITHUB_REPOSITORY']}"
        )
    origin = subprocess.run(
        ["git", "-C", str(ROOT), "remote", "get-url", "origin"], capture_output=True, text=True
    )
    url = origin.stdout.strip()
    if origin.returncode == 0 and url:
        url = re.sub(r"^git@([^:]+):", r"https://\1/", url)
        return url.removesuffix(".git")
    return ROOT.as_uri()


def builder() -> dict:
    """runDetails.builder and metadata: the workflow run in GitHub Actions, else "local"."""
    env = os.environ
    if env.get("GITHUB_ACTIONS") == "true" and env.get("GITHUB_WORKFLOW_REF"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        run_url = f"{server}/{env.get('GITHUB_REPOSITORY')}/actions/runs/{env.get('GITHUB_RUN_ID')}"
        return {
            "builder": {"id": f"{server}/{env['GITHUB_WORKFLOW_REF']}"},
            "metadata": {"invocationId": f"{run_url}/attempts/{env.get('GITHUB_RUN_ATTEMPT', '1')}"},
        }
    return {"builder": {"id": "local"}, "metadata": {}}


def provenance(
    params: dict,
    base: str,
    base_digests: list[str],
    inputs: dict[str, str],
    template: dict,
    started: str,
    engine_version: str,
) -> dict:
    """An SLSA v1 provenance predicate of one image."""
    url = repository_url()
    resolved = [
        {
            "uri": f"docker://{base}",
            "digest": {d.split(":", 1)[0]: d.split(":", 1)[1] for d in base_digests[:1]},
        }
    ]
    resolved += [
        {"uri": f"docker://{base}@{d}", "digest": {d.split(":", 1)[0]: d.split(":", 1)[1]}}
        for d in base_digests[1:]
    ]
    resolved.append({"uri": f"git+{url}@{template['commit']}", "digest": {"gitCommit": template["commit"]}})
    resolved += [{"name": path, "digest": {"sha256": value}} for path, value in inputs.items()]
    details = builder()
    details["metadata"] = {**details["metadata"], "startedOn": started, "finishedOn": now()}
    return {
        "buildDefinition": {
            "buildType": f"{url}/blob/{template['commit']}/launchpad_dev/publish.py"
            if url.startswith("https://")
            else f"{url}/launchpad_dev/publish.py",
            "externalParameters": {**params, "template": template},
            "internalParameters": {"engine": engine_version},
            "resolvedDependencies": resolved,
        },
        "runDetails": details,
    }


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_inputs(root: Path, containerfile: str) -> dict[str, str]:
    """{path: sha256} of the lock and every requirements/lock file the Containerfile copies."""
    text = (root / containerfile).read_text()
    paths = {"uv.lock"}
    for line in re.findall(r"^COPY (?!--from)(.*)$", text, re.M):
        for word in line.split()[:-1]:
            if not word.startswith("--") and re.search(r"(requirements[^/]*\.txt|\.lock)$", word):
                paths.add(word)
    return {p: signing.sha256_file(root / p) for p in sorted(paths) if "$" not in p and (root / p).is_file()}


# ---------------------------------------------------------------------------- publish
def load_key(key_path: Path, password: str | None, expect_pub: Path | None):
    password = os.environ.get(PASSWORD_ENV, "") if password is None else password
    key = signing.load_private_key(key_path.read_text(), password)
    if expect_pub is not None and not signing.same_public_key(key, expect_pub.read_bytes()):
        raise signing.SigningKeyError(
            f"the signing key is not the one whose public key is {expect_pub}: refusing to publish "
            "images that the template's users could not verify"
        )
    return key


def publish(
    registry: str,
    dagster: str,
    base: str,
    python: str,
    key_path: Path,
    *,
    password: str | None = None,
    engine: str = "podman",
    platforms: list[str] | None = None,
    insecure: bool = False,
    expect_pub: Path | None = None,
    ref: str | None = None,
    workdir: Path | None = None,
    prepare: Callable[[str], None] | None = None,
    say: Callable[[str], None] = log,
) -> dict[str, dict[str, str]]:
    """Render, build, push, sign and attest the three images of one (dagster, base, python);
    returns {name: {"ref": "REGISTRY/launchpad-NAME:TAG", "digest": "sha256:..."}}.
    `password`: the key's (default: IMAGES_SIGNING_PASSWORD); `platforms`: default the host's;
    `ref`: the template's commit to render (default: the working tree); `prepare(base image)`
    runs before the first build (the tests make sure the stand-in base is there)."""
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r}: only {', '.join(ENGINES)} builds and pushes the manifest lists")
    if (dagster, base, python) not in {(e["dagster"], e["base"], e["python"]) for e in entries()}:
        raise ValueError(f"({dagster}, {base}, {python}) is not a combination with a public base image")
    registry = registry.rstrip("/")
    host, prefix = split_reference(registry + "/x")
    prefix = prefix.removesuffix("x")
    key = load_key(key_path, password, expect_pub)  # before any work: a wrong key publishes nothing
    client = Registry(host, insecure=insecure)
    platforms = platforms or [host_platform(engine)]
    template = template_commit(ref)
    engine_version = run([engine, "--version"], quiet=True).strip()
    started = now()
    with tempfile.TemporaryDirectory(prefix="launchpad-publish-", dir=workdir) as tmp:
        root = render(Path(tmp) / "project", dagster, base, python, ref)
        tag = platform_tag(root)
        base_ref = base_image_of(root / CONTAINERFILES["webserver"])
        say(f"{dagster} {base} {python}: tag {tag}, base {base_ref}, platforms {','.join(platforms)}")
        if prepare is not None:
            prepare(base_ref)
        params = {"dagster": dagster, "base": base, "python": python, "platforms": platforms, "tag": tag}
        result = {}
        for name in IMAGES:
            repository_ref = f"{registry}/launchpad-{name}"
            repository = prefix + f"launchpad-{name}"
            image_ref = f"{repository_ref}:{tag}"
            built = build_list(engine, root, name, tag, platforms)
            try:
                push_list(engine, name, tag, image_ref, tls_flags(host, insecure))
                found = client.get_manifest(repository, tag)
                if found is None or found[1] not in (DOCKER_LIST, OCI_INDEX):
                    raise RuntimeError(
                        f"{image_ref} is not a manifest list after the push: {found and found[1]}"
                    )
                digest = found[2]
                # The list's digest (what `cosign verify` checks), and each platform image's (as
                # `cosign sign --recursive`: what Podman's sigstoreSigned policy checks on a pull).
                instances = [m["digest"] for m in json.loads(found[0])["manifests"]]
                for signed in (digest, *instances):
                    signing.attach_signature(client, repository, repository_ref, signed, key)
                contents = read_packages(engine, built[platforms[0]], platforms[0])
                predicates = {
                    signing.PROVENANCE: provenance(
                        {**params, "image": name},
                        base_ref,
                        base_digests(engine, base_ref),
                        build_inputs(root, containerfile_of(root, name)),
                        template,
                        started,
                        engine_version,
                    ),
                    signing.SPDX: sbom(repository_ref, tag, digest, contents, platforms[0]),
                }
                signing.attach_attestations(client, repository, repository_ref, digest, key, predicates)
            finally:
                remove_local(engine, name, tag, built)
            say(f"published {image_ref}@{digest} (signed, SBOM and provenance attached)")
            result[name] = {"ref": image_ref, "digest": digest}
    return result


# -------------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m launchpad_dev.publish", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("matrix", help="print the release workflow's matrix (JSON) from copier.yml")
    keygen = commands.add_parser(
        "keygen", help=f"write images.key and images.pub (password: ${PASSWORD_ENV})"
    )
    keygen.add_argument("--out", type=Path, required=True)
    pub = commands.add_parser("publish", help="build, push, sign and attest the three platform images")
    pub.add_argument("--registry", required=True, help="host[:port]/path, e.g. ghcr.io/OWNER")
    pub.add_argument("--dagster", required=True)
    pub.add_argument("--base", required=True)
    pub.add_argument("--python", required=True)
    pub.add_argument("--engine", default="podman", choices=ENGINES)
    pub.add_argument(
        "--platforms", help="comma-separated, e.g. linux/amd64,linux/arm64 (default: the host's)"
    )
    pub.add_argument(
        "--key", type=Path, required=True, help=f"cosign private key (password: ${PASSWORD_ENV})"
    )
    expected = pub.add_mutually_exclusive_group()
    expected.add_argument("--expect-pub", type=Path, help="refuse a key whose public key is not this file's")
    expected.add_argument(
        "--expect-template-pub",
        action="store_const",
        dest="expect_pub",
        const=TEMPLATE_PUB,
        help="refuse a key whose public key is not the one the template ships (the release workflow)",
    )
    pub.add_argument("--insecure", action="store_true", help="plain HTTP to a registry beyond this host")
    pub.add_argument("--ref", help="render the template at this git commit (default: the working tree)")
    pub.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)

    if args.command == "matrix":
        print(json.dumps(github_matrix(), separators=(",", ":")))
        return 0
    try:
        if args.command == "keygen":
            private, public = signing.keygen(args.out, os.environ.get(PASSWORD_ENV, ""))
            print(f"wrote {private} (mode 0600) and {public}")
            return 0
        started = time.monotonic()
        result = publish(
            args.registry,
            args.dagster,
            args.base,
            args.python,
            args.key,
            engine=args.engine,
            platforms=[p.strip() for p in args.platforms.split(",") if p.strip()] if args.platforms else None,
            insecure=args.insecure,
            expect_pub=args.expect_pub,
            ref=args.ref,
        )
    except (signing.SigningKeyError, FileExistsError, ValueError, RuntimeError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    log(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
