"""One screen per install step; each ends with ``dismiss(value)`` (or :data:`BACK`)."""
