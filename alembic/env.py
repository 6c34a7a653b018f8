"""Alembic environment: the engine comes from Custos (``config.attributes['engine']``)."""

from __future__ import annotations

from sqlalchemy import Engine

from alembic import context
from archive.catalog.tables import Base

target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = context.config.attributes.get("engine")
    if not isinstance(engine, Engine):
        raise RuntimeError("run migrations through `custos db upgrade`")
    with engine.begin() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        context.run_migrations()


run_migrations_online()
