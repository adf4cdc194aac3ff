import os
import sys
import tempfile
from pathlib import Path

import pytest

# Spawned worker processes unpickle test helpers by module name (``tests.test_workers._state``):
# the checkout must be on the path they inherit, however pytest was started (``pytest`` puts its
# script's directory first, ``python -m pytest`` the working directory).
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

# Generated databases go to a throwaway cache, never the user's, and are built once per session.
_CACHE = tempfile.mkdtemp(prefix="quill-test-cache-")
os.environ.setdefault("QUILL_CACHE", _CACHE)


def pytest_runtest_setup(item):
    """A test marked ``postgres`` gets this process's throwaway cluster (``QUILL_POSTGRES_URL``)."""
    if item.get_closest_marker("postgres") is not None:
        from tests import pgcluster

        if pgcluster.unavailable() is None:
            pgcluster.url()


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
