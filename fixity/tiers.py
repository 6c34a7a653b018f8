"""The tier of each file for replication and fixity, from the catalog's access assignments
(``access_assignments``) and the pure rule in :func:`policies.preservation.file_tier`: a payload
file has its own tier; everything else in the object takes the package's most closed tier.

A replication plan records, as JSON in ``replication_plans.tier_locations``, the locations
each tier's payload files go to and how many content files each location holds:
``{"tiers": {"public": ["offsite"], …}, "files": {"offsite": 12, …}}``."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from archive.catalog.tables import AccessAssignment, File
from policies.preservation import Assigned, file_tier, package_tier


@dataclass(frozen=True, slots=True)
class PackageTiers:
    """``governing``: the package's most closed tier; ``files``: content path -> tier."""

    governing: str
    files: dict[str, str]

    def of(self, content_path: str) -> str:
        """A file's tier; a path the catalog does not list takes the governing tier."""
        return self.files.get(content_path, self.governing)

    @property
    def present(self) -> set[str]:
        return {self.governing, *self.files.values()}


def file_tiers(
    session: Session, package_ids: Iterable[str] | None = None
) -> dict[str, PackageTiers]:
    """Every package's (or those named) governing tier and each of its files' tiers."""
    ids = None if package_ids is None else list(package_ids)
    assigned: dict[str, list[Assigned]] = {}
    stmt = select(AccessAssignment.package_id, AccessAssignment.path, AccessAssignment.tier)
    files = select(File.package_id, File.content_path, File.logical_path)
    if ids is not None:
        stmt = stmt.where(AccessAssignment.package_id.in_(ids))
        files = files.where(File.package_id.in_(ids))
    for pid, path, tier in session.connection().execute(stmt):
        assigned.setdefault(pid, []).append(Assigned(path, tier))
    out: dict[str, PackageTiers] = {}
    for pid, content, logical in session.connection().execute(files):
        found = out.get(pid)
        if found is None:
            rules = assigned.get(pid, [])
            found = out[pid] = PackageTiers(package_tier(a.tier for a in rules), {})
        found.files[content] = file_tier(logical, assigned.get(pid, []), found.governing)
    for pid in ids or ():
        out.setdefault(pid, PackageTiers(package_tier(a.tier for a in assigned.get(pid, [])), {}))
    return out


def layout_json(by_tier: Mapping[str, Sequence[str]], files: Mapping[str, int]) -> str:
    """The plan's locations per tier and content files per location, as stored."""
    return json.dumps(
        {"tiers": {t: list(v) for t, v in sorted(by_tier.items())}, "files": dict(files)},
        sort_keys=True,
    )


def parse_layout(text: str) -> tuple[dict[str, tuple[str, ...]], dict[str, int]]:
    """Inverse of :func:`layout_json` (``""``, a plan made before: nothing)."""
    if not text:
        return {}, {}
    data = json.loads(text)
    return {t: tuple(v) for t, v in data["tiers"].items()}, dict(data["files"])
