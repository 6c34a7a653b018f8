"""Ingest: receive a BagIt bag, refuse what is hostile or incomplete, store it as an OCFL object."""
