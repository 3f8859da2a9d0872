"""Locust's own options as the locustfile needs them, checked before any load starts.

No Locust import (like ``rates.py``), so the checks are plain functions. Each raises
``ValueError`` with one line naming the option; the locustfile turns that into exit status 2:

* ``--host``: required headless (Locust 2.47 printed a traceback per user and exited 0 with
  nothing sent), ``http://`` or ``https://`` with a host and a valid port; a trailing ``/`` is
  dropped (``https://alb/`` + ``/v1/...`` made every request ``//v1/...``, refused by the client);
  a path is kept as a prefix; no query, fragment or credentials.
* ``--users``/``--spawn-rate`` with ``LOAD_SHAPE``: refused, since the shape sets the users from
  ``LOAD_RPS`` and Locust (with ``use_common_options``) ignored them without a word.
* ``--tags``: refused, no task has a tag (every user failed with a traceback, nothing sent).
* ``--web-host``: the web UI has no login by default, so it binds to ``127.0.0.1`` unless told
  otherwise, and only to a loopback address (Locust's default was every interface).
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

#: Where the web UI binds when ``--web-host`` is not given (Locust's default: every interface).
WEB_HOST = "127.0.0.1"


def check_host(host: str | None, *, required: bool) -> str | None:
    """The base URL Locust's users should use for ``--host`` (trailing ``/`` removed).

    ``None`` when none is given and none is ``required`` (the web UI asks for one)."""
    text = (host or "").strip()
    if not text:
        if required:
            raise ValueError(
                "--host is required: the service's base URL, e.g. https://<alb-dns-name>"
            )
        return None
    try:
        parts = urlsplit(text)
    except ValueError:  # an unbalanced "[" of an IPv6 address
        parts = None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"--host must be an http:// or https:// URL with a host name, got {host!r}"
        )
    try:
        port = parts.port  # ValueError when out of range or not a number
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError(f"--host must have a port from 1 to 65535 (or none), got {host!r}")
    if parts.query or parts.fragment or "?" in text or "#" in text or "@" in parts.netloc:
        raise ValueError(
            f"--host must be a base URL without query, fragment or credentials, got {host!r}"
        )
    return text.rstrip("/")


def check_users(shape: str | None, options: Any) -> None:
    """Refuse ``--users``/``--spawn-rate`` alongside a shape, which would silently ignore them."""
    given = [flag for flag, attr in (("--users", "num_users"), ("--spawn-rate", "spawn_rate"))
             if getattr(options, attr, None) is not None]  # fmt: skip
    if shape and given:
        raise ValueError(
            f"{'/'.join(given)} cannot be used with LOAD_SHAPE={shape}: the shape sets the users "
            "from LOAD_RPS and LOAD_USER_RPS (leave them out, or unset LOAD_SHAPE)"
        )


def check_tags(options: Any) -> None:
    """Refuse ``--tags``: no task of the locustfile has a tag, so it would select none and every
    user would fail with a traceback, sending nothing (``--exclude-tags`` excludes nothing)."""
    if getattr(options, "tags", None) is not None:
        raise ValueError(
            f"--tags {' '.join(options.tags)}: no task of this locustfile has a tag, so none would run"
        )


def check_web_host(web_host: str | None) -> None:
    """Refuse a web UI bound beyond loopback (``*``, ``""``, ``0.0.0.0``, a LAN address)."""
    text = (web_host or "").strip().strip("[]")
    if text.lower() == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(text).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(
            f"--web-host must be a loopback address such as {WEB_HOST} (the web UI has no "
            f"login), got {web_host!r}; use --headless to run without it"
        )


def check(options: Any, shape: str | None, *, worker: bool = False) -> str | None:
    """Every check above for Locust's parsed options; the base URL for ``--host``."""
    if worker:  # a worker gets the host and the users from its master
        return getattr(options, "host", None)
    headless = bool(getattr(options, "headless", False))
    host = check_host(getattr(options, "host", None), required=headless)
    check_users(shape, options)
    check_tags(options)
    if not headless:
        check_web_host(getattr(options, "web_host", None))
    return host
