"""The public search index: what researchers and anonymous readers may find, and nothing else.

:func:`index_hook` runs whenever a package's catalog rows are (re)written (ingest, format
identification, a tier change, ``custos catalog rebuild``; see
:func:`archive.catalog.index.run_index_hooks`) and replaces the package's entries: one for the
package (title, description, bag-info) and one per payload file (its path's words, its format,
the text extracted from it by the characterisation job where there is some), each only if
:func:`access.decisions.rules.may_see` allows it. ``audience`` 1: anyone (purpose
``public``); 2: researchers stating the purpose ``research``. Material no public reader may
see never enters the table, so no count, facet, total or timing of a search can depend on it.

:func:`search` runs a query: SQLite FTS5 on the embedded default, PostgreSQL full-text search
(``to_tsvector('simple', …)`` with a GIN index) at scale. Each result is checked again against
the stored assignment before it is returned (fail closed if the index were ever stale).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import delete, insert, select, text
from sqlalchemy.orm import Session

from access.decisions.rules import (
    ANONYMOUS,
    Principal,
    Rules,
    access_policy,
    load_rules,
    may_see,
    rules_from_rows,
    today,
)
from archive.catalog.queries import AssignmentRow, merge_access_rows
from archive.catalog.tables import (
    Deposit,
    Depositor,
    ExtractedText,
    File,
    Package,
    SearchEntry,
)
from archive.errors import InputRejected
from archive.findings import Finding
from archive.model import AccessRow
from archive.storage.primary import Primary
from archive.storage.replica import ObjectMissing
from policies.schema import AccessPolicy

RESEARCHER = Principal("index", "researcher")
#: (audience, reader, purpose): the public readers an entry may be open to, most open first.
AUDIENCES = ((1, ANONYMOUS, "public"), (2, RESEARCHER, "research"))
PAGE_MAX = 100
QUERY_MAX = 256
_WORD = re.compile(r"\w+", re.UNICODE)
FACETS = ("depositor", "year", "format")


def audience_of(policy: AccessPolicy, rules: Rules, path: str) -> int | None:
    """The most open audience that may read ``path``'s metadata, or None."""
    for level, reader, purpose in AUDIENCES:
        allowed, _ = may_see(
            policy, rules, path, reader=reader, action="read-metadata", purpose=purpose
        )
        if allowed:
            return level
    return None


def _words(value: str) -> str:
    return " ".join(_WORD.findall(value.replace("_", " ")))


def index_package(session: Session, package_id: str, policy: AccessPolicy) -> int:
    """Replace the package's search entries; return how many it now has."""
    session.execute(delete(SearchEntry).where(SearchEntry.package_id == package_id))
    row = session.execute(
        select(Package.title, Depositor.name, Deposit.received_at)
        .join(Depositor, Depositor.id == Package.depositor_id)
        .join(Deposit, Deposit.id == Package.deposit_id)
        .where(Package.id == package_id)
    ).first()
    if row is None:
        return 0
    title, depositor, received = row
    rules = load_rules(session, package_id, depositor)
    package_audience = audience_of(policy, rules, "")
    if package_audience is None:
        return 0
    info = _bag_info(session, package_id)
    year = received.year
    entries: list[dict[str, Any]] = [
        {
            "package_id": package_id,
            "kind": "package",
            "path": "",
            "title": title,
            "depositor": depositor,
            "year": year,
            "format": "",
            "size": 0,
            "audience": package_audience,
            "document": " ".join([title, depositor, *info]),
        }
    ]
    files = session.execute(
        select(File.logical_path, File.size, File.format_name, File.puid, File.sha512)
        .where(File.package_id == package_id, File.role == "payload")
        .order_by(File.logical_path)
    ).all()
    visible = []
    for logical, size, format_name, puid, sha512 in files:
        path = logical.removeprefix("bag/")
        level = audience_of(policy, rules, path)
        if level is not None:
            visible.append((path, size, format_name, puid, sha512, level))
    session.execute(insert(SearchEntry), entries)
    count = len(entries)
    # In batches: the extracted text of a large package need not be held at once.
    for start in range(0, len(visible), 1000):
        batch = visible[start : start + 1000]
        # Extracted text only for what a public reader may see (decided just above): the
        # text of anything else is never read here, so it cannot reach the index.
        texts = _texts(session, [v[4] for v in batch])
        entries = [
            {
                "package_id": package_id,
                "kind": "file",
                "path": path,
                "title": title,
                "depositor": depositor,
                "year": year,
                "format": format_name or "",
                "size": size,
                "audience": max(level, package_audience),
                "document": " ".join(
                    [
                        _words(path.removeprefix("data/")),
                        format_name or "",
                        puid or "",
                        texts.get(sha512, ""),
                    ]
                ),
            }
            for path, size, format_name, puid, sha512, level in batch
        ]
        if entries:
            session.execute(insert(SearchEntry), entries)
        count += len(entries)
    return count


def _texts(session: Session, digests: list[str]) -> dict[str, str]:
    """The extracted text held for each of ``digests`` that has some (``extracted_texts``,
    filled by the characterisation job; see ``ingest/characterise.py``)."""
    out: dict[str, str] = {}
    unique = sorted(set(digests))
    for i in range(0, len(unique), 500):
        out.update(
            session.execute(
                select(ExtractedText.sha512, ExtractedText.text).where(
                    ExtractedText.sha512.in_(unique[i : i + 500]), ExtractedText.outcome == "text"
                )
            ).all()
        )
    return out


def _bag_info(session: Session, package_id: str) -> list[str]:
    """The values of the package's bag-info (``custos/bag-info.json`` in the object, read from
    the primary the session's services hold). None when the object holds none or it is not
    JSON; a primary that cannot be read raises :class:`StorageError` (the caller's
    transaction is aborted rather than the package indexed without its bag-info)."""
    primary: Primary | None = session.info.get("primary")
    if primary is None:
        return []
    row = session.execute(
        select(Package.object_path, File.content_path)
        .join(File, File.package_id == Package.id)
        .where(
            Package.id == package_id,
            File.logical_path == "custos/bag-info.json",
            File.sealed_tier.is_(None),  # encrypted: the bag holds protected files
        )
        .order_by(File.version.desc())
        .limit(1)
    ).first()
    if row is None:
        return []
    try:
        info = json.loads(primary.object(row[0]).read_bytes(row[1]))
    except (ObjectMissing, ValueError):
        return []
    if not isinstance(info, dict):
        return []
    values: list[str] = []
    for key, value in info.items():
        if key in ("Payload-Oxum", "Bag-Software-Agent", "Bag-Size") or key.startswith(
            ("Access-", "Consent-")
        ):
            continue
        values += value if isinstance(value, list) else [str(value)]
    return values


def index_hook(session: Session, package_id: str) -> None:
    """The ``custos.index_hooks`` entry point: keep the package's public entries current."""
    index_package(session, package_id, access_policy(session.info.get("settings")))


def reindex_all(session: Session, policy: AccessPolicy) -> tuple[int, int]:
    """Rebuild the whole index; return (packages, entries). The caller commits."""
    session.execute(delete(SearchEntry))
    ids = list(session.execute(select(Package.id).order_by(Package.id)).scalars())
    return len(ids), sum(index_package(session, pid, policy) for pid in ids)


# --- queries ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hit:
    package_id: str
    kind: str
    path: str
    title: str
    depositor: str
    year: int
    format: str
    size: int


@dataclass
class SearchResult:
    """A page of hits, the number of matches and the facets over them.

    Counting stops at :data:`WINDOW` matches: past it, ``total`` is ``WINDOW`` and
    ``total_exact`` is false (shown as "1,000+"), and facets count the first ``WINDOW``
    matches in index order. This bounds the work of every query whatever it matches."""

    query: str
    total: int
    offset: int
    limit: int
    hits: list[Hit] = field(default_factory=list)
    facets: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    total_exact: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "total": self.total,
            "total_exact": self.total_exact,
            "offset": self.offset,
            "limit": self.limit,
            "results": [
                {
                    "package_id": h.package_id,
                    "kind": h.kind,
                    "path": h.path,
                    "title": h.title,
                    "depositor": h.depositor,
                    "year": h.year,
                    "format": h.format,
                    "size": h.size,
                }
                for h in self.hits
            ],
            "facets": {
                name: [{"value": v, "count": n} for v, n in values]
                for name, values in self.facets.items()
            },
        }


@dataclass(frozen=True, slots=True)
class Filters:
    depositor: str | None = None
    year: int | None = None
    format: str | None = None


def audience_for(reader: Principal, purpose: str | None) -> tuple[int, str]:
    """The audience level a public reader reaches, and the purpose it rests on.

    Raises :class:`InputRejected` for a purpose the public search does not serve."""
    stated = purpose or ("research" if reader.role == "researcher" else "public")
    if stated == "public":
        return 1, stated
    if stated == "research" and reader.role == "researcher":
        return 2, stated
    raise InputRejected(
        f"the purpose {stated!r} is not one the public search serves to {reader.role} readers",
        [Finding("SEARCH-PURPOSE", "error", "use public (anyone) or research (researchers)")],
        hint="state purpose=public, or purpose=research with a researcher's token",
    )


def match_terms(query: str) -> list[str]:
    """The words of a query (letters and digits); everything else is ignored."""
    if len(query) > QUERY_MAX:
        raise InputRejected(
            "the search query is too long",
            [Finding("SEARCH-QUERY", "error", f"at most {QUERY_MAX} characters", "q")],
            hint="search with fewer words",
        )
    return [w.lower() for w in _WORD.findall(query)][:16]


#: The most matches a query counts (total and facets); pages reach no further.
WINDOW = 1_000
#: Every column a window needs: the facets, and the page's entries (no second lookup).
_WINDOW_COLUMNS = (
    "e.id, e.depositor, e.year, e.format, e.package_id, e.kind, e.path, e.title, e.size"
)


def _plan_for_words(session: Session) -> None:
    """Set, for the rest of this transaction, how PostgreSQL plans a word search: each
    statement for its own words (psycopg's prepared statements would otherwise get one plan
    for every word); no index scans (see :func:`_window`); no JIT compilation (the planner's
    estimates for a common word cross ``jit_above_cost``, and compiling costs more than these
    short statements run); no parallel workers (they take cores the other requests wait
    for). The settings end with the transaction, and the search's only later statement (the
    page's recheck, a lookup by package id) plans well under them: a caller ends the
    transaction after the search rather than pay a round trip to reset them."""
    session.execute(
        text(
            "SELECT set_config('plan_cache_mode', 'force_custom_plan', true), "
            "set_config('enable_indexscan', 'off', true), "
            "set_config('jit', 'off', true), "
            "set_config('max_parallel_workers_per_gather', '0', true)"
        )
    )


@dataclass(frozen=True, slots=True)
class Window:
    """What one query's window holds: its size, the facet counts, the page's entries."""

    size: int
    facets: dict[str, list[tuple[str, int]]]
    page: list[Hit]
    #: The stored access records of the page's packages, read by the same statement.
    access: dict[str, tuple[AccessRow, ...]]


def _window(
    session: Session,
    terms: Sequence[str],
    audience: int,
    filters: Filters,
    *,
    offset: int,
    limit: int,
) -> Window:
    """Count, facet and page the first :data:`WINDOW` matches, in one statement, inside the
    database, which also reads the page's stored access records.

    The scan stops at :data:`WINDOW` entries: FTS5 in row order on SQLite; on PostgreSQL the
    GIN-indexed tsvector, or for a very common word the table itself, in storage order (rows
    are appended, so that is row order but for space reused after deletions). Browsing
    without words walks the entries (or a facet's index) in row order."""
    where = ["e.audience <= :audience"]
    params: dict[str, Any] = {
        "audience": audience,
        "window": WINDOW,
        "offset": offset,
        "limit": limit,
    }
    for name in FACETS:
        value = getattr(filters, name)
        if value is not None:
            where.append(f"e.{name} = :{name}")
            params[name] = value
    sqlite = session.get_bind().dialect.name == "sqlite"
    if terms and sqlite:
        params["match"] = " ".join('"' + t.replace('"', "") + '"' for t in terms)
        matches = (
            f"SELECT {_WINDOW_COLUMNS} FROM search_fts "
            "JOIN search_entries e ON e.id = search_fts.rowid "
            f"WHERE search_fts MATCH :match AND {' AND '.join(where)} "
            "ORDER BY search_fts.rowid LIMIT :window"
        )
    elif terms:
        # PostgreSQL: the matching rows are read in storage order until the window is full,
        # found through the GIN index, or for a very common word by reading the table in
        # storage order (a bitmap scan of the index gathers every match before the LIMIT
        # applies: 135,000 of them, 25 ms, where the table scan finds the first 1,000 in
        # 5 ms). The planner chooses between the two from the word's frequency. Left to
        # itself it would rather walk the primary key and test every row's tsvector, which
        # is slow for any word that is neither rare nor common, so index scans are off; and
        # psycopg's prepared statements would get one plan for every word.
        _plan_for_words(session)
        params["match"] = " ".join(terms)
        where.append("e.tsv @@ plainto_tsquery('simple', :match)")
        matches = (
            f"SELECT {_WINDOW_COLUMNS} FROM search_entries e "
            f"WHERE {' AND '.join(where)} LIMIT :window"
        )
    else:
        matches = (
            f"SELECT {_WINDOW_COLUMNS} FROM search_entries e "
            f"WHERE {' AND '.join(where)} ORDER BY e.id LIMIT :window"
        )
    # The page's columns, empty (but typed, for PostgreSQL's UNION) in the count rows.
    none = ", ".join(f"CAST(NULL AS {t})" for t in ("TEXT",) * 5 + ("INTEGER", "TEXT", "BIGINT"))
    # Kinds 5 and 6: the stored access records (tier assignments, consents) of the page's
    # packages, for the recheck, in the same statement (one round trip fewer) and so from
    # the same snapshot as the page. Their columns ride in the page's text columns.
    sql = (
        f"WITH m AS MATERIALIZED ({matches}), "
        "p AS MATERIALIZED (SELECT * FROM m ORDER BY m.id LIMIT :limit OFFSET :offset) "
        f"SELECT 0, '', count(*), {none} FROM m "
        f"UNION ALL SELECT 1, depositor, count(*), {none} FROM m WHERE depositor <> '' "
        "GROUP BY depositor "
        f"UNION ALL SELECT 2, CAST(year AS TEXT), count(*), {none} FROM m WHERE year > 0 "
        "GROUP BY year "
        f"UNION ALL SELECT 3, format, count(*), {none} FROM m WHERE format <> '' "
        "GROUP BY format "
        "UNION ALL SELECT 4, '', p.id, p.package_id, p.kind, p.path, p.title, "
        "p.depositor, p.year, p.format, p.size FROM p "
        "UNION ALL SELECT 5, a.package_id, 0, a.path, a.tier, a.successor, a.legal_basis, "
        "a.sunset_basis, CAST(NULL AS INTEGER), CAST(a.sunset AS TEXT), CAST(NULL AS BIGINT) "
        "FROM access_assignments a WHERE a.package_id IN (SELECT package_id FROM p) "
        "UNION ALL SELECT 6, c.package_id, 0, c.path, c.scopes, CAST(NULL AS TEXT), "
        "CAST(NULL AS TEXT), CAST(NULL AS TEXT), CAST(NULL AS INTEGER), CAST(NULL AS TEXT), "
        "CAST(NULL AS BIGINT) FROM consents c WHERE c.package_id IN (SELECT package_id FROM p)"
    )
    size = 0
    page: list[tuple[int, Hit]] = []
    assigned: dict[str, list[AssignmentRow]] = {}
    consents: dict[str, dict[str, str]] = {}
    facets: dict[str, list[tuple[str, int]]] = {name: [] for name in FACETS}
    for kind, value, number, *entry in session.execute(text(sql), params):
        if kind == 0:
            size = int(number)
        elif kind == 4:
            page.append((int(number), Hit(*entry)))
        elif kind == 5:
            path, tier, successor, basis, sunset_basis, _, sunset, _ = entry
            day = date.fromisoformat(str(sunset)[:10]) if sunset else None
            assigned.setdefault(value, []).append((path, tier, day, successor, basis, sunset_basis))
        elif kind == 6:
            consents.setdefault(value, {})[entry[0]] = entry[1]
        else:
            facets[FACETS[kind - 1]].append((str(value), int(number)))
    for name, counts in facets.items():
        facets[name] = sorted(counts, key=lambda kv: (-kv[1], kv[0]))[:20]
    hits = [hit for _, hit in sorted(page, key=lambda item: item[0])]
    access = {
        pid: merge_access_rows(assigned.get(pid, []), consents.get(pid, {}))
        for pid in {h.package_id for h in hits}
    }
    return Window(size, facets, hits, access)


def search(
    session: Session,
    policy: AccessPolicy,
    query: str,
    *,
    reader: Principal = ANONYMOUS,
    purpose: str | None = None,
    filters: Filters = Filters(),
    offset: int = 0,
    limit: int = 20,
) -> SearchResult:
    """Search the public index as ``reader``; an empty query browses everything visible.
    On PostgreSQL a word search sets how the rest of the transaction is planned
    (:func:`_plan_for_words`): end the transaction after it.

    Raises :class:`InputRejected` for a bad query, purpose, offset or limit."""
    level, _ = audience_for(reader, purpose)
    if not 0 <= offset < WINDOW or not 1 <= limit <= PAGE_MAX:
        raise InputRejected(
            "the page asked for is out of range",
            [Finding("SEARCH-PAGE", "error", f"0 ≤ offset < {WINDOW}, 1 ≤ limit ≤ {PAGE_MAX}")],
            hint="narrow the search with more words or a facet",
        )
    terms = match_terms(query)
    window = _window(session, terms, level, filters, offset=offset, limit=limit)
    hits = _recheck(policy, window, level)
    exact = window.size < WINDOW
    return SearchResult(query, window.size, offset, limit, hits, window.facets, exact)


def _recheck(policy: AccessPolicy, window: Window, level: int) -> list[Hit]:
    """Each hit checked against the stored assignment again (the index is derived data)."""
    _, reader, purpose = AUDIENCES[level - 1]
    rules = {
        h.package_id: rules_from_rows(h.package_id, h.depositor, window.access[h.package_id])
        for h in window.page
    }
    day = today()
    return [
        h
        for h in window.page
        if may_see(
            policy,
            rules[h.package_id],
            h.path,
            reader=reader,
            action="read-metadata",
            purpose=purpose,
            on=day,
        )[0]
    ]
