"""A tier's key recovered without Custos, as the registrars' guide says (docs/guides/keys.md):
two shares into the `shamir` command of shamir-mnemonic, its master secret through the
guide's own lines of Python (run by the system's python3, with nothing of Custos), and
Debian's `age` decrypting a protected file as `custos ingest` stored it, to the bytes that
were deposited (and that `custos/encrypted.json` names by sha512)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import ROOT
from tests.functional.test_cli import custos
from tests.helpers import make_bag

GUIDE = ROOT / "docs" / "guides" / "keys.md"


def _guide_lines() -> str:
    """The Python block of the guide's section on recovering a key without Custos."""
    section = GUIDE.read_text().split("## Recovering a key without Custos", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block, f"{GUIDE} has no Python block in its recovery section"
    return textwrap.dedent(block.group(1))


def test_two_shares_shamir_the_guides_lines_and_debian_age_open_what_custos_sealed(
    tmp_path: Path,
) -> None:
    for tool in ("age", "age-keygen", "python3"):
        assert shutil.which(tool), f"{tool} is absent: `make test` installs Debian's age"
    data, shares = tmp_path / "data", tmp_path / "shares"
    code, made, stderr = custos(
        data, "keys", "init", "--shares", "5", "--threshold", "2", "--out-dir", str(shares),
        "--json",
    )  # fmt: skip
    assert code == 0, stderr
    original = bytes(range(256)) * 4096 + "témoignage protégé\n".encode()
    bag = make_bag(
        tmp_path / "bag",
        {"testimonies/statement.txt": original},
        info={"Access-Tier": "protected-identity", "Access-Legal-Basis": "Order 12/2019"},
    )
    code, stored, stderr = custos(
        data, "ingest", str(bag), "--depositor", "Mechanism", "--new-depositor", "--json"
    )
    assert code == 0, stderr
    obj = data / "storage" / stored["object_path"]
    assert not (obj / "v1" / "content" / "bag" / "data" / "testimonies").exists()
    listed = json.loads((obj / "v1" / "content" / "custos" / "encrypted.json").read_text())
    ((content, entry),) = [
        (c, e) for c, e in listed["files"].items() if e["logical"].startswith("bag/data/sealed/")
    ]
    copy = obj / content
    assert original[:4096] not in copy.read_bytes()

    typed = "".join(
        "".join(ln + " " for ln in f.read_text().splitlines() if not ln.startswith("#")) + "\n"
        for f in (shares / "share-2-of-5.txt", shares / "share-5-of-5.txt")
    )
    shamir = Path(sys.executable).parent / "shamir"
    recovered = subprocess.run(
        [str(shamir), "recover"], input=typed, capture_output=True, text=True, timeout=120
    )
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    master = re.search(r"master secret is: ([0-9a-f]{64})", recovered.stdout)
    assert master, recovered.stdout

    script = tmp_path / "age_identity.py"
    script.write_text(_guide_lines())
    identity = tmp_path / "identity.txt"
    with identity.open("w") as f:
        subprocess.run(
            ["python3", "-I", str(script), master.group(1)], stdout=f, check=True, timeout=60
        )
    public = subprocess.run(
        ["age-keygen", "-y", str(identity)], capture_output=True, text=True, check=True
    )
    assert public.stdout.strip() == made["recipient"]

    plain = tmp_path / "copy"
    subprocess.run(
        ["age", "-d", "-i", str(identity), "-o", str(plain), str(copy)], check=True, timeout=60
    )
    assert plain.read_bytes() == original
    assert hashlib.sha512(plain.read_bytes()).hexdigest() == entry["sha512"]
    # Its real name: the names map, opened by the same key.
    names = subprocess.run(
        ["age", "-d", "-i", str(identity),
         str(obj / "v1" / "content" / "custos" / "names-protected-identity.age")],
        capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    real = json.loads(names.stdout)["files"][entry["logical"]]
    assert real == "bag/data/testimonies/statement.txt"

    # Custos's own verify opens the key from two share files, for the command only: it
    # proves the plain bytes and finds the file by its real name; one share opens nothing.
    code, _, stderr = custos(data, "seal", "--json")
    assert code == 0, stderr
    two = ["--share-file", str(shares / "share-1-of-5.txt"), "--share-file",
           str(shares / "share-3-of-5.txt")]  # fmt: skip
    real = "data/testimonies/statement.txt"
    code, report, stderr = custos(data, "verify", stored["package_id"], real, "--json")
    assert code == 3 and "sealed name" in report["steps"][-1]["text"]
    code, report, stderr = custos(
        data, "verify", stored["package_id"], real, "--open-key", "protected-identity",
        "--purpose", "prosecution", *two, "--json",
    )  # fmt: skip
    assert code == 0, stderr
    text = " ".join(step["text"] for step in report["steps"])
    assert "decrypted with the protected-identity tier's key" in text
    assert entry["sha512"][:16] in text
    code, refused, _ = custos(
        data, "verify", stored["package_id"], real, "--open-key", "protected-identity",
        "--purpose", "prosecution", *two[:2], "--json",
    )  # fmt: skip
    assert code == 65 and refused["findings"][0]["code"] == "KEY-SHARES-FEW"
    code, refused, _ = custos(
        data, "verify", stored["package_id"], real, "--open-key", "protected-identity",
        "--purpose", "curiosity", *two, "--json",
    )  # fmt: skip
    assert code == 65 and refused["findings"][0]["code"] == "KEY-PURPOSE"
    code, status, _ = custos(data, "keys", "status", "--json")
    assert "from the command line, for prosecution" in json.dumps(status)

    # One share is not enough for the shamir command either.
    one = subprocess.run(
        [str(shamir), "recover"], input=typed.splitlines()[0] + "\n", capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert "SUCCESS" not in one.stdout
