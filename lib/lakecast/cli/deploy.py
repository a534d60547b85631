"""`lakecast deploy ...`: start, watch, drive and roll back rollouts.

    lakecast deploy NAME VERSION --strategy canary [--steps 5,25,50,100] [--step-seconds N]
    lakecast deploy NAME VERSION --strategy ab --experiment ID --split 50
    lakecast deploy NAME VERSION --strategy multi-model --rules conf/rollouts/multi_model.yaml
    lakecast deploy rollback NAME
    lakecast deploy approve NAME_OR_ROLLOUT_ID [--by NAME] [--reason TEXT]
    lakecast deploy status NAME
    lakecast deploy run-controller NAME

``deploy NAME VERSION`` is short for ``deploy start NAME VERSION``. The rollout state is stored
next to the registry; workers pick it up at their next poll. Decisions go to the registry's
audit log and, unless ``--no-publish``, to the metrics topic (kind=rollout). A model named in
``rollout.approval_required`` holds before 100 % until ``deploy approve``.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from lakecast.errors import RolloutError
from lakecast.registry import Registry, current_user
from lakecast.rollout.journal import RolloutJournal, audit_decisions


class _DeployGroup(TyperGroup):
    """``deploy NAME VERSION ...`` runs ``deploy start NAME VERSION ...``."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in self.commands:
            args = ["start", *args]
        return super().resolve_command(ctx, args)


app = typer.Typer(
    cls=_DeployGroup,
    help="Roll a model version out: blue-green, canary, A/B, shadow, multi-model, bandit.",
    no_args_is_help=True,
)

_options: dict[str, Any] = {}


@app.callback()
def _group_options(
    root: str | None = typer.Option(None, "--root", help="The registry root (default: config)."),
    bootstrap: str | None = typer.Option(
        None, "--bootstrap", help="Kafka bootstrap servers (default: config)."
    ),
    metrics_topic: str | None = typer.Option(None, "--metrics-topic", help="Default: config."),
    publish: bool = typer.Option(
        True, "--publish/--no-publish", help="Send decisions to the metrics topic."
    ),
) -> None:
    _options.update(root=root, bootstrap=bootstrap, metrics_topic=metrics_topic, publish=publish)


def _kafka() -> Any:
    from lakecast.config import settings

    kafka = settings().kafka
    updates: dict[str, Any] = {}
    if _options.get("bootstrap"):
        updates["bootstrap_servers"] = _options["bootstrap"]
    if _options.get("metrics_topic"):
        updates["topics"] = kafka.topics.model_copy(update={"metrics": _options["metrics_topic"]})
    return kafka.model_copy(update=updates)


def _approval_required(name: str) -> bool:
    from lakecast.config import settings

    return name in settings().rollout.approval_required


def _registry() -> Registry:
    return Registry(_options.get("root"))


def _store(registry: Registry) -> Any:
    from lakecast.rollout.store import RolloutStore

    return RolloutStore(registry.root)


def _journal(registry: Registry, who: str) -> RolloutJournal:
    sink = None
    if _options.get("publish", True):
        from lakecast.rollout.journal import KafkaMetricsSink

        sink = KafkaMetricsSink(_kafka(), source="rollout-cli")
    return RolloutJournal(registry, sink, who=who)


def _steps(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        msg = f"--steps {text!r}: expected percentages separated by commas, e.g. 5,25,50,100"
        raise RolloutError(msg) from exc


@app.command("start")
def start(
    name: str = typer.Argument(..., help="The model name."),
    version: str = typer.Argument(..., help="The version to roll out."),
    strategy: str | None = typer.Option(
        None,
        "--strategy",
        "-s",
        help="blue-green, canary, ab, shadow, multi-model or bandit (default: the file's, "
        "else canary).",
    ),
    steps: str | None = typer.Option(None, "--steps", help="Canary steps, e.g. 5,25,50,100."),
    step_seconds: float | None = typer.Option(None, "--step-seconds", help="Canary step window."),
    settle_seconds: float | None = typer.Option(None, "--settle-seconds"),
    max_holds: int | None = typer.Option(None, "--max-holds"),
    experiment: str | None = typer.Option(
        None, "--experiment", help="The rollout / experiment id."
    ),
    split: float | None = typer.Option(None, "--split", help="A/B: the candidate's percent."),
    shadow_percent: float | None = typer.Option(None, "--shadow-percent"),
    rules: Path | None = typer.Option(
        None, "--rules", help="A rollout file (YAML/JSON): rules, arms, controller, gates."
    ),
    alias: str = typer.Option("champion", "--alias", help="The alias of the live version."),
    replace: bool = typer.Option(False, "--replace", help="Replace a rollout still running."),
    reason: str = typer.Option("", "--reason", help="Why, recorded in the audit log."),
    wait: bool = typer.Option(False, "--wait", help="Drive the rollout here until it ends."),
    timeout: float | None = typer.Option(None, "--timeout", help="With --wait: give up after."),
) -> None:
    """Check the gates, then start rolling VERSION of NAME out."""
    from lakecast.rollout.deploy import (
        DeployRequest,
        load_rollout_file,
        parse_strategy,
        start_rollout,
    )

    controller: dict[str, Any] = {}
    for key, value in (
        ("step_seconds", step_seconds),
        ("settle_seconds", settle_seconds),
        ("max_holds", max_holds),
    ):
        if value is not None:
            controller[key] = value
    request = DeployRequest(
        name=name,
        version=version,
        strategy=None if strategy is None else parse_strategy(strategy),
        steps=_steps(steps),
        rollout_id=experiment,
        split=split,
        shadow_percent=shadow_percent,
        plan=load_rollout_file(rules) if rules is not None else {},
        controller=controller,
        champion_alias=alias,
        replace_running=replace,
        reason=reason,
        approval_required=_approval_required(name),
    )
    registry = _registry()
    # An unknown model or version is named before the journal dials Kafka (which may be away).
    registry.resolve(f"{name}:{version}")
    who = current_user()
    record, report = start_rollout(
        registry, _store(registry), request, _journal(registry, who), who=who
    )
    for result in report.results:
        typer.echo(f"gate {result.gate}: passed ({result.message})")
    state = record.state
    typer.echo(
        f"{name}: {state.spec.strategy} rollout {state.spec.id!r} of {version} started "
        f"(revision {state.revision}, {state.status})"
    )
    if record.controller.get("approval_required"):
        typer.echo(f"{name}: the step to 100 % waits for `lakecast deploy approve {name}`")
    if wait and state.status == "running":
        _drive(name, timeout)


@app.command("rollback")
def rollback(
    name: str = typer.Argument(..., help="The model name."),
    reason: str = typer.Option("", "--reason", help="Why, recorded in the audit log."),
) -> None:
    """Send all traffic back to the baseline at once (and the champion alias, if it moved)."""
    from lakecast.rollout.deploy import rollback_rollout

    registry = _registry()
    who = current_user()
    record = rollback_rollout(
        registry, _store(registry), name, _journal(registry, who), who=who, reason=reason
    )
    baseline = record.state.spec.baseline()
    typer.echo(
        f"{name}: rollout {record.state.spec.id!r} rolled back; all traffic to "
        f"{baseline.model} (revision {record.revision})"
    )


@app.command("approve")
def approve(
    target: str = typer.Argument(..., help="The model name or the rollout id."),
    by: str | None = typer.Option(None, "--by", help="Who approves (default: the OS user)."),
    reason: str = typer.Option("", "--reason", help="Why, recorded in the audit log."),
) -> None:
    """Let a rollout that needs an approval take its last step to 100 %."""
    from lakecast.rollout.approval import approve_rollout

    registry = _registry()
    who = by if by is not None else current_user()
    record = approve_rollout(
        registry, _store(registry), target, _journal(registry, who), by=who, reason=reason
    )
    state = record.state
    held = record.controller.get("awaiting_approval_since")
    then = "promotes at its next tick" if held else "promotes once its last step passes"
    typer.echo(
        f"{state.model}: rollout {state.spec.id!r} approved by {who} (revision "
        f"{state.revision}); the controller {then}"
    )


@app.command("status")
def status(
    name: str = typer.Argument(..., help="The model name."),
    as_json: bool = typer.Option(False, "--json", help="Print the state and history as JSON."),
    history: int = typer.Option(10, "--history", help="How many past decisions to show."),
) -> None:
    """The current rollout of NAME: strategy, status, traffic, and its latest decisions."""
    from lakecast.rollout.approval import approval_status

    registry = _registry()
    record = _store(registry).record(name)
    if record is None:
        registry.resolve(name)  # an unknown model is named as such, not as one without rollout
        msg = f"status {name!r}: the model has no rollout"
        raise RolloutError(msg)
    decisions = audit_decisions(registry, name)[-history:] if history > 0 else []
    if as_json:
        data = {
            "state": json.loads(record.state.to_json()),
            "controller": record.controller,
            "updated_by": record.updated_by,
            "reason": record.reason,
            "decisions": decisions,
        }
        typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
        return
    state, spec = record.state, record.state.spec
    console = Console()
    console.print(
        f"[bold]{name}[/bold]: {spec.strategy} {spec.id!r} revision {state.revision} "
        f"[bold]{state.status}[/bold]",
        highlight=False,
    )
    for line in _traffic(state):
        console.print(f"  {line}", highlight=False)
    approval = approval_status(name, record.controller) if state.status == "running" else None
    if approval is not None:
        console.print(f"  approval: {approval}", highlight=False)
    table = Table("at", "decision", "revision", "reasons")
    for decision in decisions:
        table.add_row(
            decision["at"].isoformat(timespec="seconds"),
            decision.get("event", decision["action"]),
            str(decision.get("revision", "")),
            "; ".join(decision.get("reasons", []))[:300],
        )
    console.print(table)


def _traffic(state: Any) -> list[str]:
    from lakecast.rollout.router import Router

    spec = state.spec
    lines = [f"{v.name}: {v.model}" for v in spec.variants()]
    if spec.shadows:
        lines.append(f"shadows: {', '.join(spec.shadows)} ({spec.shadow_percent:g} %)")
    router = Router(state)
    users = [f"u{i}" for i in range(2_000)]
    counts = router.route_batch(users).by_variant()
    share = ", ".join(f"{n} {100 * len(p) / len(users):.0f} %" for n, p in counts.items())
    if spec.strategy != "multi_model":
        lines.append(f"traffic now: {share}")
    return lines


@app.command("run-controller")
def run_controller(
    name: str = typer.Argument(..., help="The model name."),
    timeout: float | None = typer.Option(None, "--timeout", help="Give up after N seconds."),
    predictions_topic: str | None = typer.Option(None, "--predictions-topic"),
    events_topic: str | None = typer.Option(None, "--events-topic"),
) -> None:
    """Drive NAME's running rollout (canary analysis, bandit weights) until it ends."""
    _drive(name, timeout, predictions_topic, events_topic)


def _drive(
    name: str,
    timeout: float | None,
    predictions_topic: str | None = None,
    events_topic: str | None = None,
) -> None:
    from lakecast.rollout.controller import RolloutController
    from lakecast.rollout.evidence import TopicTail

    registry = _registry()
    store = _store(registry)
    record = store.record(name)
    if record is None:
        registry.resolve(name)
    if record is None or record.state.status != "running":
        found = "no rollout" if record is None else f"a {record.state.status} rollout"
        msg = f"run-controller {name!r}: nothing to drive, the model has {found}"
        raise RolloutError(msg)
    kafka = _kafka()
    start = (record.state.updated_at or record.updated_at) - timedelta(seconds=30)
    tails: dict[str, Any] = {"metrics": TopicTail(kafka, kafka.topics.metrics, start=start)}
    if record.state.spec.strategy == "bandit":
        tails["predictions"] = TopicTail(
            kafka, predictions_topic or kafka.topics.predictions, start=start
        )
        tails["events"] = TopicTail(kafka, events_topic or kafka.topics.events, start=start)
    controller = RolloutController(
        name, store, registry, _journal(registry, "rollout-controller"), **tails
    )
    console = Console()
    seen = 0
    deadline = None if timeout is None else time.monotonic() + timeout
    final = record.state
    try:
        while final is not None and final.status in ("running", "paused"):
            final = controller.run(timeout_s=1.0)
            for decision in controller.decisions[seen:]:
                _print_decision(console, decision)
            seen = len(controller.decisions)
            if deadline is not None and time.monotonic() >= deadline:
                break
    finally:
        for tail in tails.values():
            tail.close()
    if final is not None:
        console.print(f"{name}: rollout {final.spec.id!r} {final.status}", highlight=False)


def _print_decision(console: Console, decision: Any) -> None:
    state = decision.state
    header = f"revision {state.revision}: {decision.event}"
    if decision.verdict is not None and decision.event == "verdict":
        verdict = decision.verdict
        score = "-" if verdict.score is None else f"{verdict.score:.0f}"
        header += f" {verdict.verdict} (score {score}, action {verdict.action})"
        console.print(header, highlight=False)
        for metric in verdict.metrics:
            console.print(f"    {metric.classification:>6}  {metric.reason}", highlight=False)
        return
    console.print(header, highlight=False)
