"""The README documents the two commands, every RPC of every service and every configuration variable with its
default."""

import re
from pathlib import Path

from flashsale.common import settings
from flashsale.gateway import settings as gateway_settings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def test_quick_start_has_exactly_the_two_commands() -> None:
    text = README.read_text()
    block = text.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make demo", "make test"]


def test_every_variable_is_documented_with_its_default() -> None:
    text = README.read_text()
    for model in (settings.Settings, gateway_settings.GatewaySettings):
        for name, default, _ in settings.env_table(model):
            assert f"| `{name}` | {default} |" in text, name


def test_every_rpc_of_every_service_is_listed() -> None:
    cells = [line.split("|") for line in README.read_text().splitlines() if line.count("|") == 4]
    rows = {cell[1].strip(): cell[3] for cell in cells}
    for proto in sorted((ROOT / "proto" / "flashsale_api" / "v1").glob("*.proto")):
        rpcs = re.findall(r"^\s*rpc (\w+)\s*\(", proto.read_text(), flags=re.MULTILINE)
        if not rpcs:
            continue  # events.proto: messages only
        listed = {name.strip() for name in rows[proto.stem].split(",")}
        assert listed == set(rpcs), f"{proto.name}: README lists {sorted(listed)}, the proto has {sorted(rpcs)}"
