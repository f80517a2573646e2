"""The package's rooms import only from rooms before them, so each stage can be read on its own.

The order is the README's map: a room may use any room above it in this list, never one below.
Imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "segpipe"
ROOMS = [
    ["errors", "interrupts", "progress", "temporary"],
    ["data"],
    ["inference"],
    ["models"],
    ["scoring"],
    ["training"],
    ["prediction"],
    ["report"],
    ["pipeline"],
    ["flows"],
    ["cli"],
]
LAYER = {room: level for level, rooms in enumerate(ROOMS) for room in rooms}


def room_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "segpipe" and len(parts) > 1 else None


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_room_is_placed():
    rooms = {path.relative_to(PACKAGE).parts[0].removesuffix(".py") for path in MODULES} - {"__init__"}
    assert rooms == set(LAYER)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_room_imports_a_later_one(path):
    own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    if own == "__init__":
        return
    later = sorted(
        name for name in imports(path)
        if (room := room_of(name)) in LAYER and LAYER[room] > LAYER[own]
    )
    assert not later, f"{own} (layer {LAYER[own]}) imports {later}"
