"""The cost of the hash-chained custody log: appending events and auditing them, against the
same rows written and read without the chain, in the same run on the same catalog (SQLite).

Appending: N events in batches through ``record_events`` (each batch one entry: every event
hashed, the entry's Merkle root, the entry placed in the chain as its transaction commits)
against a plain batched INSERT of the same columns. Auditing: ``custos audit verify``'s check
(every event and entry recomputed, links included) against streaming the same rows with their
links.

Run: .venv/bin/python bench/custody.py [--events 100000] [--batch 1000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
if str(PROJECT_DIR) not in sys.path:  # run as `python bench/custody.py` from anywhere
    sys.path.insert(0, str(PROJECT_DIR))

from sqlalchemy import insert, select  # noqa: E402

from archive.audit import verify_log  # noqa: E402
from archive.catalog.tables import Event, EventLink  # noqa: E402
from archive.config import load_settings  # noqa: E402
from archive.custody import new_event, record_events  # noqa: E402
from archive.model import Link  # noqa: E402
from archive.services import open_services  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(data_dir=Path(tmp), environ={}, overrides={"fsync": False})
        services = open_services(settings)
        try:
            batches = [
                [
                    new_event(
                        "fixity check",
                        "success",
                        f"sha512 of file {b * args.batch + i} matches the catalog",
                        links=[Link("file", f"bag/data/f{b * args.batch + i}.bin")],
                    )
                    for i in range(args.batch)
                ]
                for b in range(args.events // args.batch)
            ]
            # Baseline: the same rows and links into the same tables (same indexes) of a second
            # catalog, batched, as the log was written before it was chained.
            other = open_services(
                load_settings(data_dir=Path(tmp) / "b", environ={}, overrides={"fsync": False})
            )
            plain = Event.__table__
            plain_links = EventLink.__table__
            start = time.perf_counter()
            for b, batch in enumerate(batches):
                with other.session_scope() as session:
                    # As the log did before it was chained: rows with RETURNING (the links
                    # need their ids), then the links.
                    ids = session.execute(
                        insert(plain).returning(
                            plain.c.uuid, plain.c.id, sort_by_parameter_order=True
                        ),
                        [
                            {
                                "uuid": e.uuid,
                                "type": e.type,
                                "occurred_at": e.occurred_at,
                                "agent": e.agent,
                                "outcome": e.outcome,
                                "detail": e.detail,
                                "chain": f"baseline-{b}",
                                "seq": n,
                                "prev_hash": "",
                                "hash": "",
                            }
                            for n, e in enumerate(batch)
                        ],
                    )
                    by_uuid = dict(ids.all())
                    session.execute(
                        insert(plain_links),
                        [
                            {
                                "event_id": by_uuid[e.uuid],
                                "object_type": link.object_type,
                                "object_id": link.object_id,
                                "role": link.role,
                            }
                            for e in batch
                            for link in e.links
                        ],
                    )
            plain_append = time.perf_counter() - start
            other.close()

            start = time.perf_counter()
            for batch in batches:
                with services.session_scope() as session:
                    record_events(session, batch)
            chained_append = time.perf_counter() - start

            start = time.perf_counter()
            with services.sessions() as session:
                for _ in session.execute(select(Event).order_by(Event.seq)).scalars():
                    pass
                for _ in session.execute(select(EventLink)).scalars():
                    pass
            plain_read = time.perf_counter() - start

            start = time.perf_counter()
            report = verify_log(services)
            audit = time.perf_counter() - start
            assert report.ok and report.events == args.events, report.problems[:3]
        finally:
            services.close()

    n = args.events
    print(f"custody log: {n:,} events in batches of {args.batch:,}, SQLite, CPUs: {os.cpu_count()}")
    print()
    print(f"  {'case':44} {'events/s':>10}")
    print(f"  {'append, plain INSERT (baseline)':44} {n / plain_append:>10,.0f}")
    print(f"  {'append, hash-chained (record_events)':44} {n / chained_append:>10,.0f}")
    print(f"  {'read rows and links (baseline)':44} {n / plain_read:>10,.0f}")
    print(f"  {'audit: every entry recomputed (verify_log)':44} {n / audit:>10,.0f}")
    print()
    print(f"  append: chained / plain = {plain_append / chained_append:.2f}x")
    print(f"  audit: verify / plain read = {plain_read / audit:.2f}x")


if __name__ == "__main__":
    main()
