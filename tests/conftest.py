import os
import tempfile

import pytest

# Generated databases go to a throwaway cache, never the user's, and are built once per session.
_CACHE = tempfile.mkdtemp(prefix="quill-test-cache-")
os.environ.setdefault("QUILL_CACHE", _CACHE)


@pytest.fixture(scope="session")
def shop_suite():
    from quill_env import get_suite

    suite = get_suite("shop")
    suite.database("small")
    suite.database("variant")
    return suite


@pytest.fixture(scope="session")
def small_db(shop_suite):
    """Path of the shop suite's small database (read-only use)."""
    return str(shop_suite.database("small"))
