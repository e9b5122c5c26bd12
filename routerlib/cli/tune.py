"""CLI: ``routerlib tune`` (submit a tuning job) and ``routerlib jobs list|show|wait|cancel``."""

from __future__ import annotations

import argparse
import os

from routerlib.cli import params
from routerlib.cli.params import POSITIVE, Keys, add_params_option, option, pick, same
from routerlib.config import run_default
from routerlib.errors import InputError
from routerlib.models import ADAPTER_SIZES, EMBEDDED_MODEL

#: ``routerlib tune --params FILE``: flag dest -> the RunConfig key notebook 03 tunes with.
TUNE_PARAMS: Keys = {
    "display_name": "tuned_model_display_name",
    "labels": ("labels", lambda labels: [f"{k}={v}" for k, v in labels.items()] or None),
    "custom_base": "custom_base_model",
    **same("backend base_model tuning_mode adapter_size epochs learning_rate strict project"),
    **same("learning_rate_multiplier location api_endpoint"),
}


def _labels(items: list[str] | None) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--labels {item!r}: expected KEY=VALUE")
        labels[key.strip()] = value.strip()
    return labels


def _tune(args: argparse.Namespace) -> int:
    from routerlib import jobs
    from routerlib.tuning import choose_backend
    from routerlib.tuning.base import DEFAULT_BASE_MODEL, TuningSpec

    backend = choose_backend(args.train_uri, args.backend)
    base_model = args.base_model or (DEFAULT_BASE_MODEL if backend == "vertex" else EMBEDDED_MODEL)
    adapter_size = args.adapter_size
    if adapter_size is None and args.tuning_mode == "PEFT_ADAPTER":
        adapter_size = run_default("adapter_size")
    spec = TuningSpec.build(
        base_model=base_model,
        training_dataset_uri=args.train_uri,
        validation_dataset_uri=args.validation_uri,
        output_uri=args.output_uri,
        adapter_size=adapter_size,
        tuned_model_display_name=args.display_name,
        labels=_labels(args.labels),
        custom_base_model=args.custom_base,
        **pick(args, "tuning_mode epochs learning_rate learning_rate_multiplier"),
    )
    options = "wait force dry_run strict wait_for_quota quota_interval poll_interval"
    job = jobs.tune(spec, backend=backend, **pick(args, f"{options} project location api_endpoint"))
    if not args.dry_run:
        print(jobs.describe(job))
    return 0


def _jobs(args: argparse.Namespace) -> int:
    """``routerlib jobs ACTION``: the table, or one job in detail after show, wait or cancel."""
    from routerlib import jobs

    action = args.jobs_command
    if action == "list":
        print(jobs.jobs_table(jobs.list_jobs(refresh=not args.no_refresh), fmt=args.format))
    elif action == "show":
        print(jobs.describe(jobs.show(args.name)))
    elif action == "wait":
        print(jobs.describe(jobs.wait(args.name, poll_interval=args.poll_interval)))
    else:
        print(jobs.describe(jobs.cancel(args.name, **pick(args, "wait_seconds poll_interval"))))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``tune`` and ``jobs`` subcommands."""
    p = subparsers.add_parser(
        "tune",
        help="submit a tuning job (Vertex AI or local) and optionally wait for it",
        description="Tune a base model on prompt/completion JSONL. gs:// datasets go to Vertex AI managed "
        "tuning, local paths to the local CPU backend (override with --backend). Prints a cost "
        "estimate first; --dry-run prints the request and sends nothing. Exit 0 only on success.",
    )
    p.add_argument("--train-uri", required=True, help="training JSONL (gs://… or a local path)")
    p.add_argument("--validation-uri", help="validation JSONL")
    p.add_argument("--output-uri", required=True, help="where checkpoints go (gs://… or a folder)")
    p.add_argument(
        "--base-model",
        help="vertex: meta/llama3_1@llama-3.1-8b-instruct (default); local: the embedded tiny "
        "model (default), a Hugging Face id or a local path",
    )
    option(p, "--tuning-mode", key="tuning_mode", choices=("PEFT_ADAPTER", "FULL"))
    sizes = ", ".join(map(str, ADAPTER_SIZES[:-1])) + f" or {ADAPTER_SIZES[-1]}"
    note = f"LoRA rank {sizes} (PEFT only; default {run_default('adapter_size')})"
    p.add_argument("--adapter-size", type=int, help=note)
    option(p, "--epochs", key="epochs", type=int)
    lr = p.add_mutually_exclusive_group()
    lr.add_argument("--learning-rate", type=float, help="the learning rate (open models on Vertex)")
    lr.add_argument(
        "--learning-rate-multiplier",
        type=float,
        help="scales the default learning rate (Gemini and the local backend; open models on "
        "Vertex take --learning-rate)",
    )
    p.add_argument("--display-name", help="tuned model display name")
    p.add_argument("--labels", nargs="*", metavar="KEY=VALUE", help="labels on the job")
    p.add_argument("--custom-base", help="continue from this checkpoint (…/checkpoints/final)")
    p.add_argument("--wait", action="store_true", help="poll until the job ends")
    p.add_argument("--poll-interval", type=POSITIVE, default=30.0, metavar="SECONDS")
    p.add_argument(
        "--dry-run", action="store_true", help="print estimate and request, send nothing"
    )
    p.add_argument("--force", action="store_true", help="submit even if the same spec has a job")
    note = "refuse (exit 2) when training examples exceed the model's sequence limit"
    p.add_argument("--strict", action="store_true", help=note)
    p.add_argument(
        "--wait-for-quota",
        action="store_true",
        help="on 429 RESOURCE_EXHAUSTED (quota: one concurrent open-model job by default), "
        "try again every --quota-interval seconds instead of stopping",
    )
    p.add_argument("--quota-interval", type=POSITIVE, default=300.0, metavar="SECONDS")
    p.add_argument("--backend", choices=("vertex", "local"))
    where = (
        "where tuning runs: global (Vertex picks a region with capacity) or a tuning region "
        f"(default $GOOGLE_CLOUD_REGION or {run_default('location')}); endpoints: "
        "`routerlib deploy --location`"
    )
    params.cloud_flags(p, where, os.environ.get("GOOGLE_CLOUD_REGION", run_default("location")))
    add_params_option(p, TUNE_PARAMS, _tune)

    j = subparsers.add_parser("jobs", help="list, show, wait for or cancel recorded tuning jobs")
    j.set_defaults(func=_jobs)
    sub = j.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)
    note = "the Active Tuning Jobs table (states refreshed when reachable)"
    jl = sub.add_parser("list", help=note)
    jl.add_argument("--no-refresh", action="store_true", help="show recorded states only")
    note = "markdown: the original team's Active Tuning Jobs table, ready to paste"
    jl.add_argument("--format", choices=("plain", "markdown"), default="plain", help=note)
    js = sub.add_parser("show", help="one job in detail, with its sub-state and checkpoints")
    jw = sub.add_parser("wait", help="re-attach and wait until the job ends (exit 0 on success)")
    note = "cancel a running job; returns once it ended or says it is still CANCELLING"
    jc = sub.add_parser("cancel", help=note)
    for action in (js, jw, jc):
        action.add_argument("name", help="resource name or job id")
    jw.add_argument("--poll-interval", type=POSITIVE, default=30.0, metavar="SECONDS")
    note = "how long to wait for the cancellation to take effect"
    option(jc, "--wait-seconds", type=float, default=60.0, metavar="SECONDS", help=note)
    jc.add_argument("--poll-interval", type=POSITIVE, default=5.0, metavar="SECONDS")
