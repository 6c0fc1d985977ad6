"""One installer at a time: test processes running side by side (pytest-xdist workers)
that prepare the same directory (``npm ci``, an unpacked sdist) take turns."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def exclusive(directory: Path) -> Iterator[None]:
    """Hold ``directory``'s lock file (``.install.lock``) for the ``with`` block."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".install.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
