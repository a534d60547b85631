"""`lakecast models ...`: list, show, card, verify, promote, rollback, audit and optimize.

Reads and writes the registry with delta-rs, so no JVM starts. The registry root is
``settings().registry_root`` unless ``--root`` names another.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

from lakecast.registry import Registry, current_user, render_card

app = typer.Typer(help="The model registry: versions, aliases, cards, audit.", no_args_is_help=True)

_state: dict[str, str | None] = {"root": None}


@app.callback()
def _options(
    root: str | None = typer.Option(
        None, "--root", help="The registry root (default: the config's registry root)."
    ),
) -> None:
    _state["root"] = root


def _registry() -> Registry:
    return Registry(_state["root"])


@app.command("list")
def list_models() -> None:
    """Every model with its latest version and aliases."""
    table = Table("model", "latest", "versions", "aliases", "description")
    for model in _registry().list_models():
        aliases = ", ".join(f"{a}={v}" for a, v in sorted(model.aliases.items()))
        table.add_row(
            model.name, model.latest or "-", str(model.versions), aliases, model.description
        )
    Console().print(table)


@app.command("show")
def show(
    reference: str = typer.Argument(..., help="NAME, NAME:VERSION or NAME@ALIAS."),
    as_json: bool = typer.Option(False, "--json", help="Print the record as JSON."),
) -> None:
    """One version's record: flavor, signature, metrics, lineage, sha256, aliases."""
    registry = _registry()
    record = registry.resolve(reference)
    aliases = sorted(
        a for a, s in registry.aliases(record.name).items() if s.version == record.version
    )
    data = {
        "name": record.name,
        "version": record.version,
        "flavor": record.flavor,
        "aliases": aliases,
        "signature": record.signature.to_dict(),
        "metrics": dict(record.metrics),
        "nan_policy": record.nan_policy,
        "lineage": json.loads(record.lineage.to_json()),
        "sha256": record.sha256,
        "artifact_path": record.artifact_path,
        "created_at": record.created_at.isoformat(),
        "created_by": record.created_by,
        "status": record.status,
        "description": record.description,
        "card_complete": not record.card.missing_sections(),
    }
    if as_json:
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    console = Console()
    for key, value in data.items():
        shown = json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value
        console.print(f"[bold]{key}[/bold]: {shown}", highlight=False, soft_wrap=True)


@app.command("card")
def card(
    reference: str = typer.Argument(..., help="NAME:VERSION (or NAME, NAME@ALIAS)."),
    raw: bool = typer.Option(False, "--raw", help="Print the Markdown source."),
) -> None:
    """The model card of one version, rendered from Markdown."""
    text = render_card(_registry().resolve(reference))
    if raw:
        typer.echo(text)
    else:
        Console().print(Markdown(text))


@app.command("verify")
def verify(
    reference: str | None = typer.Argument(None, help="NAME or NAME:VERSION; all when left out."),
) -> None:
    """Re-hash artifacts against the registry's sha256 (exit status 1 on any mismatch) and
    report the libraries each was trained with against this environment's (a warning only)."""
    results = _registry().verify(reference)
    bad = [r for r in results if not r.ok]
    for result in results:
        mark = "ok  " if result.ok else "FAIL"
        typer.echo(f"{mark} {result.ref} {result.detail}")
        typer.echo(f"     {result.libraries}")
    if bad:
        typer.secho(f"{len(bad)} of {len(results)} artifacts failed verification", err=True)
        raise typer.Exit(1)


@app.command("promote")
def promote(
    name: str = typer.Argument(..., help="The model name."),
    version: str = typer.Argument(..., help="The version to point the alias at."),
    alias: str = typer.Option(..., "--alias", help="The alias, e.g. champion."),
    reason: str = typer.Option("", "--reason", help="Why, recorded in the audit log."),
    force: bool = typer.Option(
        False, "--force", help="Move it even if a gate fails (needs --reason; audited)."
    ),
) -> None:
    """Point an alias at a version after the pre-rollout gates (against the version it points
    at now, or the config's min_holdout bar for a first one); recorded with who, when and why."""
    from lakecast.rollout.promotion import promote_through_gates

    done = promote_through_gates(_registry(), name, version, alias, reason=reason, force=force)
    state = done.state
    for result in done.report.results:
        mark = "pass" if result.passed else "FAIL"
        typer.echo(f"{mark} {result.gate}: {result.message}")
    before = f" (was {state.history[-1]})" if state.history else ""
    forced = " FORCED past failed gates" if done.forced else ""
    typer.echo(f"{name}@{alias} -> {state.version}{before}{forced}")


@app.command("rollback")
def rollback(
    name: str = typer.Argument(..., help="The model name."),
    alias: str = typer.Option(..., "--alias", help="The alias to move back."),
    reason: str = typer.Option("", "--reason", help="Why, recorded in the audit log."),
) -> None:
    """Point an alias back at the version it pointed at before its last move."""
    state = _registry().rollback(name, alias, who=current_user(), why=reason)
    typer.echo(f"{name}@{alias} -> {state.version}")


@app.command("audit")
def audit(name: str | None = typer.Argument(None, help="One model; all when left out.")) -> None:
    """The audit log: registrations, promotions and rollbacks, oldest first."""
    registry = _registry()
    entries = registry.audit(name)
    if name is not None and not entries:
        registry.resolve(name)  # every registered model has a registration: name the unknown one
    table = Table("at", "who", "action", "model", "version", "alias", "previous", "reason")
    for entry in entries:
        row = asdict(entry)
        table.add_row(
            entry.at.isoformat(timespec="seconds"),
            entry.who,
            entry.action,
            entry.name,
            entry.version,
            row["alias"] or "",
            row["previous_version"] or "",
            entry.reason,
        )
    Console().print(table)


@app.command("optimize")
def optimize(
    reference: str = typer.Argument(..., help="NAME:VERSION (or NAME@ALIAS) to optimise."),
    to: str = typer.Option(..., "--to", help="onnx, onnx-int8 (Keras), onnx-fp32 (sklearn)."),
    tolerance: float | None = typer.Option(
        None, "--tolerance", help="Max |score diff| accepted (default: the kind's configured)."
    ),
) -> None:
    """Convert a version for ONNX Runtime, check parity on its holdout, register it as the next
    MINOR version; refused (exit status 1) when the scores differ beyond the tolerance."""
    from lakecast.models.optimize import optimize_version

    done = optimize_version(_registry(), reference, to, tolerance=tolerance)
    report = done.report
    typer.echo(
        f"{done.record.ref} ({to} of {done.record.lineage.optimized_from}): {report.describe()}"
    )
    table = Table("holdout metric", "source", "optimised")
    source, optimized = report.source.as_dict(""), report.optimized.as_dict("")
    for key in source:
        table.add_row(key, f"{source[key]:.6g}", f"{optimized[key]:.6g}")
    table.add_row(
        "ms per 1,000 rows", f"{report.source_ms_per_1k:.3g}", f"{report.optimized_ms_per_1k:.3g}"
    )
    Console().print(table)
