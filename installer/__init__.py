"""Pippin installer: catalog, restore-image streaming, disk planning, backends, boot chain."""

__version__ = "0.1.0"
