"""The project's own conventions, checked: every test outside tests/unit declares its level, and `make help`
describes every target."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LEVELS = ("integration", "e2e", "faults", "operator", "observability", "charts", "cluster")


def test_every_test_module_outside_unit_declares_its_level() -> None:
    undeclared = []
    for path in sorted((ROOT / "tests").glob("*/test_*.py")):
        if path.parent.name == "unit":
            continue
        marks = re.findall(r"pytest\.mark\.(\w+)", path.read_text())
        if not set(marks) & set(LEVELS):
            undeclared.append(path.relative_to(ROOT).as_posix())
    assert not undeclared, f"no level marker ({', '.join(LEVELS)}) in {undeclared}"


def test_every_make_target_is_phony_and_described_for_make_help() -> None:
    makefile = (ROOT / "Makefile").read_text().replace("\\\n", " ")  # continuation lines joined
    targets = set(re.findall(r"^([a-z0-9-]+):", makefile, flags=re.MULTILINE))
    phony = set(next(line for line in makefile.splitlines() if line.startswith(".PHONY:")).split()[1:])
    described = set(re.findall(r"^([a-z0-9-]+):.*## ", makefile, flags=re.MULTILINE))
    assert targets == phony, f"not .PHONY: {targets - phony}; .PHONY but no such target: {phony - targets}"
    assert targets == described, f"without a ## description for make help: {targets - described}"


def _frozen(node: ast.ClassDef) -> bool:
    return any(
        isinstance(d, ast.Call) and any(k.arg == "frozen" and getattr(k.value, "value", False) for k in d.keywords)
        for d in node.decorator_list
    )


def test_no_frozen_dataclass_holds_a_mutable_list_dict_or_set() -> None:
    mutable = re.compile(r"(?<![\w.])(list|dict|set)\[")
    found = []
    for folder in ("services/flashsale", "operator/flashsale_operator", "tools/flashsale_tools"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef) and _frozen(node):
                    for field in node.body:
                        if isinstance(field, ast.AnnAssign) and mutable.search(ast.unparse(field.annotation)):
                            found.append(f"{path.relative_to(ROOT)}:{field.lineno} {node.name}")
    assert not found, f"frozen dataclasses holding a list, dict or set (use a tuple or a Mapping): {found}"
