"""Preservation planning, pure: the work the policy asks for, and the plan per format."""

from __future__ import annotations

from migration.plan import HeldFile, Holdings, attempt_key, parse_attempt_key, plan, tasks
from policies.formats import derivative_path
from policies.load import load_format_policy

POLICY = load_format_policy()


def held(pkg: str, path: str, puid: str | None, size: int = 100, name: str = "") -> HeldFile:
    return HeldFile(pkg, f"bag/data/{path}", f"v1/content/bag/data/{path}", size, "0" * 128,
                    puid, name or (f"format {puid}" if puid else None))  # fmt: skip


FILES = (
    held("p1", "a.pdf", "fmt/18", 1000, "Acrobat PDF 1.4"),
    held("p1", "b.mov", "x-fmt/384", 5000, "Quicktime"),
    held("p1", "c.png", "fmt/11", 50, "Portable Network Graphics"),
    held("p2", "d.pdf", "fmt/18", 2000, "Acrobat PDF 1.4"),
    held("p2", "e.dat", None, 7),
    held("p2", "f.xyz", "fmt/999999", 9, "Something rare"),
)


def test_tasks_follow_the_policy_and_skip_what_is_done_or_failed() -> None:
    empty = Holdings(FILES, frozenset(), frozenset())
    todo = {(t.file.package_id, t.file.logical_path, t.pathway_name) for t in tasks(empty, POLICY)}
    assert todo == {
        ("p1", "bag/data/a.pdf", "pdf-to-pdfa-2b"),
        ("p1", "bag/data/b.mov", "video-to-ffv1-mkv"),
        ("p1", "bag/data/b.mov", "video-to-mp4-access"),
        ("p2", "bag/data/d.pdf", "pdf-to-pdfa-2b"),
    }
    first = next(t for t in tasks(empty, POLICY) if t.pathway_name == "video-to-mp4-access")
    assert first.role == "access"
    assert first.output_path == "custos/derivatives/access/bag/data/b.mov.mp4"

    done = frozenset({("p1", derivative_path("preservation", "bag/data/a.pdf", "pdf"))})
    failed = frozenset({("p2", "bag/data/d.pdf", attempt_key("pdf-to-pdfa-2b", POLICY.label))})
    some = Holdings(FILES, done, failed)
    left = {(t.file.logical_path, t.pathway_name) for t in tasks(some, POLICY)}
    assert left == {
        ("bag/data/b.mov", "video-to-ffv1-mkv"),
        ("bag/data/b.mov", "video-to-mp4-access"),
    }
    retried = {
        (t.file.logical_path, t.pathway_name) for t in tasks(some, POLICY, retry_failed=True)
    }
    assert retried == left | {("bag/data/d.pdf", "pdf-to-pdfa-2b")}

    # A failure under an earlier policy version does not hold back the current one.
    old = frozenset({("p2", "bag/data/d.pdf", attempt_key("pdf-to-pdfa-2b", "formats v0"))})
    assert ("bag/data/d.pdf", "pdf-to-pdfa-2b") in {
        (t.file.logical_path, t.pathway_name) for t in tasks(Holdings(FILES, done, old), POLICY)
    }


def test_plan_rows_per_format() -> None:
    done = frozenset(
        {
            ("p1", derivative_path("preservation", "bag/data/a.pdf", "pdf")),
            ("p1", derivative_path("access", "bag/data/b.mov", "mp4")),
        }
    )
    failed = frozenset({("p2", "bag/data/d.pdf", attempt_key("pdf-to-pdfa-2b", POLICY.label))})
    rows = {r.puid: r for r in plan(Holdings(FILES, done, failed), POLICY)}
    pdf = rows["fmt/18"]
    assert (pdf.files, pdf.bytes, pdf.format_name) == (2, 3000, "Acrobat PDF 1.4")
    assert (pdf.action, pdf.risk, pdf.migrate, pdf.access) == (
        "migrate", "medium", "pdf-to-pdfa-2b", None,
    )  # fmt: skip
    assert (pdf.preserved, pdf.access_copies, pdf.failed, pdf.to_do) == (1, 0, 1, 0)
    mov = rows["x-fmt/384"]
    assert (mov.action, mov.risk) == ("migrate+access", "high")
    assert (mov.preserved, mov.access_copies, mov.failed, mov.to_do) == (0, 1, 0, 1)
    png = rows["fmt/11"]
    assert (png.action, png.risk, png.to_do) == ("keep", "low", 0)
    assert rows[None].format_name == "unidentified" and rows[None].action == "no rule"
    assert (rows["fmt/999999"].action, rows["fmt/999999"].risk) == ("no rule", "unknown")
    order = [r.puid for r in plan(Holdings(FILES, done, failed), POLICY)]
    assert order[0] == "x-fmt/384"  # high risk first
    assert order[-2:] == ["fmt/999999", None]  # unknown risk last, larger first


def test_attempt_keys_are_read_back_from_event_details() -> None:
    key = attempt_key("office-to-pdfa-2b", "formats v3")
    assert key == "office-to-pdfa-2b (formats v3)"
    assert parse_attempt_key(f"{key}: no preservation copy: ...") == key
    assert parse_attempt_key("deposit refused (BAG-...)") is None
