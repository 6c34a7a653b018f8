"""Strict schemas for policy files: unknown keys are errors, every policy is versioned."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class PolicyHeader(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    version: int = Field(ge=1)
    effective_from: date

    @property
    def label(self) -> str:
        return f"{self.id} v{self.version}"


class IngestPolicy(PolicyHeader):
    refuse_fetch: bool = True
    refuse_name_collisions: bool = True
    junk_action: Literal["warn", "refuse"] = "warn"
    junk_file_names: tuple[str, ...] = ()
    junk_dir_names: tuple[str, ...] = ()
    junk_file_prefixes: tuple[str, ...] = ()
