"""Who an apply comes from, for the audit log: an export (and its signer) or a push (and
the SSH key sshd says it authenticated, where it exposes one)."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass

from protocol.media import Signature
from syncd.media.parity.status import read_signer
from syncd.state import StateDir

SSH_AUTH_LIMIT = 64 * 1024


def fingerprint(key_blob: bytes) -> str:
    """OpenSSH's SHA256 fingerprint of a public key in its wire encoding."""
    digest = base64.b64encode(hashlib.sha256(key_blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def ed25519_fingerprint(raw: bytes) -> str:
    """The fingerprint `ssh-keygen -l` shows for a raw Ed25519 public key."""
    name = b"ssh-ed25519"
    blob = len(name).to_bytes(4, "big") + name + len(raw).to_bytes(4, "big") + raw
    return fingerprint(blob)


@dataclass(frozen=True, slots=True)
class Origin:
    kind: str  # "import" or "push"
    export_id: str | None = None
    signer: str | None = None  # fingerprint of the key that signed the export's indexes
    key: str | None = None  # the pushing SSH key, "ssh-ed25519 SHA256:..."
    client: str | None = None  # the pushing address (SSH_CONNECTION)

    def as_json(self) -> dict[str, object]:
        return {
            "source": self.kind,
            "export": self.export_id,
            "signer": self.signer,
            "key": self.key,
            "client": self.client,
        }

    @classmethod
    def of_export(cls, state: StateDir, export_id: str, signature: Signature | None) -> Origin:
        """An import's origin; the signer noted in an earlier run when none was seen in
        this one (the volumes may all have come before)."""
        key = signature.public_key if signature is not None else read_signer(state, export_id)
        return cls("import", export_id, ed25519_fingerprint(key) if key else None)

    @classmethod
    def of_push(cls, env: Mapping[str, str] | None = None) -> Origin:
        """From sshd's environment: SSH_CONNECTION, and SSH_USER_AUTH (a file listing the
        methods and key that authenticated the login, with `ExposeAuthInfo yes`)."""
        env = os.environ if env is None else env
        connection = env.get("SSH_CONNECTION", "").split()
        client = connection[0] if connection else None
        return cls("push", key=_auth_key(env.get("SSH_USER_AUTH")), client=client)


def _auth_key(path: str | None) -> str | None:
    if not path:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            text = os.read(fd, SSH_AUTH_LIMIT).decode("ascii", "replace")
        finally:
            os.close(fd)
    except OSError:
        return None
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 3 and words[0] == "publickey":
            try:
                blob = base64.b64decode(words[2], validate=True)
            except ValueError:
                continue
            kind = words[1] if words[1].isprintable() and len(words[1]) < 64 else "key"
            return f"{kind} {fingerprint(blob)}"
    return None
