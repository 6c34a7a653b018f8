"""Court bundles: `custos export`, `custos verify --bundle`, and VERIFY.txt's commands run for
real with sha512sum, xxd and openssl; refusals leave nothing behind."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import bagit
import pytest

from tests.conftest import SAMPLE
from tests.functional.test_cli import custos
from tests.helpers import make_bag

RESTRICTED = "data/documents/transfer-letter.txt"


@pytest.fixture
def held(tmp_path: Path) -> tuple[Path, str]:
    data = tmp_path / "data"
    code, body, err = custos(
        data, "ingest", str(SAMPLE), "--depositor", "S", "--new-depositor", "--json"
    )
    assert code == 0 and body["seal"]["status"] == "sealed", err
    return data, str(body["package_id"])


def export(data: Path, package: str, *args: str, to: Path) -> tuple[int, Any, str]:
    return custos(
        data,
        "export",
        package,
        *args,
        "--to",
        str(to),
        "--requester",
        "Residual Mechanism",
        "--purpose",
        "prosecution",
        "--json",
    )


def verify_bundle(bundle: Path, *args: str) -> tuple[int, Any, str]:
    return custos(bundle.parent / "unused", "verify", "--bundle", str(bundle), *args, "--json")


def test_a_bundle_holds_the_public_files_and_verifies(
    tmp_path: Path, held: tuple[Path, str]
) -> None:
    data, package = held
    bundle = tmp_path / "bundle"
    code, body, err = export(data, package, to=bundle)
    assert code == 0, err
    assert body["left_out_not_public"] == 1 and len(body["files"]) == 4
    assert RESTRICTED not in body["files"]
    assert not (bundle / "data" / "files" / "documents" / "transfer-letter.txt").exists()
    # Each file carries its own proof; a manifest that names the withheld file does not come.
    index = json.loads((bundle / "data" / "custos-bundle.json").read_text())
    assert index["manifests"] == [] and not (bundle / "data" / "manifests").exists()
    for f in index["files"]:
        assert f["records"] == [
            f"proofs/files/{f['original_path'].removeprefix('data/')}.local-3.ers"
        ]
    bagit.Bag(str(bundle)).validate()  # an independent BagIt validator agrees
    for name in body["files"]:
        original = SAMPLE / name
        assert (bundle / "data" / "files" / name.removeprefix("data/")).read_bytes() == (
            original.read_bytes()
        )
    code, report, _ = verify_bundle(bundle)
    assert code == 0 and report["verified"] and report["trust_anchors_from_bundle"]
    # The export is a custody event, in the catalog and in the bundle's own history.
    code, shown, _ = custos(data, "show", package, "--json")
    [event] = [e for e in shown["events"] if e["type"] == "export"]
    assert "Residual Mechanism" in event["detail"] and "purpose: prosecution" in event["detail"]
    premis = (bundle / "data" / "custody" / "premis.xml").read_text()
    assert body["export_id"] in premis and "<premis:eventType>export" in premis
    code, audit, _ = custos(data, "audit", "verify", "--json")
    assert code == 0 and audit["verified"]


def test_verify_txt_checks_out_with_standard_tools_alone(
    tmp_path: Path, held: tuple[Path, str]
) -> None:
    """Every command VERIFY.txt gives is run with bash; each prints what it says it must."""
    data, package = held
    bundle = tmp_path / "bundle"
    code, _, _ = export(data, package, "data/images/site-photo.png", to=bundle)
    assert code == 0
    text = (bundle / "data" / "VERIFY.txt").read_text()
    checks = _commands(text)
    assert len(checks) >= 10
    kinds = {command.split()[0] for command, _ in checks}
    assert kinds == {"sha256sum", "sha512sum", "echo", "openssl"}
    for command, expected in checks:
        done = subprocess.run(
            ["bash", "-c", command], cwd=bundle / "data", capture_output=True, text=True
        )
        printed = (done.stdout + done.stderr).strip()
        assert done.returncode == 0, (command, printed)
        assert expected in printed, (command, printed, expected)
    # The bag as a whole, as VERIFY.txt's step 1 says.
    assert "sha512sum -c manifest-sha512.txt" in text
    done = subprocess.run(
        ["sha512sum", "-c", "manifest-sha512.txt", "tagmanifest-sha512.txt"],
        cwd=bundle, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0 and "FAILED" not in done.stdout
    assert "is not a CA cert" in text  # the openssl warning to expect is named
    # Altered bytes make the same commands fail.
    photo = bundle / "data" / "files" / "images" / "site-photo.png"
    photo.write_bytes(photo.read_bytes() + b"\0")
    command, expected = next(c for c in checks if "site-photo" in c[0])
    done = subprocess.run(
        ["bash", "-c", command], cwd=bundle / "data", capture_output=True, text=True
    )
    assert expected not in done.stdout


def _commands(text: str) -> list[tuple[str, str]]:
    """(command, what it must print) pairs from VERIFY.txt."""
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        inline = re.match(r"^(sha256sum \S+)\s+# must print (\S+)$", stripped)
        if inline:
            out.append((inline.group(1), inline.group(2)))
            continue
        if re.match(r"^(sha512sum|openssl ts|(level \d+: )?echo )", stripped) or (
            stripped.startswith("level ") and "| xxd" in stripped
        ):
            command = stripped.split(": ", 1)[1] if stripped.startswith("level ") else stripped
            following = lines[i + 1].strip()
            if following.startswith("must print"):
                out.append((command, following.removeprefix("must print").strip(" :")))
    return out


def test_tampering_with_a_bundle_is_caught(tmp_path: Path, held: tuple[Path, str]) -> None:
    data, package = held
    pristine = tmp_path / "bundle"
    code, _, _ = export(data, package, to=pristine)
    assert code == 0

    def altered(name: str, change: str) -> Path:
        copy = tmp_path / name
        shutil.copytree(pristine, copy)
        target = copy / "data" / change
        raw = bytearray(target.read_bytes())
        raw[len(raw) // 2] ^= 0x01
        target.write_bytes(bytes(raw))
        return copy

    # A changed file: the bag's own manifests catch it.
    code, report, _ = verify_bundle(altered("a", "files/documents/site-report.pdf"))
    assert code == 3 and "not an intact BagIt bag" in report["steps"][0]["text"]
    # A changed file, re-bagged to hide it: its own evidence record catches it.
    rebagged = altered("b", "files/documents/site-report.pdf")
    _rebag(rebagged)
    code, report, _ = verify_bundle(rebagged)
    failed = [s["text"] for s in report["steps"] if not s["ok"]]
    assert code == 3 and failed, failed
    assert all(t.startswith("files/documents/site-report.pdf: its evidence record") for t in failed)
    # A changed evidence record, re-bagged.
    record = altered("d", "proofs/files/images/site-photo.png.local-3.ers")
    _rebag(record)
    code, report, _ = verify_bundle(record)
    failed = [s["text"] for s in report["steps"] if not s["ok"]]
    assert code == 3 and any("site-photo.png" in t and "fails" in t for t in failed), failed
    # Another trust anchor than the archive's: the timestamps do not verify.
    other = tmp_path / "other-root.pem"
    from archive.proofs.local_tsa import ensure_pki

    shutil.copyfile(ensure_pki(tmp_path / "other-tsa"), other)
    code, report, _ = verify_bundle(pristine, "--trust", str(other))
    assert code == 3 and not report["trust_anchors_from_bundle"]
    # Not a bundle at all.
    code, body, _ = verify_bundle(tmp_path)
    assert code == 65 and body["findings"][0]["code"] == "BUNDLE-NO-INDEX"


def test_a_whole_deposit_also_carries_its_sealed_bag_manifests(tmp_path: Path) -> None:
    """Every payload file released: the deposit's bag manifests (which then name nothing
    withheld) and their records come too, and prove each file as well."""
    bag = make_bag(
        tmp_path / "bag",
        {"a.txt": b"first\n", "sub/b.txt": b"second\n"},
        algorithms=("sha512", "sha256"),
        info={
            "Access-Tier": "public",
            "Access-Legal-Basis": "published by the depositor",
            "Consent-Scopes": "public, research",
        },
    )
    data = tmp_path / "data"
    code, body, err = custos(
        data, "ingest", str(bag), "--depositor", "S", "--new-depositor", "--json"
    )
    assert code == 0 and body["seal"]["status"] == "sealed", err
    bundle = tmp_path / "bundle"
    code, exported, err = export(data, body["package_id"], to=bundle)
    assert code == 0 and exported["manifests"] == 2, err
    index = json.loads((bundle / "data" / "custos-bundle.json").read_text())
    assert {m["path"] for m in index["manifests"]} == {
        "manifests/bag/manifest-sha512.txt",
        "manifests/bag/manifest-sha256.txt",
    }
    assert all(f["manifest"] == "manifests/bag/manifest-sha512.txt" for f in index["files"])
    code, report, _ = verify_bundle(bundle)
    assert code == 0 and report["verified"]
    assert (
        sum("as the sealed manifests/bag/manifest-sha512.txt" in s["text"] for s in report["steps"])
        == 2
    )
    # A changed file, re-bagged: its own record and the sealed manifest both catch it.
    shutil.copytree(bundle, tmp_path / "changed")
    target = tmp_path / "changed" / "data" / "files" / "a.txt"
    target.write_bytes(b"altered\n")
    _rebag(tmp_path / "changed")
    code, report, _ = verify_bundle(tmp_path / "changed")
    failed = [s["text"] for s in report["steps"] if not s["ok"]]
    assert code == 3 and any("not the one received" in t for t in failed)
    assert any("its evidence record" in t and "fails" in t for t in failed)


def _rebag(bundle: Path) -> None:
    bag = bagit.Bag(str(bundle))
    bag.save(manifests=True)


@pytest.mark.parametrize(
    ("args", "extra", "code"),
    [
        ((RESTRICTED,), {}, "EXPORT-NOT-PUBLIC"),
        (("data/no-such-file.txt",), {}, "EXPORT-NO-SUCH-FILE"),
        ((), {"--requester": " "}, "EXPORT-REQUESTER"),
        ((), {"--purpose": ""}, "EXPORT-PURPOSE"),
    ],
)
def test_refused_exports_leave_nothing(
    tmp_path: Path, held: tuple[Path, str], args: tuple[str, ...], extra: dict[str, str], code: str
) -> None:
    data, package = held
    bundle = tmp_path / "bundle"
    options = {"--requester": "R", "--purpose": "prosecution", **extra}
    flat = [x for k, v in options.items() for x in (k, v)]
    status, body, _ = custos(data, "export", package, *args, "--to", str(bundle), *flat, "--json")
    assert status == 65 and code in {f["code"] for f in body["findings"]}
    assert not bundle.exists() and not list(tmp_path.glob(".custos-export-*"))
    _, shown, _ = custos(data, "show", package, "--json")
    assert not [e for e in shown["events"] if e["type"] == "export"]


def test_a_target_that_is_not_empty_is_refused(tmp_path: Path, held: tuple[Path, str]) -> None:
    data, package = held
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "keep.txt").write_text("mine")
    code, body, _ = export(data, package, to=bundle)
    assert code == 65 and body["findings"][0]["code"] == "EXPORT-TARGET"
    assert [p.name for p in bundle.iterdir()] == ["keep.txt"]


def test_unsealed_manifests_refuse_the_export(tmp_path: Path) -> None:
    data = tmp_path / "data"
    offline = {"CUSTOS_TSA__LOCAL": "false"}
    code, body, _ = custos(
        data, "ingest", str(SAMPLE), "--depositor", "S", "--new-depositor", "--json", env=offline
    )
    assert code == 0
    code, refused, _ = custos(
        data, "export", body["package_id"], "--to", str(tmp_path / "b"), "--requester", "R",
        "--purpose", "prosecution", "--json", env=offline,
    )  # fmt: skip
    assert code == 65 and {f["code"] for f in refused["findings"]} == {"EXPORT-NOT-SEALED"}
    assert not (tmp_path / "b").exists()


def test_an_altered_stored_file_is_never_exported(tmp_path: Path, held: tuple[Path, str]) -> None:
    data, package = held
    code, shown, _ = custos(data, "show", package, "--json")
    stored = Path(shown["storage_path"]) / "v1/content/bag/data/documents/site-report.pdf"
    stored.write_bytes(stored.read_bytes() + b"tampered")
    bundle = tmp_path / "bundle"
    code, body, _ = export(data, package, "data/documents/site-report.pdf", to=bundle)
    assert code == 74 and "no longer matches its sealed digest" in body["message"]
    assert not bundle.exists() and not list(tmp_path.glob(".custos-export-*"))


def test_the_index_names_files_inside_the_bundle_only(
    tmp_path: Path, held: tuple[Path, str]
) -> None:
    data, package = held
    bundle = tmp_path / "bundle"
    code, _, _ = export(data, package, to=bundle)
    assert code == 0
    index_path = bundle / "data" / "custos-bundle.json"
    index = json.loads(index_path.read_text())
    index["files"][0]["path"] = "../../../etc/passwd"
    index_path.write_text(json.dumps(index))
    _rebag(bundle)
    code, body, _ = verify_bundle(bundle)
    assert code == 3 and "outside the bundle" in body["message"]


def test_a_bundle_of_the_first_format_still_verifies(tmp_path: Path) -> None:
    """A bundle written before files had their own proofs (tests/data/bundle-format-1.md)."""
    bundle = tmp_path / "bundle"
    shutil.copytree(Path(__file__).resolve().parents[1] / "data" / "bundle-format-1", bundle)
    assert json.loads((bundle / "data" / "custos-bundle.json").read_text())["format"] == (
        "custos-court-bundle/1"
    )
    code, report, _ = verify_bundle(bundle)
    assert code == 0 and report["verified"]
    texts = [s["text"] for s in report["steps"]]
    assert any("as the sealed manifests/v1/inventory.json lists" in t for t in texts)
    target = bundle / "data" / "files" / "images" / "site-photo.png"
    target.write_bytes(target.read_bytes() + b"\0")
    _rebag(bundle)
    code, report, _ = verify_bundle(bundle)
    failed = [s["text"] for s in report["steps"] if not s["ok"]]
    assert code == 3 and any("not the one received" in t for t in failed)
