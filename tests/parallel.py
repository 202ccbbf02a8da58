"""Services of its own for each pytest-xdist process.

The test database is already one per process (pytest-django names it after
the xdist worker). The Redis databases behind the broker and the cache, and
the data directory the settings make keys in, are not: a Celery worker one
process starts would take tasks queued by the other, and one process's cache
clear would wipe the other's sessions. Loaded with ``-p`` from pyproject, so
it runs before pytest-django reads the settings.
"""

import os
from urllib.parse import urlsplit, urlunsplit

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ... under xdist


def _other_database(url: str, index: int) -> str:
    """`url` with its Redis database number moved down by two per process."""
    parts = urlsplit(url)
    db = int(parts.path.strip("/") or 0) - 2 * index
    if db < 0:
        raise RuntimeError(f"too many test processes for the Redis databases below {url}")
    return urlunsplit(parts._replace(path=f"/{db}"))


if WORKER.startswith("gw") and WORKER != "gw0":
    index = int(WORKER.removeprefix("gw"))
    for name in ("REDIS_URL", "CACHE_URL", "CELERY_BROKER_URL"):
        if name in os.environ:
            os.environ[name] = _other_database(os.environ[name], index)
    if "TWOKEY_DATA_DIR" in os.environ:
        os.environ["TWOKEY_DATA_DIR"] = os.path.join(os.environ["TWOKEY_DATA_DIR"], WORKER)
