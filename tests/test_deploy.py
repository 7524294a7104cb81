"""deploy/ is documented, not run in CI: what can drift from the code is checked here instead. Every qa-bot
command line in the compose file and the systemd units must parse against the real CLI, every setting the
example environment sets must be one qa-bot reads, and the load balancer must point at services that exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import yaml

from bot.cli import cli
from bot.settings import known_variables

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def parse_command(args: list[str]) -> None:
    """Parse `qa-bot ARGS` down to the leaf command without running it; click raises on an unknown command or
    option, or a value of the wrong type. (The deploy files give no group options, so a group's first word is its
    command.)"""
    command: click.Command = cli
    parent: click.Context | None = None
    while isinstance(command, click.Group):
        ctx = click.Context(command, info_name="qa-bot", parent=parent)
        sub = command.get_command(ctx, args[0]) if args else None
        if sub is None:
            raise click.UsageError(f"no qa-bot command {args[:1]}")
        command, parent, args = sub, ctx, args[1:]
    command.make_context(command.name, list(args), parent=parent)


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def qa_bot_services() -> dict[str, dict]:
    return {name: service for name, service in compose()["services"].items() if service.get("image") == "qa-bot"}


def test_compose_runs_replicas_a_worker_and_migrations():
    services = qa_bot_services()
    commands = sorted(service["command"][0] for service in services.values())
    assert commands == ["db", "serve", "serve", "worker"]


@pytest.mark.parametrize("name", sorted(qa_bot_services()))
def test_compose_commands_parse(name):
    parse_command(qa_bot_services()[name]["command"])


def unit_commands() -> list[tuple[str, list[str]]]:
    found = []
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        for line in unit.read_text().splitlines():
            key, _, value = line.partition("=")
            if key in ("ExecStart", "ExecStartPre"):
                program, *args = shlex.split(value.replace("%i", "3000"))
                assert program.endswith("/qa-bot"), f"{unit.name}: {program}"
                found.append((unit.name, args))
    return found


@pytest.mark.parametrize(("unit", "args"), unit_commands())
def test_systemd_commands_parse(unit, args):
    parse_command(args)


def test_a_command_that_does_not_exist_fails_to_parse():
    with pytest.raises(click.UsageError):
        parse_command(["serve", "--no-such-option"])
    with pytest.raises(click.UsageError):
        parse_command(["nonsense"])


def test_the_example_environment_sets_only_known_settings():
    names = [
        line.split("=", 1)[0].lstrip("# ")
        for line in (DEPLOY / "qa-bot.env.example").read_text().splitlines()
        if re.match(r"#? ?[A-Z_]+=", line)
    ]
    known = {*known_variables(), "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN"}
    assert names and set(names) <= known, set(names) - known


def test_the_load_balancer_sends_to_the_serve_replicas():
    upstreams = re.findall(r"server (\S+):3000", (DEPLOY / "nginx.conf").read_text())
    serving = [name for name, service in qa_bot_services().items() if service["command"][0] == "serve"]
    assert sorted(upstreams) == sorted(serving)
