"""Seals across an air gap: an archive that reaches no timestamp authority deposits, exports the
roots awaiting a seal (digests only), another archive stamps them, and the tokens imported
complete the evidence records, after which `custos verify` and `custos audit verify` pass.
A token changed on the way, or signed by an authority the archive does not trust, refuses the
whole file and imports nothing; tokens are never imported twice; every crossing is a custody
event."""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.request
from pathlib import Path

from archive.catalog.tables import Event, Seal
from archive.proofs.local_tsa import LocalTSAServer, ensure_pki
from tests.conftest import SAMPLE
from tests.functional.test_cli import custos
from tests.functional.test_seal import query


def _offline(trusted: Path | None) -> dict[str, str]:
    return {
        "CUSTOS_TSA__LOCAL": "false",
        "CUSTOS_TSA__URLS": '["http://127.0.0.1:9/"]',  # the discard port: nothing answers
        "CUSTOS_TSA__ROOTS": json.dumps([str(trusted)] if trusted else []),
        "CUSTOS_TSA__TIMEOUT": "2",
    }


def test_an_archive_with_no_authority_gets_its_seals_across_the_gap(tmp_path: Path) -> None:
    online, offline = tmp_path / "online", tmp_path / "offline"
    root_pem = ensure_pki(online / "tsa")  # the online archive's own authority
    env = _offline(root_pem)
    code, stored, err = custos(
        offline, "ingest", str(SAMPLE), "--depositor", "S", "--new-depositor", "--json", env=env
    )
    assert code == 0 and stored["seal"]["status"] == "pending", err
    package = stored["package_id"]
    assert custos(offline, "verify", package, "--json", env=env)[0] == 3  # not sealed yet

    roots_file = tmp_path / "media" / "roots.json"
    roots_file.parent.mkdir()
    code, exported, err = custos(
        offline, "seal", "export-pending", "--to", str(roots_file), "--json", env=env
    )
    assert code == 0, err
    assert exported["roots"] and exported["subjects"] >= 7  # manifests, file seals, the log
    crossed = json.loads(roots_file.read_text())
    assert sorted(crossed) == ["algorithm", "format", "roots"]  # digests only leave
    assert crossed["roots"] == exported["roots"]
    assert package.removeprefix("urn:uuid:") not in roots_file.read_text()
    again = custos(offline, "seal", "export-pending", "--to", str(roots_file), "--json", env=env)
    assert again[0] == 65 and again[1]["findings"][0]["code"] == "AIRGAP-TARGET-EXISTS"

    tokens_file = tmp_path / "media" / "tokens.json"
    code, stamped, err = custos(
        online, "seal", "stamp", str(roots_file), "--to", str(tokens_file), "--json"
    )
    assert code == 0, err
    assert {t["root"] for t in stamped["tokens"]} == set(exported["roots"])

    # A token signed by an authority the archive does not trust: refused, nothing imported.
    untrusting = _offline(None)
    code, refused, _ = custos(offline, "seal", "import", str(tokens_file), "--json", env=untrusting)
    assert code == 65 and refused["findings"][0]["code"] == "AIRGAP-TOKEN-TRUST"
    # A token whose root was changed on the way: refused, naming it, nothing imported.
    body = json.loads(tokens_file.read_text())
    changed = json.loads(json.dumps(body))
    changed["tokens"][-1]["root"] = changed["tokens"][0]["root"][:-2] + "00"
    bad = tmp_path / "media" / "changed.json"
    bad.write_text(json.dumps(changed))
    code, refused, _ = custos(offline, "seal", "import", str(bad), "--json", env=env)
    assert code == 65 and refused["findings"][0]["code"] == "AIRGAP-UNKNOWN-ROOT"
    assert f"token {len(body['tokens'])} of changed.json" in refused["message"]
    # A token's bytes changed on the way (its imprint no longer the root).
    other = json.loads(json.dumps(body))
    if len(other["tokens"]) > 1:
        other["tokens"][0]["token"], other["tokens"][1]["token"] = (
            other["tokens"][1]["token"],
            other["tokens"][0]["token"],
        )
    else:
        der = bytearray(base64.b64decode(other["tokens"][0]["token"]))
        der[len(der) // 2] ^= 0x01
        other["tokens"][0]["token"] = base64.b64encode(bytes(der)).decode()
    bad.write_text(json.dumps(other))
    code, refused, _ = custos(offline, "seal", "import", str(bad), "--json", env=env)
    assert code == 65 and refused["findings"][0]["code"].startswith("AIRGAP-TOKEN")
    assert query(offline, Seal.id) == []

    code, imported, err = custos(offline, "seal", "import", str(tokens_file), "--json", env=env)
    assert code == 0, err
    assert len(imported["sealed"]) == exported["subjects"]
    code, proved, err = custos(offline, "verify", package, "--json", env=env)
    assert code == 0, proved
    assert custos(offline, "audit", "verify", "--json", env=env)[0] == 0
    code, status, _ = custos(offline, "status", "--json", env=env)
    assert status["seal_backlog"]["pending"] == 0
    assert status["custody_log"]["last_sealed_checkpoint"] is not None

    code, refused, _ = custos(offline, "seal", "import", str(tokens_file), "--json", env=env)
    assert code == 65 and refused["findings"][0]["code"] == "AIRGAP-UNKNOWN-ROOT"  # never twice

    crossings = [d for (d,) in query(offline, Event.detail, where=Event.type == "transfer")]
    assert len(crossings) == 2
    assert "exported across the air gap" in crossings[0] and exported["roots"][0] in crossings[0]
    assert "imported across the air gap" in crossings[1]
    stamps = [d for (d,) in query(online, Event.detail, where=Event.type == "transfer")]
    assert len(stamps) == 1 and "from another archive" in stamps[0]


def test_stamping_refuses_what_is_not_a_request(tmp_path: Path) -> None:
    source = tmp_path / "roots.json"
    source.write_text(json.dumps({"format": "custos-seal-request/1", "algorithm": "sha512",
                                  "roots": ["not hex"]}))  # fmt: skip
    code, body, _ = custos(
        tmp_path / "a", "seal", "stamp", str(source), "--to", str(tmp_path / "t"), "--json"
    )
    assert code == 65 and body["findings"][0]["code"] == "AIRGAP-ROOT"
    assert not (tmp_path / "t").exists()
    source.write_text("{}")
    code, body, _ = custos(
        tmp_path / "a", "seal", "stamp", str(source), "--to", str(tmp_path / "t"), "--json"
    )
    assert code == 65 and body["findings"][0]["code"] == "AIRGAP-FORMAT"
    code, body, _ = custos(tmp_path / "a", "seal", "import", str(tmp_path / "none"), "--json")
    assert code == 65 and body["findings"][0]["code"] == "AIRGAP-FILE"


def test_any_rfc3161_client_can_stamp_the_roots(tmp_path: Path) -> None:
    """The roots file and the tokens file are plain enough for openssl: its query over each
    root, a TSA's reply, the token taken out of it, and the archive imports that."""
    tsa_dir, offline, media = tmp_path / "tsa", tmp_path / "offline", tmp_path / "media"
    media.mkdir()
    env = _offline(ensure_pki(tsa_dir))
    code, stored, err = custos(
        offline, "ingest", str(SAMPLE), "--depositor", "S", "--new-depositor", "--json", env=env
    )
    assert code == 0, err
    roots_file = media / "roots.json"
    assert custos(offline, "seal", "export-pending", "--to", str(roots_file), env=env)[0] == 0
    roots = json.loads(roots_file.read_text())["roots"]
    tokens = []
    with LocalTSAServer(tsa_dir) as server:
        for n, root in enumerate(roots):
            query_der = media / f"{n}.tsq"
            subprocess.run(
                ["openssl", "ts", "-query", "-digest", root, "-sha512", "-cert",
                 "-out", str(query_der)],
                check=True, capture_output=True,
            )  # fmt: skip
            request = urllib.request.Request(
                server.url,
                data=query_der.read_bytes(),
                headers={"Content-Type": "application/timestamp-query"},
            )
            with urllib.request.urlopen(request, timeout=30) as answer:
                (media / f"{n}.tsr").write_bytes(answer.read())
            subprocess.run(
                ["openssl", "ts", "-reply", "-in", str(media / f"{n}.tsr"), "-token_out",
                 "-out", str(media / f"{n}.der")],
                check=True, capture_output=True,
            )  # fmt: skip
            der = (media / f"{n}.der").read_bytes()
            tokens.append({"root": root, "token": base64.b64encode(der).decode()})
    tokens_file = media / "tokens.json"
    tokens_file.write_text(
        json.dumps({"format": "custos-seal-tokens/1", "algorithm": "sha512", "tokens": tokens})
    )
    code, imported, err = custos(offline, "seal", "import", str(tokens_file), "--json", env=env)
    assert code == 0, err
    assert imported["sealed"]
    assert custos(offline, "verify", stored["package_id"], env=env)[0] == 0
