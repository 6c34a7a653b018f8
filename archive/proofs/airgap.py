"""Seals across an air gap: an archive with no timestamp authority within reach still gets its
manifests, file seals and custody-log checkpoints timestamped.

1. ``custos seal export-pending --to FILE`` (offline archive) batches everything awaiting a
   seal as ``custos seal`` would, and writes only the hash-tree roots to FILE. What each
   root covers (the subjects and their leaves) stays in the archive, in the storage root
   (``extensions/custos-seal-requests/``), so that a rebuilt catalog finds it too.
2. ``custos seal stamp FILE --to TOKENS`` (any archive that reaches an authority) asks each
   of its authorities for an RFC 3161 token over each root and writes them to TOKENS. Any
   RFC 3161 client can do the same: the request file is JSON, each root a hex digest.
3. ``custos seal import TOKENS`` (offline archive) checks every token (its imprint is a root
   it exported, its signature chains to one of the archive's own trust anchors) and only
   then completes the evidence records, as if the authority had answered directly.

Each crossing, each way, is a ``transfer`` custody event listing the roots that crossed.
Nothing but digests leaves the archive. A request is kept, and marked once its tokens are
imported (they are refused if given again); exporting again while one is waiting is harmless
(a subject sealed twice has two records).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from archive.custody import new_event, record_events
from archive.errors import InputRejected, ProofError, StorageError
from archive.findings import Finding
from archive.proofs import merkle
from archive.proofs.backlog import Subject
from archive.proofs.seal import (
    Authority,
    NoAuthorityAnswered,
    SealReport,
    authorities,
    complete_batch,
    pending_batches,
)
from archive.proofs.timestamp import (
    TimestampToken,
    request_token,
    signer_certificate,
    token_from_der,
    verify_token,
)
from archive.proofs.verify import trust_anchors
from archive.services import Services

#: Where the offline archive keeps what each exported root covers (storage root).
REQUESTS = "extensions/custos-seal-requests"
REQUEST_FORMAT = "custos-seal-request/1"
TOKENS_FORMAT = "custos-seal-tokens/1"
AGENT = "Custos"


def _refuse(code: str, message: str, where: str, hint: str) -> InputRejected:
    return InputRejected(message, [Finding(code, "error", message, where)], hint=hint)


def _request_key(algorithm: str, root: str) -> str:
    return f"{REQUESTS}/{algorithm}-{root}.json"


def _imported_key(algorithm: str, root: str) -> str:
    """Written once a request's tokens are imported (a key is only ever added: a primary
    under Object Lock removes nothing), so that they are never imported twice."""
    return f"{REQUESTS}/{algorithm}-{root}.imported.json"


def _exists(path: Path, option: str) -> InputRejected:
    return _refuse(
        "AIRGAP-TARGET-EXISTS", f"{path} exists already", option,
        "name a new file: nothing is overwritten",
    )  # fmt: skip


def _new_file(path: Path, data: bytes, option: str) -> None:
    """Write ``data`` to ``path``, a file that must not exist yet (never overwritten)."""
    try:
        with open(path, "xb") as fh:
            fh.write(data)
    except FileExistsError:
        raise _exists(path, option) from None
    except OSError as exc:
        raise StorageError(
            f"{path} could not be written: {exc.strerror or exc}",
            hint="check the removable medium is mounted and writable",
        ) from exc


def _read_json(path: Path, expected: str, option: str) -> dict[str, Any]:
    try:
        body = json.loads(path.read_bytes())
    except OSError as exc:
        raise _refuse(
            "AIRGAP-FILE",
            f"{path} could not be read: {exc.strerror or exc}",
            option,
            "name the file written by the other side",
        ) from None
    except ValueError as exc:
        raise _refuse(
            "AIRGAP-FILE", f"{path} is not JSON: {exc}", option, "name the file as written"
        ) from None
    if not isinstance(body, dict) or body.get("format") != expected:
        raise _refuse(
            "AIRGAP-FORMAT",
            f"{path} is not a {expected} file",
            option,
            "export-pending writes a request, stamp writes tokens: give each to its command",
        )
    return body


def _crossing(services: Services, detail: str) -> None:
    with services.session_scope() as session:
        record_events(session, [new_event("transfer", "success", detail, agent=AGENT)])


# --- export ------------------------------------------------------------------------------------


@dataclass
class Exported:
    """What ``export-pending`` wrote: the roots, how many subjects and files they cover."""

    to: Path
    algorithm: str
    roots: list[str] = field(default_factory=list)
    subjects: int = 0
    files: int = 0
    failures: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "to": str(self.to),
            "algorithm": self.algorithm,
            "roots": self.roots,
            "subjects": self.subjects,
            "files_sealed_on_their_own": self.files,
            "failures": self.failures,
        }


def export_pending(services: Services, to: Path) -> Exported:
    """Batch everything awaiting a seal and write the roots of the batches to ``to`` (a new
    file): digests only. Raises :class:`InputRejected` when ``to`` exists, and
    :class:`StorageError` when it or the storage root refuses a write (nothing is recorded
    as exported then)."""
    algorithm = services.settings.proofs.algorithm
    report = SealReport()
    out = Exported(to, algorithm)
    if to.exists():
        raise _exists(to, "--to")
    with services.commit_lock():
        for subjects, digest_of, count in pending_batches(
            services, report, files=None, sealing=False
        ):
            leaves = sorted(set(digest_of.values()))
            root = merkle.build(algorithm, leaves).root.hex()
            request = {
                "format": REQUEST_FORMAT,
                "algorithm": algorithm,
                "root": root,
                "subjects": [
                    {
                        "package_id": s.package_id,
                        "object_path": s.object_path,
                        "subject_path": s.subject_path,
                        "sha512": s.sha512,
                        "since": s.since.isoformat(),
                        "leaf": digest_of[s].hex(),
                    }
                    for s in subjects
                ],
            }
            services.primary.write_bytes(
                _request_key(algorithm, root),
                (json.dumps(request, indent=1) + "\n").encode(),
                fsync=services.settings.fsync,
            )
            out.roots.append(root)
            out.subjects += len(subjects)
            out.files += count
    out.failures = report.failures
    body = {"format": REQUEST_FORMAT, "algorithm": algorithm, "roots": out.roots}
    _new_file(to, (json.dumps(body, indent=1) + "\n").encode(), "--to")
    if out.roots:
        _crossing(
            services,
            f"{len(out.roots)} hash-tree root(s) ({algorithm}) of {out.subjects} manifest(s), "
            f"file seal(s) or checkpoint(s) awaiting a seal exported across the air gap to "
            f"{to.name}, digests only: {', '.join(out.roots)}",
        )
    return out


# --- stamp -------------------------------------------------------------------------------------


@dataclass
class Stamped:
    to: Path
    tokens: list[tuple[str, str, str]] = field(default_factory=list)  # root, authority, time

    def as_dict(self) -> dict[str, Any]:
        return {
            "to": str(self.to),
            "tokens": [{"root": r, "tsa": a, "gen_time": t} for r, a, t in self.tokens],
        }


def stamp(services: Services, source: Path, to: Path) -> Stamped:
    """Ask each of this archive's authorities for a token over each root in ``source`` (a
    request file); write them to ``to`` (a new file). Raises :class:`InputRejected` for a
    file that is not a request, or a root that is not a digest; :class:`NoAuthorityAnswered`
    (nothing written) when no authority answers for a root."""
    body = _read_json(source, REQUEST_FORMAT, "FILE")
    algorithm = str(body.get("algorithm", ""))
    size = hashlib.new(algorithm).digest_size if algorithm in ("sha256", "sha512") else 0
    roots = body.get("roots")
    if not size or not isinstance(roots, list):
        raise _refuse(
            "AIRGAP-FORMAT",
            f"{source} names no digest algorithm (sha256 or sha512) or no list of roots",
            "FILE",
            "give the file export-pending wrote, unchanged",
        )
    for n, root in enumerate(roots, start=1):
        if not isinstance(root, str) or len(root) != 2 * size or not _is_hex(root):
            raise _refuse(
                "AIRGAP-ROOT",
                f"root {n} of {source} is not a {algorithm} digest in hex",
                "FILE",
                "give the file export-pending wrote, unchanged",
            )
    out = Stamped(to)
    tokens: list[dict[str, str]] = []
    with authorities(services.settings) as found:
        for root in roots:
            answered = 0
            failures = []
            for authority in found:
                try:
                    token = request_token(
                        authority.url, bytes.fromhex(root), algorithm,
                        policy=authority.policy or None, timeout=services.settings.tsa.timeout,
                    )  # fmt: skip
                except ProofError as exc:
                    failures.append(f"{authority.name}: {exc.message}")
                    continue
                answered += 1
                tokens.append(
                    {
                        "root": root,
                        "tsa": authority.name,
                        "token": base64.b64encode(token.token).decode(),
                    }
                )
                out.tokens.append((root, authority.name, token.gen_time.isoformat()))
            if not answered:
                raise NoAuthorityAnswered(
                    f"no timestamp authority answered for root {root[:16]}…; nothing was written",
                    hint="; ".join(failures) or "configure tsa.local or tsa.urls",
                )
    body = {"format": TOKENS_FORMAT, "algorithm": algorithm, "tokens": tokens}
    _new_file(to, (json.dumps(body, indent=1) + "\n").encode(), "--to")
    _crossing(
        services,
        f"{len(roots)} hash-tree root(s) from another archive ({source.name}) stamped: "
        f"{len(tokens)} RFC 3161 token(s) written to {to.name}: {', '.join(roots)}",
    )
    return out


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


# --- import ------------------------------------------------------------------------------------


@dataclass
class _Checked:
    root: str
    token: TimestampToken
    authority: Authority


def _check_tokens(
    services: Services, body: dict[str, Any], source: Path
) -> Iterator[tuple[dict[str, Any], _Checked]]:
    """Each token of ``body`` checked: its request (kept at export), its imprint, and its
    signature against the archive's trust anchors. Raises :class:`InputRejected` naming the
    first token that fails."""
    algorithm = str(body.get("algorithm", ""))
    anchors = trust_anchors(services)
    tokens = body.get("tokens")
    if not isinstance(tokens, list) or not tokens:
        raise _refuse(
            "AIRGAP-FORMAT", f"{source} holds no tokens", "TOKENS", "give the file stamp wrote"
        )
    for n, item in enumerate(tokens, start=1):
        where = f"token {n} of {source.name}"
        try:
            root = str(item["root"])
            der = base64.b64decode(str(item["token"]), validate=True)
            token = token_from_der(der)
        except (KeyError, TypeError, ValueError, ProofError) as exc:
            raise _refuse(
                "AIRGAP-TOKEN", f"{where} cannot be read: {exc}", "TOKENS",
                "give the file stamp wrote, unchanged",
            ) from None  # fmt: skip
        key = _request_key(algorithm, root)
        if (
            not _is_hex(root)
            or not services.primary.exists(key)
            or services.primary.exists(_imported_key(algorithm, root))
        ):
            raise _refuse(
                "AIRGAP-UNKNOWN-ROOT",
                f"{where} is for a root this archive did not export (or has imported already)",
                "TOKENS",
                "import the tokens of this archive's own export-pending",
            )
        request = json.loads(services.primary.read_bytes(key))
        if token.algorithm != algorithm or token.imprint != bytes.fromhex(root):
            raise _refuse(
                "AIRGAP-TOKEN-IMPRINT",
                f"{where} covers another digest than its root",
                "TOKENS",
                "the file was changed on the way: stamp the request again",
            )
        good = [pem for pem in anchors if _verifies(token, root, pem)]
        if not good:
            raise _refuse(
                "AIRGAP-TOKEN-TRUST",
                f"{where} does not verify against this archive's trust anchors",
                "TOKENS",
                "add the authority's root certificate to tsa.roots if you trust it, then "
                "import again",
            )
        signer = signer_certificate(token).public_bytes(Encoding.DER)
        authority = Authority(
            f"{item.get('tsa', 'authority')} (across the air gap)",
            "import:" + hashlib.sha256(signer).hexdigest(),
            tuple(good),
        )
        yield request, _Checked(root, token, authority)


def _verifies(token: TimestampToken, root: str, pem: bytes) -> bool:
    try:
        verify_token(token, bytes.fromhex(root), roots=[pem])
    except ProofError:
        return False
    return True


def import_tokens(services: Services, source: Path) -> SealReport:
    """Complete the evidence records of the roots the tokens in ``source`` cover. Every token
    is checked first; one that fails refuses the whole file (:class:`InputRejected` naming
    it) and nothing is imported. A request whose tokens are imported is marked so, and its
    tokens are refused if given again."""
    body = _read_json(source, TOKENS_FORMAT, "TOKENS")
    checked = list(_check_tokens(services, body, source))
    algorithm = str(body["algorithm"])
    report = SealReport()
    by_root: dict[str, tuple[dict[str, Any], list[_Checked]]] = {}
    for request, item in checked:
        by_root.setdefault(item.root, (request, []))[1].append(item)
    with services.commit_lock():
        for root, (request, items) in by_root.items():
            subjects, digest_of = _subjects(request)
            batch = merkle.build(algorithm, sorted(set(digest_of.values())))
            if batch.root.hex() != root:
                raise StorageError(
                    f"the request kept for root {root[:16]}… no longer builds that root",
                    hint=f"export again; the request is {_request_key(algorithm, root)}",
                )
            complete_batch(
                services,
                subjects,
                batch,
                [(i.authority, i.token) for i in items],
                digest_of,
                algorithm,
                report,
                how=" (stamped across the air gap)",
            )
            done = {"root": root, "serials": [str(i.token.serial_number) for i in items]}
            services.primary.write_bytes(
                _imported_key(algorithm, root),
                (json.dumps(done) + "\n").encode(),
                fsync=services.settings.fsync,
            )
    _crossing(
        services,
        f"{len(checked)} RFC 3161 token(s) for {len(by_root)} hash-tree root(s) imported "
        f"across the air gap from {source.name}, each verified against this archive's trust "
        f"anchors: {', '.join(by_root)}",
    )
    return report


def _subjects(request: dict[str, Any]) -> tuple[list[Subject], dict[Subject, bytes]]:
    subjects: list[Subject] = []
    digest_of: dict[Subject, bytes] = {}
    for item in request["subjects"]:
        s = Subject(
            item["package_id"],
            item["object_path"],
            item["subject_path"],
            item["sha512"],
            datetime.fromisoformat(item["since"]),
        )
        subjects.append(s)
        digest_of[s] = bytes.fromhex(item["leaf"])
    return subjects, digest_of
