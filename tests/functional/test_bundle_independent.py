"""Each file's own proof in a court bundle, checked by tools that are not ours: BouncyCastle
(RFC 4998) accepts every per-file evidence record against its file and rejects it after one
byte of that file changes; `openssl ts -verify` accepts every token against the archive's
root, at the time it was made."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from pathlib import Path

from archive.proofs.evidence import parse_record
from tests.conftest import SAMPLE
from tests.functional.test_cli import custos


def test_outside_verifiers_accept_each_files_own_proof(
    tmp_path: Path, bouncycastle: list[str]
) -> None:
    data = tmp_path / "data"
    code, body, err = custos(
        data, "ingest", str(SAMPLE), "--depositor", "S", "--new-depositor", "--json"
    )
    assert code == 0 and body["seal"]["status"] == "sealed", err
    bundle = tmp_path / "bundle"
    code, exported, err = custos(
        data, "export", body["package_id"], "--to", str(bundle), "--requester", "Court",
        "--purpose", "prosecution", "--json",
    )  # fmt: skip
    assert code == 0, err
    root = bundle / "data"
    index = json.loads((root / "custos-bundle.json").read_text())
    assert len(index["files"]) == len(exported["files"]) == 4
    checked = 0
    for f in index["files"]:
        assert f["records"], f["path"]
        for record in f["records"]:
            # The record's first list is [H(file), H(salt)]; the salt itself is not in it.
            first = parse_record((root / record).read_bytes()).chains[0][0].path[0]
            assert bytes.fromhex(f["sha512"]) in first and len(first) == 2
            ok = subprocess.run(
                [*bouncycastle, record, f["path"]], cwd=root, capture_output=True, text=True
            )
            assert ok.returncode == 0 and "ERS OK" in ok.stdout, (record, ok.stdout + ok.stderr)
            changed = tmp_path / "changed"
            raw = bytearray((root / f["path"]).read_bytes())
            raw[len(raw) // 2] ^= 0x01
            changed.write_bytes(bytes(raw))
            bad = subprocess.run(
                [*bouncycastle, str(root / record), str(changed)], capture_output=True, text=True
            )
            assert bad.returncode == 1 and "ERS FAILED" in bad.stdout, (record, bad.stdout)
            checked += 1
    assert checked == 4
    [anchor] = index["trust_anchors"]
    assert index["tokens"]
    for token in index["tokens"]:
        when = int(datetime.fromisoformat(token["gen_time"]).timestamp())
        command = [
            "openssl", "ts", "-verify", "-token_in", "-in", token["path"],
            "-digest", token["imprint"], "-CAfile", anchor["path"],
            "-untrusted", token["tsa_certificate"], "-attime", str(when),
        ]  # fmt: skip
        done = subprocess.run(command, cwd=root, capture_output=True, text=True)
        assert done.returncode == 0 and "Verification: OK" in done.stdout, done.stderr
        wrong = [*command[:7], "00" * (len(token["imprint"]) // 2), *command[8:]]
        refused = subprocess.run(wrong, cwd=root, capture_output=True, text=True)
        assert refused.returncode != 0
