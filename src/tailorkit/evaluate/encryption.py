"""Payload encryption: AES-128-CBC, GrowthBook's ``"<iv>.<ciphertext>"`` format.

Both parts and the key are base64.  Decryption follows the JavaScript SDK
(WebCrypto + ``atob``): invalid base64, a wrong key or IV length, or bad
padding raise :class:`DecryptionError`; bytes that are not UTF-8 decode to
U+FFFD like ``TextDecoder``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["DecryptionError", "decrypt", "decrypt_payload", "encrypt", "encrypt_payload"]

_BASE64 = re.compile(r"[A-Za-z0-9+/]*")
_ASCII_SPACE = " \t\n\f\r"
_ENCRYPTED_SECTIONS = {
    "encryptedFeatures": "features",
    "encryptedSavedGroups": "savedGroups",
    "encryptedContextualBandits": "contextualBandits",
}


class DecryptionError(ValueError):
    """The payload could not be decrypted."""


def _atob(text: str) -> bytes:
    """Forgiving base64 decoding, as the browser's ``atob`` does it."""
    data = "".join(c for c in text if c not in _ASCII_SPACE)
    if len(data) % 4 == 0 and data.endswith("="):
        data = data[:-2] if data.endswith("==") else data[:-1]
    if len(data) % 4 == 1 or not _BASE64.fullmatch(data):
        raise DecryptionError("invalid base64")
    try:
        return base64.b64decode(data + "=" * (-len(data) % 4))
    except binascii.Error as exc:  # pragma: no cover - filtered above
        raise DecryptionError("invalid base64") from exc


def decrypt(encrypted: str, key: str) -> str:
    """Decrypt ``"<base64 iv>.<base64 ciphertext>"`` with a base64 AES key.

    >>> key = "Zvwv/+uhpFDznZ6SX28Yjg=="
    >>> decrypt(encrypt('{"a":1}', key), key)
    '{"a":1}'
    """
    iv_text, _, body_text = encrypted.partition(".")
    key_bytes = _atob(key)
    iv = _atob(iv_text)
    body = _atob(body_text)
    if len(key_bytes) not in (16, 24, 32) or len(iv) != 16 or not body or len(body) % 16:
        raise DecryptionError("invalid key, iv or ciphertext length")
    decryptor = Cipher(algorithms.AES(key_bytes), modes.CBC(iv)).decryptor()
    padded = decryptor.update(body) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        plain = unpadder.update(padded) + unpadder.finalize()
    except ValueError as exc:
        raise DecryptionError("bad padding (wrong key?)") from exc
    return plain.decode("utf-8", errors="replace")


def encrypt(plaintext: str, key: str, iv: bytes | None = None) -> str:
    """Encrypt text for a GrowthBook SDK (random IV unless one is given).

    >>> encrypt("hi", "Zvwv/+uhpFDznZ6SX28Yjg==", iv=bytes(16)).split(".")[0]
    'AAAAAAAAAAAAAAAAAAAAAA=='
    """
    key_bytes = _atob(key)
    if len(key_bytes) not in (16, 24, 32):
        raise ValueError("AES keys are 16, 24 or 32 bytes")
    iv = os.urandom(16) if iv is None else iv
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext.encode("utf-8")) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key_bytes), modes.CBC(iv)).encryptor()
    body = encryptor.update(padded) + encryptor.finalize()
    return base64.b64encode(iv).decode() + "." + base64.b64encode(body).decode()


def decrypt_payload(payload: dict[str, Any], key: str) -> dict[str, Any]:
    """Replace a payload's ``encrypted*`` sections by their decrypted JSON.

    >>> key = "Zvwv/+uhpFDznZ6SX28Yjg=="
    >>> sealed = {"encryptedFeatures": encrypt('{"f": {"defaultValue": 1}}', key)}
    >>> decrypt_payload(sealed, key)
    {'features': {'f': {'defaultValue': 1}}}
    """
    out = {k: v for k, v in payload.items() if k not in _ENCRYPTED_SECTIONS}
    for encrypted_key, plain_key in _ENCRYPTED_SECTIONS.items():
        sealed = payload.get(encrypted_key)
        if isinstance(sealed, str):
            try:
                out[plain_key] = json.loads(decrypt(sealed, key))
            except json.JSONDecodeError as exc:
                raise DecryptionError(f"{encrypted_key} is not JSON") from exc
    return out


def encrypt_payload(payload: dict[str, Any], key: str) -> dict[str, Any]:
    """Encrypt a payload's ``features``/``savedGroups``/``contextualBandits``.

    >>> key = "Zvwv/+uhpFDznZ6SX28Yjg=="
    >>> sealed = encrypt_payload({"features": {"f": {}}}, key)
    >>> sorted(sealed), decrypt_payload(sealed, key)
    (['encryptedFeatures', 'features'], {'features': {'f': {}}})
    """
    out = {k: v for k, v in payload.items() if k not in _ENCRYPTED_SECTIONS.values()}
    for encrypted_key, plain_key in _ENCRYPTED_SECTIONS.items():
        if plain_key in payload:
            out[encrypted_key] = encrypt(json.dumps(payload[plain_key]), key)
    # SDKs expect a (empty) features object next to encryptedFeatures
    out.setdefault("features", {})
    return out
