"""`observer-insights validate`: every broken rule is reported with its line, field and the
dead-letter reason the worker would give; the exit code says whether all were valid."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from streams.cli import cli
from streams.cli.commands.validate import check_items, read_items

VALID: dict[str, Any] = {
    "event_id": "evt-1",
    "observer_id": "observer-a",
    "subject_id": "s-17",
    "metric": "temp",
    "value": 20.9,
    "observed_at": "2026-11-27T12:00:03.120Z",
}


def line(**changes: Any) -> str:
    return json.dumps({**VALID, **changes})


def run(path: Path, *args: str, **env: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(cli, ["validate", str(path), *args], env=env)
    return result.exit_code, result.output.splitlines()


@pytest.mark.parametrize(
    ("text", "reason", "field"),
    [
        ("{not json", "undecodable", "(message)"),
        ("[1, 2]", "invalid", "(message)"),
        (line(value="21.4"), "invalid", "value"),
        (line(value=True), "invalid", "value"),
        (line(value=1).replace('"value": 1', '"value": NaN'), "invalid", "value"),
        (line(observed_at="2026-11-27T12:00:00"), "invalid", "observed_at"),
        (line(metric="temp reading"), "invalid", "metric"),
        (line(subject_id="s" * 257), "invalid", "subject_id"),
        (line(event_id=""), "invalid", "event_id"),
        (line(atributes={"unit": "C"}), "invalid", "atributes"),
        (line(attributes={"floor": 3}), "invalid", "attributes.floor"),
        (line(attributes={f"k{i}": "v" for i in range(33)}), "invalid", "attributes"),
        (line(schema_version=2), "unsupported_version", "schema_version"),
        (line(attributes={"blob": "x" * 70_000}), "too_large", "(message)"),
    ],
)
def test_each_broken_rule_is_reported_with_its_reason(
    tmp_path: Path, text: str, reason: str, field: str
) -> None:
    path = tmp_path / "obs.jsonl"
    path.write_text(f"{line(event_id='ok-1')}\n\n{text}\n{line(event_id='ok-2')}\n")
    code, out = run(path)
    assert code == 1
    errors = [o for o in out if o.startswith(f"{path}:")]
    assert errors, out
    assert all(o.startswith(f"{path}:3: {reason}: ") for o in errors), out
    assert any(o.startswith(f"{path}:3: {reason}: {field}: ") for o in errors), out
    assert out[-1] == f"3 observations: 2 valid, 1 invalid (1 {reason})"


def test_missing_fields_each_get_a_line(tmp_path: Path) -> None:
    path = tmp_path / "obs.jsonl"
    path.write_text('{"event_id": "e", "value": "hot"}\n')
    code, out = run(path)
    assert code == 1
    fields = {o.split(": ")[2] for o in out[:-1]}
    assert fields == {"observer_id", "subject_id", "metric", "value", "observed_at"}
    assert out[-1] == "1 observations: 0 valid, 1 invalid (1 invalid)"


def test_all_valid_exits_zero_and_notes_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "obs.jsonl"
    path.write_text(
        "\n".join([line(), line(event_id="evt-2", observed_at=1795780800000), line()]) + "\n"
    )
    code, out = run(path)
    assert code == 0
    assert out == [
        f"{path}:3: note: event_id 'evt-1' repeats line 1 (a duplicate: counted once, "
        "not an error)",
        "3 observations: 3 valid, 0 invalid; 1 duplicate event_id",
    ]


def test_size_limit_follows_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "obs.jsonl"
    path.write_text(line(attributes={"blob": "x" * 2000}) + "\n")
    assert run(path)[0] == 0
    code, out = run(path, INSIGHTS_MAX_MESSAGE_BYTES="1024")
    assert code == 1
    assert out[0].startswith(f"{path}:1: too_large: (message): value is ")


def test_a_json_array_file_reports_the_line_each_element_starts_on(tmp_path: Path) -> None:
    path = tmp_path / "obs.json"
    good = json.dumps(VALID, indent=2)
    path.write_text(f"[\n{good},\n{json.dumps({**VALID, 'value': 'hot'})}\n]\n")
    code, out = run(path)
    assert code == 1
    assert out[0] == f"{path}:10: invalid: value: Input should be a valid number"
    assert out[-1] == "2 observations: 1 valid, 1 invalid (1 invalid)"


def test_stdin_and_a_bad_setting(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["validate", "-"], input=line() + "\n")
    assert (result.exit_code, result.output) == (0, "1 observations: 1 valid, 0 invalid\n")
    result = CliRunner().invoke(
        cli, ["validate", "-"], input="", env={"INSIGHTS_MAX_MESSAGE_BYTES": "lots"}
    )
    assert result.exit_code == 2
    assert "INSIGHTS_MAX_MESSAGE_BYTES" in result.output


def test_read_items_formats() -> None:
    data = b'[{"a": 1},\n {"b": [1, 2]}]'
    assert [(i.line, i.raw) for i in read_items(data)] == [(1, b'{"a": 1}'), (2, b'{"b": [1, 2]}')]
    # a line-per-object file whose first line is an array stays line-based
    lines = b"[1, 2]\n" + line().encode() + b"\n"
    assert [i.line for i in read_items(lines)] == [1, 2]
    with pytest.raises(ValueError, match="line 2"):
        read_items(b'[{"a": 1},\n {"b": }]', "array")
    checked = check_items(read_items(line().encode()), max_bytes=65_536)
    assert [(c.line, c.reason, c.event_id) for c in checked] == [(1, None, "evt-1")]
