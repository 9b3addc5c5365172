"""Encryption at rest for connector credentials (MultiFernet), and the secret key it uses.

``GATEWAY_SECRET_KEY`` may hold several keys separated by commas, newest first: the first
encrypts, all decrypt, so a key can be rotated without losing stored credentials. Each key is a
Fernet key or any passphrase of at least 32 characters (stretched with HKDF-SHA256).
"""

from __future__ import annotations

import base64
import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.settings import Settings, SettingsError

log = logging.getLogger(__name__)

KEY_FILE = "secret.key"


class CredentialsError(ValueError):
    """Stored credentials could not be decrypted with any configured key."""


def _fernet(key: str) -> Fernet:
    try:
        return Fernet(key.encode())
    except ValueError:
        if len(key) < 32:
            raise SettingsError(
                "each GATEWAY_SECRET_KEY entry must be a Fernet key or at least 32 characters"
            ) from None
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"gateway credentials v1"
        ).derive(key.encode())
        return Fernet(base64.urlsafe_b64encode(derived))


class Vault:
    """Encrypts and decrypts JSON objects of secrets."""

    def __init__(self, secret: str) -> None:
        keys = [k.strip() for k in secret.split(",") if k.strip()]
        if not keys:
            raise SettingsError("GATEWAY_SECRET_KEY is empty")
        self._fernet = MultiFernet([_fernet(k) for k in keys])

    def __repr__(self) -> str:
        return "Vault(<keys hidden>)"

    def encrypt(self, secrets: Mapping[str, Any]) -> bytes:
        return self._fernet.encrypt(json.dumps(dict(secrets), sort_keys=True).encode())

    def decrypt(self, token: bytes) -> dict[str, Any]:
        try:
            return json.loads(self._fernet.decrypt(bytes(token)))
        except InvalidToken:
            raise CredentialsError(
                "stored credentials cannot be decrypted with GATEWAY_SECRET_KEY "
                "(was the key changed without keeping the old one after a comma?)"
            ) from None

    def rotate(self, token: bytes) -> bytes:
        """``token`` re-encrypted with the newest key (MultiFernet.rotate: decrypted with any
        configured key, its original timestamp kept), so an older key can then be retired."""
        try:
            return self._fernet.rotate(bytes(token))
        except InvalidToken:
            raise CredentialsError(
                "stored credentials cannot be decrypted with any key in GATEWAY_SECRET_KEY"
            ) from None


def secret_key(settings: Settings) -> str:
    """The configured secret key; on the embedded default, a key file made on first use."""
    if settings.secret_key:
        return settings.secret_key
    if not settings.embedded:
        raise SettingsError("GATEWAY_SECRET_KEY is required with an external database")
    path = Path(settings.instance_path) / KEY_FILE
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # the instance folder: owner-only
    key = Fernet.generate_key().decode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    log.warning(
        "GATEWAY_SECRET_KEY is not set: created a key file at %s (owner-only). Keep it: "
        "stored connector credentials cannot be read without it.",
        path,
    )
    return key
