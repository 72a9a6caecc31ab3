"""docker-compose.yml as the deployment tests read it: parsed, interpolated from a .env, and turned
into the commands and environments of local processes (tests/deploy/test_compose_stack.py).

Compose's own interpolation is reproduced here for the forms the file uses (``${NAME}``,
``${NAME:-default}``, ``${NAME:?error}``, ``${NAME:+alt}``, ``$$`` for a literal ``$``); the static
tests check it against `docker compose config` itself.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_TEXT = (REPO_ROOT / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES = COMPOSE["services"]
ENV_EXAMPLE = (REPO_ROOT / ".env.example").read_text()
# Where the image keeps Airflow's home (AIRFLOW_HOME), below which the stack mounts its folders.
CONTAINER_AIRFLOW_HOME = "/opt/airflow"

VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])((?:[^{}]|\{[^{}]*\})*))?\}")


def env_example() -> dict[str, tuple[str, bool]]:
    """NAME -> (value, commented out) of every variable .env.example documents."""
    documented = {}
    for line in ENV_EXAMPLE.splitlines():
        match = re.match(r"^(#\s*)?([A-Z_][A-Z0-9_]*)=(.*)$", line.strip())
        if match:
            documented[match.group(2)] = (match.group(3), bool(match.group(1)))
    return documented


def required_variables() -> list[str]:
    """The variables .env.example lists uncommented: the ones a user must fill in."""
    return [name for name, (_, commented) in env_example().items() if not commented]


def interpolate(value, env: dict[str, str]):
    """Compose's variable interpolation, enough for this file (defaults, required, alternatives)."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        name, operator, argument = match.group(1), match.group(2), match.group(3)
        current = env.get(name, "")
        if operator == ":-":
            return current or interpolate(argument, env)
        if operator == ":?":
            if not current:
                raise KeyError(f"{name} is required: {argument}")
            return current
        if operator == ":+":
            return interpolate(argument, env) if current else ""
        return current

    return VARIABLE.sub(substitute, value).replace("$$", "$")


def resolved(service: str, env: dict[str, str]) -> dict:
    return interpolate(SERVICES[service], env)


def environment(service: str, env: dict[str, str]) -> dict[str, str]:
    found = resolved(service, env).get("environment", {})
    if isinstance(found, list):
        found = dict(item.split("=", 1) for item in found)
    return {key: str(value) for key, value in found.items()}


def command(service: str, env: dict[str, str]) -> list[str]:
    """The service's command as an argument list (a string command is split as compose does)."""
    found = resolved(service, env).get("command", [])
    return shlex.split(found) if isinstance(found, str) else [str(part) for part in found]


def bind_mounts(service: str) -> dict[str, str]:
    """container path -> repository path of the service's bind mounts (./folder:/path[:ro])."""
    mounts = {}
    for volume in SERVICES[service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts[target] = str((REPO_ROOT / source).resolve())
    return mounts


def published_port(service: str, env: dict[str, str]) -> tuple[str, str, str]:
    """(host address, host port, container port) of the service's one published port."""
    (spec,) = resolved(service, env)["ports"]
    address, host_port, container_port = str(spec).split(":")
    return address, host_port, container_port


class Localiser:
    """Maps the container world of the compose file onto processes on this machine.

    ``addresses``: "service:port" (as the file writes them) -> "127.0.0.1:local port"; every other
    service host name -> 127.0.0.1; container paths /opt/airflow/... -> the same paths below the local Airflow home;
    0.0.0.0 (listen everywhere) -> 127.0.0.1.
    """

    def __init__(self, addresses: dict[str, str], airflow_home: Path):
        self.addresses = addresses
        self.airflow_home = str(airflow_home)

    def value(self, text: str) -> str:
        for container, local in self.addresses.items():
            text = text.replace(container, local)
        text = text.replace("0.0.0.0", "127.0.0.1")
        for host in SERVICES:
            text = re.sub(rf"(?<![\w.-]){re.escape(host)}(?![\w-])", "127.0.0.1", text)
        return re.sub(rf"(?<![\w/]){re.escape(CONTAINER_AIRFLOW_HOME)}(?=/|$|\s)", self.airflow_home, text)

    def environment(self, env: dict[str, str]) -> dict[str, str]:
        return {key: self.value(value) for key, value in env.items()}
