"""Keep secrets out of results, logs and MLflow: values of variables whose names look
like credentials, and passwords inside URIs."""

from __future__ import annotations

import re

REDACTED = "***"
_SECRET_NAME = re.compile(
    r"TOKEN|SECRET|PASSW(OR)?D|PASSPHRASE|CREDENTIAL|AUTH|COOKIE|SESSION|(^|_)(API_?)?KEY($|_)|PRIVATE",
    re.IGNORECASE,
)
_URI_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@/\s]+)@", re.I)


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def redact_value(value: str) -> str:
    """A URI's password becomes ***; the rest of the value is kept."""
    return _URI_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", value)


def redact_env(env: dict[str, str]) -> dict[str, str]:
    return {k: REDACTED if is_secret_name(k) else redact_value(str(v)) for k, v in env.items()}


def redact_tree(value, key: str = ""):
    """A config tree with secret-looking keys' values and URI passwords redacted."""
    if isinstance(value, dict):
        return {k: redact_tree(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_tree(v, key) for v in value]
    if isinstance(value, str):
        return REDACTED if is_secret_name(key) else redact_value(value)
    return value
