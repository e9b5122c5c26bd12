"""What a run costs: tuning, serving and batch prediction, from the dated price table
routerlib/data/pricing.yaml, whose every row names its source (docs/vertex-facts.md). Training
tokens are the file's characters x the model's billed tokens per character: no tokenizer needed.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from routerlib import storage
from routerlib.config import TuningMode
from routerlib.convert import example_pair, example_problem
from routerlib.errors import InputError
from routerlib.models import CHARS_PER_TOKEN, FULL, PEFT, short_id
from routerlib.paths import packaged_file, project_root
from routerlib.tables import read_yaml

PRICING_FILE = "pricing.yaml"
#: Google's deploy cost script warns when its price snapshot is older than this many days
#: (google/skills skills/cloud/agent-platform-deploy/scripts/calculate_cost.py,
#: _STALENESS_THRESHOLD_DAYS); routerlib's doctor warns the same way.
STALE_AFTER_DAYS = 90


class _Sourced(BaseModel):
    """Where a row was read and when (``date``: the date its source states; ``date_note`` says
    when the source states none), and whether it was read from a Google source."""

    model_config = ConfigDict(extra="forbid")

    source: str = ""
    date: dt.date | None = None
    date_note: str = ""
    verified: bool | None = None
    note: str = ""


class ModelPrice(_Sourced):
    """The tuning price of one base model, and its billed tokens per character per mode."""

    usd_per_million_training_tokens: float = Field(ge=0)
    billed_tokens_per_character: float | dict[TuningMode, float] | None = None


class MachinePrice(_Sourced):
    """The hourly price of one replica of a machine type (its accelerators included)."""

    usd_per_hour: float = Field(ge=0)
    accelerator_type: str = ""
    accelerator_count: int | None = Field(None, ge=0)
    region: str = ""


class PricingTable(BaseModel):
    """A price table file: when it was last read against its sources, and the rows."""

    model_config = ConfigDict(extra="forbid")

    date: dt.date
    source: str = Field(min_length=1)
    verified: bool = False
    currency: Literal["USD"] = "USD"
    default_usd_per_million_training_tokens: float | None = Field(None, ge=0)
    #: The sources the rows share (YAML anchors), kept for readers of the file.
    tuning_source: str = ""
    deploy_source: str = ""
    models: dict[str, ModelPrice] = Field(default_factory=dict)
    machines: dict[str, MachinePrice] = Field(default_factory=dict)

    def model_row(self, base_model: str) -> ModelPrice | None:
        """The row of ``base_model`` (short or ``publishers/…/models/…`` form), or None."""
        return self.models.get(base_model) or self.models.get(short_id(base_model))

    def price(self, base_model: str) -> float | None:
        """USD per million training tokens for ``base_model`` (None when unknown)."""
        row = self.model_row(base_model)
        default = self.default_usd_per_million_training_tokens
        return row.usd_per_million_training_tokens if row else default

    def tokens_per_character(self, base_model: str, tuning_mode: str = PEFT) -> float | None:
        """The model's billed tokens per character under ``tuning_mode`` (None: unknown)."""
        row = self.model_row(base_model)
        value = row.billed_tokens_per_character if row is not None else None
        if isinstance(value, dict):
            return value.get(FULL if tuning_mode == FULL else PEFT)  # type: ignore[call-overload]
        return value

    def machine_price(self, machine: str) -> float | None:
        """USD per hour of one replica of ``machine`` (None when the table has no price)."""
        row = self.machines.get(machine)
        return None if row is None else row.usd_per_hour

    def is_verified(self, row: _Sourced | None) -> bool:
        """A row's flag (the table's when the row has none); False for a missing row."""
        return row is not None and (self.verified if row.verified is None else row.verified)

    def cited(self, row: _Sourced | None, source: str = "") -> str:
        """A row's source as a cost line cites it (``source`` when the row names none): its
        date, and a warning when it is not verified (a missing row is not)."""
        when = f" of {row.date}" if row is not None and row.date else ""
        warning = (
            "" if self.is_verified(row) else "; UNVERIFIED price: not read from a Google source"
        )
        return f"{row.source if row is not None and row.source else source}{when}{warning}"

    def unverified(self, base_model: str, machine: str) -> list[str]:
        """The names of the rows used for ``base_model`` and ``machine`` that are priced but not
        verified (a row the table lacks gives no price, so it is not listed)."""
        used = {
            short_id(base_model): self.model_row(base_model),
            machine: self.machines.get(machine),
        }
        return [name for name, row in used.items() if row is not None and not self.is_verified(row)]

    def oldest_source_date(self) -> dt.date | None:
        """The oldest date a verified row's source states (how old the newest price can be)."""
        dates = [
            r.date
            for r in [*self.models.values(), *self.machines.values()]
            if r.date is not None and self.is_verified(r)
        ]
        return min(dates) if dates else None


def default_pricing_path() -> Path:
    """The packaged price table, routerlib/data/pricing.yaml."""
    return packaged_file(PRICING_FILE)


def load_pricing(path: str | os.PathLike[str] | None = None) -> PricingTable:
    """Read and validate a price table (default: the packaged one); InputError names problems."""
    file = Path(path) if path is not None else default_pricing_path()
    return read_yaml(file, PricingTable, "pricing table", with_lines=False)


def example_characters(uri: str | os.PathLike[str]) -> list[int]:
    """Characters of each example of a training JSONL file: prompt + completion, or the content
    of every message (what Google's cost script counts). Reads local paths and gs:// URIs; a line
    that is not a training example raises InputError naming the file, the line and its problem
    (:func:`convert.example_problem`)."""
    counts = []
    for number, line in enumerate(storage.open_text(uri), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{uri}:{number}: not valid JSON ({exc.msg})") from None
        if (pair := example_pair(obj)) is None:
            raise InputError(f"{uri}:{number}: {example_problem(obj)}")
        turns = obj.get("messages")
        if isinstance(turns, list) and not isinstance(obj.get("prompt"), str):
            counts.append(sum(len(turn["content"]) for turn in turns))
        else:
            counts.append(len(pair[0]) + len(pair[1]))
    return counts


def tokens_from_characters(characters: int, tokens_per_character: float | None = None) -> int:
    """ceil(characters x ratio); the generic 1 / CHARS_PER_TOKEN when no ratio is known."""
    ratio = tokens_per_character if tokens_per_character is not None else 1 / CHARS_PER_TOKEN
    return math.ceil(round(characters * ratio, 9))


def _shown(path: Path) -> str:
    """``path`` relative to the project root when it lies inside it."""
    try:
        return str(path.resolve().relative_to(project_root()))
    except ValueError:
        return str(path)


@dataclass(frozen=True)
class CostEstimate:
    """What a tuning run is expected to cost (``usd`` None when the table has no price)."""

    examples: int
    tokens: int
    usd: float | None
    #: Each example's estimated tokens (what the sequence-length check compares).
    example_tokens: tuple[int, ...]
    #: How the figure was reached: counts, ratio, price and the price's source.
    text: str

    def line(self) -> str:
        """One human line for the console and the notebooks."""
        return self.text


def estimate(
    base_model: str,
    train_uri: str | os.PathLike[str],
    epochs: int,
    table: PricingTable | None = None,
    *,
    tuning_mode: str = PEFT,
) -> CostEstimate:
    """The cost of tuning ``base_model`` on ``train_uri`` for ``epochs`` epochs (the packaged
    table unless ``table`` is given)."""
    table = table or load_pricing()
    ratio = table.tokens_per_character(base_model, tuning_mode)
    counts = example_characters(train_uri)
    tokens = tokens_from_characters(sum(counts), ratio)
    price, path = table.price(base_model), _shown(default_pricing_path())
    how = (
        f"{ratio:g} billed tokens per character ({tuning_mode})"
        if ratio is not None
        else f"1 token per {CHARS_PER_TOKEN:g} characters (no billed ratio in the table)"
    )
    text = (
        f"cost estimate: {len(counts):,} examples, ~{tokens:,} tokens x {epochs} epoch(s) = "
        f"~{tokens * epochs:,} training tokens ({sum(counts):,} characters x {how})"
    )
    usd = None if price is None else tokens * epochs * price / 1e6
    if usd is None:
        text += f"; no price for {base_model} in {path}: add one to get a cost"
    else:
        cited = table.cited(table.model_row(base_model), path)
        text += f" x ${price:g}/M = ~${usd:,.2f} ({path} dated {table.date}: {cited})"
    per_example = tuple(tokens_from_characters(c, ratio) for c in counts)
    return CostEstimate(len(counts), tokens, usd, per_example, text)


def serving_machine(backend: str, machine_type: str) -> str:
    """The ``machines`` key of a deployment: ``local-cpu`` on the local backend, else the machine
    type (its price includes the accelerators the shape comes with)."""
    return "local-cpu" if backend == "local" else machine_type


@dataclass(frozen=True)
class RunCost:
    """What one run cost or would cost (metrics.json ``cost``; a figure is None when its input
    is unknown); ``verified`` only when every priced row used is (``unverified`` names the rest).
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
    unverified: list[str] = field(default_factory=list)
    machine_region: str = ""


def run_cost(
    *,
    base_model: str,
    billable_tokens: int | None,
    epochs: int,
    machine: str,
    routes_per_hour: float | None,
    latency: dict | None = None,
) -> RunCost:
    """The run's tuning and serving cost from the packaged price table."""
    table = load_pricing()
    per_million = table.price(base_model)
    hourly = table.machine_price(machine)
    unverified = table.unverified(base_model, machine)
    machine_row = table.machines.get(machine)
    return RunCost(
        base_model=base_model,
        billable_tokens=billable_tokens,
        epochs=epochs,
        usd_per_million_training_tokens=per_million,
        tuning_usd=(
            None
            if per_million is None or billable_tokens is None
            else billable_tokens * epochs * per_million / 1e6
        ),
        machine=machine,
        usd_per_hour=hourly,
        routes_per_hour=routes_per_hour,
        serving_usd_per_1000_routes=(
            None if hourly is None or not routes_per_hour else hourly / routes_per_hour * 1000
        ),
        latency_p50_s=(latency or {}).get("p50_s"),
        latency_p95_s=(latency or {}).get("p95_s"),
        table_date=table.date.isoformat(),
        verified=table.verified and not unverified,
        table_path=_shown(default_pricing_path()),
        unverified=unverified,
        machine_region=machine_row.region if machine_row is not None else "",
    )


@dataclass(frozen=True)
class BatchCost:
    """A batch prediction job's cost: node hours of its machine x the machine's hourly price
    (``measured``: the job's own node hours; else estimated, or None: docs/vertex-facts.md)."""

    machine: str
    rows: int
    usd_per_node_hour: float | None
    node_hours: float | None
    usd: float | None
    measured: bool
    verified: bool
    #: Where the rate was read (PricingTable.cited).
    cited: str
    basis: str = ""

    def line(self) -> str:
        """One human line: the estimate before the job, or the cost after it."""
        if self.usd_per_node_hour is None:
            return (
                f"batch cost: no price for {self.machine} in the price table: add one to get a cost"
            )
        rate = f"${self.usd_per_node_hour:g} per node hour of {self.machine}"
        cited = f" ({self.cited})"
        if self.measured:
            cost = f"{self.node_hours:.4g} node hour(s) x {rate} = ~${self.usd:,.2f}"
            return f"batch cost: {cost}{cited}"
        if self.node_hours is None:
            return (
                f"batch cost estimate: {self.rows:,} rows at {rate}; the job bills the node hours "
                f"it runs (no earlier job on this machine to estimate them from){cited}"
            )
        return (
            f"batch cost estimate: {self.rows:,} rows ~ {self.node_hours:.4g} node hour(s) "
            f"({self.basis}) x {rate} = ~${self.usd:,.2f}{cited}"
        )

    def record(self) -> dict[str, Any]:
        """The fields a batch job's registry record keeps."""
        keep = ("machine", "node_hours", "usd_per_node_hour", "usd", "verified")
        return {"cost" if self.measured else "cost_estimate": {k: getattr(self, k) for k in keep}}


def _batch(
    machine: str, rows: int, node_hours: float | None, measured: bool, basis: str = ""
) -> BatchCost:
    table = load_pricing()
    row = table.machines.get(machine)
    rate = row.usd_per_hour if row is not None else None
    return BatchCost(
        machine=machine,
        rows=rows,
        usd_per_node_hour=rate,
        node_hours=node_hours,
        usd=None if rate is None or node_hours is None else node_hours * rate,
        measured=measured,
        basis=basis,
        verified=table.is_verified(row),
        cited=table.cited(row),
    )


def batch_estimate(machine: str, rows: int, earlier: Iterable[dict[str, Any]] = ()) -> BatchCost:
    """Before a batch job: node hours estimated from ``earlier`` job records on the same machine
    (each with ``rows`` and ``cost.node_hours``: rows per node hour measured by Vertex), x the
    machine's hourly price. Without such a record only the rate is known."""
    done_rows, done_hours = 0, 0.0
    for record in earlier:
        cost = record.get("cost") or {}
        hours = cost.get("node_hours")
        if cost.get("machine") == machine and isinstance(hours, (int, float)) and hours > 0:
            done_rows += int(record.get("rows") or 0)
            done_hours += float(hours)
    if done_rows and done_hours:
        per_hour = done_rows / done_hours
        basis = f"{per_hour:,.0f} rows per node hour measured on earlier jobs"
        return _batch(machine, rows, rows / per_hour, False, basis)
    return _batch(machine, rows, None, False)


def batch_cost(machine: str, rows: int, node_hours: float | None) -> BatchCost:
    """After a batch job: its node hours (``resourcesConsumed.replicaHours``) x the rate."""
    return _batch(machine, rows, node_hours, True)


def table_verified(path: str | os.PathLike[str] | None = None) -> bool:
    """Whether every row of a price table (default: the packaged one) passes ``is_verified``."""
    table = load_pricing(path)
    rows = [*table.models.values(), *table.machines.values()]
    return all(table.is_verified(row) for row in rows) if rows else table.verified


def prices_verified(cost: Mapping[str, Any] | None) -> bool | None:
    """Whether the prices behind a run's recorded cost (metrics.json ``cost``) were verified:
    False when it names ``unverified`` rows or records ``verified: false``; None without a cost;
    the table's own flag (:func:`table_verified`) for a cost recorded before the flag existed."""
    if not cost:
        return None
    if cost.get("unverified"):
        return False
    flag = cost.get("verified")
    return bool(flag) if isinstance(flag, bool) else table_verified()
