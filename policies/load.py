"""Load policy files: the shipped defaults beside this module, or a folder named in settings.

Each file is parsed once per process, and again only when it changes on disk (its
modification time, size or inode): the API, the jobs and the commands ask for a policy on
every request or package, and a ``stat`` is all that costs. A file that cannot be read or
is invalid is never cached, so it is reported at every use until it is fixed.
"""

from __future__ import annotations

import threading
import tomllib
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from policies.formats import FormatPolicy
from policies.preservation import FixityPolicy, ReplicationPolicy
from policies.schema import AccessPolicy, IngestPolicy

POLICY_DIR = Path(__file__).resolve().parent

P = TypeVar("P", bound=BaseModel)


class PolicyFileError(ValueError):
    """A policy file is missing or does not match its schema (translated by callers)."""


_LOADED: dict[tuple[Path, type[BaseModel]], tuple[tuple[int, int, int], BaseModel]] = {}
_LOCK = threading.Lock()


def _load(model: type[P], path: Path) -> P:
    try:
        st = path.stat()
    except FileNotFoundError as exc:
        raise PolicyFileError(f"policy file {path} does not exist") from exc
    except OSError as exc:
        raise PolicyFileError(f"policy file {path} cannot be read: {exc}") from exc
    stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
    with _LOCK:
        held = _LOADED.get((path, model))
    if held is not None and held[0] == stamp:
        return held[1]  # type: ignore[return-value]
    value = _parse(model, path)
    with _LOCK:
        _LOADED[(path, model)] = (stamp, value)
    return value


def _parse(model: type[P], path: Path) -> P:
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise PolicyFileError(f"policy file {path} does not exist") from exc
    except OSError as exc:
        raise PolicyFileError(f"policy file {path} cannot be read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise PolicyFileError(f"policy file {path} is not valid TOML: {exc}") from exc
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'policy'}: {e['msg']}" for e in exc.errors()
        )
        raise PolicyFileError(f"policy file {path} is invalid: {problems}") from exc


def load_ingest_policy(folder: Path | None = None) -> IngestPolicy:
    return _load(IngestPolicy, (folder or POLICY_DIR) / "ingest.toml")


def load_access_policy(folder: Path | None = None) -> AccessPolicy:
    """``access.toml`` from ``folder`` (default: the shipped one); raises PolicyFileError."""
    return _load(AccessPolicy, (folder or POLICY_DIR) / "access.toml")


def load_format_policy(folder: Path | None = None) -> FormatPolicy:
    """``formats.toml`` from ``folder`` (default: the shipped one); raises PolicyFileError."""
    return _load(FormatPolicy, (folder or POLICY_DIR) / "formats.toml")


def load_replication_policy(folder: Path | None = None) -> ReplicationPolicy:
    """``replication.toml`` from ``folder`` (default: the shipped one); raises PolicyFileError."""
    return _load(ReplicationPolicy, (folder or POLICY_DIR) / "replication.toml")


def load_fixity_policy(folder: Path | None = None) -> FixityPolicy:
    """``fixity.toml`` from ``folder`` (default: the shipped one); raises PolicyFileError."""
    return _load(FixityPolicy, (folder or POLICY_DIR) / "fixity.toml")
