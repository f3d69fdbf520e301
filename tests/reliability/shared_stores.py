"""What the reliability suites share about stores: the backends and the keyring's clean-up."""

from __future__ import annotations

from contextlib import closing

#: Every backend the suites can run on, by the name used in test ids.
BACKENDS = ("file", "fernet+file", "sqlite", "postgresql", "mariadb", "keyring")


def purge_keyring(service: str) -> None:
    """Delete every Secret Service item stored under ``service``."""
    import secretstorage

    with closing(secretstorage.dbus_init()) as connection:
        collection = secretstorage.get_default_collection(connection)
        for item in list(collection.search_items({"service": service})):
            item.delete()
