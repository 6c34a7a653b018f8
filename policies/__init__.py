"""Policies: versioned TOML data and the pure functions that read and evaluate them."""
