"""Migration: preservation planning and format migration pathways.

Empty for now: the format-migration issue builds it; format identification at ingest lives
in :mod:`ingest.identify`.
"""
