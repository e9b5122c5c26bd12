"""CLI: ``routerlib prepare`` (Week-2 rows -> Vertex JSONL splits), ``routerlib synth`` and
``routerlib schema`` (the completion's JSON Schema)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from routerlib import synth
from routerlib.atomic import write_text
from routerlib.cli import params
from routerlib.cli.params import COUNT, POSITIVE_INT, RATIO, Keys, add_params_option, option, same
from routerlib.schema import schema_text

_PREPARE_EPILOG = """\
Output (in --output-dir): train.jsonl, validation.jsonl, test.jsonl, one
{"prompt": ..., "completion": ...} object per line, byte-identical to the original
conversion, and prepare.json (input sha256, flags, row counts, sha256 per split,
distribution stats, warnings).

Every row is validated before anything is written; each problem is printed as
FILE:LINE: FIELD: MESSAGE and the command exits with status 2.

Warnings (errors under --strict): duplicate ids, the same user_query in two
splits, and examples whose estimated token count exceeds --max-seq-len.
Token estimate: ceil((characters of prompt + completion) / 4), about four
characters per token for Llama/Gemma/Qwen vocabularies on English text.
--max-seq-len defaults to the limit of --base-model under --tuning-mode
(e.g. 4096 for Llama 3.1 8B with PEFT_ADAPTER, 8192 with FULL).
"""


#: ``routerlib prepare --params FILE``: flag dest -> the RunConfig key notebook 01 prepares with.
PREPARE_PARAMS: Keys = {
    "input": ("input_path", params.path_flag),
    **same("val_ratio test_ratio seed limit gcs_prefix max_seq_len base_model tuning_mode strict"),
    **same("data_format synth_rows synth_seed"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``prepare``, ``synth`` and ``schema``."""
    prepare = subparsers.add_parser(
        "prepare",
        help="convert Week-2 router rows into train/validation/test JSONL for Vertex AI tuning",
        description="Convert Week-2 router rows (JSONL) into Vertex AI prompt/completion splits.",
        epilog=_PREPARE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    prepare.add_argument(
        "--input",
        metavar="FILE",
        help="Week-2 rows (JSONL, local path or gs://). Default: the embedded synthetic rows "
        "(see --synth-rows, --synth-seed), written to OUTPUT_DIR/synthetic_rows.jsonl",
    )
    prepare.add_argument("--output-dir", required=True, metavar="DIR", help="folder for the splits")
    option(prepare, "--val-ratio", key="val_ratio", type=RATIO)
    option(prepare, "--test-ratio", key="test_ratio", type=RATIO)
    option(prepare, "--seed", key="seed", type=int, help="shuffle seed")
    prepare.add_argument(
        "--limit", type=POSITIVE_INT, metavar="N", help="keep only the first N rows of the file"
    )
    prepare.add_argument(
        "--gcs-prefix",
        metavar="gs://BUCKET/PREFIX",
        help="also upload the splits and prepare.json there and verify size and crc32c",
    )
    prepare.add_argument(
        "--max-seq-len",
        type=POSITIVE_INT,
        metavar="N",
        help="warn above this many estimated tokens (default: the limit of --base-model "
        "under --tuning-mode)",
    )
    note = "model whose sequence limit applies"
    option(prepare, "--base-model", key="base_model", metavar="MODEL", help=note)
    option(prepare, "--tuning-mode", key="tuning_mode", choices=("PEFT_ADAPTER", "FULL"))
    prepare.add_argument("--strict", action="store_true", help="treat warnings as errors")
    option(
        prepare,
        "--format",
        key="data_format",
        dest="data_format",
        choices=("prompt_completion", "messages"),
        help="training splits' line format: prompt_completion (the original conversion, byte for "
        "byte) or messages (user/assistant chat turns, the format Vertex documents for chat; "
        "test.jsonl stays prompt/completion)",
    )
    rows, seed = synth.DEFAULT_ROWS, synth.DEFAULT_SEED
    note = f"rows of the embedded input (default {rows})"
    prepare.add_argument("--synth-rows", type=POSITIVE_INT, metavar="N", help=note)
    note = f"seed of the embedded input (default {seed})"
    prepare.add_argument("--synth-seed", type=int, metavar="S", help=note)
    prepare.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_params_option(prepare, PREPARE_PARAMS, _prepare)

    synth_cmd = subparsers.add_parser(
        "synth",
        help="write deterministic, realistic synthetic Week-2 rows (the embedded default input)",
        description="Write N synthetic Week-2 router rows; the same --seed gives the same bytes.",
    )
    option(synth_cmd, "--rows", type=COUNT, default=rows, metavar="N")
    option(synth_cmd, "--seed", type=int, default=seed, metavar="S")
    synth_cmd.add_argument("--out", required=True, metavar="FILE", help="output JSONL file")
    synth_cmd.set_defaults(func=_synth)

    schema = subparsers.add_parser(
        "schema",
        help="write the completion's JSON Schema (from the contract in routerlib.schema)",
        description="The 10 completion keys, their types, the difficulty enum and the route-step "
        "grammar as a JSON Schema (draft 2020-12). --generation writes the bounded variant a "
        "constrained decoder uses; the default is the validation schema every real row passes.",
    )
    schema.add_argument("--out", metavar="FILE", help="file to write (default: standard output)")
    schema.add_argument(
        "--generation",
        action="store_true",
        help="the generation schema (bounded lengths and counts, no extra keys)",
    )
    schema.set_defaults(func=_schema)


def _prepare(args: argparse.Namespace) -> int:
    from routerlib import dataset

    if args.input is None:
        print(
            "prepare: no --input given; using the embedded synthetic rows "
            f"({args.synth_rows or synth.DEFAULT_ROWS} rows, seed "
            f"{synth.DEFAULT_SEED if args.synth_seed is None else args.synth_seed})"
        )
    options = {dest: getattr(args, dest) for dest in PREPARE_PARAMS if dest != "input"}
    result = dataset.prepare(args.input, args.output_dir, progress=not args.no_progress, **options)
    for warning in result.warnings:
        print(f"warning: {warning}")
    counts = result.counts
    print(
        f"prepare: {counts['total']} rows -> train {counts['train']}, "
        f"validation {counts['validation']}, test {counts['test']}"
    )
    for name, path in result.split_paths.items():
        print(f"  {name}: {path}")
    print(f"  manifest: {result.manifest_path}")
    for name, uri in result.uris.items():
        print(f"  uploaded {name}: {uri}")
    return 0


def _synth(args: argparse.Namespace) -> int:
    path = synth.write_rows(args.out, args.rows, args.seed)
    print(f"synth: wrote {args.rows} rows (seed {args.seed}) to {path}")
    return 0


def _schema(args: argparse.Namespace) -> int:
    text = schema_text(generation=args.generation)
    if args.out:
        write_text(Path(args.out), text)
        print(args.out)
    else:
        sys.stdout.write(text)
    return 0
