"""Archival storage: the OCFL object format and the backends that hold storage roots."""
