"""CLI: ``routerlib doctor [PARAMS]``: check a run's cloud set-up before a first real run."""

from __future__ import annotations

import argparse
from typing import Any

from routerlib.config import default_params_file, load_config


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``doctor`` subcommand."""
    p = subparsers.add_parser(
        "doctor",
        help="check credentials, project, APIs, bucket, region, deploy quota and prices "
        "before a real run (creates nothing)",
        description=(
            "One table of checks for the params file's run, each with its fix: application-"
            "default credentials (and whose), the project, the Vertex AI and Cloud Storage APIs, "
            "the gcs_prefix bucket (exists, location fits the tuning location, you may write to "
            "it), the tuning location for the base model, the deploy machine's availability and "
            "quota in deploy_location (needs a checkpoint folder), the price table's date. "
            "Nothing is created or billed. Exits 1 when a check fails."
        ),
    )
    p.add_argument(
        "params",
        nargs="?",
        default=None,
        metavar="PARAMS",
        help="params/*.yaml of the run (default: $ROUTERLIB_PARAMS or params/local.yaml)",
    )
    p.add_argument("--project", help="Google Cloud project (params: project)")
    p.add_argument("--location", help="tuning location (params: location)")
    p.add_argument("--deploy-location", help="region endpoints live in (params: deploy_location)")
    p.add_argument("--gcs-prefix", help="gs://BUCKET/PREFIX (params: gcs_prefix)")
    p.add_argument("--api-endpoint", help="Vertex AI API endpoint (params: api_endpoint)")
    p.add_argument(
        "--checkpoint",
        metavar="GS_URI",
        help="checkpoint folder for the deploy check (default: the params' custom_base_model, "
        "else the newest succeeded job's)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from routerlib import doctor

    overrides: dict[str, Any] = {
        key: value
        for key, value in (
            ("project", args.project),
            ("location", args.location),
            ("deploy_location", args.deploy_location),
            ("gcs_prefix", args.gcs_prefix),
            ("api_endpoint", args.api_endpoint),
        )
        if value is not None
    }
    cfg = load_config(args.params or default_params_file(), overrides)
    checks = doctor.run_checks(cfg, args.checkpoint)
    print(doctor.render(checks))
    return 1 if doctor.failed(checks) else 0
