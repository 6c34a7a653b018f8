"""Damage stored copies behind the archive's back: in a folder, in place; in S3, where a
locked version cannot be altered, a new latest version (or a delete marker) over it."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

from archive.storage.replica import LocalFolderLocation, ReplicaLocation
from archive.storage.s3 import S3Location

KINDS = ("flip", "truncate", "delete", "replace")


def damaged(data: bytes, kind: str, rng: random.Random) -> bytes | None:
    """The bytes after the fault (None: the copy is gone)."""
    if kind == "flip":
        out = bytearray(data)
        i = rng.randrange(len(out))
        out[i] ^= 1 << rng.randrange(8)
        return bytes(out)
    if kind == "truncate":
        return data[: rng.randrange(len(data))]
    if kind == "replace":
        return os.urandom(len(data))
    return None


def inject(location: ReplicaLocation, key: str, kind: str, rng: random.Random, client: Any) -> None:
    if isinstance(location, LocalFolderLocation):
        path: Path = location.root.joinpath(*key.split("/"))
        after = damaged(path.read_bytes(), kind, rng)
        if after is None:
            path.unlink()
        else:
            path.write_bytes(after)
        return
    assert isinstance(location, S3Location)
    full = location.prefix + key
    data = client.get_object(Bucket=location.bucket, Key=full)["Body"].read()
    after = damaged(data, kind, rng)
    if after is None:
        client.delete_object(Bucket=location.bucket, Key=full)  # a delete marker hides it
    else:
        client.put_object(Bucket=location.bucket, Key=full, Body=after)
