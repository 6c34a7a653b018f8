"""Format identification is cached by content digest: the same bytes are never identified
twice, and the result says where it came from."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import SAMPLE
from tests.functional.test_cli import custos
from tests.helpers import make_bag


def test_the_same_bytes_are_identified_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    code, first, _ = custos(
        data, "ingest", str(SAMPLE), "--depositor", "S", "--new-depositor", "--json"
    )
    assert code == 0 and first["identification"]["status"] == "ok"
    pdf = (SAMPLE / "data" / "documents" / "site-report.pdf").read_bytes()
    bag = make_bag(tmp_path / "bag", {"copy-of-report.pdf": pdf, "new.txt": b"not seen before\n"})
    code, second, _ = custos(
        data, "ingest", str(bag), "--depositor", "S", "--new-depositor", "--json"
    )
    assert code == 0
    code, shown, _ = custos(data, "show", second["package_id"], "--json")
    events = {
        next(link["object_id"] for link in e["links"] if link["object_type"] == "file"): e
        for e in shown["events"]
        if e["type"] == "format identification"
    }
    cached = events["bag/data/copy-of-report.pdf"]
    assert "the same bytes were identified before" in cached["detail"]
    assert "identified before" not in events["bag/data/new.txt"]["detail"]
    files = {f["logical_path"]: f for f in shown["files"]}
    code, original, _ = custos(data, "show", first["package_id"], "--json")
    source = next(
        f for f in original["files"] if f["logical_path"] == "bag/data/documents/site-report.pdf"
    )
    assert files["bag/data/copy-of-report.pdf"]["puid"] == source["puid"] is not None
    formats = json.loads(
        (Path(shown["storage_path"]) / "v2/content/custos/formats.json").read_text()
    )
    assert formats["bag/data/copy-of-report.pdf"]["basis"] == "digest cache"
    assert formats["bag/data/new.txt"]["basis"] != "digest cache"
