"""CLI: ``routerlib doctor [PARAMS]``: check a run's cloud set-up before a first real run."""

from __future__ import annotations

import argparse

from routerlib.config import RunConfig, default_params_file, load_config

#: The params keys a flag overrides (each flag's help is the key's RunConfig description).
OVERRIDES = ("project", "location", "deploy_location", "gcs_prefix", "api_endpoint")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``doctor`` subcommand."""
    p = subparsers.add_parser(
        "doctor",
        help="check credentials, project, APIs, bucket, region, deploy quota and prices "
        "before a real run (creates nothing)",
        description="One table of checks for the params file's run, each with its fix: application-"
        "default credentials (and whose), the project, the Vertex AI and Cloud Storage APIs, "
        "the gcs_prefix bucket (exists, location fits the tuning location, you may write to "
        "it), the tuning location for the base model, the deploy machine's availability and "
        "quota in deploy_location (needs a checkpoint folder), the price table's date. "
        "Nothing is created or billed. Exits 1 when a check fails.",
    )
    p.add_argument(
        "params",
        nargs="?",
        default=None,
        metavar="PARAMS",
        help="params/*.yaml of the run (default: $ROUTERLIB_PARAMS or params/local.yaml)",
    )
    for key in OVERRIDES:
        what = str(RunConfig.model_fields[key].description).removesuffix(".")
        p.add_argument(f"--{key.replace('_', '-')}", help=f"{what} (params: {key})")
    p.add_argument(
        "--checkpoint",
        metavar="GS_URI",
        help="checkpoint folder for the deploy check (default: the params' custom_base_model, "
        "else the newest succeeded job's)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from routerlib import doctor

    overrides = {key: getattr(args, key) for key in OVERRIDES if getattr(args, key) is not None}
    cfg = load_config(args.params or default_params_file(), overrides)
    checks = doctor.Doctor(cfg, args.checkpoint).run()
    print(doctor.render(checks))
    return 1 if any(c.status == doctor.FAIL for c in checks) else 0
