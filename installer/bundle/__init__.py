"""Offline bundles: `pippin bundle create/verify` and installing from one."""
