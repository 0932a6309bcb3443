"""The embedded default on a machine that is not a Mac (DESIGN.md "The embedded default").

``restoreimage``: a synthetic restore image (generated, realistic layout); ``catalog``: the
demo catalog and its OS packages, generated into the cache directory on first use;
``server``: a loopback HTTP server with Range support that serves them, so an install runs
the real download path. ``zipwriter``: the zip writer both generators use.
"""
