"""``segship validate`` as CI runs it: output formats, the example configs, secrets left unresolved."""

from __future__ import annotations

import json
import shutil

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# two errors: a literal key (line 11) and a dangling segment (line 16)
BAD = """
version: 1
segments:
  vip: {source: crm, key: id, sql: SELECT 1}
sources:
  crm: {type: duckdb, path: x.csv}
connections:
  brevo:
    type: sendinblue
    display_name: Brevo
    data_privacy_consent: true
    settings: {api_key: LITERAL_KEY}
exports:
  vip-to-brevo:
    display_name: VIP
    connection: brevo
    segments: [vip, lapsed]
    settings: {list_id: 3}
    mapping: {email: email}
"""
LITERAL = "xkeysib-" + "literal-0123456789"  # assembled: no key-shaped literal in the repository
BAD = BAD.replace("LITERAL_KEY", LITERAL)
SECRET_MESSAGE = ("connections.brevo.settings.api_key is a secret: write a reference such as "
                  "${env:SENDINBLUE_API_KEY} or ${file:path/to/secret}, never the secret itself")
SEGMENT_MESSAGE = "export 'vip-to-brevo' uses segment 'lapsed', which is not defined (segments: vip)"


def position_of(file: Path, text: str, *, after: str) -> tuple[int, int]:
    """Line and column (from 1) of the first ``text`` below the first line holding ``after``.

    The example configs evolve; the tests find the node instead of hard-coding its line.
    """
    lines = file.read_text(encoding="utf-8").splitlines()
    start = next(number for number, line in enumerate(lines) if after in line)
    for number in range(start + 1, len(lines)):
        if text in lines[number]:
            return number + 1, lines[number].index(text) + 1
    raise AssertionError(f"{text!r} not found after {after!r} in {file}")


def test_text_format_lists_every_error_in_file_order(segship, write_config) -> None:
    write_config({"segship.yaml": BAD})
    result = segship("validate", "-c", "segship.yaml")
    assert result.exit_code == 2, result
    assert result.stderr.splitlines()[-2:] == [
        f"segship.yaml:11:25: {SECRET_MESSAGE}",
        f"segship.yaml:16:21: {SEGMENT_MESSAGE}",
    ], result
    assert result.stdout == ""
    assert LITERAL not in result.output


def test_github_format_is_workflow_annotations(segship, write_config) -> None:
    write_config({"segship.yaml": BAD})
    result = segship("validate", "-c", "segship.yaml", "--format", "github")
    assert result.exit_code == 2, result
    annotations = [line for line in result.output.splitlines() if line.startswith("::")]
    assert annotations == [
        f"::error file=segship.yaml,line=11,col=25::{SECRET_MESSAGE}",
        f"::error file=segship.yaml,line=16,col=21::{SEGMENT_MESSAGE}",
    ], result
    assert LITERAL not in result.output


def test_github_format_escapes_the_message(segship, write_config) -> None:
    """A % in a message would start an escape in a workflow command: it must come out as %25."""
    write_config({"segship.yaml": BAD.replace("segments: [vip, lapsed]", "segments: [vip, 100%]")})
    result = segship("validate", "-c", "segship.yaml", "--format", "github")
    assert result.exit_code == 2, result
    assert "uses segment '100%25', which is not defined" in result.output, result


def test_json_format_is_one_document_on_stdout(segship, write_config) -> None:
    write_config({"segship.yaml": BAD})
    result = segship("validate", "-c", "segship.yaml", "--format", "json")
    assert result.exit_code == 2, result
    document = json.loads(result.stdout)
    assert document == {"valid": False, "errors": [
        {"file": "segship.yaml", "line": 11, "column": 25, "message": SECRET_MESSAGE},
        {"file": "segship.yaml", "line": 16, "column": 21, "message": SEGMENT_MESSAGE},
    ]}
    assert LITERAL not in result.output


def test_json_format_of_a_valid_config(segship, write_config) -> None:
    write_config({"segship.yaml": BAD.replace("xkeysib-literal-0123456789", "'${env:BREVO_KEY}'")
                  .replace(", lapsed", "")})
    result = segship("validate", "-c", "segship.yaml", "--format", "json")
    assert result.exit_code == 0, result
    assert json.loads(result.stdout) == {"valid": True, "errors": []}


def test_example_configs_validate_without_any_secret(segship) -> None:
    """CI has no secrets: configs/ uses ${env:…} for keys and endpoints and still validates."""
    result = segship("validate", "-c", str(REPO / "configs"))
    assert result.exit_code == 0, result
    assert "valid (1 sources, 2 segments, 3 connections, 3 exports)" in result.stdout


def test_example_configs_are_the_default_config(segship) -> None:
    """Without -c and without ./segship.yaml, segship reads ./configs/."""
    result = segship("validate", cwd=REPO)
    assert result.exit_code == 0, result
    assert result.stdout.startswith("configs: valid"), result


def test_example_configs_as_a_contributor(segship) -> None:
    """The Braze connection is for admins only: a contributor can't validate its export."""
    result = segship("--role", "contributor", "validate", "-c", "configs", cwd=REPO)
    assert result.exit_code == 2, result
    line, column = position_of(REPO / "configs" / "exports.yaml", "braze-prod", after="vip-to-braze:")
    assert (f"configs/exports.yaml:{line}:{column}: export 'vip-to-braze' uses connection 'braze-prod', which only admins "
            "may use; you run as contributor") in result.stderr, result
    assert "newsletter-to-brevo" not in result.stderr  # its connection is open to contributors


def test_unset_env_reference_is_not_an_error_at_validate_time(segship, write_config) -> None:
    write_config({"segship.yaml": """
        version: 1
        connections:
          braze:
            type: braze
            display_name: Braze
            data_privacy_consent: true
            settings:
              api_key: ${env:SEGSHIP_TEST_UNSET_KEY}
              rest_endpoint: ${env:SEGSHIP_TEST_UNSET_ENDPOINT}
              batch_size: 50
        """})
    result = segship("validate", "-c", "segship.yaml")
    assert result.exit_code == 0, result
    assert "SEGSHIP_TEST_UNSET" not in result.output


def test_file_reference_to_a_missing_file_is_not_an_error_at_validate_time(segship, write_config) -> None:
    write_config({"segship.yaml": """
        version: 1
        connections:
          brevo:
            type: sendinblue
            display_name: Brevo
            settings: {api_key: '${file:secrets/brevo.key}'}
        """})
    result = segship("validate", "-c", "segship.yaml")
    assert result.exit_code == 0, result


def test_a_copy_of_the_example_configs_elsewhere_validates(segship, tmp_path: Path) -> None:
    """Relative paths and positions don't depend on the folder the configs live in."""
    shutil.copytree(REPO / "configs", tmp_path / "gitops", ignore=shutil.ignore_patterns(".segship"))
    result = segship("validate", "-c", "gitops")
    assert result.exit_code == 0, result
    broken = (tmp_path / "gitops" / "exports.yaml").read_text().replace("segments: [vip]", "segments: [vips]")
    (tmp_path / "gitops" / "exports.yaml").write_text(broken)
    result = segship("validate", "-c", "gitops")
    assert result.exit_code == 2, result
    line, column = position_of(tmp_path / "gitops" / "exports.yaml", "vips", after="vip-to-braze:")
    assert (f"gitops/exports.yaml:{line}:{column}: export 'vip-to-braze' uses segment 'vips', which is not defined "
            "(segments: newsletter, vip)") in result.stderr, result


def test_an_unknown_role_is_a_usage_error(segship, write_config) -> None:
    write_config({"segship.yaml": "version: 1\n"})
    for args, env in ((["--role", "boss"], None), ([], {"SEGSHIP_ROLE": "boss"})):
        result = segship(*args, "validate", "-c", "segship.yaml", env=env)
        assert result.exit_code == 2, result
        assert "must be 'admin' or 'contributor'" in result.stderr, result


def test_a_contributor_may_validate_a_config_whose_connections_are_open_to_them(segship, write_config) -> None:
    write_config({"segship.yaml": BAD.replace("xkeysib-literal-0123456789", "'${env:BREVO_KEY}'")
                  .replace(", lapsed", "").replace("    display_name: Brevo\n",
                                                   "    display_name: Brevo\n    usable_by: [admins, contributors]\n")})
    result = segship("validate", "-c", "segship.yaml", env={"SEGSHIP_ROLE": "contributor"})
    assert result.exit_code == 0, result


def test_validate_in_ci_warns_of_state_in_a_local_file(write_config, segship):
    valid = BAD.replace(LITERAL, "'${env:BREVO_KEY}'").replace(", lapsed", "")
    write_config({"segship.yaml": valid.replace("version: 1\n", "version: 1\nstate: {path: state/s.db}\n", 1)})
    text = segship("validate", env={"CI": "true"})
    assert text.exit_code == 0, text
    assert text.stderr.startswith("warning: segship.yaml:2:") and "state is the local file state/s.db" in text.stderr
    document = json.loads(segship("validate", "--format", "json", env={"CI": "true"}).stdout)
    assert document["valid"] and "a CI runner's disk starts empty" in document["warnings"][0]["message"]
    assert segship("validate").stderr == ""  # outside CI: nothing to say
