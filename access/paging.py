"""Pages of the lists the API serves: where a page starts, how long it is, what it holds.

Every list (a depositor's deposits, the registrars' and archivists' lists) is read a page at
a time: ``offset`` (items skipped, 0 or more) and ``limit`` (1 to :data:`LIMIT_MAX`,
:data:`LIMIT_DEFAULT` when not given). A :class:`Listing` is one page, with how many items
there are in all (``total``) where counting them is cheap, and where the next page starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from archive.errors import InputRejected
from archive.findings import Finding

LIMIT_DEFAULT = 50
LIMIT_MAX = 500
OFFSET_MAX = 10_000_000

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page:
    """Which part of a list to answer. Raises :class:`InputRejected` (``PAGE-INVALID``) for
    an offset or limit out of bounds."""

    offset: int = 0
    limit: int = LIMIT_DEFAULT

    def __post_init__(self) -> None:
        if not (0 <= self.offset <= OFFSET_MAX and 1 <= self.limit <= LIMIT_MAX):
            raise InputRejected(
                f"no such page: offset {self.offset}, limit {self.limit}",
                [
                    Finding(
                        "PAGE-INVALID",
                        "error",
                        f"0 ≤ offset ≤ {OFFSET_MAX} and 1 ≤ limit ≤ {LIMIT_MAX}",
                        "offset, limit",
                    )
                ],
                hint=f"ask for at most {LIMIT_MAX} items at a time; the answer's next_offset "
                "is where the next page starts",
            )

    def of(self, items: Sequence[T]) -> list[T]:
        """This page of a list already read whole (one filtered by the access policy)."""
        return list(items[self.offset : self.offset + self.limit])


@dataclass(frozen=True, slots=True)
class Listing:
    """One page of a list: its items, the page asked for, how many items there are in all
    (``None`` where counting them would cost a scan of the custody log) and whether more
    follow."""

    page: Page
    items: list[dict[str, Any]]
    total: int | None
    more: bool

    @classmethod
    def counted(cls, page: Page, items: list[dict[str, Any]], total: int) -> Listing:
        return cls(page, items, total, page.offset + len(items) < total)

    def as_dict(self, name: str) -> dict[str, Any]:
        """The API's answer: the items under ``name``, then ``offset``, ``limit``, ``total``
        and ``next_offset`` (``null`` on the last page)."""
        return {
            name: self.items,
            "offset": self.page.offset,
            "limit": self.page.limit,
            "total": self.total,
            "next_offset": self.page.offset + len(self.items) if self.more else None,
        }
