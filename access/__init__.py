"""Access: what may leave the archive, and to whom (court bundles; later, tier decisions)."""
