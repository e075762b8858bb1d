"""The deploy files, read statically: no Docker daemon is reachable on the machines that run the tests."""

from pathlib import Path

import yaml

from config.celery import WORKER_GROUPS

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_compose_runs_one_worker_per_queue_group():
    workers = {
        name: service["command"]
        for name, service in compose()["services"].items()
        if service.get("command", [])[:4] == ["celery", "-A", "config", "worker"]
    }

    consumed = {name: tuple(_option(command, "--queues").split(",")) for name, command in workers.items()}
    assert sorted(consumed.values()) == sorted(WORKER_GROUPS.values())
    long_worker = next(name for name, queues in consumed.items() if queues == WORKER_GROUPS["long"])
    # A recompute or an import reserved behind another would wait for it.
    assert _option(workers[long_worker], "--prefetch-multiplier") == "1"
