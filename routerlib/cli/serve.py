"""CLI: placeholder until its stage lands."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:  # noqa: D103
    return None
