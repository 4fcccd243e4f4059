"""The rewrite stage."""
