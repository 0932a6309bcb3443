"""Reusable pieces of the install screens."""
