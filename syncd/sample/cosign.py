"""Cosign signatures as oc-mirror's cache holds them: a `sha256-<hex>.sig` tag beside
the signed image, naming an OCI manifest whose layer is the simple-signing payload.

Red Hat signs release payloads and operator images; mirror-to-disk copies those
signatures with the images (sigstore attachments), so a real cache has such tags, and
under repository names of 32 characters or more their tag paths need PAX records in the
archives.
"""

from __future__ import annotations

import json

from syncd.sample.images import OCI, Descriptor
from syncd.sample.layers import rng, sha256_digest
from syncd.sample.regstore import ImageLinks, ManifestLinks, Storage

PAYLOAD = "application/vnd.dev.cosign.simplesigning.v1+json"


def signature_tag(digest: str) -> str:
    return f"sha256-{digest.removeprefix('sha256:')}.sig"


def sign(storage: Storage, seed: int, repo: str, digest: str) -> str:
    """Store a signature of `repo@digest`; returns the signature manifest's digest."""
    payload = json.dumps(
        {
            "critical": {
                "identity": {"docker-reference": f"registry.redhat.io/{repo}"},
                "image": {"docker-manifest-digest": digest},
                "type": "cosign container image signature",
            },
            "optional": None,
        }
    ).encode()
    rootfs = {"type": "layers", "diff_ids": [sha256_digest(payload)]}  # as cosign writes it
    config = json.dumps({"architecture": "", "os": "", "rootfs": rootfs, "config": {}}).encode()
    signature = rng(seed, "cosign", repo, digest).randbytes(64).hex()
    layer = Descriptor(PAYLOAD, sha256_digest(payload), len(payload)).as_json()
    layer["annotations"] = {"dev.cosignproject.cosign/signature": signature}
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI.manifest,
            "config": Descriptor(OCI.config, sha256_digest(config), len(config)).as_json(),
            "layers": [layer],
        },
        indent=2,
    ).encode()
    top = sha256_digest(manifest)
    for data in (payload, config, manifest):
        storage.put_blob(sha256_digest(data), data)
    blobs = (sha256_digest(config), sha256_digest(payload))
    storage.publish(ImageLinks(repo, signature_tag(digest), top, (ManifestLinks(top, blobs),)))
    return top
