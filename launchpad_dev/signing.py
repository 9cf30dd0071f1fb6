"""Cosign's formats, written by our own code (Debian's Podman 4.3 has sigstore signing patched
out, and no cosign binary is packaged here): its encrypted key, its simple-signing payload and
signature manifest, its DSSE attestations, both attached by its tag scheme. What this writes,
`cosign verify --key images.pub --insecure-ignore-tlog` and `cosign verify-attestation` read;
the signatures are plain ECDSA P-256 over SHA-256 in DER, so `openssl dgst -sha256 -verify`
checks them too (docs/update.md, "Publishing the platform images").

- the key: PEM `ENCRYPTED SIGSTORE PRIVATE KEY` (or cosign's older `ENCRYPTED COSIGN PRIVATE
  KEY`), base64 of JSON {kdf: scrypt N=32768 r=8 p=1 with a salt, cipher: nacl/secretbox with a
  nonce, ciphertext}: the PKCS #8 DER of a P-256 key, sealed with scrypt(password);
- a signature: for the image (list) digest sha256:HEX, the manifest tagged `sha256-HEX.sig` in
  the same repository, an OCI image manifest whose layers (mediaType
  application/vnd.dev.cosign.simplesigning.v1+json) are each a payload {"critical": {"identity":
  {"docker-reference": REPO}, "image": {"docker-manifest-digest": DIGEST}, "type": "cosign
  container image signature"}, "optional": null}, its signature in the layer's annotation
  dev.cosignproject.cosign/signature (base64 of the DER signature);
- an attestation: under `sha256-HEX.att`, layers of mediaType application/vnd.dsse.envelope.v1+json,
  each a DSSE envelope of an in-toto Statement v1 about the digest, signed over DSSE's
  pre-authentication encoding, the layer annotated with its predicateType.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from launchpad_dev.oci_registry import OCI_CONFIG, OCI_MANIFEST, Registry, sha256_digest

PEM_TYPES = ("ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY")
SCRYPT = {"N": 32768, "r": 8, "p": 1}
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
IN_TOTO = "application/vnd.in-toto+json"
STATEMENT = "https://in-toto.io/Statement/v1"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
PROVENANCE = "https://slsa.dev/provenance/v1"
SPDX = "https://spdx.dev/Document"


class SigningKeyError(ValueError):
    """The key file or its password is wrong (the message says which)."""


def compact(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


# ------------------------------------------------------------------------------- the key
def _scrypt(password: bytes, salt: bytes, params: dict) -> bytes:
    n, r, p = int(params["N"]), int(params["r"]), int(params["p"])
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=32, maxmem=256 * n * r + (1 << 20))


def encrypt_private_key(key: ec.EllipticCurvePrivateKey, password: str) -> str:
    """The key as cosign writes it (`cosign generate-key-pair`): PEM of the sealed PKCS #8 DER."""
    import nacl.secret

    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    salt, nonce = os.urandom(32), os.urandom(nacl.secret.SecretBox.NONCE_SIZE)
    sealed = nacl.secret.SecretBox(_scrypt(password.encode(), salt, SCRYPT)).encrypt(der, nonce)
    document = {
        "kdf": {"name": "scrypt", "params": SCRYPT, "salt": base64.b64encode(salt).decode()},
        "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
        "ciphertext": base64.b64encode(sealed.ciphertext).decode(),
    }
    body = base64.b64encode(compact(document)).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "\n".join([f"-----BEGIN {PEM_TYPES[0]}-----", *lines, f"-----END {PEM_TYPES[0]}-----", ""])


def load_private_key(text: str, password: str) -> ec.EllipticCurvePrivateKey:
    """A cosign private key (either PEM type), opened with `password`."""
    import nacl.exceptions
    import nacl.secret

    match = re.search(r"-----BEGIN ([A-Z ]+)-----\s*(.*?)\s*-----END \1-----", text, re.S)
    if not match or match.group(1) not in PEM_TYPES:
        raise SigningKeyError(f"not a cosign private key (expected PEM {' or '.join(PEM_TYPES)})")
    try:
        document = json.loads(base64.b64decode("".join(match.group(2).split())))
        kdf, cipher = document["kdf"], document["cipher"]
        if kdf["name"] != "scrypt" or cipher["name"] != "nacl/secretbox":
            raise SigningKeyError(f"unsupported key encryption: {kdf['name']}, {cipher['name']}")
        secret = _scrypt(password.encode(), base64.b64decode(kdf["salt"]), kdf["params"])
        ciphertext, nonce = base64.b64decode(document["ciphertext"]), base64.b64decode(cipher["nonce"])
    except (ValueError, KeyError, TypeError) as error:
        if isinstance(error, SigningKeyError):
            raise
        raise SigningKeyError(f"the cosign private key is malformed ({error!r})") from error
    try:
        der = nacl.secret.SecretBox(secret).decrypt(ciphertext, nonce)
    except nacl.exceptions.CryptoError as error:
        raise SigningKeyError("wrong password for the signing key (IMAGES_SIGNING_PASSWORD)") from error
    key = serialization.load_der_private_key(der, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise SigningKeyError("the signing key is not an ECDSA P-256 key")
    return key


def public_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_key(pem: bytes) -> ec.EllipticCurvePublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise SigningKeyError("the public key is not an ECDSA key")
    return key


def same_public_key(key: ec.EllipticCurvePrivateKey, pem: bytes) -> bool:
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(*spki) == load_public_key(pem).public_bytes(*spki)


def keygen(out: Path, password: str) -> tuple[Path, Path]:
    """Write out/images.key (0600, encrypted with `password`) and out/images.pub; refuses to
    overwrite either (a key replaced by accident cannot be recovered)."""
    if not password:
        raise SigningKeyError(
            "IMAGES_SIGNING_PASSWORD is empty: the key would be stored unencrypted in effect"
        )
    out.mkdir(parents=True, exist_ok=True)
    private, public = out / "images.key", out / "images.pub"
    for path in (private, public):
        if path.exists():
            raise FileExistsError(f"{path} exists: remove it first to make a new key pair")
    key = ec.generate_private_key(ec.SECP256R1())
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(encrypt_private_key(key, password))
    public.write_bytes(public_pem(key))
    return private, public


def sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """DER ECDSA P-256 signature over SHA-256 of `data` (what `openssl dgst -sha256 -sign` makes)."""
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def verify(public: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> bool:
    try:
        public.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


# --------------------------------------------------------------------------- payloads
def simple_signing_payload(repository_ref: str, digest: str) -> bytes:
    """Cosign's payload for REGISTRY/NAME at `digest` (compact JSON, the bytes signed)."""
    return compact(
        {
            "critical": {
                "identity": {"docker-reference": repository_ref},
                "image": {"docker-manifest-digest": digest},
                "type": "cosign container image signature",
            },
            "optional": None,
        }
    )


def statement(repository_ref: str, digest: str, predicate_type: str, predicate: dict) -> bytes:
    """An in-toto Statement v1 about REGISTRY/NAME at `digest`."""
    algorithm, _, value = digest.partition(":")
    return compact(
        {
            "_type": STATEMENT,
            "subject": [{"name": repository_ref, "digest": {algorithm: value}}],
            "predicateType": predicate_type,
            "predicate": predicate,
        }
    )


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what a DSSE signature signs."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def dsse_envelope(key: ec.EllipticCurvePrivateKey, payload: bytes, payload_type: str = IN_TOTO) -> bytes:
    return compact(
        {
            "payloadType": payload_type,
            "payload": base64.b64encode(payload).decode(),
            "signatures": [
                {"keyid": "", "sig": base64.b64encode(sign(key, pae(payload_type, payload))).decode()}
            ],
        }
    )


def open_envelope(public: ec.EllipticCurvePublicKey, envelope: bytes) -> dict | None:
    """The statement of a DSSE envelope when one of its signatures verifies with `public`."""
    document = json.loads(envelope)
    payload = base64.b64decode(document["payload"])
    signed = pae(document["payloadType"], payload)
    if any(verify(public, base64.b64decode(s["sig"]), signed) for s in document.get("signatures", [])):
        return json.loads(payload)
    return None


# ------------------------------------------------------------ attached by cosign's tags
def attached_tag(digest: str, suffix: str) -> str:
    """sha256:HEX -> sha256-HEX.sig (or .att): cosign's tag for what is attached to `digest`."""
    return digest.replace(":", "-") + "." + suffix


def _config_blob(layer_digests: list[str]) -> bytes:
    """The small config cosign writes for a signature or attestation manifest."""
    return compact(
        {
            "architecture": "",
            "config": {},
            "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"}],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": layer_digests},
        }
    )


def existing_layers(registry: Registry, repository: str, tag: str) -> list[tuple[dict, bytes]]:
    """[(layer descriptor, blob)] of the manifest tagged `tag`, none if there is none."""
    found = registry.get_manifest(repository, tag)
    if found is None:
        return []
    manifest = json.loads(found[0])
    return [(layer, registry.get_blob(repository, layer["digest"])) for layer in manifest.get("layers", [])]


def put_attached(registry: Registry, repository: str, tag: str, layers: list[tuple[dict, bytes]]) -> str:
    """Upload the layers' blobs and the config, then the manifest under `tag`; its digest."""
    descriptors = []
    for descriptor, blob in layers:
        digest = registry.put_blob(repository, blob)
        descriptors.append({**descriptor, "size": len(blob), "digest": digest})
    config = _config_blob([d["digest"] for d in descriptors])
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "size": len(config),
            "digest": registry.put_blob(repository, config),
        },
        "layers": [
            {
                "mediaType": d["mediaType"],
                "size": d["size"],
                "digest": d["digest"],
                "annotations": d["annotations"],
            }
            for d in descriptors
        ],
    }
    return registry.put_manifest(repository, tag, compact(manifest), OCI_MANIFEST)


def attach_signature(
    registry: Registry, repository: str, repository_ref: str, digest: str, key: ec.EllipticCurvePrivateKey
) -> str:
    """Sign `digest` and attach the signature (cosign sign): kept beside the signatures already
    there (other keys'), unless this payload is already signed with this key (idempotent)."""
    tag = attached_tag(digest, "sig")
    payload = simple_signing_payload(repository_ref, digest)
    layers = existing_layers(registry, repository, tag)
    public = key.public_key()
    for descriptor, blob in layers:
        encoded = descriptor.get("annotations", {}).get(SIGNATURE_ANNOTATION, "")
        if blob == payload and verify(public, base64.b64decode(encoded), blob):
            return registry.get_manifest(repository, tag)[2]
    descriptor = {
        "mediaType": SIMPLE_SIGNING,
        "annotations": {SIGNATURE_ANNOTATION: base64.b64encode(sign(key, payload)).decode()},
    }
    return put_attached(registry, repository, tag, [*layers, (descriptor, payload)])


def attach_attestations(
    registry: Registry,
    repository: str,
    repository_ref: str,
    digest: str,
    key: ec.EllipticCurvePrivateKey,
    predicates: dict[str, dict],
) -> str:
    """Attach one signed in-toto statement per predicate type (cosign attest --replace: a layer
    of the same predicate type is replaced, the others kept)."""
    tag = attached_tag(digest, "att")
    kept = [
        (descriptor, blob)
        for descriptor, blob in existing_layers(registry, repository, tag)
        if descriptor.get("annotations", {}).get("predicateType") not in predicates
    ]
    new = [
        (
            {
                "mediaType": DSSE_ENVELOPE,
                "annotations": {SIGNATURE_ANNOTATION: "", "predicateType": predicate_type},
            },
            dsse_envelope(key, statement(repository_ref, digest, predicate_type, predicate)),
        )
        for predicate_type, predicate in predicates.items()
    ]
    return put_attached(registry, repository, tag, [*kept, *new])


def sha256_file(path: Path) -> str:
    return sha256_digest(path.read_bytes()).split(":", 1)[1]
