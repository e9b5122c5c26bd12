"""The names of tuned checkpoints every layer shares: where they sit below a tuning job's output
URI (Vertex's layout, which the local backend writes too) and the values of the ``checkpoint``
run key (``best``, ``final`` or ``epoch-<n>``)."""

from __future__ import annotations

import re

#: Folder of the per-epoch checkpoints below a tuning output URI.
CHECKPOINTS_DIR = "postprocess/node-0/checkpoints"
#: Suffix of the final checkpoint below a tuning output URI.
FINAL_CHECKPOINT = f"{CHECKPOINTS_DIR}/final"
#: The file a local checkpoint folder holds once it is complete and loadable on its own.
CHECKPOINT_MARKER = "routerlib_checkpoint.json"

#: Values of the ``checkpoint`` run key besides ``epoch-<n>``.
BEST, FINAL = "best", "final"
EPOCH_NAME = re.compile(r"^epoch-(\d+)$")


def parse_checkpoint_key(value: str) -> str | int:
    """``best`` / ``final`` as they are, ``epoch-<n>`` as the epoch number; else ValueError."""
    if value in (BEST, FINAL):
        return value
    match = EPOCH_NAME.match(value)
    if not match or int(match.group(1)) < 1:
        raise ValueError(f"{value!r} must be best, final or epoch-N (N >= 1)")
    return int(match.group(1))
