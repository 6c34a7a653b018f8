"""Proofs of integrity: RFC 3161 timestamps (and, to come, RFC 4998 evidence records)."""
