"""Unlearning method plugins (one module per method, its config beside it)."""
