"""Refused rows and dropped fields tell the truth, end to end: the real CLI against the sandboxes.

Known rejects don't make a run look failed (exit 3 means new ones), a bad optional field doesn't lose
the contact, phone numbers are read as phonenumbers reads them, the rejects command sums them up, and
no text a destination sends back carries its API key anywhere segship stores or prints it.
"""

from __future__ import annotations

import json

from .conftest import profile

BREVO_MAPPING = "    mapping: {email: email, first_name: first_name, last_name: last_name, phone: phone}\n"


def rows(count: int, **overrides: dict) -> list[dict]:
    return [profile(i, **overrides.get(f"C{i:05d}", {})) for i in range(1, count + 1)]


def plan_of(project, export: str) -> dict:
    (plan,) = json.loads(project.cli("plan", export, "--format", "json").stdout)
    return plan


def reconfigure_brevo(project, *, settings: str = "{list_id: 3}", extra: str = "") -> None:
    """The Brevo export with other settings, and lines added under it (``on_invalid_field: reject``)."""
    config = (project.root / "segship.yaml").read_text()
    config = config.replace("    settings: {list_id: 3}\n", f"    settings: {settings}\n")
    (project.root / "segship.yaml").write_text(config.replace(BREVO_MAPPING, BREVO_MAPPING + extra))


def test_known_rejects_exit_0_and_are_planned_as_retry_or_still_refused_not_as_members_to_add(project):
    project.write(rows(10, C00004={"email": "not-an-email"}))
    project.braze.set_faults(refuse_external_ids=["C00007"])
    first = project.cli("export", "--all")
    assert first.returncode == 3, first.stdout  # refused for the first time
    assert "1 new, 0 known" in first.stdout

    braze, brevo = plan_of(project, "vip-braze"), plan_of(project, "vip-brevo")
    assert (braze["add"], braze["retry"], braze["refused"]) == (0, 1, 0)  # the destination's refusal: retried
    assert (brevo["add"], brevo["retry"], brevo["refused"]) == (0, 0, 1)  # the mapping's, unchanged: not sent
    first_run = brevo["refused_since_run"]
    assert brevo["examples"]["refused"] == ["C00004"] and braze["examples"]["retry"] == ["C00007"]
    shown = project.cli("plan")
    assert "retry" in shown.stdout and "still refused" in shown.stdout
    assert f"vip-brevo: 1 row(s) still refused by the mapping rules since run {first_run}" in shown.stdout

    brevo_requests = project.brevo.stats()["requests"]
    again = project.cli("export", "--all")
    assert again.returncode == 0, again.stdout  # only known rejects: Braze refused C00007 again, as before
    assert "vip-braze: succeeded (plan +0 ~0 -0 =9 retry 1)" in again.stdout
    assert "vip-brevo: succeeded (plan +0 ~0 -0 =9 still refused 1)" in again.stdout
    assert f"1 row(s) still refused by the mapping rules since run {first_run}" in again.stdout
    assert project.brevo.stats()["requests"] == brevo_requests  # nothing mapped or sent again
    assert project.cli("export", "--all", "--strict").returncode == 3  # the old meaning: any reject

    project.write(rows(10, C00004={"email": "still not an email"}))  # changed, refused for the same reason
    assert project.cli("export", "vip-brevo").returncode == 0
    project.write(rows(10, C00004={"email": ""}))  # refused for a new reason: new
    newly = project.cli("export", "vip-brevo")
    assert newly.returncode == 3 and "email is empty" in newly.stdout
    project.write(rows(10))
    project.braze.set_faults(refuse_external_ids=[])
    fixed = project.cli("export", "--all")
    assert fixed.returncode == 0 and "retry 1" in fixed.stdout
    assert "C00007" in project.braze_members() and "user4@example.com" in project.brevo_members()
    assert json.loads(project.cli("rejects", "vip-brevo", "--json").stdout) == []


def test_an_invalid_phone_is_dropped_and_counted_and_the_contact_sent(project):
    project.write(rows(6, C00002={"phone": "n/a"}, C00003={"phone": "(555) 001-0001"}))
    result = project.cli("export", "vip-brevo", "--report", "report.json")
    assert result.returncode == 0, result.stdout  # nobody refused: two fields left out
    contacts = project.brevo.list_contacts(3)
    assert set(contacts) == {f"user{i}@example.com" for i in range(1, 7)}
    assert "SMS" not in contacts["user2@example.com"] and "SMS" not in contacts["user3@example.com"]
    assert contacts["user1@example.com"]["SMS"] == "+33612340001"
    report = json.loads((project.root / "report.json").read_text())["exports"][0]
    assert (report["rejected"], report["dropped"]) == (0, 2)
    assert report["dropped_fields"] == {"phone": {
        "invalid phone number '…': not a phone number": 1,
        "phone '…' has no country code: write it as +<country code><number>, or set default_country_code in the "
        "export settings": 1}}
    assert "fields left out (the members were sent without them), by field and reason:" in result.stdout
    assert "2 (phone 2)" in project.cli("runs", "vip-brevo").stdout
    summary = project.cli("rejects", "vip-brevo", "--summary")
    assert "vip-brevo: 0 row(s) refused" in summary.stdout
    assert "vip-brevo: 2 field(s) left out of members' records, by field and reason" in summary.stdout
    assert "phone: invalid phone number '…': not a phone number  (e.g. C00002)" in summary.stdout

    # an unchanged re-run maps nothing, and state still knows what was left out
    again = project.cli("export", "vip-brevo")
    assert again.returncode == 0 and project.cli("rejects", "vip-brevo", "--summary").stdout == summary.stdout
    project.write(rows(6, C00003={"phone": "(555) 001-0001"}))  # one fixed
    assert project.cli("export", "vip-brevo").returncode == 0
    assert project.brevo.list_contacts(3)["user2@example.com"]["SMS"] == "+33612340002"
    fields = json.loads(project.cli("rejects", "vip-brevo", "--summary", "--json").stdout)["dropped_fields"]
    assert [(field["field"], field["count"], field["examples"]) for field in fields] == [("phone", 1, ["C00003"])]


def test_on_invalid_field_reject_refuses_the_row_as_before(project):
    reconfigure_brevo(project, extra="    on_invalid_field: reject\n")
    project.write(rows(4, C00002={"phone": "n/a"}))
    result = project.cli("export", "vip-brevo")
    assert result.returncode == 3, result.stdout
    assert project.brevo_members() == {"user1@example.com", "user3@example.com", "user4@example.com"}
    (reject,) = json.loads(project.cli("rejects", "vip-brevo", "--json").stdout)
    assert (reject["key"], reject["reason"], reject["origin"]) == (
        "C00002", "invalid phone number 'n/a': not a phone number", "mapping")


def test_phone_numbers_are_read_in_the_default_country_with_its_trunk_prefix(project):
    reconfigure_brevo(project, settings='{list_id: 3, default_country_code: "+33"}')
    project.write(rows(3, C00001={"phone": "06 12 34 56 78"}, C00002={"phone": "(555) 001-0001"},
                       C00003={"phone": "+1 (415) 555-0100"}))
    assert project.cli("export", "vip-brevo").returncode == 0
    contacts = project.brevo.list_contacts(3)
    assert contacts["user1@example.com"]["SMS"] == "+33612345678"
    assert "SMS" not in contacts["user2@example.com"]  # no French number: not sent as +335550010001
    assert contacts["user3@example.com"]["SMS"] == "+14155550100"
    (dropped,) = json.loads(project.cli("rejects", "vip-brevo", "--summary", "--json").stdout)["dropped_fields"]
    assert (dropped["field"], dropped["reason"]) == ("phone", "invalid phone number '…': no valid +33 number")


def test_rejects_are_summed_up_filtered_and_a_cut_table_says_so(project):
    project.write(rows(8, **{f"C0000{i}": {"email": f"broken-{i}"} for i in range(1, 6)}, C00006={"email": ""}))
    dry = project.cli("export", "vip-brevo", "--dry-run")
    assert dry.returncode == 3
    assert "rows that would be refused, by reason:" in dry.stdout
    assert "      5  invalid email address '…'" in dry.stdout and "      1  email is empty" in dry.stdout
    assert project.cli("export", "vip-brevo").returncode == 3

    listed = project.cli("rejects", "vip-brevo", "--limit", "2")
    assert "showing 2 of 6 rejects" in listed.stdout
    assert "showing" not in project.cli("rejects", "vip-brevo").stdout
    filtered = json.loads(project.cli("rejects", "vip-brevo", "--reason", "EMPTY", "--json").stdout)
    assert [row["key"] for row in filtered] == ["C00006"]
    summary = project.cli("rejects", "vip-brevo", "--summary").stdout
    assert "vip-brevo: 6 row(s) refused" in summary
    assert "5  invalid email address '…'  (by the mapping rules, since run 2; e.g. C00001, C00002, C00003)" in summary
    assert "broken-1" not in summary  # kinds of reason, without the rows' values
    project.cli("export", "vip-brevo")
    assert "showing 2 of 3 runs" in project.cli("runs", "vip-brevo", "--limit", "2").stdout


def test_a_key_a_destination_echoes_in_a_reason_is_in_no_reject_output_or_report(project):
    project.write(rows(3))
    braze_key, brevo_key = project.braze.api_key, project.brevo.api_key
    # a hostile or broken server quotes the key it was given in its per-record errors
    project.braze.answer_instead("/users/track", json.dumps(
        {"message": "success", "errors": [{"type": f"bad key {braze_key} for this user", "input_array": "attributes",
                                           "index": 0}]}), status=201, count=None)  # the connection check's too
    project.brevo.answer_instead("/contacts/import", json.dumps(
        {"code": "invalid_parameter", "message": f"api-key {brevo_key} may not import"}), status=400, count=1)
    result = project.cli("export", "--all", "--report", "report.json")
    assert result.returncode == 3, result.stdout
    state = project.state()
    try:
        stored = [state.rejects(export) for export in ("vip-braze", "vip-brevo")]
        summed = [state.rejects_by_kind(export) for export in ("vip-braze", "vip-brevo")]
    finally:
        state.close()
    assert [len(rejects) for rejects in stored] == [1, 3]  # each server refused what it was sent
    assert "bad key *** for this user" in stored[0][0]["reason"] and "api-key ***" in stored[1][0]["reason"]
    outputs = [result.stdout, result.stderr, (project.root / "report.json").read_text(), json.dumps(stored),
               json.dumps(summed)]
    for export in ("vip-braze", "vip-brevo"):
        for args in ((), ("--json",), ("--summary",), ("--summary", "--json")):
            shown = project.cli("rejects", export, *args)
            outputs += [shown.stdout, shown.stderr]
        outputs.append(project.cli("runs", export).stdout)
    for text in outputs:
        assert braze_key not in text and brevo_key not in text
