"""Disk model, macOS plist parsing, the pure planner and its operations."""
