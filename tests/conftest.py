"""What every test needs: an environment that cannot touch the developer's own data or plugins.

Set in ``pytest_configure``, before any test module is imported, so that code
computing paths at import time already sees it:

- ``XDG_DATA_HOME`` (and the other XDG base directories) point at a fresh
  directory for the session: ``platformdirs`` puts the default SQLite database
  and recordings there, never in the real ``~/.local/share``.
- ``CTI_AGENT_LOAD_PLUGINS`` and ``CTI_AGENT_DATABASE_URL`` are unset, so a
  developer's shell settings change no test; tests that need them set them
  with ``monkeypatch``.
- Hypothesis runs the ``ci`` profile: no deadline (a loaded 2-core machine
  must not fail a property test by timing), and derandomized when ``CI`` is
  set so a CI run is repeatable. ``HYPOTHESIS_PROFILE=dev`` is faster locally.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import platformdirs
import pytest
from hypothesis import settings

_CLEARED = ("CTI_AGENT_LOAD_PLUGINS", "CTI_AGENT_DATABASE_URL", "CTI_AGENT_CENTRAL_URL")
_XDG = {
    "XDG_DATA_HOME": "data",
    "XDG_CONFIG_HOME": "config",
    "XDG_CACHE_HOME": "cache",
    "XDG_STATE_HOME": "state",
}

# derandomize: the same examples on every CI run, so a red run can be reproduced and a
# green one is not luck; no example database then, since nothing would read it back.
_ci_options: dict[str, Any] = {"deadline": None, "max_examples": 50, "print_blob": True}
if os.environ.get("CI"):
    _ci_options.update(derandomize=True, database=None)
settings.register_profile("ci", **_ci_options)
settings.register_profile("dev", deadline=None, max_examples=25)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

_session_home: Path | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _session_home
    for name in _CLEARED:
        os.environ.pop(name, None)
    _session_home = Path(tempfile.mkdtemp(prefix="cti-test-home-"))
    for variable, sub in _XDG.items():
        path = _session_home / sub
        path.mkdir()
        os.environ[variable] = str(path)
    data_dir = Path(platformdirs.user_data_dir("cti-agent", appauthor=False))
    if _session_home not in data_dir.parents:
        raise pytest.UsageError(f"platformdirs ignores XDG_DATA_HOME here ({data_dir}); refusing to run")


def pytest_unconfigure(config: pytest.Config) -> None:
    if _session_home is not None:
        shutil.rmtree(_session_home, ignore_errors=True)


@pytest.fixture(scope="session")
def session_data_home() -> Path:
    """The session's ``XDG_DATA_HOME``: where ``platformdirs`` puts cti-agent's data in tests."""
    return Path(os.environ["XDG_DATA_HOME"])


# Emulators and signal generators shared by tests live beside this file (tests/*.py);
# make them importable as top-level modules from any test folder.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))
