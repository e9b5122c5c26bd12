"""CLI: ``routerlib deploy``, ``routerlib endpoints list|delete`` and ``routerlib serve``."""

from __future__ import annotations

import argparse
import os
import sys

from routerlib.serving.vertex import DEFAULT_LOCATION


def _cloud_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--project",
        default=os.environ.get("GOOGLE_CLOUD_PROJECT", ""),
        help="Google Cloud project (default: $GOOGLE_CLOUD_PROJECT)",
    )
    parser.add_argument(
        "--location",
        default=None,
        help=f"Vertex AI region endpoints live in (params: deploy_location; a region, never "
        f"global; default: {DEFAULT_LOCATION}, or the recorded one)",
    )
    parser.add_argument(
        "--api-endpoint",
        default=None,
        help="Vertex API address, e.g. http://127.0.0.1:PORT for a stand-in",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add deploy, endpoints and serve."""
    deploy = subparsers.add_parser(
        "deploy",
        help="deploy a tuned checkpoint to a Vertex AI endpoint",
        description="Deploy gs://…/checkpoints/final with Model Garden's CustomModel; prints the "
        "endpoint resource name and records it in <outputs>/endpoints.json.",
    )
    deploy.add_argument("--checkpoint", required=True, help="gs:// URI of the final checkpoint")
    deploy.add_argument("--machine-type", default="g2-standard-12")
    deploy.add_argument("--accelerator-type", default="NVIDIA_L4")
    deploy.add_argument("--accelerator-count", type=int, default=1)
    deploy.add_argument(
        "--endpoint-display-name",
        default=None,
        help="default: a unique routerlib-<time>-<hex> name",
    )
    _cloud_args(deploy)
    deploy.set_defaults(func=_deploy)

    endpoints = subparsers.add_parser("endpoints", help="list or delete deployed endpoints")
    actions = endpoints.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list", help="recorded endpoints; with --project, the live ones of that project"
    )
    _cloud_args(listing)
    listing.set_defaults(func=_list)
    delete = actions.add_parser("delete", help="undeploy every model and delete the endpoint")
    delete.add_argument("name", help="endpoint resource name (or id with --project)")
    _cloud_args(delete)
    delete.set_defaults(func=_delete)

    serve = subparsers.add_parser(
        "serve",
        help="serve a local checkpoint over HTTP (Vertex/vLLM predict JSON)",
        description="Serve a checkpoint folder; batches concurrent requests. Ctrl-C stops it.",
    )
    serve.add_argument("--checkpoint", required=True, help="local checkpoint folder")
    serve.add_argument("--port", type=int, default=0, help="default: any free port")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--max-batch", type=int, default=16)
    serve.set_defaults(func=_serve)


def _deploy(args: argparse.Namespace) -> int:
    from routerlib.errors import InputError
    from routerlib.serving import vertex

    if args.location == "global":
        raise InputError(
            "deploy --location: endpoints live in a region, not global (e.g. us-central1); "
            "global is for tuning only (params: location vs deploy_location)"
        )
    deployment = vertex.deploy(
        args.checkpoint,
        machine_type=args.machine_type,
        accelerator_type=args.accelerator_type,
        accelerator_count=args.accelerator_count,
        endpoint_display_name=args.endpoint_display_name,
        project=args.project,
        location=args.location or DEFAULT_LOCATION,
        api_endpoint=args.api_endpoint or "",
    )
    print(deployment.endpoint_name)
    return 0


def _list(args: argparse.Namespace) -> int:
    from routerlib.serving import vertex

    rows = vertex.list_endpoints(
        project=args.project or None,
        location=args.location or DEFAULT_LOCATION,
        api_endpoint=args.api_endpoint or "",
    )
    if not rows:
        print("no endpoints", file=sys.stderr)
        return 0
    print("\t".join(["endpoint", "display_name", "state", "deployed_models", "checkpoint"]))
    for row in rows:
        print(
            "\t".join(
                [
                    row.endpoint_name,
                    row.display_name,
                    row.state,
                    ",".join(row.deployed_model_ids) or "-",
                    row.checkpoint_uri or "-",
                ]
            )
        )
    return 0


def _delete(args: argparse.Namespace) -> int:
    from routerlib.serving import vertex

    undeployed = vertex.delete_endpoint(
        args.name,
        project=args.project or None,
        location=args.location,
        api_endpoint=args.api_endpoint,
    )
    models = ", ".join(undeployed) if undeployed else "none"
    print(f"deleted {args.name} (undeployed models: {models})")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from routerlib.serving.local import serve

    def ready(server: object) -> None:
        print(server.endpoint_url, flush=True)  # type: ignore[attr-defined]
        print("serving; Ctrl-C stops", file=sys.stderr, flush=True)

    serve(args.checkpoint, host=args.host, port=args.port, on_ready=ready, max_batch=args.max_batch)
    return 0
