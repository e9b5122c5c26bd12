"""A team's first real run, walked as a newcomer: the shipped Vertex params refuse to run unedited
(placeholders named by file:line, synthetic rows need an opt-in, a missing project is refused)
before anything is uploaded; a resume with an edited params file says what changed; a notebook's
routerlib error reaches the terminal and run.log as its lines; ``routerlib run`` ends with each
run's headline; ``routerlib deploy`` refuses a checkpoint folder that is not there."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

from routerlib import paths
from routerlib.cli import main
from routerlib.config import SYNTHETIC_ON_VERTEX, RunConfig, cloud_problems, load_config
from routerlib.errors import NOTEBOOK_MARKER, InputError, RouterlibError, lines_from_notebook
from routerlib.serving.settings import VertexSettings
from routerlib.stages import prepare as prepare_stage
from routerlib.stages import run as run_stage
from routerlib.tuning.vertex import VertexBackend
from tests.support import gcs_emulator as emulator_support
from tests.support.compare_runs import make_run
from tests.support.toy_project import _notebook, make_project
from tests.support.vertex_params import EDITS, SYNTHETIC

gcs_emulator = emulator_support.gcs_emulator  # the fixture

pytestmark = pytest.mark.timeout(300)

VERTEX = ("llama31_8b.yaml", "gemma3_27b.yaml", "qwen3_32b.yaml")


def _line(path: str, key: str) -> int:
    """The line of ``key:`` in a params file, read as text."""
    text = paths.resolve(path).read_text(encoding="utf-8").splitlines()
    return next(n for n, line in enumerate(text, 1) if line.startswith(f"{key}:"))


def _outputs() -> list[Path]:
    root = paths.outputs_root()
    return sorted(root.iterdir()) if root.is_dir() else []


# --------------------------------------------------------------------------- placeholders


@pytest.mark.parametrize("name", VERTEX)
def test_the_shipped_vertex_files_name_each_line_to_edit(name: str) -> None:
    path = f"params/{name}"
    with pytest.raises(InputError) as info:
        load_config(path)
    problems = info.value.problems
    bucket, rows = _line(path, "gcs_prefix"), _line(path, "input_path")
    assert len(problems) == 2, problems
    assert problems[0].startswith(
        f"{path}:{rows}: input_path: 'gs://your-bucket/router-agent/week2_rows.jsonl' is a "
        "placeholder (your-bucket): set your Week-2 rows"
    )
    assert problems[1].startswith(
        f"{path}:{bucket}: gcs_prefix: 'gs://your-bucket/router-agent' is a placeholder "
        "(your-bucket): set gs://BUCKET/PREFIX in a bucket you own"
    )
    # emptying input_path without the opt-in: synthetic rows on Vertex are refused at that line
    with pytest.raises(InputError) as info:
        load_config(path, {**EDITS, "input_path": ""})
    assert info.value.problems == [f"{path}:{rows}: {SYNTHETIC_ON_VERTEX}"]
    assert load_config(path, SYNTHETIC).allow_synthetic is True
    assert load_config(path, EDITS).input_path == EDITS["input_path"]


def test_placeholders_and_the_opt_in_anywhere(tmp_path: Path) -> None:
    own = tmp_path / "own.yaml"
    own.write_text(
        "name: own\nbackend: vertex\nsynth_rows: 50\n"
        "gcs_prefix: gs://team-bucket/r\nproject: <PROJECT_ID>\n"
    )
    with pytest.raises(InputError) as info:
        load_config(own)
    assert info.value.problems == [
        f"{own}:5: project: '<PROJECT_ID>' is a placeholder (<PROJECT_ID>): set your Google "
        "Cloud project id, or empty it and export GOOGLE_CLOUD_PROJECT",
        f"{own}:3: {SYNTHETIC_ON_VERTEX}",  # no input_path line: the synthetic rows' line
    ]
    # an override is named without a line (it is not in the file)
    with pytest.raises(InputError) as info:
        load_config(own, {"project": "my-project", "allow_synthetic": True})
    assert info.value.problems[0].startswith(f"{own}: project: 'my-project' is a placeholder")
    # the local backend makes its synthetic rows without an opt-in; a real project passes
    assert load_config(own, {"project": "team-project", "allow_synthetic": True}).project
    assert load_config("params/local.yaml").input_path == ""
    assert RunConfig.model_fields["allow_synthetic"].default is False


def test_routerlib_run_refuses_the_unedited_file_before_anything_is_uploaded(
    gcs_emulator: emulator_support.GcsEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    gcs_emulator.make_bucket("your-bucket")  # even a bucket of that name receives nothing
    path = "params/llama31_8b.yaml"
    assert main(["run", path]) == 2
    err = capsys.readouterr().err
    assert f"{path}:{_line(path, 'gcs_prefix')}: gcs_prefix: " in err
    assert f"{path}:{_line(path, 'input_path')}: input_path: " in err
    assert "Traceback" not in err
    # the CLI step and the notebook's door refuse it the same way
    argv = ["prepare", "--params", path, "--output-dir", str(tmp_path / "splits")]
    assert main(argv) == 2
    assert f"{path}:{_line(path, 'gcs_prefix')}: gcs_prefix: " in capsys.readouterr().err
    with pytest.raises(InputError) as info:
        run_stage.open_run(path, str(tmp_path / "notebook-run"))
    assert all("is a placeholder (your-bucket)" in line for line in info.value.problems)
    assert list(gcs_emulator.client().list_blobs("your-bucket")) == []
    assert _outputs() == []
    assert not (tmp_path / "splits").exists() and not (tmp_path / "notebook-run").exists()


def test_a_missing_project_is_refused_before_stage_01_writes(
    gcs_emulator: emulator_support.GcsEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    gcs_emulator.make_bucket("team-bucket")
    params = tmp_path / "vx.yaml"
    params.write_text(
        "name: vx\nbackend: vertex\ngcs_prefix: gs://team-bucket/r\n"
        "allow_synthetic: true\nsynth_rows: 30\n"
    )
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    assert main(["run", str(params)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "project: backend vertex needs a Google Cloud project" in err[0]
    assert _outputs() == []
    # notebook 01 opened alone: the stage refuses before it writes or uploads a row
    run = run_stage.open_run(str(params), str(tmp_path / "run"))
    with pytest.raises(InputError, match="GOOGLE_CLOUD_PROJECT"):
        prepare_stage.prepare(run)
    assert not (run.path / "data").exists()
    assert list(gcs_emulator.client().list_blobs("team-bucket")) == []
    # with the project, the same stage uploads its splits
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "team-project")
    assert prepare_stage.prepare(run).uris["train"] == "gs://team-bucket/r/train.jsonl"


# --------------------------------------------------------------------------- resume


@pytest.fixture()
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The toy project of tests/support/toy_project.py, plus a 04 that copies a scored run."""
    root = make_project(tmp_path / "proj")
    monkeypatch.setenv("ROUTERLIB_ROOT", str(root))
    monkeypatch.setenv("ROUTERLIB_OUTPUTS", str(tmp_path / "outputs"))
    monkeypatch.chdir(root)
    return root


def test_resume_with_an_edited_params_file_names_each_change(
    toy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "params/boom.yaml", "--stages", "01,02"]) == 1
    (run,) = _outputs()
    before = (run / "pipeline.json").read_text()
    original = (toy / "params" / "boom.yaml").read_text()
    (toy / "params" / "boom.yaml").write_text("name: boom\nepochs: 3\nseed: 11\n")
    capsys.readouterr()
    assert main(["run", "--resume", "params/boom.yaml"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[:2] == ["params/boom.yaml: seed: 7 -> 11", "params/boom.yaml: epochs: 1 -> 3"]
    assert f"was edited after {run.name} started" in err[-1]
    assert "a resumed run keeps its own params.yaml" in err[-1]
    assert "Start a new run with the edited file: `routerlib run params/boom.yaml`" in err[-1]
    assert (run / "pipeline.json").read_text() == before  # nothing ran
    # resuming by the run folder says the same; undoing the edit resumes
    assert main(["run", "--resume", str(run)]) == 2
    (toy / "params" / "boom.yaml").write_text(original)
    capsys.readouterr()
    assert main(["run", "--resume", "params/boom.yaml"]) == 1  # boom's stage 02 fails again
    assert f"[boom] resuming {run} from stage 02" in capsys.readouterr().out


# --------------------------------------------------------------------------- error lines


def test_error_lines_survive_a_notebook_and_a_traceback_is_not_mistaken() -> None:
    error = InputError("rows.jsonl: 1 problem(s) found", ["rows.jsonl:100: row: invalid JSON"])
    shown = [f"\x1b[0;31m{line}\x1b[0m" for line in [NOTEBOOK_MARKER, *error.lines()]]
    assert lines_from_notebook(shown) == error.lines()
    assert lines_from_notebook(["Traceback (most recent call last):", "ValueError: x"]) is None
    assert lines_from_notebook([]) is None
    assert isinstance(error, RouterlibError)


def test_a_malformed_row_reaches_the_terminal_and_run_log_from_routerlib_run(
    real_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = (real_data / "week2_rows_sample.jsonl").read_text(encoding="utf-8").splitlines()[:120]
    rows[99] = '{"id": "broken", "user_query": '  # line 100 is not JSON
    source = tmp_path / "rows.jsonl"
    source.write_text("\n".join(rows) + "\n", encoding="utf-8")
    # what `routerlib prepare` prints for it
    assert main(["prepare", "--input", str(source), "--output-dir", str(tmp_path / "cli")]) == 2
    cli = capsys.readouterr().err.strip().splitlines()
    problems, summary = cli[:-1], cli[-1].removeprefix("routerlib prepare: ")
    assert any(line.startswith(f"{source}:100: ") for line in problems)

    params = tmp_path / "badrows.yaml"
    params.write_text(f"name: badrows\nbackend: local\ninput_path: {source}\n")
    assert main(["run", str(params), "--stages", "01"]) == 1
    out = capsys.readouterr().out.splitlines()
    for line in problems:  # the same lines the CLI prints, unprefixed
        assert line in out
    assert any(line.endswith(f"raised InputError: {summary}") for line in out)
    assert not any("Traceback" in line for line in out)
    # the headline at the end repeats where it failed and why
    failed = next(i for i, line in enumerate(out) if line.startswith("FAILED "))
    assert out[failed + 1 :] == problems
    (run,) = [p for p in _outputs() if p.name.startswith("badrows-")]
    log = (run / "run.log").read_text(encoding="utf-8")
    assert all(line in log.splitlines() for line in problems) and "Traceback" not in log
    # the executed notebook shows the lines, not a traceback
    book = nbformat.read(run / "notebooks" / "01_prepare.ipynb", as_version=4)
    (error,) = [
        o
        for c in book.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.output_type == "error"
    ]
    assert error.ename == "InputError"
    assert error.traceback == [NOTEBOOK_MARKER, *problems, summary]


# --------------------------------------------------------------------------- headline


def test_routerlib_run_ends_with_each_runs_headline(
    toy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scored = make_run(tmp_path / "made", "good", "good")
    report = json.loads((scored / "eval" / "report.json").read_text())
    report["generation"] = {"failed_rows": [3, 7]}
    (scored / "eval" / "report.json").write_text(json.dumps(report))
    copy = (
        "import shutil\n"
        f"src = Path({str(scored)!r})\n"
        "shutil.copy(src / 'metrics.json', run)\n"
        "shutil.copytree(src / 'eval', run / 'eval')"
    )
    nbformat.write(_notebook(copy, title="04 eval"), toy / "notebooks" / "04_eval.ipynb")
    assert main(["run", "params/ok.yaml", "--stages", "01,04"]) == 0
    out = capsys.readouterr().out.splitlines()
    (run,) = _outputs()
    start = out.index(f"finished {run}")
    assert start > max(i for i, line in enumerate(out) if " ... ok (" in line)
    strict = report["strict"]["overall"]
    head = out[start + 1 :]
    assert head[0] == (
        f"  route_plan_exact {strict['route_plan_exact']:.3f}, "
        f"tool_sequence_exact {strict['tool_sequence_exact']:.3f}, "
        f"route_tool_recall {strict['route_tool_recall']:.3f}, "
        f"json_valid {strict['json_valid']:.3f} (strict, {report['config']['total_samples']} test rows, free decoding)"
    )
    verdict = "PASS" if report["threshold_results"]["overall_pass"] else "FAIL"
    assert head[1].startswith(f"  gate: {verdict} (")
    assert head[2].startswith(
        "  batch: 2 row(s) failed in the batch job and were scored invalid: 3, 7"
    )
    assert head[3] == f"  metrics: {run / 'metrics.json'}"
    assert head[4].startswith(f"  report: {run / 'eval' / 'report.json'}")


# --------------------------------------------------------------------------- deploy


def test_deploy_of_a_missing_checkpoint_is_refused_before_anything_is_created(
    gcs_emulator: emulator_support.GcsEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    from routerlib.serving import vertex
    from tests.support.fake_vertex_serving import ServingStandIn

    gcs_emulator.make_bucket("tuning-bucket")
    missing = "gs://tuning-bucket/does/not/exist"
    with ServingStandIn() as stand_in:
        server, state = stand_in.fresh()
        argv = ["deploy", "--project", "proj-1", "--api-endpoint", server.url]
        assert main([*argv, "--checkpoint", missing]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"routerlib deploy: {missing}: no checkpoint")
        assert server.requests == [] and state.endpoints == {}
        assert vertex.REGISTRY.read() == []
        # a checkpoint folder with a file deploys
        bucket = gcs_emulator.client().bucket("tuning-bucket")
        bucket.blob("run/checkpoints/final/config.json").upload_from_string("{}")
        assert main([*argv, "--checkpoint", "gs://tuning-bucket/run/checkpoints/final"]) == 0
        assert len(state.endpoints) == 1


def test_every_routerlib_error_line_is_parseable_from_a_toy_notebook(
    toy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raising = (
        "from routerlib.stages import run as stage\n"
        "from routerlib.errors import RemoteError\n"
        "raise RemoteError('upload failed', ['gs://b/x: 403 Forbidden', 'gs://b/y: 403'])"
    )
    nbformat.write(_notebook(raising, title="03 raise"), toy / "notebooks" / "03_raise.ipynb")
    assert main(["run", "params/ok.yaml", "--stages", "03"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-2:] == ["gs://b/x: 403 Forbidden", "gs://b/y: 403"]
    assert re.search(r"raised RemoteError: upload failed$", out[-3])


@pytest.mark.parametrize(("env", "expected"), [("  ", ""), (" my-proj ", "my-proj")])
def test_every_command_reads_the_project_fallback_alike(
    monkeypatch: pytest.MonkeyPatch, env: str, expected: str
) -> None:
    """A params file without ``project`` falls back to $GOOGLE_CLOUD_PROJECT, stripped, in the
    config check, the serving settings and the tuning backend alike (blank means none)."""
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", env)
    cfg = RunConfig(
        backend="vertex", project="", gcs_prefix="gs://my-bucket/router", allow_synthetic=True
    )
    assert VertexSettings.from_config(cfg).project == expected
    assert bool(cloud_problems(cfg)) == (not expected)
    if expected:
        assert VertexBackend(location="us-central1").project == expected
    else:
        with pytest.raises(InputError, match="no Google Cloud project"):
            VertexBackend(location="us-central1")
