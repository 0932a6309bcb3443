"""The Session factory: one configured ``requests.Session`` for the whole run.

Nothing here reads ``os.environ``: ``installer/cli.py`` turns the environment into a
:class:`NetConfig` (see :func:`proxies_from_env`) and passes it down.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from installer import __version__


@dataclass(frozen=True, slots=True)
class NetConfig:
    """How to talk HTTP: identity, proxies, timeouts, pool size."""

    user_agent: str = f"pippin/{__version__}"
    proxies: Mapping[str, str] = field(default_factory=dict)  # scheme -> proxy URL
    no_proxy: tuple[str, ...] = ()  # host suffixes that bypass the proxy
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    pool_size: int = 16

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)


def proxies_from_env(env: Mapping[str, str]) -> tuple[dict[str, str], tuple[str, ...]]:
    """Proxy settings from an environment mapping (lower case wins, as in curl)."""

    def get(name: str) -> str:
        return env.get(name) or env.get(name.upper()) or ""

    proxies: dict[str, str] = {}
    for scheme in ("http", "https"):
        value = get(f"{scheme}_proxy") or get("all_proxy")
        if value:
            proxies[scheme] = value
    no_proxy = tuple(h.strip().lstrip(".").lower() for h in get("no_proxy").split(",")
                     if h.strip())
    return proxies, no_proxy


def _bypass(url: str, no_proxy: tuple[str, ...]) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return any(n == "*" or host == n or host.endswith("." + n) for n in no_proxy)


class PippinSession(requests.Session):
    """A Session that honours its own ``no_proxy`` list (``trust_env`` is off)."""

    def __init__(self, no_proxy: tuple[str, ...]) -> None:
        super().__init__()
        self.no_proxy = no_proxy

    def request(self, method: str | bytes, url: str | bytes, *args: Any,
                **kwargs: Any) -> requests.Response:
        u = url.decode() if isinstance(url, bytes) else url
        if self.no_proxy and _bypass(u, self.no_proxy):
            # None values remove the session's proxies for this request.
            kwargs["proxies"] = {"http": None, "https": None}
        return super().request(method, url, *args, **kwargs)


def make_session(cfg: NetConfig) -> requests.Session:
    """A Session with a User-Agent, connect retries and explicit proxies.

    Only connection setup is retried here; status and read failures are retried (with
    resume) by the callers that know what a partial answer is worth.
    """
    s = PippinSession(cfg.no_proxy)
    s.trust_env = False  # the environment reaches us through NetConfig only
    s.headers["User-Agent"] = cfg.user_agent
    s.proxies.update(cfg.proxies)
    retry = Retry(total=3, connect=3, read=0, status=0, other=0, redirect=5,
                  backoff_factor=0.2, raise_on_status=False)
    adapter = HTTPAdapter(max_retries=retry, pool_connections=4, pool_maxsize=cfg.pool_size)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    return s
