"""Ed25519 signatures of volume indexes and receipts, with OpenSSH key files.

A private key is an unencrypted OpenSSH `ssh-ed25519` key (`ssh-keygen -t ed25519 -N ''`);
a public key is its `.pub` line. What is signed is protocol/media.py's `signed_message`:
a context string, the file's magic and its checksum, which covers every other byte.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_ssh_private_key,
    load_ssh_public_key,
)

from protocol.media import Signature, Signer
from syncd.media.errors import MediaError


def load_signer(path: Path) -> Signer:
    """A signer with the OpenSSH ed25519 private key in `path`."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MediaError(f"{path}: cannot read the signing key: {exc.strerror}") from exc
    try:
        key = load_ssh_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise MediaError(
            f"{path}: not an unencrypted OpenSSH private key ({exc}); "
            "make one with `ssh-keygen -t ed25519 -N ''`"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise MediaError(f"{path}: not an ed25519 key (ssh-keygen -t ed25519)")
    public = raw_public(key.public_key())

    def sign(message: bytes) -> Signature:
        return Signature(public, key.sign(message))

    return sign


def load_public_key(path: Path) -> bytes:
    """The raw 32-byte key of the OpenSSH ed25519 public key file `path`."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MediaError(f"{path}: cannot read the public key: {exc.strerror}") from exc
    try:
        key = load_ssh_public_key(data.strip())
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise MediaError(f"{path}: not an OpenSSH public key ({exc})") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise MediaError(f"{path}: not an ssh-ed25519 public key")
    return raw_public(key)


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def signature_problem(
    signature: Signature | None, message: bytes, required: bytes | None
) -> str | None:
    """Why a file's signature is not acceptable, or None. A signature present is always
    checked; `required` (a raw public key) also demands one made by that key."""
    if signature is None:
        return "unsigned, but a signature is required" if required is not None else None
    try:
        Ed25519PublicKey.from_public_bytes(signature.public_key).verify(
            signature.signature, message
        )
    except (InvalidSignature, ValueError):
        return "its signature does not match its contents (tampered?)"
    if required is not None and signature.public_key != required:
        return "signed by another key than the one required"
    return None
