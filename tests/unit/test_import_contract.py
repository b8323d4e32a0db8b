"""The import contract between the project's parts, checked by walking every module's imports.

The parts and what each may import of the project's own code:

- the kernel (``agent/*.py`` but the CLI): itself, and the device base (``agent.seat.devices``) that
  the configuration validates device tables against; never the deployables, the web apps or storage;
- ``agent.web`` (what both web apps share): the kernel;
- ``storage``: itself and the kernel's vocabulary only (``agent.events``, ``agent.errors``,
  ``agent.numbers`` and the hook markers of ``agent``);
- ``plugins``: the kernel, the device base (``agent.seat.devices``, ``agent.seat.audio``) and each other;
- the seat (``agent.seat``): the kernel, ``agent.web``, storage; never the centre;
- the centre (``agent.centre``): the kernel, ``agent.web``, storage; never the seat;
- the CLI (``agent.cli``, ``agent.commands``): anything.

Every import counts, also those under ``TYPE_CHECKING`` and inside functions: a type-only import
still couples the parts.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OWN = ("agent", "storage", "plugins")

KERNEL_VOCABULARY = ("agent.events", "agent.errors", "agent.numbers", "agent.hookspecs")
DEVICE_BASE = ("agent.seat.devices", "agent.seat.audio")


@dataclass(frozen=True)
class Violation:
    """One import a part may not make."""

    module: str
    imported: str
    line: int

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.imported}"


def part_of(module: str) -> str:
    """The part a module belongs to (see the module docstring)."""
    if module == "agent.cli" or module.startswith("agent.commands"):
        return "cli"
    for prefix, part in (
        ("agent.seat", "seat"),
        ("agent.centre", "centre"),
        ("agent.web", "web"),
        ("storage", "storage"),
        ("plugins", "plugins"),
    ):
        if module == prefix or module.startswith(prefix + "."):
            return part
    return "kernel"


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def allowed(importer: str, imported: str, names: tuple[str, ...] = ()) -> bool:
    """Whether module ``importer`` may import ``imported`` (``names``: what a ``from`` import takes)."""
    target = part_of(imported)
    match part_of(importer):
        case "cli":
            return True
        case "kernel":
            return target == "kernel" or _within(imported, ("agent.seat.devices",))
        case "web":
            return target in {"kernel", "web"}
        case "storage":
            if target == "storage":
                return True
            if imported == "agent":
                return set(names) <= {"hookimpl"}
            return _within(imported, KERNEL_VOCABULARY)
        case "plugins":
            return target in {"kernel", "plugins"} or _within(imported, DEVICE_BASE)
        case "seat":
            return target in {"kernel", "web", "storage", "seat"}
        case "centre":
            return target in {"kernel", "web", "storage", "centre"}
    raise AssertionError(importer)


def module_name(root: Path, path: Path) -> str:
    """The dotted module name of a file under ``root``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(source: str, module: str, is_package: bool) -> Iterator[tuple[str, tuple[str, ...], int]]:
    """Every project-internal import in ``source``: (imported module, names taken, line)."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in OWN:
                    yield alias.name, (), node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.split(".")[0] in OWN:
                yield target, tuple(alias.name for alias in node.names), node.lineno


def violations(root: Path) -> list[Violation]:
    """Every forbidden import in the project's own packages under ``root``."""
    found = []
    for top in OWN:
        for path in sorted((root / top).rglob("*.py")):
            module = module_name(root, path)
            source = path.read_text(encoding="utf-8")
            for imported, names, line in imports(source, module, path.name == "__init__.py"):
                if not allowed(module, imported, names):
                    found.append(Violation(module, imported, line))
    return found


def test_the_project_keeps_its_import_contract() -> None:
    assert [str(v) for v in violations(ROOT)] == []


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for top in OWN:
        (tmp_path / top).mkdir(exist_ok=True)
    return tmp_path


@pytest.mark.parametrize(
    ("path", "source", "forbidden"),
    [
        ("storage/models.py", "from agent.config import Config\n", "agent.config"),
        ("storage/models.py", "from agent import __version__\n", "agent"),
        ("agent/calls.py", "import storage.models\n", "storage.models"),
        ("agent/config.py", "from agent.seat.runner import run\n", "agent.seat.runner"),
        ("agent/hookspecs.py", "from agent.centre.app import make_console_app\n", "agent.centre.app"),
        (
            "agent/centre/views/calls.py",
            "def f():\n    from agent.seat.web.bus import SeatBus\n",
            "agent.seat.web.bus",
        ),
        ("agent/centre/app.py", "from ..seat import recorder\n", "agent.seat"),
        ("agent/seat/runner.py", "from agent.centre import auth\n", "agent.centre"),
        ("agent/web/i18n.py", "from agent.seat.web import app\n", "agent.seat.web"),
        ("plugins/hayes/device.py", "from agent.seat.runner import Runner\n", "agent.seat.runner"),
        ("plugins/hayes/device.py", "from storage.db import make_engine\n", "storage.db"),
        (
            "agent/decode.py",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from storage.db import x\n",
            "storage.db",
        ),
    ],
)
def test_a_forbidden_import_is_caught(tmp_path: Path, path: str, source: str, forbidden: str) -> None:
    root = _tree(tmp_path, {path: source})
    assert [v.imported for v in violations(root)] == [forbidden]


@pytest.mark.parametrize(
    ("path", "source"),
    [
        ("storage/models.py", "from agent import hookimpl\nfrom agent.events import Call\n"),
        ("plugins/hayes/device.py", "from agent.seat.devices import Device\nfrom plugins.whozz import x\n"),
        ("agent/config.py", "from agent.seat.devices import DeviceRegistry\n"),
        ("agent/centre/app.py", "from agent.web import to_json\nfrom storage.models import CallRecord\n"),
        ("agent/commands/demo.py", "from agent.seat.runner import run\nfrom agent.centre.app import x\n"),
    ],
)
def test_an_allowed_import_passes(tmp_path: Path, path: str, source: str) -> None:
    root = _tree(tmp_path, {path: source})
    assert violations(root) == []


def test_unit_tests_cannot_open_a_network_socket() -> None:
    import socket

    import pytest_socket

    with pytest.raises(pytest_socket.SocketBlockedError):
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)
