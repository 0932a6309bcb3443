"""Vendor firmware manager: collect Apple firmware, package it as vendorfw/firmware.cpio."""

__version__ = "0.1.0"
