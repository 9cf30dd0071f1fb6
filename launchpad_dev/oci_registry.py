"""A small client of the OCI distribution API (what `launchpad_dev.publish` needs to attach
signatures and attestations to a pushed image, and the tests to read them back), on the
standard library only.

- blobs: HEAD (exists?), monolithic upload (POST, then PUT with the digest), GET;
- manifests: GET (by tag or digest, the digest checked against the bytes), PUT;
- authentication: none, or the registry's challenge answered: Basic, or a Bearer token from its
  realm (anonymous, or with Basic credentials), scoped to the repository;
- credentials: REGISTRY_USER and REGISTRY_PASSWORD, else the engine's auth file (Podman's
  REGISTRY_AUTH_FILE or ${XDG_RUNTIME_DIR}/containers/auth.json or
  ~/.config/containers/auth.json, then Docker's ~/.docker/config.json; the most specific entry
  for host/repository wins, as the engines choose);
- HTTPS always, but for a loopback registry (127.0.0.0/8, ::1, localhost) or with
  `insecure=True`: plain HTTP, as the engines' --tls-verify=false.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ALL_MANIFESTS = (DOCKER_LIST, OCI_INDEX, DOCKER_MANIFEST, OCI_MANIFEST)


class RegistryError(RuntimeError):
    """A request the registry refused, with its status and what it said."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def is_loopback(host: str) -> bool:
    """host[:port] names this machine: localhost, 127.0.0.0/8 or ::1."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def split_reference(ref: str) -> tuple[str, str]:
    """'host[:port]/path/name' -> ('host[:port]', 'path/name'); the host must be explicit (a
    dot, a port or localhost), as a registry the engines would not read as Docker Hub."""
    host, _, repository = ref.partition("/")
    if not repository or not (("." in host) or (":" in host) or host == "localhost"):
        raise ValueError(f"{ref!r} does not start with a registry host (host[:port]/path)")
    return host, repository


def auth_files() -> list[Path]:
    """The engines' auth files, in the order they are read."""
    files = []
    if os.environ.get("REGISTRY_AUTH_FILE"):
        files.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
    if os.environ.get("XDG_RUNTIME_DIR"):
        files.append(Path(os.environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    files += [
        Path.home() / ".config" / "containers" / "auth.json",
        Path(f"/run/containers/{os.getuid()}/auth.json"),
        Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "config.json",
    ]
    return files


def credentials(host: str, repository: str = "") -> tuple[str, str] | None:
    """(user, password) for host/repository: REGISTRY_USER/REGISTRY_PASSWORD, else the most
    specific entry of the first auth file that has one, else None (anonymous)."""
    user, password = os.environ.get("REGISTRY_USER"), os.environ.get("REGISTRY_PASSWORD")
    if user and password:
        return user, password
    scope = f"{host}/{repository}".rstrip("/")
    for path in auth_files():
        try:
            auths = json.loads(path.read_text()).get("auths", {})
        except (OSError, ValueError):
            continue
        keys = sorted(
            (
                k
                for k in auths
                if scope == re.sub(r"^https?://", "", k).rstrip("/")
                or scope.startswith(re.sub(r"^https?://", "", k).rstrip("/") + "/")
            ),
            key=len,
            reverse=True,
        )
        for key in keys:
            encoded = auths[key].get("auth")
            if encoded:
                user, _, password = base64.b64decode(encoded).decode().partition(":")
                return user, password
    return None


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """'Bearer realm="...",service="..."' -> ('bearer', {'realm': ..., 'service': ...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


@dataclass
class Registry:
    """One registry (host[:port]); `insecure` allows plain HTTP beyond loopback."""

    host: str
    insecure: bool = False
    timeout: float = 120
    _tokens: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def base_url(self) -> str:
        scheme = "http" if self.insecure or is_loopback(self.host) else "https"
        return f"{scheme}://{self.host}"

    # --------------------------------------------------------------------- requests
    def _authorization(self, repository: str, challenge: str) -> str | None:
        scheme, params = parse_challenge(challenge)
        creds = credentials(self.host, repository)
        if scheme == "basic":
            if creds is None:
                return None
            return "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
        if scheme != "bearer" or "realm" not in params:
            return None
        query = {"scope": f"repository:{repository}:pull,push"}
        if params.get("service"):
            query["service"] = params["service"]
        request = urllib.request.Request(params["realm"] + "?" + urllib.parse.urlencode(query))
        if creds is not None:
            request.add_header(
                "Authorization", "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
            )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:
            raise RegistryError(
                f"{self.host}: the token service {params['realm']} refused "
                f"{'the credentials' if creds else 'an anonymous token'} ({error.code})",
                error.code,
            ) from error
        token = body.get("token") or body.get("access_token")
        return f"Bearer {token}" if token else None

    def request(
        self,
        method: str,
        repository: str,
        path: str,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
        url: str | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """One request to /v2/<repository>/<path> (or `url`), answering an authentication
        challenge once; returns (status, headers, body) for a status in `ok`, else raises."""
        target = url or f"{self.base_url}/v2/{repository}/{path}"
        for attempt in range(2):
            request = urllib.request.Request(target, data=data, method=method, headers=dict(headers or {}))
            if repository in self._tokens:
                request.add_header("Authorization", self._tokens[repository])
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    status, got, body = response.status, dict(response.headers), response.read()
            except urllib.error.HTTPError as error:
                status, got, body = error.code, dict(error.headers), error.read()
            if status == 401 and attempt == 0:
                challenge = {k.lower(): v for k, v in got.items()}.get("www-authenticate", "")
                authorization = self._authorization(repository, challenge)
                if authorization:
                    self._tokens[repository] = authorization
                    continue
            if status in ok:
                return status, {k.lower(): v for k, v in got.items()}, body
            raise RegistryError(f"{method} {target}: {status} {body[:500].decode(errors='replace')}", status)
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------------ blobs
    def has_blob(self, repository: str, digest: str) -> bool:
        status, _, _ = self.request("HEAD", repository, f"blobs/{digest}", ok=(200, 404))
        return status == 200

    def put_blob(self, repository: str, data: bytes) -> str:
        """Upload `data` (unless the repository has it); returns its digest."""
        digest = sha256_digest(data)
        if self.has_blob(repository, digest):
            return digest
        _, headers, _ = self.request("POST", repository, "blobs/uploads/", data=b"", ok=(202,))
        location = urllib.parse.urljoin(self.base_url + "/", headers["location"])
        separator = "&" if "?" in location else "?"
        self.request(
            "PUT",
            repository,
            "",
            data=data,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(data))},
            ok=(201,),
            url=f"{location}{separator}digest={urllib.parse.quote(digest)}",
        )
        return digest

    def get_blob(self, repository: str, digest: str) -> bytes:
        _, _, body = self.request("GET", repository, f"blobs/{digest}")
        if sha256_digest(body) != digest:
            raise RegistryError(f"{self.host}/{repository}: blob {digest} has other content")
        return body

    # -------------------------------------------------------------------- manifests
    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str, str] | None:
        """(bytes, media type, digest) of a manifest by tag or digest; None when absent. A
        manifest asked for by digest must have that digest."""
        status, headers, body = self.request(
            "GET",
            repository,
            f"manifests/{reference}",
            headers={"Accept": ", ".join(ALL_MANIFESTS)},
            ok=(200, 404),
        )
        if status == 404:
            return None
        digest = sha256_digest(body)
        if reference.startswith("sha256:") and digest != reference:
            raise RegistryError(f"{self.host}/{repository}@{reference}: the manifest has digest {digest}")
        media_type = headers.get("content-type", "").split(";")[0] or json.loads(body).get("mediaType", "")
        return body, media_type, digest

    def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> str:
        """Store a manifest under a tag (or its digest); returns its digest."""
        self.request(
            "PUT",
            repository,
            f"manifests/{reference}",
            data=body,
            headers={"Content-Type": media_type},
            ok=(201,),
        )
        return sha256_digest(body)

    def tags(self, repository: str) -> list[str]:
        status, _, body = self.request("GET", repository, "tags/list", ok=(200, 404))
        return (json.loads(body).get("tags") or []) if status == 200 else []
