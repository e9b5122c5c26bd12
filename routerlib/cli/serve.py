"""CLI: ``routerlib deploy``, ``routerlib endpoints list|delete`` and ``routerlib serve``."""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
from typing import Any

from routerlib import storage
from routerlib.cli import params
from routerlib.cli.params import Keys, add_params_option, pick, same
from routerlib.errors import InputError
from routerlib.serving.settings import DEFAULT_LOCATION

#: ``routerlib deploy --params FILE``: flag dest -> the RunConfig key notebook 04 deploys with.
DEPLOY_PARAMS: Keys = {
    "location": "deploy_location",
    **same("base_model machine_type accelerator_type accelerator_count project api_endpoint"),
}


#: Where endpoints live, as deploy and endpoints take --location.
_REGION = (
    "Vertex AI region endpoints live in (params: deploy_location; a region, never global; "
    f"default: {DEFAULT_LOCATION}, or the recorded one)"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add deploy, endpoints and serve."""
    deploy = subparsers.add_parser(
        "deploy",
        help="deploy a tuned checkpoint to a Vertex AI endpoint",
        description="Deploy gs://…/checkpoints/final through Model Garden; the endpoint is "
        "recorded in <outputs>/endpoints.json before the wait (state deploying), a failed deploy "
        "is cleaned up, an interrupted one is left for `routerlib endpoints cleanup`. Prints the "
        "endpoint resource name. A machine too small for the checkpoint is refused up front.",
    )
    deploy.add_argument("--checkpoint", required=True, help="gs:// URI of the final checkpoint")
    note = "Vertex base model id: its contract gives the default hardware"
    deploy.add_argument("--base-model", default="", help=note)
    params.hardware_flags(deploy)
    deploy.add_argument(
        "--list-options",
        action="store_true",
        help="print the deploy options Vertex recommends for the checkpoint (with quota state) "
        "and whether each fits its size; deploys nothing",
    )
    deploy.add_argument("--deploy-timeout", type=float, metavar="S", help="default: 2 hours")
    note = "default: a unique routerlib-<time>-<hex> name"
    deploy.add_argument("--endpoint-display-name", help=note)
    params.cloud_flags(deploy, _REGION)
    add_params_option(deploy, DEPLOY_PARAMS, _deploy)

    endpoints = subparsers.add_parser("endpoints", help="list or delete deployed endpoints")
    actions = endpoints.add_subparsers(dest="action", metavar="ACTION", required=True)
    note = "recorded endpoints; with --project, the live ones of that project"
    listing = actions.add_parser("list", help=note)
    delete = actions.add_parser("delete", help="undeploy every model and delete the endpoint")
    delete.add_argument("name", help="endpoint resource name (or id with --project)")
    for action, handler in ((listing, _list), (delete, _delete)):
        params.cloud_flags(action, _REGION)
        action.set_defaults(func=handler)
    clean = actions.add_parser(
        "cleanup",
        help="undeploy and delete every endpoint routerlib recorded (and, with --project, named "
        "or labelled) plus the Model Registry models those deploys uploaded; cancel recorded "
        "batch jobs still running",
    )
    params.cloud_flags(
        clean,
        f"with --project (default: {DEFAULT_LOCATION})",
        project_help="also remove the live endpoints of this project that routerlib named or "
        "labelled (without it: only what the registry recorded, each in its own project)",
        project="",
    )
    clean.set_defaults(func=_cleanup)

    serve = subparsers.add_parser(
        "serve",
        help="serve a local checkpoint over HTTP (Vertex/vLLM predict JSON)",
        description="Serve a checkpoint folder; batches concurrent requests. Ctrl-C stops it.",
    )
    serve.add_argument("--checkpoint", required=True, help="local checkpoint folder")
    serve.add_argument("--port", type=int, default=0, help="default: any free port")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--max-batch", type=int, default=16)
    serve.add_argument(
        "--constrained",
        action="store_true",
        help="decode every request under the completion's JSON Schema (requests may also send "
        "their own in guided_json / structured_outputs / response_format)",
    )
    serve.set_defaults(func=_serve)


def _deploy(args: argparse.Namespace) -> int:
    from routerlib.serving import vertex

    if args.location == "global":
        raise InputError(
            "deploy --location: endpoints live in a region, not global (e.g. us-central1); "
            "global is for tuning only (params: location vs deploy_location)"
        )
    if args.list_options:
        return _list_options(args)
    storage.require_checkpoint(args.checkpoint)  # a missing checkpoint: refused, nothing created
    settings = params.vertex_settings(args)
    options = pick(args, "base_model deploy_timeout endpoint_display_name")
    deployment = vertex.deploy(args.checkpoint, settings, **options)
    print(deployment.endpoint_name)
    return 0


def _list_options(args: argparse.Namespace) -> int:
    from routerlib.serving import hardware as hw
    from routerlib.serving import vertex

    where = _where(args)
    if not where["project"]:  # RecommendSpec is asked of one project: refuse before any call
        raise InputError(
            "deploy --list-options: no Google Cloud project: pass --project, set "
            "GOOGLE_CLOUD_PROJECT, or give a --params file whose project is set"
        )
    options = vertex.deploy_options(args.checkpoint, **where)
    size = hw.checkpoint_bytes(args.checkpoint)
    if size is not None:
        print(f"checkpoint weights: {size / hw.GB:.1f} GB", file=sys.stderr)
    if not options:
        print("Vertex recommends no deploy option for this checkpoint", file=sys.stderr)
        return 0
    quota_label = {True: "has quota", False: "NO QUOTA", None: "not checked"}
    fit_label = {True: "fits", False: "too small", None: "unknown memory"}
    print("machine_type\taccelerator_type\tcount\tregion\tquota\tfit")
    for o in options:
        h, fit = o.hardware, fit_label[hw.fits(size, o.hardware) if size is not None else None]
        print(
            f"{h.machine_type}\t{h.accelerator_type}\t{h.accelerator_count}\t{o.region or '-'}\t"
            f"{quota_label[o.has_quota]}\t{fit}"
        )
    lacking = [o for o in options if o.has_quota is False]
    if lacking:
        print(
            f"{len(lacking)} option(s) lack quota in this project (request it, or pick another); "
            "CustomModel.list_deploy_options() would not show them",
            file=sys.stderr,
        )
    return 0


def _where(args: argparse.Namespace) -> dict[str, Any]:
    """Where ``deploy --list-options``, ``endpoints list`` and ``cleanup`` look: the project
    (None: the recorded ones), the region and the API address."""
    where = {"project": args.project or None, "api_endpoint": args.api_endpoint or ""}
    return {**where, "location": args.location or DEFAULT_LOCATION}


def _cleanup(args: argparse.Namespace) -> int:
    from routerlib.serving import batch, vertex

    for job in batch.cancel_running():
        print(f"cancelled {job}")
    removed = vertex.cleanup(**_where(args))
    for name in removed:
        print(f"deleted {name}")
    if not removed:
        print("nothing to clean up", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace) -> int:
    from routerlib.serving import vertex

    rows = vertex.list_endpoints(**_where(args))
    if not rows:
        print("no endpoints", file=sys.stderr)
        return 0
    print("endpoint\tdisplay_name\tstate\tdeployed_models\tcheckpoint")
    for r in rows:
        models = ",".join(r.deployed_model_ids) or "-"
        print(
            f"{r.endpoint_name}\t{r.display_name}\t{r.state}\t{models}\t{r.checkpoint_uri or '-'}"
        )
    return 0


def _delete(args: argparse.Namespace) -> int:
    from routerlib.serving import vertex

    undeployed = vertex.delete_endpoint(args.name, **pick(args, "project location api_endpoint"))
    models = ", ".join(undeployed) if undeployed else "none"
    print(f"deleted {args.name} (undeployed models: {models})")
    return 0


def _wait_for_ctrl_c() -> None:
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()


def _serve(args: argparse.Namespace) -> int:
    from routerlib.serving import factory

    options = pick(args, "host port max_batch constrained")
    with factory.opened("local-server", args.checkpoint, **options) as predictor:
        print(predictor.server.endpoint_url, flush=True)  # type: ignore[attr-defined]
        print("serving; Ctrl-C stops", file=sys.stderr, flush=True)
        _wait_for_ctrl_c()
    return 0
