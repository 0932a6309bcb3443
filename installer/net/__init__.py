"""HTTP plumbing shared by everything that downloads: the Session factory and ranged GETs.

- :func:`installer.net.session.make_session` builds the one ``requests.Session`` (User-Agent,
  connection retries, pool size, proxies given by the caller; it never reads the environment).
- :func:`installer.net.http.get_range` issues a validated ranged GET (206 + exact
  ``Content-Range`` or an error; ``RetryableNetworkError`` marks what a retry may cure).
"""
