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


def file_tiers(session: Session, package_ids: Iterable[str]) -> dict[str, PackageTiers]:
    """The named packages' governing tiers and each of their files' tiers."""
    ids = list(package_ids)
    assigned: dict[str, list[Assigned]] = {}
    stmt = select(AccessAssignment.package_id, AccessAssignment.path, AccessAssignment.tier)
    for pid, path, tier in session.connection().execute(
        stmt.where(AccessAssignment.package_id.in_(ids))
    ):
        assigned.setdefault(pid, []).append(Assigned(path, tier))
    out: dict[str, PackageTiers] = {}
    for pid, content, logical in session.connection().execute(
        select(File.package_id, File.content_path, File.logical_path).where(
            File.package_id.in_(ids)
        )
    ):
        found = out.get(pid)
        if found is None:
            rules = assigned.get(pid, [])
            found = out[pid] = PackageTiers(package_tier(a.tier for a in rules), {})
        found.files[content] = file_tier(logical, assigned.get(pid, []), found.governing)
    for pid in ids:
        out.setdefault(pid, PackageTiers(package_tier(a.tier for a in assigned.get(pid, [])), {}))
    return out


def assignments(session: Session, first: str, last: str) -> dict[str, list[Assigned]]:
    """The access assignments of the packages from ``first`` to ``last`` (in the catalog's
    order of package ids), by package: what :func:`policies.preservation.file_tier` and
    ``package_tier`` take."""
    out: dict[str, list[Assigned]] = {}
    for pid, path, tier in session.connection().execute(
        select(AccessAssignment.package_id, AccessAssignment.path, AccessAssignment.tier).where(
            AccessAssignment.package_id.between(first, last)
        )
    ):
        out.setdefault(pid, []).append(Assigned(path, tier))
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
