"""A court bundle names nothing it withholds: no withheld file's marker, path, digest or bytes,
no count of a tier it releases nothing of, and nothing of a wholly restricted package but the
one public file a registrar released. Every byte of every bundle file is searched, zips
unpacked."""

from __future__ import annotations

import hashlib
import io
import secrets
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.api_support import Users, make_users
from tests.conftest import MakeServices
from tests.functional.test_cli import custos
from tests.helpers import make_bag, stored_bundle

SIDECAR_HEAD = "# path\ttier\tsunset\tsuccessor\tconsent\tlegal basis\n"


@dataclass(frozen=True)
class Withheld:
    """Something a bundle must not name: ``needles`` are (what it is, its bytes)."""

    label: str
    needles: tuple[tuple[str, bytes], ...] = field(repr=False)  # no secret in a report

    @classmethod
    def file(cls, label: str, path: str, content: bytes, *markers: str) -> Withheld:
        needles = [("marker", m.encode()) for m in markers]
        needles += [("path", path.encode()), ("name", path.rsplit("/", 1)[-1].encode())]
        for alg in ("sha512", "sha256"):
            digest = hashlib.new(alg, content)
            needles += [
                (alg, digest.hexdigest().encode()),
                (alg.upper(), digest.hexdigest().upper().encode()),
                (f"{alg} bytes", digest.digest()),
            ]
        return cls(label, (*needles, ("content", content)))

    @classmethod
    def words(cls, label: str, *words: str, kind: str = "text") -> Withheld:
        return cls(label, tuple((kind, w.encode()) for w in words))

    @classmethod
    def tiers(cls, *words: str) -> Withheld:
        """Tier or consent words naming what only withheld files are (a count, a list)."""
        return cls("withheld tier or consent", tuple((repr(w), w.encode()) for w in words))


@dataclass(frozen=True)
class Holding:
    """A package written to a bag, with what each of its files is."""

    files: dict[str, bytes]  # data/... -> content
    released: dict[str, set[str]]  # purpose -> the paths it releases
    withheld_by: dict[str, list[Withheld]]  # purpose -> what must not appear


def mark(word: str) -> str:
    return f"{word}-{secrets.token_hex(8)}"


def mixed_package(tmp: Path) -> tuple[Path, Holding]:
    """Public, restricted, protected-identity, consent-withdrawn files and a restricted folder,
    each with its own marker in its name and its content."""
    folder = mark("closed")
    roles = {
        "public": mark("open"),
        "public-sub": f"annex/{mark('open')}",
        "restricted": mark("secret"),
        "protected-identity": mark("witness"),
        "consent-withdrawn": mark("revoked"),
        "folder-a": f"{folder}/{mark('inner')}",
        "folder-b": f"{folder}/{mark('inner')}",
    }
    files = {f"data/{stem}.txt": f"statement {stem}\n".encode() for stem in roles.values()}
    path = {role: f"data/{stem}.txt" for role, stem in roles.items()}
    sidecar = SIDECAR_HEAD + (
        f"{path['restricted']}\trestricted\t-\t-\t-\tOrder 1\n"
        f"{path['protected-identity']}\tprotected-identity\t-\t-\tprosecution\tOrder 2\n"
        f"{path['consent-withdrawn']}\tpublic\t-\t-\twithdrawn\tOrder 3\n"
        f"data/{folder}\trestricted\t-\t-\t-\tOrder 4\n"
    )
    info = {
        "Access-Tier": "public",
        "Access-Legal-Basis": "Published",
        "Consent-Scopes": "public, research",
    }
    bag = make_bag(
        tmp / "bag-a",
        {p.removeprefix("data/"): c for p, c in files.items()},
        info=info,
        extra_tag_files={"custos-access.txt": sidecar.encode()},
    )

    def gone(*roles_: str) -> list[Withheld]:
        out = []
        for role in roles_:
            p = path[role]
            markers = [p.removeprefix("data/").removesuffix(".txt")]
            if role.startswith("folder"):
                markers += [folder, *(m for m in markers[0].split("/")[1:])]
            out.append(Withheld.file(f"{role} file", p, files[p], *markers))
        return out

    public = {path["public"], path["public-sub"]}
    closed = ("folder-a", "folder-b", "restricted")
    return bag, Holding(
        files,
        {"public": public, "research": public | {path[r] for r in closed}},
        {
            "public": [
                *gone("protected-identity", "consent-withdrawn", *closed),
                Withheld.tiers("restricted", "protected-identity", "withdrawn"),
            ],
            "research": [
                *gone("protected-identity", "consent-withdrawn"),
                Withheld.tiers("protected-identity", "withdrawn"),
            ],
        },
    )


def contents(root: Path) -> Iterator[tuple[str, bytes]]:
    """(where, bytes) of every file under ``root``, and of every entry of every zip in it."""
    for p in sorted(root.rglob("*")):
        if p.is_file():
            yield from _unpacked(p.relative_to(root).as_posix(), p.read_bytes())


def _unpacked(where: str, data: bytes) -> Iterator[tuple[str, bytes]]:
    yield where, data
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for entry in zf.infolist():
                if not entry.is_dir():
                    yield from _unpacked(f"{where}!{entry.filename}", zf.read(entry))


def assert_nothing_withheld(bundle_dir: Path, withheld: list[Withheld]) -> None:
    """Every problem listed: which bundle file names which withheld thing, and how (never the
    secret itself)."""
    problems = []
    for where, data in contents(bundle_dir):
        for w in withheld:
            kinds = sorted({k for k, n in w.needles if n in data or n in where.encode()})
            if kinds:
                problems.append(f"  {where}: {w.label} ({', '.join(kinds)})")
    assert not problems, f"the bundle {bundle_dir} names what it withholds:\n" + "\n".join(problems)


def assert_released(bundle_dir: Path, released: dict[str, bytes]) -> None:
    held = {data for _, data in contents(bundle_dir)}
    missing = [p for p, content in released.items() if content not in held]
    assert not missing, f"{bundle_dir} lacks released file(s) {missing}"


def assert_verifies(bundle: Path) -> None:
    code, report, err = custos(
        bundle.parent / "unused", "verify", "--bundle", str(bundle), "--json"
    )
    assert code == 0 and report["verified"], (report, err)


def ingest(data: Path, bag: Path, depositor: str) -> str:
    code, body, err = custos(
        data, "ingest", str(bag), "--depositor", depositor, "--new-depositor", "--json"
    )
    assert code == 0 and body["seal"]["status"] == "sealed", (body, err)
    code, _, err = custos(data, "seal", "--json")
    assert code == 0, err
    return str(body["package_id"])


def export(data: Path, package: str, to: Path) -> list[str]:
    options = ["--to", str(to), "--requester", "Residual Mechanism", "--purpose", "public"]
    code, body, err = custos(data, "export", package, *options, "--json")
    assert code == 0, (body, err)
    return list(body["files"])


def test_a_public_bundle_names_no_withheld_file(tmp_path: Path) -> None:
    bag, holding = mixed_package(tmp_path)
    package = ingest(tmp_path / "data", bag, "Sample Mechanism")
    bundle = tmp_path / "bundle"
    assert set(export(tmp_path / "data", package, bundle)) == holding.released["public"]
    assert_released(bundle, {p: holding.files[p] for p in holding.released["public"]})
    assert_verifies(bundle)
    assert_nothing_withheld(bundle, holding.withheld_by["public"])


@dataclass(frozen=True)
class Answer:
    client: TestClient
    users: Users
    request_id: str
    bundle: Path  # where the answer says it wrote the bundle
    holding: Holding


@pytest.fixture
def answer(tmp_path: Path, make_services: MakeServices) -> Iterator[Answer]:
    """A research request for the mixed package, answered; before it, a registrar read the
    protected-identity file for a prosecution (an access event in the custody history)."""
    bag, holding = mixed_package(tmp_path)
    uuid = ingest(tmp_path / "data", bag, "Sample Mechanism").removeprefix("urn:uuid:")
    services = make_services()
    assert services.settings.data_dir == tmp_path / "data"
    users = make_users(services)

    def totp() -> dict[str, str]:  # a new TOTP code for each request
        return users.bearer("registrar", totp=True)

    with TestClient(create_app(services.settings)) as client:
        [witness] = [p for p in holding.files if "/witness-" in p]
        r = client.get(
            f"/registrar/packages/{uuid}/files/{witness}",
            params={"purpose": "prosecution"},
            headers=totp(),
        )
        assert r.status_code == 200 and r.content == holding.files[witness], r.text
        r = client.post(
            "/registrar/requests",
            headers=totp(),
            json={
                "requester": "Tribunal",
                "reference": "ST/2026/3",
                "purpose": "research",
                "package": uuid,
            },
        )
        assert r.status_code == 201, r.text
        request_id = str(r.json()["request_id"])
        r = client.post(f"/registrar/requests/{request_id}/answer", headers=totp())
        assert r.status_code == 200, r.text
        assert set(r.json()["export"]["files"]) == holding.released["research"]
        yield Answer(
            client, users, request_id, stored_bundle(services, r.json()["bundle"]), holding
        )


def test_a_registrar_answer_names_no_withheld_file(answer: Answer) -> None:
    released = answer.holding.released["research"]
    assert_released(answer.bundle, {p: answer.holding.files[p] for p in released})
    assert_verifies(answer.bundle)
    assert_nothing_withheld(answer.bundle, answer.holding.withheld_by["research"])


def test_the_downloaded_answer_names_no_withheld_file(tmp_path: Path, answer: Answer) -> None:
    """GET /registrar/requests/{id}/bundle: the same bundle as a zip, searched entry by entry."""
    r = answer.client.get(
        f"/registrar/requests/{answer.request_id}/bundle",
        headers=answer.users.bearer("registrar", totp=True),
    )
    assert r.status_code == 200, (r.status_code, r.text[:300])
    assert zipfile.is_zipfile(io.BytesIO(r.content))
    zipped = tmp_path / "downloaded"
    zipped.mkdir()
    (zipped / "bundle.zip").write_bytes(r.content)
    released = answer.holding.released["research"]
    assert_released(zipped, {p: answer.holding.files[p] for p in released})
    assert_nothing_withheld(zipped, answer.holding.withheld_by["research"])


def test_a_wholly_restricted_package_names_nothing_of_itself(
    tmp_path: Path, make_services: MakeServices
) -> None:
    """A restricted package with one public file. Anyone's export is refused (the access
    decision shows nothing of a package whose metadata is closed), naming nothing; a registrar
    answering a request for the public purpose releases that file alone, in a bundle that
    names neither the package nor its depositor, title or other files."""
    depositor, title = f"Mechanism {mark('depositor')}", mark("title")
    open_, closed, deeper = mark("open"), mark("sealed"), f"more/{mark('sealed')}"
    files = {f"data/{s}.txt": f"statement {s}\n".encode() for s in (open_, closed, deeper)}
    sidecar = SIDECAR_HEAD + f"data/{open_}.txt\tpublic\t-\t-\t-\tPublished in part\n"
    info = {
        "Title": f"Holding {title}",
        "Access-Tier": "restricted",
        "Access-Legal-Basis": "Deposit agreement",
        "Consent-Scopes": "public",
    }
    bag = make_bag(
        tmp_path / "bag-b",
        {p.removeprefix("data/"): c for p, c in files.items()},
        info=info,
        extra_tag_files={"custos-access.txt": sidecar.encode()},
    )
    data = tmp_path / "data"
    package = ingest(data, bag, depositor)
    uuid = package.removeprefix("urn:uuid:")
    withheld = [
        Withheld.words("the package", uuid, uuid.upper(), uuid.replace("-", ""), kind="id"),
        Withheld.words("the package's depositor", depositor, depositor.split()[1]),
        Withheld.words("the package's title", title),
        Withheld.file("restricted file", f"data/{closed}.txt", files[f"data/{closed}.txt"], closed),
        Withheld.file(
            "restricted file in a folder",
            f"data/{deeper}.txt",
            files[f"data/{deeper}.txt"],
            deeper,
            deeper.split("/")[1],
        ),
        Withheld.tiers("restricted"),
    ]
    # Anyone's export: refused, nothing written, nothing named.
    bundle = tmp_path / "bundle"
    options = ["--to", str(bundle), "--requester", "Residual Mechanism", "--purpose", "public"]
    code, body, err = custos(data, "export", package, *options, "--json")
    assert code == 65 and body["findings"][0]["code"] == "EXPORT-NOTHING", (body, err)
    assert not bundle.exists() and not list(tmp_path.glob(".custos-export-*"))
    refusal = tmp_path / "refusal"
    refusal.mkdir()
    (refusal / "message.txt").write_text(str(body) + err)
    assert_nothing_withheld(refusal, withheld[3:])
    # A registrar's answer for the public purpose: the public file alone, the package unnamed.
    services = make_services()
    users = make_users(services)
    with TestClient(create_app(services.settings)) as client:
        r = client.post(
            "/registrar/requests",
            headers=users.bearer("registrar", totp=True),
            json={"requester": "Tribunal", "reference": "ST/2026/4", "purpose": "public",
                  "package": uuid},
        )  # fmt: skip
        assert r.status_code == 201, r.text
        request_id = str(r.json()["request_id"])
        r = client.post(
            f"/registrar/requests/{request_id}/answer",
            headers=users.bearer("registrar", totp=True),
        )
        assert r.status_code == 200, r.text
        assert r.json()["export"]["files"] == [f"data/{open_}.txt"]
        answered = stored_bundle(services, r.json()["bundle"])
        r = client.get(
            f"/registrar/requests/{request_id}/bundle",
            headers=users.bearer("registrar", totp=True),
        )
        assert r.status_code == 200, r.text[:300]
    (tmp_path / "downloaded").mkdir()
    (tmp_path / "downloaded" / "bundle.zip").write_bytes(r.content)
    for where in (answered, tmp_path / "downloaded"):
        assert_released(where, {f"data/{open_}.txt": files[f"data/{open_}.txt"]})
        assert_nothing_withheld(where, withheld)
    assert_verifies(answered)
