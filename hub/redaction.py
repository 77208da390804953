"""What counts as a secret, and how it is hidden: one module for every place text leaves the
hub — log lines (the structlog processor), the admin API's subscription views, configuration
errors (``check-config``, exit code 2, handler option errors), dead letters and attempt
records.

* **Secret-looking names** (:func:`is_secret_key`): one list. A value under such a name is
  shown as ``"***"``; ``headers`` counts as one, so every header value is hidden (a header
  named ``X-Team`` may carry a token just as well as ``Authorization``).
* **URLs** (:func:`redact_url`): the user and password become ``***``, and so does **every
  query value** (the keys stay) and the fragment. Every value, not only those under
  secret-looking keys: query strings are where URLs without user info carry their
  credentials, and the names vary by vendor (``token``, ``sig``, ``code``, ``k``,
  ``X-Amz-Signature``, ``sv``/``sig`` of a SAS URL...); no list of names is complete, while
  the keys alone still tell a reader which URL it is. Paths are kept (they name the
  endpoint); the webhook handler shows only the origin of its URL in outcomes and logs,
  since Slack- and Discord-style URLs keep their secret in the path.
* **Free text** (:func:`redact_text`): every URL in it as above, known token shapes
  (``whsec_...``, ``xoxb-...``, ``ghp_...``, ``github_pat_...``) and ``Bearer`` credentials.

Everything here is pure: no clock, no environment, no globals beyond the patterns.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from typing import Any
from urllib.parse import urlsplit

MASK = "***"
PYDANTIC_MASK = "**********"
"""What pydantic shows for a ``SecretStr`` in ``model_dump(mode="json")``."""

SECRET_WORDS = ("secret", "password", "passwd", "token", "authorization", "api_key",
                "apikey", "credential", "private_key", "access_key", "cookie", "webhook_url",
                "headers")
"""A name containing one of these (case-insensitive, ``-`` read as ``_``) is secret:
``sasl_password``, ``mlflow_secret``, ``X-Api-Key``, ``access_token``..."""
SECRET_NAMES = frozenset({"key", "sig", "signature", "pwd", "auth", "x_amz_signature",
                          "x_goog_signature"})
"""Names secret only on their own: ``signature_format`` or ``idempotency_key`` are not."""

_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>()\[\]{}\\`]+")
_TOKEN_SHAPES = re.compile(
    r"\b(?:whsec_[A-Za-z0-9+/=]+|xox[abeoprs]-[A-Za-z0-9-]+|gh[pousr]_[A-Za-z0-9]+"
    r"|github_pat_[A-Za-z0-9_]+)")
_BEARER = re.compile(r"\b(Bearer)\s+[A-Za-z0-9._~+/=\-]+", re.IGNORECASE)


def is_secret_key(name: str) -> bool:
    """Whether a value under ``name`` (an option, a log field, a query key) is a secret."""
    normal = name.lower().replace("-", "_")
    return normal in SECRET_NAMES or any(word in normal for word in SECRET_WORDS)


def redact_url(url: str) -> str:
    """``url`` with its user info, every query value and its fragment as ``***``.

    ``https://u:p@h.example/hook?token=abc&x=1#f`` → ``https://***@h.example/hook?token=***&x=***#***``.
    Text that does not parse as a URL with a scheme is returned unchanged when it holds no
    ``@``, ``?`` or ``#``, else as ``***``.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return url if not any(c in url for c in "@?#") else MASK
    if not parts.scheme:
        return url if not any(c in url for c in "@?#") else MASK
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    text = f"{parts.scheme}://{netloc}{parts.path}" if "://" in url \
        else f"{parts.scheme}:{parts.path}"
    if parts.query:
        text += "?" + "&".join(_redact_pair(pair) for pair in parts.query.split("&"))
    if parts.fragment:
        text += "#" + MASK
    return text


def _redact_pair(pair: str) -> str:
    key, sep, value = pair.partition("=")
    if not sep:
        return MASK if key else ""
    return f"{key}={MASK}" if value else f"{key}="


def url_origin(url: str) -> str:
    """Scheme, host and port only, for saying *where* without saying anything else."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return MASK
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def redact_text(text: str) -> str:
    """Free text with every URL redacted (:func:`redact_url`), known token shapes and
    ``Bearer`` credentials as ``***``."""
    if not text:
        return text
    if "://" in text:
        text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    text = _TOKEN_SHAPES.sub(MASK, text)
    return _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)


def mask(value: Any, key: str = "") -> Any:
    """``value`` (JSON-like) as it may be shown: values under secret-looking keys (a
    mapping's: all of them) as ``"***"``, pydantic's ``**********`` too, every string
    through :func:`redact_text`. ``None`` and ``""`` stay (nothing to hide, and the reader
    learns the option is unset)."""
    secret = bool(key) and is_secret_key(key)
    if isinstance(value, Mapping):
        if secret:
            return {k: None if v is None else MASK for k, v in value.items()}
        return {k: mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v, key) for v in value]
    if value is None or value == "" or isinstance(value, bool):
        return value
    if secret or value == PYDANTIC_MASK:
        return MASK
    if isinstance(value, str):
        return redact_text(value)
    return value


def unmask(new: Any, old: Any) -> Any:
    """``new`` with stored secrets put back where a client echoed what :func:`mask` showed
    (``"***"``, or a URL as redacted): a client may send back what it read."""
    if new == MASK and old is not None:
        return old
    if isinstance(new, str) and isinstance(old, str) and new != old and new == redact_text(old):
        return old
    if isinstance(new, dict) and isinstance(old, dict):
        return {k: unmask(v, old.get(k)) for k, v in new.items()}
    if isinstance(new, list) and isinstance(old, list) and len(new) == len(old):
        return [unmask(n, o) for n, o in zip(new, old, strict=True)]
    return new


_PLAIN = (str, int, float, bool, type(None), Mapping, list)


def redact_event_dict(_: Any, __: str, event_dict: MutableMapping[str, Any]
                      ) -> MutableMapping[str, Any]:
    """The structlog processor: every field through :func:`mask` by its name; other objects
    (exceptions, URLs) by their text. Place it after ``format_exc_info`` so tracebacks are
    text by then and redacted too."""
    for key, value in list(event_dict.items()):
        if key in ("exc_info", "stack_info"):
            continue  # a flag or a tuple; format_exc_info turns it into text before us
        if isinstance(value, _PLAIN) or is_secret_key(key):
            event_dict[key] = mask(value, key)
        else:
            text = str(value)
            if (redacted := redact_text(text)) != text:
                event_dict[key] = redacted
    return event_dict


__all__ = ["MASK", "SECRET_NAMES", "SECRET_WORDS", "is_secret_key", "mask",
           "redact_event_dict", "redact_text", "redact_url", "unmask", "url_origin"]
