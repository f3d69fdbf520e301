"""What the reliability suites share about stores: the backends and their clean-up."""

from __future__ import annotations

from contextlib import closing

import sqlalchemy as sa

#: Every backend the suites can run on, by the name used in test ids.
BACKENDS = ("file", "fernet+file", "sqlite", "postgresql", "mariadb", "keyring")


def drop_table(server_url: str, table: str) -> None:
    """Drop ``table`` on the server at ``server_url`` if it exists."""
    engine = sa.create_engine(server_url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    finally:
        engine.dispose()


def purge_keyring(service: str) -> None:
    """Delete every Secret Service item stored under ``service``."""
    import secretstorage

    with closing(secretstorage.dbus_init()) as connection:
        collection = secretstorage.get_default_collection(connection)
        for item in list(collection.search_items({"service": service})):
            item.delete()
