"""The service API and the public reading room.

Empty for now: the access-tier issue builds it over the same services as the CLI.
"""
