"""Clean-up of the tables tests create on the database servers."""

from __future__ import annotations

import sqlalchemy as sa


def drop_table(server_url: str, table: str) -> None:
    """Drop ``table`` from the database at ``server_url`` if it exists."""
    engine = sa.create_engine(server_url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    finally:
        engine.dispose()
