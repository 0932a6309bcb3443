"""Releases: the bundle builder (:mod:`.bundle`, :mod:`.wheels`) and the ``install``
bootstrap template (``bootstrap.sh``) that ``scripts/make-release`` puts together."""
