"""Install targets: where an install writes beyond the plan's operations."""
