"""Generated documentation cannot drift: the committed JSON Schemas and the README's
configuration table must equal what the code generates now."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from models.schemas import render_schemas
from streams.cli import cli
from streams.cli.configdoc import END, START, main, render_table, replace_table
from streams.runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_committed_schemas_equal_the_models() -> None:
    committed = {p.name: p.read_text(encoding="utf-8") for p in (ROOT / "schemas").glob("*.json")}
    assert committed == render_schemas(), "schemas/ is stale: run `make schemas`"


def test_readme_configuration_table_is_generated_from_settings() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split(START, 1)[1].split(END, 1)[0]
    assert table.strip() == render_table().strip(), (
        "README.md's configuration table is stale: run `observer-insights config-doc --write "
        "README.md`"
    )


def test_every_setting_has_a_description_and_a_row() -> None:
    table = render_table()
    for name, field in Settings.model_fields.items():
        assert field.description, f"Settings.{name} needs description= (it is the README's text)"
        assert f"| `{field.alias}` |" in table


def test_table_renders_defaults_as_the_environment_takes_them() -> None:
    table = render_table()
    assert "| `INSIGHTS_WINDOWS` | `tumbling:60s,hopping:300s/60s` |" in table
    assert "| `INSIGHTS_GRACE` | `30s` |" in table
    assert "| `KAFKA_BOOTSTRAP_SERVERS` | unset |" in table
    assert "`KAFKA_SASL_PASSWORD_FILE`" in table
    assert table.rstrip().endswith("or an OTLP endpoint is set |")


def test_write_and_check(tmp_path: Path) -> None:
    doc = tmp_path / "README.md"
    doc.write_text(f"# x\n{START}\n| old |\n{END}\nafter\n", encoding="utf-8")
    assert main(["--check", str(doc)]) == 1
    result = CliRunner().invoke(cli, ["config-doc", "--write", str(doc)])
    assert result.exit_code == 0
    assert doc.read_text(encoding="utf-8") == f"# x\n{START}\n{render_table()}{END}\nafter\n"
    assert CliRunner().invoke(cli, ["config-doc", "--check", str(doc)]).exit_code == 0
    assert replace_table(doc.read_text(encoding="utf-8"), render_table()) == doc.read_text(
        encoding="utf-8"
    )
