"""A small access policy as TOML text, for tests that load variants of it."""

from __future__ import annotations

from pathlib import Path

RESEARCHER_ROW = """\
[[rules]]
role = "researcher"
action = "read-content"
tier = "public"
purposes = ["research"]
log = false
second_factor = false
"""

REGISTRAR_ROW = """\
[[rules]]
role = "registrar"
action = "read-content"
tier = "protected-identity"
purposes = ["prosecution"]
log = true
second_factor = true
"""

ARCHIVIST_ROW = """\
[[rules]]
role = "archivist"
action = "read-metadata"
tier = "restricted"
despite_withdrawal = true
log = true
second_factor = false
"""

# A small valid policy: rules[0] researcher, rules[1] registrar, rules[2] archivist.
BASE = f"""\
id = "access"
version = 3
effective_from = "2027-01-01"

[tiers.public]

[tiers.restricted]
period_years = 25
successor = "public"
legal_basis = "Rules art. 4"

[tiers.protected-identity]
period_years = 75
successor = "restricted"
legal_basis = "Rules art. 5"

[purposes.research]
consent = ["research", "public"]

[purposes.prosecution]
consent = ["prosecution"]

[depositors."Example Mechanism"]
legal_basis = "Agreement art. 7"
restricted = {{ period_years = 30 }}

{RESEARCHER_ROW}
{REGISTRAR_ROW}
{ARCHIVIST_ROW}"""


def write(tmp_path: Path, text: str) -> Path:
    """Write ``text`` as ``access.toml`` in ``tmp_path``; return the folder."""
    (tmp_path / "access.toml").write_text(text, encoding="utf-8")
    return tmp_path


def changed(old: str, new: str, text: str = BASE) -> str:
    """``text`` with ``old`` replaced once; fails if ``old`` is not there once (no silent no-op)."""
    assert text.count(old) == 1, old
    return text.replace(old, new)
