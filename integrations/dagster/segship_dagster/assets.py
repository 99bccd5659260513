"""One Dagster asset per segship export, with its `segship_rejects` check and run figures.

Materializing the asset runs the export in the step's process (no subprocess): plan,
safeguards, send the changes, commit. A run that finishes with rows refused still
materializes, and its `segship_rejects` check fails with severity WARN when rows were refused
for the first time or for a new reason (rows known to be refused pass it, as they exit 0); a run that fails
(or is refused: safeguard, missing secret, another run holding the export's lock) fails
the step with segship's message, redacted like every message segship prints.
"""

# no `from __future__ import annotations`: Dagster reads the type of `context` at definition time
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    Failure,
    MaterializeResult,
    MetadataValue,
    multi_asset,
)
from segship.config import Config, ExportConfig, load_config
from segship.engine.report import RunReport
from segship.errors import SegshipError
from segship.log import mask_pii, redact_text
from segship.plugins import get_plugins

from segship_dagster.runner import run_export
from segship_dagster.translator import REJECTS_CHECK, SegshipTranslator

#: Run outcomes that materialize the asset (the others fail the step), as exit codes 0 and 3 do.
MATERIALIZED = ("succeeded", "rejects")
PLAN_FIGURES = ("add", "retry", "update", "remove", "unchanged")

ConfigLike = str | os.PathLike[str] | Config
#: What ``deps`` takes for an upstream asset, as ``AssetSpec(deps=...)`` does.
Upstream = AssetKey | AssetDep | AssetSpec | AssetsDefinition | str | Sequence[str]


def load(config: ConfigLike) -> Config:
    """A loaded config as is; a path (a file or a directory, as `segship -c` takes) validated and loaded."""
    return config if isinstance(config, Config) else load_config(Path(config), get_plugins())


def segship_assets(config: ConfigLike, *, deps: Mapping[str, Iterable[Upstream]] | None = None,
                   translator: SegshipTranslator | None = None) -> list[AssetsDefinition]:
    """One asset per export of ``config``; ``deps`` maps an export to the upstream assets its segments read.

    Raises ``segship.config.ConfigError`` (file:line:col of each problem) for an invalid
    config, and ``ValueError`` when ``deps`` names an export the config doesn't have.
    """
    loaded = load(config)
    translator = translator or SegshipTranslator()
    deps = dict(deps or {})
    unknown = sorted(set(deps) - set(loaded.exports))
    if unknown:
        raise ValueError(f"deps names unknown export(s) {', '.join(unknown)} "
                         f"(exports: {', '.join(sorted(loaded.exports)) or 'none'})")
    return [_export_asset(loaded, export, translator, deps.get(name, ())) for name, export in loaded.exports.items()]


def op_name(export: str) -> str:
    """A Dagster op name for an export (export names may hold '-', op names may not)."""
    return "segship_" + re.sub(r"\W", "_", export)


def _export_asset(config: Config, export: ExportConfig, translator: SegshipTranslator,
                  upstream: Iterable[Upstream]) -> AssetsDefinition:
    spec = translator.get_asset_spec(export)
    upstream = list(upstream)
    if upstream:
        spec = spec.replace_attributes(deps=[*spec.deps, *upstream])
    check = translator.get_rejects_check_spec(export)

    @multi_asset(name=op_name(export.name), specs=[spec], check_specs=[check])
    def _materialize(context: AssetExecutionContext) -> MaterializeResult:
        try:
            report = run_export(config, export.name, context.log)
        except SegshipError as exc:  # state can't be opened (unreachable, its URL unset): no run
            raise Failure(description=redact_text(f"segship export {export.name!r} failed: {exc}")) from None
        if report.outcome not in MATERIALIZED:
            raise Failure(description=redact_text(f"segship export {export.name!r} {report.outcome}: "
                                                  f"{report.message}"),
                          metadata=run_figures(report))
        return MaterializeResult(asset_key=spec.key, metadata=run_figures(report),
                                 check_results=[rejects_result(report, check.asset_key)])

    return _materialize


def run_figures(report: RunReport) -> dict[str, MetadataValue]:
    """The plan's and the run's counts as Dagster numeric metadata."""
    figures: dict[str, MetadataValue] = {name: MetadataValue.int(int(report.plan.get(name, 0)))
                                         for name in PLAN_FIGURES}
    figures.update(upserted=MetadataValue.int(report.upserted), removed=MetadataValue.int(report.removed),
                   rejected=MetadataValue.int(report.rejected),
                   requests=MetadataValue.int(report.http.get("requests", 0)),
                   seconds=MetadataValue.float(float(report.seconds)))
    if report.run_id is not None:  # None only when the state could not record the run
        figures["run_id"] = MetadataValue.int(report.run_id)
    return figures


def rejects_result(report: RunReport, asset_key: AssetKey) -> AssetCheckResult:
    """Passes unless rows were refused for the first time or for a new reason; warns with the count of
    refused rows by reason (reasons carry no row values)."""
    by_reason = {mask_pii(redact_text(reason)): count for reason, count in report.rejects_by_reason.most_common()}
    still_refused = int(report.plan.get("refused", 0))
    if report.new_rejects:
        description = (f"{report.new_rejects} row(s) refused for the first time or for a new reason "
                       f"({report.rejected} refused in all); `segship rejects {report.export}` lists them")
    elif report.rejected or still_refused:
        description = (f"no new refusal; {report.rejected + still_refused} row(s) refused as before "
                       f"(`segship rejects {report.export} --summary`)")
    else:
        description = "no row refused"
    return AssetCheckResult(
        asset_key=asset_key, check_name=REJECTS_CHECK, passed=report.new_rejects == 0,
        severity=AssetCheckSeverity.WARN, description=description,
        metadata={"rejected": MetadataValue.int(report.rejected), "new_rejects": MetadataValue.int(report.new_rejects),
                  "still_refused": MetadataValue.int(still_refused), "rejects_by_reason": MetadataValue.json(by_reason)},
    )
