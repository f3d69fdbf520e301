from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from webex_tokens.backends.file import FileStore
from webex_tokens.testing import StoreConformance


class TestFileStore(StoreConformance):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[FileStore]:
        with FileStore(tmp_path / "tokens.json") as store:
            yield store
