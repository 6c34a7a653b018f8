"""Custos core: domain values, catalog, storage, custody events, configuration and the CLI shell.

Nothing in this package imports from ``ingest``, ``fixity``, ``migration`` or ``api``.
"""
