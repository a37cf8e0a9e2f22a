"""Write the JSON Schema of every topic's records: `python -m models.schemas DIR`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Final

from pydantic import BaseModel

from models.anomaly import Anomaly
from models.deadletter import DeadLetter
from models.insights import RollingInsight
from models.observation import Observation
from models.observers import ConsensusRecord, ObserverRecord

__all__ = ["TOPIC_SCHEMAS", "render_schemas", "write_schemas"]

# File name (by default topic) -> the model of its records.
TOPIC_SCHEMAS: Final[dict[str, type[BaseModel]]] = {
    "observations": Observation,
    "observations.deadletter": DeadLetter,
    "insights.rolling": RollingInsight,
    "insights.anomalies": Anomaly,
    "insights.observers.consensus": ConsensusRecord,
    "insights.observers.observer": ObserverRecord,
}


def render_schemas() -> dict[str, str]:
    """File name -> schema text, deterministic so a diff shows any contract change."""
    rendered = {}
    for name, model in TOPIC_SCHEMAS.items():
        schema = model.model_json_schema(mode="serialization")
        schema["$id"] = f"{name}.schema.json"
        rendered[f"{name}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return rendered


def write_schemas(folder: Path) -> list[Path]:
    """Write every schema into `folder`; returns the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, text in render_schemas().items():
        path = folder / file_name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m models.schemas [DIR]` (default `schemas/`)."""
    args = sys.argv[1:] if argv is None else argv
    folder = Path(args[0] if args else "schemas")
    for path in write_schemas(folder):
        sys.stdout.write(f"{path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
