"""The local trainer's library primitives: the learning-rate schedule (torch + transformers
schedulers, equal to the formula they replaced) and the device choice (CUDA when present)."""

from __future__ import annotations

import math

import pytest

from routerlib.models import EMBEDDED_MODEL
from routerlib.tuning import trainer
from routerlib.tuning.local import LocalBackend

#: Step counts of real local runs: tiny smoke runs (1-8 steps), the test suite's, make run's.
TOTALS = (1, 2, 3, 4, 5, 8, 16, 17, 33, 50, 100, 120, 333, 1000)


def handwritten_lr_at(step: int, peak: float, total: int) -> float:
    """The schedule as routerlib computed it by hand before it used the library's schedulers
    (kept here as the reference the library schedule must equal): linear warmup over
    max(1, int(0.06 * total)) steps starting at peak / warmup, then a cosine to 10 % of peak."""
    warmup = max(1, int(0.06 * total))
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return peak * (0.1 + (1 - 0.1) * cosine)


def library_rates(peak: float, total: int, start: int = 0) -> list[float]:
    """The rate each optimizer step of a ``total``-step run uses, as the trainer drives the
    schedule (optimizer step, then scheduler step); from ``start`` on, fast-forwarded there as a
    resumed run is."""
    import torch

    weight = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.AdamW([weight], lr=peak)
    scheduler = trainer.lr_scheduler(optimizer, total)
    trainer._fast_forward(scheduler, start)
    rates = []
    for _ in range(start, total):
        rates.append(optimizer.param_groups[0]["lr"])
        weight.grad = torch.ones(2)
        optimizer.step()
        scheduler.step()
    return rates


@pytest.mark.parametrize("total", TOTALS)
def test_library_schedule_equals_the_handwritten_formula_step_by_step(total: int) -> None:
    peak = 4e-3
    expected = [handwritten_lr_at(s, peak, total) for s in range(total)]
    got = library_rates(peak, total)
    assert len(got) == total
    for step, (a, b) in enumerate(zip(got, expected, strict=True)):
        assert a == pytest.approx(b, rel=1e-12, abs=0), f"step {step} of {total}"


def test_schedule_pinned_values() -> None:
    """100 steps at peak 1e-3: 6 warmup steps from 1/6 of the peak, the peak held at steps 5 and
    6 (end of warmup, start of the cosine), halfway down at step 53, 10 % of the peak at the end."""
    rates = library_rates(1e-3, 100)
    assert trainer.warmup_steps(100) == 6
    assert rates[0] == pytest.approx(1e-3 / 6, rel=1e-12)
    assert rates[1] == pytest.approx(2e-3 / 6, rel=1e-12)
    assert rates[5] == pytest.approx(1e-3, rel=1e-12)
    assert rates[6] == pytest.approx(1e-3, rel=1e-12)
    assert rates[53] == pytest.approx(0.55e-3, rel=1e-12)  # progress 47/94 = 0.5
    assert rates[99] == pytest.approx(1e-3 * (0.1 + 0.45 * (1 + math.cos(math.pi * 93 / 94))))
    assert min(rates) > 1e-4 - 1e-12  # never below MIN_LR_FRACTION of the peak
    # a one-step run trains at the peak; the default warmup share is WARMUP_FRACTION
    assert library_rates(1e-3, 1) == [pytest.approx(1e-3)]
    assert trainer.warmup_steps(1000) == int(trainer.WARMUP_FRACTION * 1000) == 60


@pytest.mark.parametrize("start", [1, 3, 5, 6, 7, 40])
def test_a_resumed_schedule_continues_with_the_same_rates(start: int) -> None:
    assert library_rates(2e-3, 50, start=start) == library_rates(2e-3, 50)[start:]


def test_device_choice_is_cuda_with_bf16_when_present_else_the_cpu_in_float32() -> None:
    choose = trainer.choose_device
    assert choose(cuda_available=True, cuda_bf16=True) == trainer.Device("cuda", True)
    assert choose(cuda_available=True, cuda_bf16=False) == trainer.Device("cuda", False)
    # the CPU trains in float32 by default (bf16 autocast was slower there: bench_tune_local)
    assert choose(cuda_available=False, cuda_bf16=False) == trainer.Device("cpu", False)
    # an explicit bf16 setting wins over what the device would pick
    assert choose(cuda_available=True, cuda_bf16=True, bf16=False).bf16 is False
    assert choose(cuda_available=False, cuda_bf16=False, bf16=True).bf16 is True


def test_training_device_asks_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    cpu = trainer.training_device()
    assert cpu == trainer.Device("cpu", False)  # this machine: no GPU
    backend = LocalBackend(batch_size=4)
    cpu_options = backend.options()
    assert "device" not in cpu_options  # CPU identities and cache keys stay as they were

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert trainer.training_device() == trainer.Device("cuda", True)
    assert trainer.training_device(bf16=False) == trainer.Device("cuda", False)
    assert backend.options() == {**cpu_options, "bf16": True, "device": "cuda"}
    assert trainer.training_device(backend.bf16) == trainer.Device("cuda", True)  # train()'s
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert trainer.training_device() == trainer.Device("cuda", False)


def test_default_learning_rates() -> None:
    from routerlib.tuning.base import TuningSpec

    spec = TuningSpec.build(
        base_model=EMBEDDED_MODEL, training_dataset_uri="t.jsonl", output_uri="o", epochs=1
    )
    assert trainer.default_learning_rate(spec) == trainer.EMBEDDED_LEARNING_RATES["PEFT_ADAPTER"]
