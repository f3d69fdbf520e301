from __future__ import annotations

from collections.abc import Iterator

import pytest

from webex_tokens import open_store
from webex_tokens.backends.memory import MemoryStore
from webex_tokens.errors import InvalidStoreURL
from webex_tokens.testing import StoreConformance, make_token


class TestMemoryStore(StoreConformance):
    @pytest.fixture
    def store(self) -> Iterator[MemoryStore]:
        with MemoryStore() as store:
            yield store


def test_plain_memory_url_opens_a_fresh_store() -> None:
    first = open_store("memory://")
    first.put("a", make_token())
    assert open_store("memory://").get("a") is None


def test_labelled_memory_url_is_shared_in_process() -> None:
    open_store("memory://shared-test").put("a", make_token())
    assert open_store("memory://shared-test").get("a") == make_token()


@pytest.mark.parametrize("url", ["memory:///path", "memory://x?y=1"])
def test_bad_memory_url(url: str) -> None:
    with pytest.raises(InvalidStoreURL, match="memory://"):
        open_store(url)
