"""The edits a user makes to a shipped Vertex params file before its first run: the two
``EDIT`` lines (gs://your-bucket placeholders, refused by config validation) get real values."""

from __future__ import annotations

from typing import Any

#: A bucket and input the tests stand for (the Cloud Storage stand-in makes the bucket).
BUCKET = "team-router-bucket"
EDITS: dict[str, Any] = {
    "gcs_prefix": f"gs://{BUCKET}/router-agent",
    "input_path": f"gs://{BUCKET}/router-agent/week2_rows.jsonl",
}
#: The edits of a dry run on synthetic rows (empty input_path, explicit opt-in).
SYNTHETIC: dict[str, Any] = {**EDITS, "input_path": "", "allow_synthetic": True}
