"""Proof that an operation found in the model is Whirlwind's own: an HMAC over its facts.

Anyone with write access to the model can set annotations, so two units sharing a
`whirlwind/op` annotation prove nothing. Every operation Whirlwind starts signs its facts (op
id, application, old and new unit, the new unit's birth) with a key only Whirlwind's units
hold (the charm keeps it in an application-owned Juju secret); an agent adopts an operation
another agent left in flight only when the signature on both units checks out.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import pathlib
import secrets
from collections.abc import Mapping

SIG_ANNOTATION = "whirlwind/sig"
OP_ANNOTATION = "whirlwind/op"
BORN_ANNOTATION = "whirlwind/born"
KEY_FILE = "op-key"
_VERSION = "whirlwind-op-v1"


def sign(key: bytes, *, op_id: str, service: str, old_unit: str, new_unit: str, born: str) -> str:
    """The signature of one operation's facts (hex HMAC-SHA256)."""
    message = "\n".join((_VERSION, op_id, service, old_unit, new_unit, born)).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def why_not_ours(
    key: bytes,
    *,
    op_id: str,
    service: str,
    old_unit: str,
    new_unit: str,
    old_annotations: Mapping[str, str],
    new_annotations: Mapping[str, str],
) -> str | None:
    """Why the pair old/new sharing `op_id` is not provably Whirlwind's (None: it is)."""
    born = new_annotations.get(BORN_ANNOTATION)
    if not born:
        return f"{new_unit} has no {BORN_ANNOTATION} annotation"
    expected = sign(
        key, op_id=op_id, service=service, old_unit=old_unit, new_unit=new_unit, born=born
    )
    for unit, marks in ((old_unit, old_annotations), (new_unit, new_annotations)):
        given = marks.get(SIG_ANNOTATION, "")
        if not given:
            return f"{unit} has no {SIG_ANNOTATION} annotation"
        if not hmac.compare_digest(given, expected):
            return f"the {SIG_ANNOTATION} annotation of {unit} does not match"
    return None


def local_key(state_dir: pathlib.Path) -> bytes:
    """The agent's own key (state_dir/op-key, 0600), made on first use.

    Used when no key came with the settings (the agent run without the charm): only this
    agent can then prove its operations, so another agent never adopts them.
    """
    path = state_dir / KEY_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key + b"\n")
    return key
