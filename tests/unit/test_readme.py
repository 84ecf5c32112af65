"""The README documents the two commands and every configuration variable with its default."""

from pathlib import Path

from flashsale.common import settings
from flashsale.gateway import settings as gateway_settings

README = Path(__file__).resolve().parents[2] / "README.md"


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
