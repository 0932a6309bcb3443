"""The Session factory: one configured ``requests.Session`` for the whole run.

Nothing here reads ``os.environ``: ``installer/cli.py`` turns the environment into a
:class:`NetConfig` (see :func:`proxies_from_env`) and passes it down.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError
from urllib3.util.retry import Retry

from installer import __version__


@dataclass(frozen=True, slots=True)
class NetConfig:
    """How to talk HTTP: identity, proxies, timeouts, pool size."""

    user_agent: str = f"pippin/{__version__}"
    proxies: Mapping[str, str] = field(default_factory=dict)  # scheme -> proxy URL
    no_proxy: tuple[str, ...] = ()  # host suffixes that bypass the proxy
    #: A host that does not accept a connection this fast counts as unreachable: with no
    #: network every request fails within 5 s (one attempt; refusals are retried twice).
    #: 3 s still covers a lost SYN (Linux resends it after 1 s).
    connect_timeout: float = 3.0
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
    """A Session that honours its own ``no_proxy`` list (``trust_env`` is off) and caps
    every request's connect timeout at ``max_connect`` (callers pass read timeouts)."""

    def __init__(self, no_proxy: tuple[str, ...], max_connect: float = 3.0) -> None:
        super().__init__()
        self.no_proxy = no_proxy
        self.max_connect = max_connect

    def request(self, method: str | bytes, url: str | bytes, *args: Any,
                **kwargs: Any) -> requests.Response:
        u = url.decode() if isinstance(url, bytes) else url
        if self.no_proxy and _bypass(u, self.no_proxy):
            # None values remove the session's proxies for this request.
            kwargs["proxies"] = {"http": None, "https": None}
        t = kwargs.get("timeout")
        if isinstance(t, tuple):
            kwargs["timeout"] = (min(t[0], self.max_connect), t[1])
        elif isinstance(t, int | float):
            kwargs["timeout"] = (min(float(t), self.max_connect), t)
        return super().request(method, url, *args, **kwargs)


class _ConnectRetry(Retry):
    """urllib3's retry, except that a connect timeout is not tried again: a host that does
    not answer a SYN within the connect timeout is unreachable, and waiting for it several
    times over (times every caller's own attempts) made an offline run take 11 s. Refused
    and reset connections are still retried (quickly: they cost no wait)."""

    def increment(self, method: str | None = None, url: str | None = None,
                  response: Any = None, error: Exception | None = None, _pool: Any = None,
                  _stacktrace: Any = None) -> Self:
        if isinstance(error, ConnectTimeoutError) and not isinstance(error,
                                                                    NewConnectionError):
            raise MaxRetryError(_pool, url, error) from error
        return super().increment(method, url, response, error, _pool, _stacktrace)


def make_session(cfg: NetConfig) -> requests.Session:
    """A Session with a User-Agent, connect retries and explicit proxies.

    Only connection setup is retried here; status and read failures are retried (with
    resume) by the callers that know what a partial answer is worth.
    """
    s = PippinSession(cfg.no_proxy, cfg.connect_timeout)
    s.trust_env = False  # the environment reaches us through NetConfig only
    s.headers["User-Agent"] = cfg.user_agent
    s.proxies.update(cfg.proxies)
    retry = _ConnectRetry(total=3, connect=2, read=0, status=0, other=0, redirect=5,
                          backoff_factor=0.2, raise_on_status=False)
    adapter = HTTPAdapter(max_retries=retry, pool_connections=4, pool_maxsize=cfg.pool_size)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    return s
