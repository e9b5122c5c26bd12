"""Throughput of prediction generation against a fixed-latency endpoint, vs the ideal C / L.

A stand-in endpoint (tests/support/fault_server.py, in its own process, one thread per
connection) answers every predict request after L = 50 ms. ``generate_predictions`` (what
``routerlib evaluate --endpoint`` runs) sends N rows with C = 16 requests in flight. With no
client overhead it would finish N rows in N·L/C seconds, i.e. C/L = 320 rows/s; the ratio is
measured rows/s divided by that. Goal: ≥ 0.85.

Side by side in the same run (same server, same rows), to show where client time goes:
- ``routerlib``        the shipped predictor (the serving factory's ``predict`` kind: one pooled
                       keep-alive httpx client, a concurrent.futures pool, fsync per group);
- ``fsync per row``    plus one open/write/fsync of a side file per answer (routerlib.atomic.append_jsonl);
- ``new connection``   a fresh TCP connection for every request (no keep-alive).

Prints a table and a final line ``RESULT bench_eval ratio=<x>`` (the shipped client).

Batch vs endpoint (``--batch-rows N``, default 10,000; ``--only batch`` skips the part above):
the same N gold rows evaluated through a Vertex endpoint (``routerlib evaluate --endpoint
projects/…``, the aiplatform SDK's predict, one request per row) and through one batch
prediction job (``--batch MODEL``: instances to Cloud Storage, submit, poll, read the output),
both against the serving stand-in and gcp-storage-emulator in this process. The stand-in's model
answers at once, so wall times compare client/API overhead, not model time; the API call counts
are the point: the endpoint path makes one predict call per row (each a 429 candidate on a real
endpoint), the batch path a handful whatever N is.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from routerlib.atomic import append_jsonl  # noqa: E402
from routerlib.evaluate import evaluate, generate_predictions  # noqa: E402
from routerlib.schema import build_prompt  # noqa: E402
from routerlib.serving import batch, factory  # noqa: E402
from routerlib.serving.base import Completion, Predictor  # noqa: E402
from routerlib.serving.settings import VertexSettings  # noqa: E402
from routerlib.serving.transports import PredictClient, Transport  # noqa: E402
from routerlib.storage import gcs_client  # noqa: E402

LATENCY_S = 0.050
CONCURRENCY = 16
ROWS = 960  # 3 s at the ideal rate
GOAL = 0.85

COMPLETION = json.dumps(
    {
        "route_plan": [
            '/general-search(query="site:arxiv.org meta-learning second-order", mode=both)',
            "/math(Derive the meta-gradient with the Hessian term and its convergence rate.)",
            "/code(Implement Hessian-vector products in JAX and compare with FOMAML, using Python)",
        ],
        "route_rationale": "Search grounds the derivation; math derives; code validates. " * 3,
        "expected_artifacts": ["derivation", "JAX notebook", "convergence plot", "report"],
        "thinking_outline": ["1. survey", "2. derive", "3. implement", "4. validate"],
        "handoff_plan": "/general-search -> /math -> /code -> router QA (verify figures)",
        "todo_list": [
            "- [ ] /general-search: papers",
            "- [ ] /math: derive",
            "- [ ] /code: run",
            "- [ ] router QA: review",
        ],
        "difficulty": "advanced",
        "tags": ["meta-learning", "optimization", "jax"],
        "acceptance_criteria": ["derivation complete", "code runs", "plot shows the trade-off"],
        "metrics": {"primary": ["adaptation MSE"], "secondary": ["wall time per epoch"]},
    },
    ensure_ascii=False,
)


def write_gold(path: Path, n: int) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(n):
            prompt = build_prompt(
                f"Benchmark query {i}: derive and implement a method, then test it."
            )
            handle.write(json.dumps({"prompt": prompt, "completion": COMPLETION}) + "\n")


class FsyncPerRow:
    """The shipped transport plus one fsync'd append per answer (what per-row commits cost)."""

    def __init__(self, inner: Transport, side: Path) -> None:
        self.inner, self.side, self.name = inner, side, inner.name

    def complete(self, prompt: str, max_tokens: int, schema: dict | None = None) -> Completion:
        answer = self.inner.complete(prompt, max_tokens, schema)
        append_jsonl(self.side, {"text": answer.text, "latency_s": answer.latency_s})
        return answer

    def close(self) -> None:
        self.inner.close()


def shipped(endpoint: str) -> Predictor:
    """What ``routerlib evaluate --endpoint URL --concurrency C`` asks with (the factory's)."""
    return factory.make(*factory.kind_of(endpoint), concurrency=CONCURRENCY)


def measure(label: str, predictor: Predictor, gold: Path, work: Path) -> tuple[str, float, float]:
    cache = work / f"{label.replace(' ', '_')}.cache.jsonl"
    start = time.perf_counter()
    pred = generate_predictions(gold, predictor=predictor, cache_path=cache, progress=False)
    predictor.close()
    seconds = time.perf_counter() - start
    rows = sum(1 for _ in open(pred, encoding="utf-8"))
    assert rows == ROWS, (label, rows)
    rate = rows / seconds
    return label, rate, rate / (CONCURRENCY / LATENCY_S)


def batch_vs_endpoint(rows: int) -> None:
    """Evaluate ``rows`` gold rows through an endpoint and through a batch job; print both."""
    import os

    from tests.support.fake_vertex_serving import ServingStandIn
    from tests.support.gcs_emulator import start_emulator

    emulator, port = start_emulator()
    with tempfile.TemporaryDirectory(prefix="bench_batch_") as tmp, ServingStandIn() as stand_in:
        work = Path(tmp)
        os.environ.update(
            STORAGE_EMULATOR_HOST=f"http://127.0.0.1:{port}",
            GOOGLE_CLOUD_PROJECT="bench",
            ROUTERLIB_OUTPUTS=str(work / "outputs"),
        )
        gcs_client().create_bucket("bench-bucket")
        gold = work / "gold.jsonl"
        write_gold(gold, rows)
        server, state = stand_in.fresh()
        state.predict_fn = lambda instances: [COMPLETION for _ in instances]
        endpoint = state.add_endpoint("bench", "us-central1", "bench-endpoint")
        model = endpoint["deployedModels"][0]["model"]
        cloud = {"project": "bench", "location": "us-central1", "api_endpoint": server.url}
        batch_options = {"gcs_prefix": "gs://bench-bucket/eval", "poll_s": 0.5}
        table = []
        for label, kind, target, options in (
            ("endpoint", "endpoint", endpoint["name"], {**cloud, "concurrency": CONCURRENCY}),
            ("batch", "batch", model, {**batch_options, "settings": VertexSettings(**cloud)}),
        ):
            server.requests.clear()
            start = time.perf_counter()
            with factory.opened(kind, target, **options) as predictor:
                report = evaluate(predictor, gold, out=work / label / "report.json", progress=False)
            seconds = time.perf_counter() - start
            preds = Path(report["generation"]["predictions_path"])
            assert sum(1 for _ in open(preds, encoding="utf-8")) == rows, label
            vertex_calls = len(server.requests)
            gcs_calls = 0
            if label == "batch":
                (job,) = batch.REGISTRY.read()
                assert len(list(batch.output_lines(job["output_dir"]))) == rows
                gcs_calls = 1 + 1 + 3  # instances upload, output listing, 3 output files read
            table.append((label, vertex_calls, gcs_calls, seconds))
    emulator.stop()
    print(f"\nbatch vs endpoint, {rows} gold rows, serving stand-in + gcp-storage-emulator")
    print(f"{'path':<10}{'Vertex API calls':>18}{'GCS calls':>11}{'wall s':>9}{'rows/s':>9}")
    for label, calls, gcs, seconds in table:
        print(f"{label:<10}{calls:>18}{gcs:>11}{seconds:>9.1f}{rows / seconds:>9.0f}")
    (_, e_calls, _, e_s), (_, b_calls, b_gcs, b_s) = table
    print(
        f"batch / endpoint: API calls {(b_calls + b_gcs) / e_calls:.4f}x, wall time "
        f"{b_s / e_s:.2f}x (stand-in answers at once: no model time in either)"
    )


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-rows", type=int, default=10_000)
    parser.add_argument("--only", choices=("endpoint", "batch"), default=None)
    args = parser.parse_args()
    if args.only != "batch":
        code = throughput()
        if code:
            return code
    if args.only != "endpoint":
        batch_vs_endpoint(args.batch_rows)
    return 0


def throughput() -> int:
    with tempfile.TemporaryDirectory(prefix="bench_eval_") as tmp:
        work = Path(tmp)
        gold = work / "gold.jsonl"
        write_gold(gold, ROWS)
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.fault_server",
                "--delay",
                str(LATENCY_S),
                "--default",
                COMPLETION,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            url = server.stdout.readline().strip()
            endpoint = f"{url}/v1/projects/bench/locations/local/endpoints/1:predict"
            # Warm-up (imports, first connections) on a few rows, not measured.
            warm = work / "warm.jsonl"
            write_gold(warm, 32)
            generate_predictions(
                warm, predictor=shipped(endpoint), cache_path=work / "w.jsonl", progress=False
            )
            start = time.perf_counter()
            cli = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "routerlib",
                    "evaluate",
                    "--gold",
                    str(gold),
                    "--endpoint",
                    endpoint,
                    "--out",
                    str(work / "cli" / "report.json"),
                    "--concurrency",
                    str(CONCURRENCY),
                    "--no-progress",
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
            cli_seconds = time.perf_counter() - start
            if cli.returncode != 0:
                print(cli.stdout, cli.stderr)
                return 1
            fsync_per_row = shipped(endpoint)
            fsync_per_row.transport = FsyncPerRow(fsync_per_row.transport, work / "side.jsonl")
            new_connection = shipped(endpoint)
            new_connection.transport = PredictClient(endpoint, keepalive=False)
            results = [
                measure("routerlib", shipped(endpoint), gold, work),
                measure("fsync per row", fsync_per_row, gold, work),
                measure("new connection", new_connection, gold, work),
            ]
        finally:
            server.terminate()
            server.wait(timeout=10)
    ideal = CONCURRENCY / LATENCY_S
    print(
        f"endpoint latency L = {LATENCY_S * 1000:.0f} ms, concurrency C = {CONCURRENCY}, "
        f"{ROWS} rows; ideal C/L = {ideal:.0f} rows/s"
    )
    print(f"{'client':<16}{'rows/s':>10}{'ratio':>8}")
    for label, rate, ratio in results:
        print(f"{label:<16}{rate:>10.1f}{ratio:>8.3f}")
    cli_rate = ROWS / cli_seconds
    print(
        f"{'CLI end to end':<16}{cli_rate:>10.1f}{cli_rate / ideal:>8.3f}"
        "  (process start + generation + scoring + report; for information)"
    )
    ratio = results[0][2]
    print(f"goal >= {GOAL}: {'met' if ratio >= GOAL else 'NOT met'}")
    print(f"RESULT bench_eval ratio={ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
