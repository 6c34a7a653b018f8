"""FIDO's own matching, loaded once per process and made faster without changing a result.

FIDO (opf-fido) walks every one of its ~2,300 formats for every file, reading each pattern
back out of its XML tree and handing the regex text to :func:`re.match`; it parses the
container signature file again for every ZIP or OLE2 file. This engine keeps FIDO's
``Fido`` class, its signature files, its order of formats and its priority rules, and
changes only how the same questions are asked:

1. every pattern is parsed once at load and compiled once on first use, kept with its
   position in plain lists;
2. a format whose every signature needs a byte at offset 0 that the file does not start
   with is not walked (it could not match: FIDO would append nothing for it);
3. within a signature, beginning-of-file patterns are tried before end-of-file and
   variable-position ones (all must match, so the order cannot change the verdict);
   an end-of-file pattern anchored at ``\\Z`` with a bounded width is searched in the last
   bytes it can span only;
4. the container signatures are parsed once per process.

Where any of this cannot be shown safe for a pattern (a regex Python cannot compile, an
unusual construct), that format is walked exactly as FIDO does. ``bench/identify.py``
checks that the PUIDs agree with FIDO's own command line on every file measured.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: Positions as FIDO's signature files name them.
BOF, EOF, VAR, IFB = "BOF", "EOF", "VAR", "IFB"
_COST = {BOF: 0, EOF: 1, VAR: 2, IFB: 2}
#: A pattern that could not be compiled: FIDO raises on reaching it and abandons the format.
_BROKEN = object()

Result = tuple[str | None, str | None, str | None, str]  # puid, mime, format name, basis


def _parse(regex: bytes) -> Any:
    """Python's own parse of a FIDO pattern (raises what :func:`re.compile` would)."""
    from re import _parser  # type: ignore[attr-defined]

    return _parser.parse(regex.decode("latin-1"), 0)


def _constraint(parsed: Any) -> tuple[int, frozenset[int]] | None:
    """(offset, bytes): a match of ``regex`` (tried with ``re.match``, so from offset 0) needs
    one of these bytes at this offset; None when that cannot be read off the pattern safely.

    Read from Python's own parse of the pattern: after ``\\A``, items of width one (a byte,
    a class, any byte) and fixed repeats of them, up to the first byte or class."""
    from re import _constants as c  # type: ignore[attr-defined]

    if parsed.state.flags & (re.IGNORECASE | re.VERBOSE):
        return None
    offset = 0
    for op, arg in list(parsed):
        if op is c.AT and arg is c.AT_BEGINNING_STRING and offset == 0:
            continue
        if op is c.LITERAL:
            return offset, frozenset([arg])
        if op is c.IN:
            allowed = _class(arg, c)
            return None if allowed is None else (offset, allowed)
        if op is c.ANY:
            offset += 1
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT):
            low, high, sub = arg
            items = list(sub)
            if low != high or len(items) != 1 or items[0][0] not in (c.ANY, c.IN, c.LITERAL):
                return None
            offset += low
        else:
            return None
        if offset > 1 << 16:
            return None
    return None


def _class(items: Any, c: Any) -> frozenset[int] | None:
    allowed: set[int] = set()
    for op, arg in items:
        if op is c.LITERAL:
            allowed.add(arg)
        elif op is c.RANGE:
            allowed.update(range(arg[0], arg[1] + 1))
        else:  # NEGATE, CATEGORY...: not worth reading
            return None
    return frozenset(allowed)


def _tail_width(regex: bytes, parsed: Any) -> int | None:
    """For a pattern that can only match at the end (ending in ``\\Z``) and spans at most N
    bytes, N; otherwise None."""
    from re import _constants as c  # type: ignore[attr-defined]

    items = list(parsed)
    if not items or items[-1] != (c.AT, c.AT_END_STRING):
        return None
    text = regex.decode("latin-1")
    if "(?<" in text or "\\A" in text or "^" in text.replace("[^", ""):
        return None
    _, high = parsed.getwidth()
    if high >= c.MAXREPEAT or high > 1 << 20:
        return None
    return int(high)


class Engine:
    """One loaded FIDO, ready to identify files one after the other."""

    def __init__(self) -> None:
        from fido import CONFIG_DIR
        from fido import fido as fido_module
        from fido.versions import get_local_versions

        # What FIDO's own main() sets before it builds its Fido (signature files in use).
        versions = get_local_versions(CONFIG_DIR)
        defaults = fido_module.defaults
        defaults["xml_pronomSignature"] = versions.pronom_signature
        defaults["containersignature_file"] = versions.pronom_container_signature
        defaults["xml_fidoExtensionSignature"] = versions.fido_extension_signature
        defaults["format_files"] = [versions.pronom_signature, versions.fido_extension_signature]
        engine = self

        class FastFido(fido_module.Fido):  # type: ignore[misc]
            def match_formats(self, bofbuffer: bytes, eofbuffer: bytes) -> list[Any]:
                return engine._match(bofbuffer, eofbuffer)

            def match_container(
                self, signature_type: str, klass: Any, file: Any, signature_file: Any
            ) -> list[Any]:
                signatures = engine._container_signatures(signature_type)
                puids = klass(file, signatures).detect_formats()
                return [
                    (self.puid_format_map[p], self.puid_format_map[p].findtext("name"))
                    for p in puids
                ]

        self._et = fido_module.ET
        self._container_file = os.path.join(
            os.path.abspath(CONFIG_DIR), defaults["containersignature_file"]
        )
        self._containers: dict[str, Any] = {}
        self._parsed_containers: Any = None
        self._found: list[Result] = []
        self.fido = FastFido(quiet=True, handle_matches=self._handle, conf_dir=CONFIG_DIR)
        self._compile()

    # --- set-up ----------------------------------------------------------------------------

    def _compile(self) -> None:
        fido = self.fido
        self.formats: list[tuple[Any, str, list[tuple[str, list[list[Any]]]]]]
        self.formats = []
        self._priority: dict[str, frozenset[str]] = fido.puid_has_priority_over_map
        self._by_extension: dict[str, list[tuple[Any, str]]] = {}
        for fmt in fido.formats:
            for ext in fmt.findall("extension"):  # the first extension that matches counts
                if not any(f is fmt for f, _ in self._by_extension.get(ext.text, [])):
                    self._by_extension.setdefault(ext.text, []).append((fmt, fmt.find("puid").text))
        any_start: list[int] = []
        by_offset: dict[int, list[list[int]]] = {}
        for fmt in fido.formats:
            sigs: list[tuple[str, list[list[Any]]]] = []
            exact = False  # walk this format exactly as FIDO does (original pattern order)
            needs: list[tuple[int, frozenset[int]]] | None = []  # one per signature
            for sig in fmt.findall("signature"):
                pats: list[list[Any]] = []
                sig_need: tuple[int, frozenset[int]] | None = None
                for pat in sig.findall("pattern"):
                    pos = pat.findtext("position")
                    text = pat.findtext("regex")
                    try:
                        regex = text.encode("utf8")  # type: ignore[union-attr,unused-ignore]
                        parsed = _parse(regex)
                    except Exception:
                        pats.append([pos, _BROKEN, None])
                        exact = True
                        continue
                    tail = _tail_width(regex, parsed) if pos == EOF else None
                    pats.append([pos, regex, tail])  # compiled on first use (see _match)
                    if pos == BOF and sig_need is None:
                        sig_need = _constraint(parsed)
                if not exact:
                    pats.sort(key=lambda p: _COST.get(p[0], 3))
                sigs.append((sig.findtext("name"), pats))
                if sig_need is None or needs is None:
                    needs = None
                else:
                    needs.append(sig_need)
            if not sigs:
                continue  # no signature: FIDO walks it and never appends it (extensions aside)
            self.formats.append((fmt, fmt.find("puid").text, sigs))
            index = len(self.formats) - 1
            if needs is None or exact:
                any_start.append(index)
            else:
                for offset, allowed in needs:
                    table = by_offset.setdefault(offset, [[] for _ in range(256)])
                    for b in allowed:
                        table[b].append(index)
        # Per offset and byte, the formats a file with that byte there is worth walking for.
        self._any = frozenset(any_start)
        self._by_offset = sorted(
            (offset, [frozenset(t) for t in table]) for offset, table in by_offset.items()
        )

    def _container_signatures(self, kind: str) -> Any:
        if kind not in self._containers:
            if self._parsed_containers is None:
                self._parsed_containers = self._et.parse(self._container_file)
            self._containers[kind] = self.fido.extract_signatures(
                self._parsed_containers, signature_type=kind
            )
        return self._containers[kind]

    # --- matching --------------------------------------------------------------------------

    def _good(self, puid: str, result: list[tuple[Any, str, str]]) -> bool:
        """FIDO's ``as_good_as_any``: no other format in ``result`` has priority over this one
        (PUIDs are unique among FIDO's formats, so a format is its PUID)."""
        prio = self._priority
        return not any(puid in prio[other] for _, _, other in result if other != puid)

    def _match(self, bof: bytes, eof: bytes) -> list[Any]:
        """FIDO's ``match_formats``, the same result, less work (see the module's docstring)."""
        self.fido.current_count += 1
        result: list[tuple[Any, str, str]] = []
        good = self._good
        size = len(bof)
        candidates = set(self._any)
        for offset, table in self._by_offset:
            if offset >= size:
                break
            candidates.update(table[bof[offset]])
        formats = self.formats
        dominated: set[str] = set()  # what the matches so far have priority over
        for index in sorted(candidates):  # FIDO's order
            fmt, puid, sigs = formats[index]
            if puid in dominated and not good(puid, result):
                continue
            broken = False
            for name, pats in sigs:
                success = True
                for pat in pats:
                    pos, rx, tail = pat
                    if rx is _BROKEN:
                        broken = True  # FIDO: an exception, the rest of the format skipped
                        break
                    if type(rx) is bytes:  # first use: compile it once (it parsed at load)
                        rx = pat[1] = re.compile(rx)
                    if pos == BOF:
                        if not rx.match(bof):
                            success = False
                            break
                    elif pos == EOF:
                        start = len(eof) - tail if tail is not None and len(eof) > tail else 0
                        if not rx.search(eof, start):
                            success = False
                            break
                    elif pos in (VAR, IFB) and not rx.search(bof):
                        success = False
                        break
                if broken:
                    break
                if success:
                    result.append((fmt, name, puid))
                    dominated |= self._priority[puid]
        return [(f, n) for f, n, p in result if good(p, result)]

    def _match_extensions(self, filename: str) -> list[Any]:
        """FIDO's ``match_extensions`` from a table built once."""
        ext = os.path.splitext(filename)[1].lower().lstrip(".")
        if not ext:
            return []
        result = [(fmt, "External", puid) for fmt, puid in self._by_extension.get(ext, ())]
        return [(f, n) for f, n, p in result if self._good(p, result)]

    def _handle(
        self, fullname: str, matches: list[Any], delta_t: float, matchtype: str = ""
    ) -> None:
        if not matches:
            self._found.append((None, None, None, "none"))
            return
        fmt, _ = matches[0]  # FIDO's first (best) match, as its command line prints it first
        mime = fmt.find("mime")
        self._found.append(
            (
                fmt.find("puid").text,
                mime.text if mime is not None and mime.text not in (None, "None", "") else None,
                fmt.find("name").text,
                matchtype,
            )
        )

    def identify(self, path: str) -> Result:
        """FIDO's verdict for one file: (PUID, MIME type, format name, basis)."""
        self._found = []
        fido = self.fido
        fido.current_file = path
        fido.matchtype = "signature"
        try:
            size = os.stat(path).st_size
            fido.current_filesize = size
            with open(path, "rb") as f:
                bof, eof, _ = fido.get_buffers(f, size, seekable=True)
            matches = fido.match_formats(bof, eof)
            container = fido.container_type(matches)
            if not fido.nocontainer and container in ("zip", "ole"):
                if container == "zip":
                    found = fido.match_container("ZIP", _zip_package(), path, None)
                else:
                    found = fido.match_container("OLE2", _ole_package(), path, None)
                if found:
                    self._handle(path, found, 0.0, "container")
                    return self._found[0]
            # As FIDO: a zero-byte file is never a signature match, only an extension one.
            if matches and size > 0:
                self._handle(path, matches, 0.0, fido.matchtype)
            else:
                self._handle(path, self._match_extensions(path), 0.0, "extension")
        except Exception:  # unreadable, or FIDO's container code failing on damaged bytes:
            return (None, None, None, "none")  # unidentified, as FIDO says of a file it
            # cannot read (its command line would stop the whole run on the latter)
        return self._found[0] if self._found else (None, None, None, "none")


def _zip_package() -> Any:
    from fido.package import ZipPackage

    return ZipPackage


def _ole_package() -> Any:
    from fido.package import OlePackage

    return OlePackage


_ENGINE: Engine | None = None


def load() -> None:
    """Load FIDO in this process (a worker's initializer)."""
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = Engine()


def identify_paths(paths: Iterable[str]) -> list[Result]:
    """Identify each path with this process's engine (loaded on first use)."""
    load()
    assert _ENGINE is not None
    return [_ENGINE.identify(p) for p in paths]


def identify_path(path: Path) -> Result:
    return identify_paths([str(path)])[0]
