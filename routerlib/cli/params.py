"""``--params FILE`` for the CLI steps (docs/params.md): a command takes the notebooks' settings
from a validated params file, each flag given overriding its key; ``add_params_option(parser,
keys, handler)`` adds it, ``keys`` mapping flag dest -> RunConfig key (or ``(key, convert)``).
Also the small argparse helpers the commands share.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import Any

from routerlib.config import RunConfig, default_project, load_config, run_default
from routerlib.paths import resolve
from routerlib.serving.settings import MACHINE, PLACE, VertexSettings

#: Namespace attribute holding the dests the user gave on the command line.
_GIVEN = "_params_given"

#: Turns a params value into the flag's value.
Convert = Callable[[Any], Any]
#: Flag dest -> RunConfig key, or (key, Convert).
Keys = Mapping[str, str | tuple[str, Convert]]
#: A command's handler: the parsed arguments -> the exit code.
Handler = Callable[[argparse.Namespace], int]


def cloud_flags(
    parser: Any, where: str, location: str | None = None, project_help: str = "", **defaults: Any
) -> None:
    """``--project`` (default $GOOGLE_CLOUD_PROJECT; ``project=...``: that, standing for the
    recorded one; ``project_help`` replaces its help), ``--location`` (help ``where``) and
    ``--api-endpoint`` (``api_endpoint=...``)."""
    project = defaults.get("project", default_project())
    origin = "the recorded one" if "project" in defaults else "$GOOGLE_CLOUD_PROJECT"
    help_text = project_help or f"Google Cloud project (default: {origin})"
    parser.add_argument("--project", default=project, help=help_text)
    parser.add_argument("--location", default=location, help=where)
    note = "Vertex API address, e.g. http://127.0.0.1:PORT for a stand-in"
    parser.add_argument("--api-endpoint", default=defaults.get("api_endpoint"), help=note)


def hardware_flags(parser: Any) -> None:
    """``--machine-type``, ``--accelerator-type`` and ``--accelerator-count``; None: the base
    model's contract (deploy) or its recorded deploy (batch), else hardware.FALLBACK."""
    for flag, fallback in (("machine-type", "g2-standard-12"), ("accelerator-type", "NVIDIA_L4")):
        parser.add_argument(f"--{flag}", help=f"default: the model's (or {fallback})")
    parser.add_argument("--accelerator-count", type=int, help="default: the model's (or 1)")


def option(parser: Any, *flags: str, key: str = "", help: str = "", **kwargs: Any) -> Any:
    """``parser.add_argument`` whose help ends with the default, so the two never disagree;
    with ``key`` the default is RunConfig's value of that key."""
    default = kwargs["default"] = run_default(key) if key else kwargs["default"]
    text = f"{help} (default {default})" if help else f"default: {default}"
    return parser.add_argument(*flags, help=text, **kwargs)


def checked(kind: Callable[[str], Any], ok: Callable[[Any], bool], rule: str) -> Convert:
    """An argparse ``type``: ``kind(text)`` when ``ok`` accepts it, else an error saying ``rule``."""

    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return value

    return convert


RATIO = checked(float, lambda v: 0.0 <= v < 1.0, "in [0, 1)")
POSITIVE_INT = checked(int, lambda v: v >= 1, "at least 1")
COUNT = checked(int, lambda v: v >= 0, "at least 0")
POSITIVE = checked(float, lambda v: v > 0, "> 0")


def same(names: str) -> dict[str, str]:
    """``Keys`` for flags whose dest is the RunConfig key's own name (space-separated)."""
    return {name: name for name in names.split()}


def pick(args: argparse.Namespace, names: str) -> dict[str, Any]:
    """The values ``args`` holds for the space-separated ``names``, as keyword arguments."""
    return {name: getattr(args, name) for name in names.split()}


def vertex_settings(args: argparse.Namespace) -> VertexSettings:
    """What ``--project``, ``--location``, ``--api-endpoint`` and the hardware flags name."""
    place: dict[str, Any] = {key: getattr(args, key) or "" for key in PLACE}
    return VertexSettings(**place, **{key: getattr(args, key) for key in MACHINE})


def _record_given(action: argparse.Action) -> None:
    """Make ``action`` note its dest in the namespace when the user gives the flag."""
    base = type(action)

    class Given(base):  # type: ignore[valid-type,misc]
        def __call__(self, parser: Any, namespace: argparse.Namespace, *rest: Any) -> None:
            super().__call__(parser, namespace, *rest)
            setattr(namespace, _GIVEN, (getattr(namespace, _GIVEN, None) or set()) | {self.dest})

    Given.__name__ = base.__name__
    action.__class__ = Given


def add_params_option(parser: argparse.ArgumentParser, keys: Keys, handler: Handler) -> None:
    """Add ``--params FILE`` and make ``handler`` the command's: it runs once the file is merged
    into the flags ``keys`` maps."""
    known = {a.dest: a for a in parser._actions}
    missing = [dest for dest in keys if dest not in known]
    assert not missing, f"no such flags: {missing}"
    for dest in keys:
        _record_given(known[dest])
    parser.add_argument(
        "--params",
        metavar="FILE",
        default=None,
        help="params YAML (params/*.yaml): take the settings the notebooks use from it; a flag "
        "given overrides its key (docs/params.md)",
    )

    def with_params(args: argparse.Namespace) -> Any:
        apply_params(args, keys)
        return handler(args)

    parser.set_defaults(func=with_params, **{_GIVEN: None})


def apply_params(args: argparse.Namespace, keys: Keys) -> RunConfig | None:
    """Merge ``args.params`` into ``args``: validate it with the flags given as overrides, then
    set each flag not given whose key the file changes. Returns the config (None without it)."""
    params = getattr(args, "params", None)
    if not params:
        return None
    given: set[str] = set(getattr(args, _GIVEN, None) or ())
    mapping = {dest: (spec, None) if isinstance(spec, str) else spec for dest, spec in keys.items()}
    overrides = {
        key: getattr(args, dest)
        for dest, (key, convert) in mapping.items()
        if dest in given and convert is None
    }
    config = load_config(params, overrides)
    for dest, (key, convert) in mapping.items():
        if dest in given:
            continue
        value = getattr(config, key)
        if convert is not None:
            setattr(args, dest, convert(value))
        elif value != run_default(key):
            setattr(args, dest, value)
    return config


def path_flag(path: str) -> str | None:
    """A params path as a flag's: empty is None, gs:// as it is, a relative path from the
    project root (where the notebooks read it)."""
    return (path if path.startswith("gs://") else str(resolve(path))) if path else None
