"""Small prompt/completion splits from the embedded synthetic generator, for local tuning tests."""

from __future__ import annotations

import json
from pathlib import Path

from routerlib import schema


def write_split(path: Path, rows: list[dict]) -> Path:
    """Write ``rows`` as Vertex prompt/completion JSONL (the prepare step's format)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            line = {
                "prompt": schema.build_prompt(row["user_query"]),
                "completion": schema.completion_text(row),
            }
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
    return path


def synthetic_splits(folder: Path, n_train: int, n_val: int, seed: int = 11) -> tuple[Path, Path]:
    """train.jsonl and validation.jsonl of embedded synthetic rows (disjoint) under ``folder``."""
    from routerlib import synth

    rows = list(synth.generate_rows(n_train + n_val, seed))
    return (
        write_split(folder / "train.jsonl", rows[:n_train]),
        write_split(folder / "validation.jsonl", rows[n_train:]),
    )
