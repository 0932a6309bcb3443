"""Re-export: the zip writer moved to installer/demo/zipwriter.py (the demo uses it too)."""

from installer.demo.zipwriter import DEFLATED, STORED, ZipWriter, raw_entry, zero_crc

__all__ = ["DEFLATED", "STORED", "ZipWriter", "raw_entry", "zero_crc"]
