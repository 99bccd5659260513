"""The Dagster assets, materialized in-process with ``dagster.materialize`` against the real Braze sandbox."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from dagster import AssetCheckSeverity, AssetKey, DagsterInstance, Definitions, materialize
from segship.engine.state import open_state_at
from segship_dagster import REJECTS_CHECK, SegshipTranslator, segship_assets

from .conftest import SEGMENT_ID, write_profiles

VIP = AssetKey(["segship", "vip-braze"])


def only(assets, key: AssetKey):
    return next(asset for asset in assets if key in asset.keys)


def run(assets, key: AssetKey, instance: DagsterInstance | None = None):
    return materialize([only(assets, key)], instance=instance, raise_on_error=False)


def metadata(result, key: AssetKey) -> dict:
    (materialization,) = result.asset_materializations_for_node(only_node(result))
    assert materialization.asset_key == key
    return {name: value.value for name, value in materialization.metadata.items()}


def only_node(result) -> str:
    (step,) = {event.step_key for event in result.all_events if event.step_key}
    return step


def log_text(instance: DagsterInstance, result) -> str:
    return "\n".join(entry.user_message for entry in instance.all_logs(result.run_id))


def test_one_asset_per_export_with_key_group_description_deps_and_check(config_dir):
    upstream = AssetKey(["marts", "vip_customers"])
    assets = segship_assets(config_dir / "segship.yaml", deps={"vip-braze": [upstream]})
    specs = {spec.key: spec for asset in assets for spec in asset.specs}
    assert set(specs) == {VIP, AssetKey(["segship", "lapsed-braze"])}
    vip = specs[VIP]
    assert vip.group_name == "segship"
    assert vip.description == "VIP customers to Braze"
    assert [dep.asset_key for dep in vip.deps] == [upstream]
    assert list(specs[AssetKey(["segship", "lapsed-braze"])].deps) == []
    checks = {(check.asset_key, check.name) for asset in assets for check in asset.check_specs}
    assert checks == {(VIP, REJECTS_CHECK), (AssetKey(["segship", "lapsed-braze"]), REJECTS_CHECK)}
    Definitions(assets=assets).resolve_asset_graph()  # they load together


def test_a_directory_config_and_a_translator_override_the_keys(config_dir):
    class Prefixed(SegshipTranslator):
        def get_asset_key(self, export):
            return AssetKey(["reverse_etl", export.name.replace("-", "_")])

    assets = segship_assets(config_dir, translator=Prefixed(group_name="activation"))
    specs = [spec for asset in assets for spec in asset.specs]
    assert {spec.key for spec in specs} == {AssetKey(["reverse_etl", "vip_braze"]),
                                            AssetKey(["reverse_etl", "lapsed_braze"])}
    assert {spec.group_name for spec in specs} == {"activation"}


def test_deps_naming_an_unknown_export_is_an_error(config_dir):
    with pytest.raises(ValueError, match="unknown export.*vip-brevo"):
        segship_assets(config_dir, deps={"vip-brevo": ["marts"]})


def test_materializing_runs_the_export_and_records_its_figures(config_dir, braze_sandbox):
    assets = segship_assets(config_dir)
    instance = DagsterInstance.ephemeral()
    first = run(assets, VIP, instance)
    assert first.success
    figures = metadata(first, VIP)
    assert {name: figures[name] for name in ("add", "update", "remove", "unchanged", "upserted", "removed",
                                             "rejected", "requests")} == {
        "add": 5, "update": 0, "remove": 0, "unchanged": 0, "upserted": 5, "removed": 0, "rejected": 0,
        "requests": braze_sandbox.stats()["requests"]}
    assert isinstance(figures["seconds"], float) and isinstance(figures["run_id"], int)
    members = {uid for uid, user in braze_sandbox.users().items() if SEGMENT_ID in user["segship_segments"]}
    assert members == {f"C{i:05d}" for i in range(1, 6)}
    (check,) = first.get_asset_check_evaluations()
    assert check.check_name == REJECTS_CHECK and check.passed

    # segship's own events reached Dagster's logger
    assert "export.finished" in log_text(instance, first)

    again = metadata(run(assets, VIP), VIP)  # unchanged: nothing to send, no request
    assert (again["unchanged"], again["upserted"], again["requests"]) == (5, 0, 0)
    assert again["run_id"] == figures["run_id"] + 1


def test_rejected_rows_fail_the_rejects_check_as_a_warning_grouped_by_reason(config_dir, braze_sandbox):
    braze_sandbox.set_faults(refuse_external_ids=["C00002", "C00004"])
    result = run(segship_assets(config_dir), VIP)
    assert result.success  # the export ran; the refused rows are retried next time
    assert metadata(result, VIP)["rejected"] == 2
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed and check.severity is AssetCheckSeverity.WARN
    shown = {name: value.value for name, value in check.metadata.items()}
    assert shown["rejected"] == 2
    assert shown["rejects_by_reason"] == {
        "Braze refused the user: The sandbox was told to refuse this user (refuse_external_ids)": 2}
    assert "C0000" not in str(shown) and "@" not in str(shown)  # no personal data, no keys of rows

    again = run(segship_assets(config_dir), VIP)  # refused again for the same reason: retried, known
    figures = metadata(again, VIP)
    assert (figures["retry"], figures["add"], figures["rejected"]) == (2, 0, 2)
    (check,) = again.get_asset_check_evaluations()
    assert check.passed and {name: value.value for name, value in check.metadata.items()}["new_rejects"] == 0


def test_a_failed_run_fails_the_step_with_segships_message_and_no_secret(config_dir, braze_sandbox, monkeypatch):
    wrong_key = "wrong-braze-key-" + "5f3a" * 6
    monkeypatch.setenv("BRAZE_API_KEY", wrong_key)  # the sandbox answers 401 and quotes the key it refused
    instance = DagsterInstance.ephemeral()
    result = run(segship_assets(config_dir), VIP, instance)
    assert not result.success
    (failure,) = result.get_step_failure_events()
    message = failure.step_failure_data.user_failure_data.description
    assert message.startswith("segship export 'vip-braze' failed: Braze: the API key was refused")
    texts = log_text(instance, result) + str(failure.step_failure_data)
    assert wrong_key not in texts and braze_sandbox.api_key not in texts
    assert "user1@example.com" not in texts
    assert braze_sandbox.users() == {}


def test_a_safeguard_stop_fails_the_step_before_anything_is_sent(config_dir, braze_sandbox):
    assets = segship_assets(config_dir)
    assert run(assets, VIP).success
    requests = braze_sandbox.stats()["requests"]
    write_profiles(config_dir, 5, lifetime_value=5)  # everyone leaves the VIP segment
    result = run(assets, VIP)
    assert not result.success
    (failure,) = result.get_step_failure_events()
    assert "would remove 5 of the 5 members" in failure.step_failure_data.user_failure_data.description
    assert braze_sandbox.stats()["requests"] == requests


def test_an_unreadable_state_fails_the_step_saying_so(config_dir, braze_sandbox):
    (config_dir / ".segship").mkdir()
    (config_dir / ".segship" / "state.db").write_bytes(b"not a database" * 100)
    result = run(segship_assets(config_dir), VIP)
    assert not result.success
    (failure,) = result.get_step_failure_events()
    description = failure.step_failure_data.user_failure_data.description
    assert "state.db" in description and "not a database" in description  # names the state file and the problem
    assert braze_sandbox.stats().get("requests", 0) == 0


def test_two_materializations_of_the_same_export_are_refused_by_the_state_lock(config_dir, braze_sandbox):
    assets = segship_assets(config_dir)
    braze_sandbox.set_faults(latency=1.0)  # the first run holds the lock while its request is answered
    results = []
    state = open_state_at(Path(config_dir, ".segship", "state.db"))  # created before either run opens it
    first = threading.Thread(target=lambda: results.append(run(assets, VIP)))
    first.start()
    try:
        while not any(r["outcome"] == "running" for r in state.runs("vip-braze")):
            assert first.is_alive(), "the first materialization ended before its run started"
            threading.Event().wait(0.02)
        second = run(assets, VIP)
    finally:
        first.join()
        state.close()
    assert not second.success
    (failure,) = second.get_step_failure_events()
    assert "'vip-braze' is already running" in failure.step_failure_data.user_failure_data.description
    (first_result,) = results
    assert first_result.success and metadata(first_result, VIP)["upserted"] == 5


def test_materializations_judge_alerts_as_the_cli_does(config_dir, braze_sandbox, monkeypatch):
    """An asset's run is an export run like any other: its failure opens an alert (once), its success clears it."""
    wrong_key = "wrong-braze-key-" + "7c1d" * 6
    monkeypatch.setenv("BRAZE_API_KEY", wrong_key)
    assets = segship_assets(config_dir)
    instance = DagsterInstance.ephemeral()
    failed = [run(assets, VIP, instance) for _ in range(2)]
    logs = [log_text(instance, result) for result in failed]
    assert "alert.open export=vip-braze alert_event=failed run_id=1" in logs[0]
    assert "alert.open" not in logs[1]  # still failing: nothing new to say
    assert wrong_key not in "".join(logs)
    state = open_state_at(Path(config_dir, ".segship", "state.db"))
    try:
        [(event, alert)] = state.open_alerts("vip-braze").items()
        assert (event, alert.run_id) == ("failed", 1) and wrong_key not in alert.message
        monkeypatch.setenv("BRAZE_API_KEY", braze_sandbox.api_key)
        fixed = run(assets, VIP, instance)
        assert fixed.success
        assert "alert.resolved export=vip-braze alert_event=failed run_id=3" in log_text(instance, fixed)
        assert state.open_alerts("vip-braze") == {}
    finally:
        state.close()
