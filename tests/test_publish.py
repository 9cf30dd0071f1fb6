"""The published platform images (issue 35, launchpad_dev/publish.py): the three images of one
Dagster version, base and Python, published with Podman to a registry on 127.0.0.1 (Debian's
docker-registry) by tests/conftest.py's `published_platform`, once per session, as the release
workflow publishes them to ghcr.io. Each tag is a manifest list of the host's platform; its
digest is signed in cosign's format (the signature checked with `openssl dgst`, the way a
generated project checks it, and refused under another key); the SLSA provenance and the SPDX
SBOM attached to it verify the same way and say what was built from what; pipes-base holds no
user code and runs unprivileged. Without an engine: the key pair's format, a wrong key refused
before any work, the release matrix derived from copier.yml, and the registry client's token
flow against a fake registry."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from launchpad_dev import matrix, oci_registry, publish, signing
from launchpad_dev.common import ROOT
from launchpad_dev.engines import ENGINES
from launchpad_dev.oci_registry import DOCKER_LIST, OCI_MANIFEST, Registry, split_reference

TAG = "1.13.27-py3.11-slim-bookworm"  # the contract's example: {dagster}-py{python}-{base's tag}


def openssl_verifies(pub: Path, signature: bytes, data: bytes, tmp_path: Path) -> bool:
    """`openssl dgst -sha256 -verify PUB -signature SIG DATA`, as a generated project checks."""
    (tmp_path / "sig").write_bytes(signature)
    (tmp_path / "data").write_bytes(data)
    result = subprocess.run(
        [
            "openssl",
            "dgst",
            "-sha256",
            "-verify",
            str(pub),
            "-signature",
            str(tmp_path / "sig"),
            str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 or "Verification failure" in result.stdout + result.stderr, result
    return result.returncode == 0 and result.stdout.strip() == "Verified OK"


def client_of(image_ref: str) -> tuple[Registry, str, str]:
    """(client, repository, tag) of REGISTRY/launchpad-NAME:TAG on the local registry."""
    host, path = split_reference(image_ref)
    repository, _, tag = path.rpartition(":")
    return Registry(host), repository, tag


def attached(image_ref: str, digest: str, suffix: str) -> tuple[dict, list[tuple[dict, bytes]]]:
    """(manifest, [(layer, blob)]) of what cosign's tag scheme attaches to `digest`."""
    client, repository, _ = client_of(image_ref)
    found = client.get_manifest(repository, signing.attached_tag(digest, suffix))
    assert found is not None, f"{image_ref}: nothing under {signing.attached_tag(digest, suffix)}"
    body, media_type, _ = found
    assert media_type == OCI_MANIFEST
    manifest = json.loads(body)
    config = client.get_blob(repository, manifest["config"]["digest"])
    assert len(config) < 1000 and json.loads(config)["rootfs"]["type"] == "layers"
    return manifest, [(layer, client.get_blob(repository, layer["digest"])) for layer in manifest["layers"]]


# ------------------------------------------------------------------ published images
@pytest.mark.engine("podman")
def test_each_tag_is_a_manifest_list_of_the_host_platform(published_platform):
    registry, _, result = published_platform
    assert sorted(result) == sorted(publish.IMAGES)
    host = ENGINES["podman"].run("info", "--format", "{{.Host.OS}}/{{.Host.Arch}}", check=True).stdout.strip()
    for name, published in result.items():
        assert published["ref"] == f"{registry}/launchpad-{name}:{TAG}"
        client, repository, tag = client_of(published["ref"])
        body, media_type, digest = client.get_manifest(repository, tag)
        assert media_type == DOCKER_LIST, f"{name}: {media_type} (Docker 20.10 needs a v2s2 list)"
        assert digest == published["digest"] == f"sha256:{hashlib.sha256(body).hexdigest()}"
        entries = json.loads(body)["manifests"]
        platforms = [f"{e['platform']['os']}/{e['platform']['architecture']}" for e in entries]
        assert platforms == [host], f"{name}: {platforms}"
        assert all(e["mediaType"] == oci_registry.DOCKER_MANIFEST for e in entries)


@pytest.mark.engine("podman")
def test_each_digest_is_signed_so_that_openssl_verifies_it_and_another_key_does_not(
    published_platform, tmp_path
):
    registry, pub, result = published_platform
    other = ec.generate_private_key(ec.SECP256R1())
    for name, published in result.items():
        manifest, layers = attached(published["ref"], published["digest"], "sig")
        payload = signing.simple_signing_payload(f"{registry}/launchpad-{name}", published["digest"])
        assert [blob for _, blob in layers] == [payload], f"{name}: one signature, of the list's digest"
        layer, blob = layers[0]
        assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
        document = json.loads(blob)
        assert document["critical"]["image"]["docker-manifest-digest"] == published["digest"]
        assert document["critical"]["identity"]["docker-reference"] == f"{registry}/launchpad-{name}"
        assert document["critical"]["type"] == "cosign container image signature"
        signature = base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
        assert openssl_verifies(pub, signature, blob, tmp_path), f"{name}: the signature does not verify"
        # A signature of the same payload under another key, or this one over other bytes: refused.
        assert not openssl_verifies(pub, signing.sign(other, blob), blob, tmp_path)
        tampered = blob.replace(published["digest"][-8:].encode(), b"00000000")
        assert not openssl_verifies(pub, signature, tampered, tmp_path)
        # Each platform image is signed too (cosign sign --recursive; Podman's policy checks it).
        client, repository, tag = client_of(published["ref"])
        for entry in json.loads(client.get_manifest(repository, tag)[0])["manifests"]:
            _, (instance,) = attached(published["ref"], entry["digest"], "sig")
            encoded = instance[0]["annotations"]["dev.cosignproject.cosign/signature"]
            assert openssl_verifies(pub, base64.b64decode(encoded), instance[1], tmp_path)


@pytest.mark.engine("podman")
def test_provenance_and_sbom_are_attested_and_say_what_was_built_from_what(published_platform, tmp_path):
    registry, pub, result = published_platform
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    for name, published in result.items():
        digest = published["digest"]
        manifest, layers = attached(published["ref"], digest, "att")
        by_type = {}
        for layer, blob in layers:
            assert layer["mediaType"] == "application/vnd.dsse.envelope.v1+json"
            envelope = json.loads(blob)
            assert envelope["payloadType"] == "application/vnd.in-toto+json"
            payload = base64.b64decode(envelope["payload"])
            (sig,) = envelope["signatures"]
            assert sig["keyid"] == ""
            kind = b"application/vnd.in-toto+json"
            signed = b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)  # DSSE's PAE
            assert openssl_verifies(pub, base64.b64decode(sig["sig"]), signed, tmp_path), name
            statement = json.loads(payload)
            assert statement["_type"] == "https://in-toto.io/Statement/v1"
            assert statement["subject"] == [
                {"name": f"{registry}/launchpad-{name}", "digest": {"sha256": digest.split(":")[1]}}
            ]
            assert layer["annotations"]["predicateType"] == statement["predicateType"]
            by_type[statement["predicateType"]] = statement["predicate"]
        assert sorted(by_type) == ["https://slsa.dev/provenance/v1", "https://spdx.dev/Document"], name

        provenance = by_type["https://slsa.dev/provenance/v1"]
        build = provenance["buildDefinition"]
        assert build["buildType"].endswith("/launchpad_dev/publish.py")
        parameters = build["externalParameters"]
        assert {k: parameters[k] for k in ("dagster", "base", "python")} == publish.TESTED
        assert parameters["platforms"] == [e for e in parameters["platforms"] if e.startswith("linux/")]
        assert parameters["template"]["commit"] == commit.stdout.strip()
        dependencies = {d.get("uri") or d["name"]: d["digest"] for d in build["resolvedDependencies"]}
        base = dependencies["docker://docker.io/library/python:3.11-slim-bookworm"]
        assert len(base["sha256"]) == 64
        assert len(dependencies["uv.lock"]["sha256"]) == 64
        assert any("requirements" in d for d in dependencies), dependencies
        assert provenance["runDetails"]["builder"]["id"] == "local"  # GitHub's run in the workflow

        spdx = by_type["https://spdx.dev/Document"]
        assert spdx["spdxVersion"] == "SPDX-2.3" and spdx["dataLicense"] == "CC0-1.0"
        packages = {p["name"]: p for p in spdx["packages"]}
        assert packages["dagster"]["versionInfo"] == "1.13.27"
        assert packages["dagster"]["externalRefs"][0]["referenceLocator"] == "pkg:pypi/dagster@1.13.27"
        assert packages["libc6"]["externalRefs"][0]["referenceLocator"].startswith("pkg:deb/debian/libc6@")
        ids = [p["SPDXID"] for p in spdx["packages"]]
        assert len(ids) == len(set(ids)), "SPDX ids are unique"
        described = {
            r["relatedSpdxElement"] for r in spdx["relationships"] if r["relationshipType"] == "CONTAINS"
        }
        assert described == set(ids[1:])
        if name == "webserver":
            assert packages["dagster-webserver"]["versionInfo"] == "1.13.27"


@pytest.mark.engine("podman")
def test_pipes_base_holds_no_user_code_and_every_image_runs_unprivileged(published_platform):
    engine = ENGINES["podman"]
    _, _, result = published_platform
    refs = [published["ref"] for published in result.values()]
    try:
        for ref in refs:
            engine.run("pull", "--tls-verify=false", ref, timeout=600, check=True)
            user = engine.inspect(ref)["Config"]["User"]
            assert user and user.split(":")[0] not in ("0", "root"), f"{ref} runs as {user!r}"
        pipes = result["pipes-base"]["ref"]
        listed = engine.run(
            "run", "--rm", "--network=none", "--entrypoint", "sh", pipes, "-c",
            "id -u; ls -A /opt/dagster/app 2>/dev/null; find /opt/dagster -name definitions.py",
            check=True,
        ).stdout.split()  # fmt: skip
        assert listed[0] != "0", "pipes-base runs as root"
        assert set(listed[1:]) <= {"launchpad_pipes"}, f"user code in pipes-base: {listed[1:]}"
        assert (
            "dagster"
            in engine.run(
                "run", "--rm", "--network=none", "--entrypoint", "dagster", pipes, "--version", check=True
            ).stdout
        )
    finally:
        engine.run("rmi", *refs)


@pytest.mark.engine("podman")
def test_the_publish_command_writes_the_result_the_workflow_summarizes(published_platform, tmp_path):
    """The command the release workflow runs (here for the host's platform), to another path of
    the session's registry (the fixture's images stay as they are): its JSON names the three
    lists by tag and digest, each signed."""
    host = published_platform.registry.split("/")[0]
    private, public = signing.keygen(tmp_path / "key", "pw")
    argv = [sys.executable, "-m", "launchpad_dev.publish", "publish", "--registry", f"{host}/cli"]
    argv += [*(f"--{k}={v}" for k, v in publish.TESTED.items()), "--key", str(private)]
    argv += ["--expect-pub", str(public), "--json", str(tmp_path / "published.json")]
    env = {**os.environ, "IMAGES_SIGNING_PASSWORD": "pw"}
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    written = json.loads((tmp_path / "published.json").read_text())
    assert json.loads(done.stdout) == written
    assert sorted(written) == sorted(publish.IMAGES)
    for name, published in written.items():
        assert sorted(published) == ["digest", "ref"]
        assert published["ref"] == f"{host}/cli/launchpad-{name}:{TAG}"
        _, ((layer, payload),) = attached(published["ref"], published["digest"], "sig")
        signature = base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
        assert openssl_verifies(public, signature, payload, tmp_path)


# ----------------------------------------------------------------------- no engine
def test_keygen_writes_cosigns_encrypted_key_and_the_public_key(tmp_path):
    private, public = signing.keygen(tmp_path, "correct horse")
    assert private.stat().st_mode & 0o777 == 0o600
    text = private.read_text()
    assert text.startswith("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    body = "".join(text.splitlines()[1:-1])
    document = json.loads(base64.b64decode(body))
    assert document["kdf"]["name"] == "scrypt"
    assert document["kdf"]["params"] == {"N": 32768, "r": 8, "p": 1}
    assert len(base64.b64decode(document["kdf"]["salt"])) == 32
    assert document["cipher"]["name"] == "nacl/secretbox"
    assert len(base64.b64decode(document["cipher"]["nonce"])) == 24
    key = signing.load_private_key(text, "correct horse")
    assert signing.same_public_key(key, public.read_bytes())
    # cosign's older PEM type reads the same; a wrong password and a second keygen are refused.
    older = text.replace("SIGSTORE PRIVATE KEY", "COSIGN PRIVATE KEY")
    assert signing.same_public_key(signing.load_private_key(older, "correct horse"), public.read_bytes())
    with pytest.raises(signing.SigningKeyError, match="wrong password"):
        signing.load_private_key(text, "wrong")
    with pytest.raises(FileExistsError):
        signing.keygen(tmp_path, "correct horse")
    # openssl reads the public key, and verifies what the key signs.
    sig = signing.sign(key, b"payload")
    assert openssl_verifies(public, sig, b"payload", tmp_path)


def test_keygen_command_takes_the_password_from_the_environment(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "IMAGES_SIGNING_PASSWORD": "pw"}
    argv = [sys.executable, "-m", "launchpad_dev.publish", "keygen", "--out", str(tmp_path / "k")]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    signing.load_private_key((tmp_path / "k" / "images.key").read_text(), "pw")
    env["IMAGES_SIGNING_PASSWORD"] = ""
    empty = subprocess.run(
        [*argv[:-1], str(tmp_path / "e")], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert empty.returncode == 1 and "IMAGES_SIGNING_PASSWORD is empty" in empty.stderr


def test_publish_refuses_a_key_that_is_not_the_expected_one_before_any_work(tmp_path):
    """The release workflow passes the template's committed images.pub: a wrong secret (or
    password) publishes nothing, not even a render."""
    private, _ = signing.keygen(tmp_path / "ours", "pw")
    _, theirs = signing.keygen(tmp_path / "committed", "pw2")
    kwargs = {"password": "pw", "workdir": tmp_path, "platforms": ["linux/amd64"]}
    with pytest.raises(signing.SigningKeyError, match="refusing to publish"):
        publish.publish(
            "127.0.0.1:1/launchpad", **publish.TESTED, key_path=private, expect_pub=theirs, **kwargs
        )
    with pytest.raises(signing.SigningKeyError, match="wrong password"):
        publish.publish(
            "127.0.0.1:1/launchpad", **publish.TESTED, key_path=private, **{**kwargs, "password": "x"}
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["committed", "ours"], "something was rendered"
    argv = [sys.executable, "-m", "launchpad_dev.publish", "publish", "--registry", "127.0.0.1:1/lp"]
    argv += ["--dagster", "1.13.27", "--base", "debian", "--python", "3.11", "--key", str(private)]
    argv += ["--expect-pub", str(theirs)]
    done = subprocess.run(argv, cwd=ROOT, env={"PATH": "/usr/bin:/bin", "IMAGES_SIGNING_PASSWORD": "pw"},
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 1 and done.stderr.startswith("error: the signing key is not the one"), (
        done.stderr
    )


def test_the_release_matrix_is_every_public_base_combination_copier_offers():
    """Every Dagster version × base image with a public image × Python version that base
    offers, from copier.yml's tables (never the custom base); the CLI prints the same."""
    table = matrix.questions()["base_images"]["default"]
    expected = {
        (dagster, base, python)
        for dagster in matrix.choice_values("dagster_version")
        for base, spec in table.items()
        if spec["image"]
        for python in spec["pythons"]
    }
    entries = publish.entries()
    got = [(e["dagster"], e["base"], e["python"]) for e in entries]
    assert len(got) == len(set(got)) and set(got) == expected
    assert "custom" not in {base for _, base, _ in got} and "custom" in table
    printed = subprocess.run(
        [sys.executable, "-m", "launchpad_dev.publish", "matrix"], cwd=ROOT, capture_output=True, text=True
    )
    assert json.loads(printed.stdout) == {"include": entries}


@pytest.mark.parametrize(
    ("base", "python", "tag"),
    [
        ("debian", "3.11", "1.13.27-py3.11-slim-bookworm"),
        ("debian", "3.13", "1.13.27-py3.13-slim-trixie"),
        ("alpine", "3.12", "1.13.27-py3.12-alpine3.22"),
        ("ubi", "3.11", "1.13.27-py3.11-ubi9"),
    ],
)
def test_the_tag_is_the_rendered_makefiles_as_the_contract_states(base, python, tag, tmp_path):
    """The publisher's tag is the PLATFORM_TAG of the project it renders (copier.yml's
    platform_image_tag, which prebuilt projects pull): {dagster}-py{python}-{the base's tag
    without the Python version}; and the Containerfiles it builds are there."""
    root = publish.render(tmp_path / "project", "1.13.27", base, python)
    assert publish.platform_tag(root) == tag
    assert all(publish.containerfile_of(root, name) for name in publish.IMAGES)


def test_the_release_publishes_with_the_key_the_template_ships_only(tmp_path):
    """--expect-template-pub (the release workflow's) compares the key with the public key that
    prebuilt projects verify the images with: a P-256 key, and any other key is refused."""
    assert signing.load_public_key(publish.TEMPLATE_PUB.read_bytes()).curve.name == "secp256r1"
    private, _ = signing.keygen(tmp_path, "pw")
    argv = [sys.executable, "-m", "launchpad_dev.publish", "publish", "--registry", "127.0.0.1:1/lp"]
    argv += ["--dagster", "1.13.27", "--base", "debian", "--python", "3.11", "--key", str(private)]
    env = {"PATH": "/usr/bin:/bin", "IMAGES_SIGNING_PASSWORD": "pw"}
    done = subprocess.run([*argv, "--expect-template-pub"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith(
        f"error: the signing key is not the one whose public key is {publish.TEMPLATE_PUB}"
    )


class FakeRegistry(BaseHTTPRequestHandler):
    """A registry that wants a Bearer token from its realm, which wants Basic credentials."""

    blobs: dict[str, bytes] = {}
    manifests: dict[str, bytes] = {}
    seen: list[str] = []

    def log_message(self, *args):  # quiet
        pass

    def _send(self, status, body=b"", headers=None):
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _route(self):
        scheme = self.headers.get("Authorization", "-").split()[0]
        self.seen.append(f"{self.command} {self.path.split('?')[0]} {scheme}")
        host = f"127.0.0.1:{self.server.server_address[1]}"
        if self.path.startswith("/token"):
            good = "Basic " + base64.b64encode(b"bot:s3cret").decode()
            ok = (
                self.headers.get("Authorization") == good
                and "scope=repository%3Alp%2Fx%3Apull%2Cpush" in self.path
            )
            return self._send(200, b'{"token": "T0K"}') if ok else self._send(401)
        if self.headers.get("Authorization") != "Bearer T0K":
            challenge = f'Bearer realm="http://{host}/token",service="fake"'
            return self._send(401, b"{}", {"WWW-Authenticate": challenge})
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else b""
        path = self.path.split("?")[0]
        if self.command == "POST" and path == "/v2/lp/x/blobs/uploads/":
            return self._send(202, headers={"Location": "/v2/lp/x/blobs/uploads/u1"})
        if self.command == "PUT" and path == "/v2/lp/x/blobs/uploads/u1":
            digest = self.path.split("digest=")[1].replace("%3A", ":")
            assert digest == oci_registry.sha256_digest(data)
            self.blobs[digest] = data
            return self._send(201)
        if path.startswith("/v2/lp/x/blobs/"):
            digest = path.rsplit("/", 1)[1]
            return self._send(200, self.blobs[digest]) if digest in self.blobs else self._send(404)
        if path.startswith("/v2/lp/x/manifests/"):
            reference = path.rsplit("/", 1)[1]
            if self.command == "PUT":
                self.manifests[reference] = data
                return self._send(201)
            body = self.manifests.get(reference)
            return self._send(200, body, {"Content-Type": OCI_MANIFEST}) if body else self._send(404)
        return self._send(404)

    do_GET = do_HEAD = do_POST = do_PUT = _route


def test_the_registry_client_answers_a_token_challenge_with_the_engines_credentials(tmp_path, monkeypatch):
    """As ghcr.io asks: 401 with a Bearer challenge, a token from the realm for the repository's
    scope with Basic credentials (here from a Podman auth file), then the request again."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeRegistry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"127.0.0.1:{server.server_address[1]}"
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"auths": {host: {"auth": base64.b64encode(b"bot:s3cret").decode()}}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth))
    monkeypatch.delenv("REGISTRY_USER", raising=False)
    try:
        client = Registry(host)
        key = ec.generate_private_key(ec.SECP256R1())
        digest = "sha256:" + "ab" * 32
        signing.attach_signature(client, "lp/x", f"{host}/lp/x", digest, key)
        signing.attach_signature(client, "lp/x", f"{host}/lp/x", digest, key)  # idempotent
        manifest = json.loads(client.get_manifest("lp/x", signing.attached_tag(digest, "sig"))[0])
        assert len(manifest["layers"]) == 1
        seen = FakeRegistry.seen
        assert seen[0].endswith(" -") and seen[1] == "GET /token Basic", seen[:2]
        assert all(s.endswith(" Bearer") for s in seen[2:] if not s.startswith("GET /token")), seen
        assert seen.count("GET /token Basic") == 1, "one token for the repository, kept"
    finally:
        server.shutdown()
    assert Registry("ghcr.io").base_url == "https://ghcr.io"
    assert Registry("registry.example.com:5000", insecure=True).base_url == "http://registry.example.com:5000"
    assert Registry("localhost:5000").base_url == "http://localhost:5000"
    monkeypatch.setenv("REGISTRY_USER", "u")
    monkeypatch.setenv("REGISTRY_PASSWORD", "p")
    assert oci_registry.credentials("ghcr.io", "owner/launchpad-webserver") == ("u", "p")
