"""The edits a user makes to a shipped Vertex params file before its first run: the two
``EDIT`` lines (gs://your-bucket placeholders, refused by config validation) get real values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent.parent

#: A bucket and input the tests stand for (the Cloud Storage stand-in makes the bucket).
BUCKET = "team-router-bucket"
EDITS: dict[str, Any] = {
    "gcs_prefix": f"gs://{BUCKET}/router-agent",
    "input_path": f"gs://{BUCKET}/router-agent/week2_rows.jsonl",
}
#: The edits of a dry run on synthetic rows (empty input_path, explicit opt-in).
SYNTHETIC: dict[str, Any] = {**EDITS, "input_path": "", "allow_synthetic": True}


def edits_for(path: Path) -> dict[str, Any]:
    """:data:`EDITS` for a params file on the vertex backend, nothing for the others."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    return dict(EDITS) if data.get("backend") == "vertex" else {}


def edited_copy(path: str | Path, folder: Path) -> Path:
    """A copy of a shipped params file (same name) in ``folder`` with its EDIT lines edited."""
    source = Path(path) if Path(path).is_absolute() else ROOT / path
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / source.name
    copy.write_text(yaml.safe_dump({**data, **edits_for(source)}, sort_keys=False), "utf-8")
    return copy
