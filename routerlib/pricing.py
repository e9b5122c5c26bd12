"""What a run costs: tuning (training tokens x epochs x a price per million tokens) and serving (a
machine's hourly price / measured routes per hour), from a dated price table.

The price table is a dated, user-editable YAML file (the default ships inside the package as
routerlib/data/pricing.yaml); ``load_pricing`` validates it (unknown keys are
rejected, every problem reported together). Tokens are estimated with ``models.estimate_tokens`` over
prompt + completion of every training example, so the estimate needs no tokenizer.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from routerlib import storage
from routerlib.dataset import example_pair
from routerlib.errors import InputError
from routerlib.models import estimate_tokens
from routerlib.paths import packaged_file, project_root

PRICING_FILE = "pricing.yaml"


class ModelPrice(BaseModel):
    """The tuning price of one base model."""

    model_config = ConfigDict(extra="forbid")

    usd_per_million_training_tokens: float = Field(ge=0)
    note: str = ""


class MachinePrice(BaseModel):
    """The hourly price of one serving replica of a machine shape (accelerators included)."""

    model_config = ConfigDict(extra="forbid")

    usd_per_hour: float = Field(ge=0)
    note: str = ""


class PricingTable(BaseModel):
    """A price table file: when the rates were written down, where from, and the rates."""

    model_config = ConfigDict(extra="forbid")

    date: dt.date
    source: str = Field(min_length=1)
    verified: bool = False
    currency: Literal["USD"] = "USD"
    default_usd_per_million_training_tokens: float | None = Field(None, ge=0)
    models: dict[str, ModelPrice] = Field(default_factory=dict)
    machines: dict[str, MachinePrice] = Field(default_factory=dict)

    def machine_price(self, machine: str) -> float | None:
        """USD per hour of one replica of ``machine`` (None when the table has no price)."""
        row = self.machines.get(machine)
        return None if row is None else row.usd_per_hour

    def price(self, base_model: str) -> float | None:
        """USD per million training tokens for ``base_model`` (None when unknown)."""
        row = self.models.get(base_model)
        if row is not None:
            return row.usd_per_million_training_tokens
        return self.default_usd_per_million_training_tokens


def default_pricing_path() -> Path:
    """The packaged price table, routerlib/data/pricing.yaml."""
    return packaged_file(PRICING_FILE)


def load_pricing(path: str | os.PathLike[str] | None = None) -> PricingTable:
    """Read and validate a pricing table; InputError lists every problem with file and key."""
    file = Path(path) if path is not None else default_pricing_path()
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{file}: pricing table not found") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{file}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"{file}: expected a mapping of keys (date, source, models, ...)")
    try:
        return PricingTable.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(table)"
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"{file}: {key}: {msg}")
        raise InputError(f"{file}: invalid pricing table", lines) from None


def example_tokens(uri: str | os.PathLike[str]) -> list[int]:
    """Estimated tokens of prompt + completion for each example of a prompt/completion JSONL file.

    Reads local paths and gs:// URIs (through routerlib.storage). A line that is not a JSON object
    with string ``prompt`` and ``completion`` raises InputError naming the file and line.
    """

    counts = []
    for number, line in enumerate(storage.open_text(uri), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{uri}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise InputError(f"{uri}:{number}: expected a JSON object with prompt and completion")

        pair = example_pair(obj)
        if pair is None and "messages" in obj:
            raise InputError(
                f"{uri}:{number}: messages: expected chat turns ending with the assistant's"
            )
        for key in ("prompt", "completion"):
            if pair is None and not isinstance(obj.get(key), str):
                raise InputError(f"{uri}:{number}: {key}: missing or not a string")
        assert pair is not None
        counts.append(estimate_tokens(pair[0] + pair[1]))
    return counts


def training_tokens(uri: str | os.PathLike[str]) -> tuple[int, int]:
    """(examples, estimated tokens of prompt + completion) of a prompt/completion JSONL file."""
    counts = example_tokens(uri)
    return len(counts), sum(counts)


@dataclass(frozen=True)
class CostEstimate:
    """What a tuning run is expected to cost (``usd`` None when the table has no price)."""

    base_model: str
    examples: int
    tokens: int
    epochs: int
    usd_per_million: float | None
    usd: float | None
    table_date: str | None
    verified: bool
    table_path: str

    @property
    def training_tokens(self) -> int:
        """Tokens processed over all epochs."""
        return self.tokens * self.epochs

    def line(self) -> str:
        """One human line for the console and the notebooks."""
        head = (
            f"cost estimate: {self.examples:,} examples, ~{self.tokens:,} tokens x {self.epochs} "
            f"epoch(s) = ~{self.training_tokens:,} training tokens"
        )
        if self.usd is None:
            if self.table_date is None:
                return f"{head}; no price table at {self.table_path}: cost unknown"
            return (
                f"{head}; no price for {self.base_model} in {self.table_path}: add one to get a "
                "cost"
            )
        trust = "" if self.verified else ", UNVERIFIED rates: check the table"
        return (
            f"{head} x ${self.usd_per_million:g}/M = ~${self.usd:,.2f} "
            f"({self.table_path} dated {self.table_date}{trust})"
        )


def estimate(
    base_model: str,
    train_uri: str | os.PathLike[str],
    epochs: int,
    table: PricingTable | None = None,
    table_path: str | os.PathLike[str] | None = None,
    token_counts: list[int] | None = None,
) -> CostEstimate:
    """Estimate the cost of tuning ``base_model`` on ``train_uri`` for ``epochs`` epochs.

    Without ``table`` the table is loaded from ``table_path`` (default: the packaged table); a
    missing table gives an estimate without a price, an invalid one raises InputError.
    ``token_counts`` (from ``example_tokens``) saves reading the file a second time.
    """
    path = Path(table_path) if table_path is not None else default_pricing_path()
    if table is None and path.is_file():
        table = load_pricing(path)
    counts = example_tokens(train_uri) if token_counts is None else token_counts
    examples, tokens = len(counts), sum(counts)
    price = table.price(base_model) if table is not None else None
    usd = None if price is None else round(tokens * epochs * price / 1e6, 6)
    return CostEstimate(
        base_model=base_model,
        examples=examples,
        tokens=tokens,
        epochs=epochs,
        usd_per_million=price,
        usd=usd,
        table_date=table.date.isoformat() if table is not None else None,
        verified=bool(table and table.verified),
        table_path=_shown(path),
    )


def _shown(path: Path) -> str:
    """``path`` relative to the project root when it lies inside it."""
    try:
        return str(path.resolve().relative_to(project_root()))
    except ValueError:
        return str(path)


#: The machine name the local backend serves on (priced in the table's ``machines``).
LOCAL_MACHINE = "local-cpu"


def serving_machine(backend: str, machine_type: str) -> str:
    """The ``machines`` key of a deployment: ``local-cpu`` on the local backend, else the machine
    type (its price includes the accelerators the shape comes with)."""
    return LOCAL_MACHINE if backend == "local" else machine_type


@dataclass(frozen=True)
class RunCost:
    """What one run cost or would cost; any figure is None when its input is unknown.

    ``tuning_usd`` = billable tokens (of one pass over the training file) x epochs x the model's
    price per million tokens. ``serving_usd_per_1000_routes`` = the machine's hourly price /
    measured routes per hour x 1,000.
    """

    base_model: str
    billable_tokens: int | None
    epochs: int
    usd_per_million_training_tokens: float | None
    tuning_usd: float | None
    machine: str
    usd_per_hour: float | None
    routes_per_hour: float | None
    serving_usd_per_1000_routes: float | None
    latency_p50_s: float | None
    latency_p95_s: float | None
    table_date: str | None
    verified: bool
    table_path: str


def run_cost(
    *,
    base_model: str,
    billable_tokens: int | None,
    epochs: int,
    machine: str,
    routes_per_hour: float | None,
    latency: dict | None = None,
    table: PricingTable | None = None,
    table_path: str | os.PathLike[str] | None = None,
) -> RunCost:
    """The run's tuning and serving cost from the price table (loaded from ``table_path``, default
    the packaged table, when ``table`` is not given; a missing table gives no prices)."""
    path = Path(table_path) if table_path is not None else default_pricing_path()
    if table is None and path.is_file():
        table = load_pricing(path)
    per_million = table.price(base_model) if table is not None else None
    hourly = table.machine_price(machine) if table is not None else None
    tuning = (
        None
        if per_million is None or billable_tokens is None
        else round(billable_tokens * epochs * per_million / 1e6, 6)
    )
    serving = (
        None if hourly is None or not routes_per_hour else round(hourly / routes_per_hour * 1000, 6)
    )
    latency = latency or {}
    return RunCost(
        base_model=base_model,
        billable_tokens=billable_tokens,
        epochs=epochs,
        usd_per_million_training_tokens=per_million,
        tuning_usd=tuning,
        machine=machine,
        usd_per_hour=hourly,
        routes_per_hour=routes_per_hour,
        serving_usd_per_1000_routes=serving,
        latency_p50_s=latency.get("p50_s"),
        latency_p95_s=latency.get("p95_s"),
        table_date=table.date.isoformat() if table is not None else None,
        verified=bool(table and table.verified),
        table_path=_shown(path),
    )
