"""The pipeline stages as the notebooks call them: one module per notebook stage.

- :mod:`routerlib.stages.run` — the run folder a notebook works in (``open_run``) and small
  display helpers every notebook shares;
- :mod:`routerlib.stages.prepare` — notebook 01;
- :mod:`routerlib.stages.tune` — notebooks 02 and 03 (smoke and full tuning, the checkpoint);
- :mod:`routerlib.stages.evaluate` — notebook 04 (serve, evaluate, gate, metrics.json);
- :mod:`routerlib.stages.compare` — notebook 05 (finished runs side by side).

A notebook imports its own stage module (``from routerlib.stages import tune as stage``), which
offers everything the notebook calls. Each stage reads what the stage before it wrote into the
run folder and writes its own part, by the names and records of ``runfolder``; when an earlier
stage's output is missing (a notebook run alone) the stage makes it first, in this process, so
every notebook runs by itself with its default parameters. A stage module imports only the stage
modules before it; nothing in routerlib below the stages imports them, and they never start
papermill (the batch runner, ``routerlib.pipeline``, runs the notebooks).
"""
