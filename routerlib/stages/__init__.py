"""The pipeline stages as the notebooks call them, one module per notebook stage: ``run`` (the run
folder, shared display helpers), ``prepare`` (01), ``tune`` (02, 03), ``evaluate`` (04) and
``compare`` (05). A notebook imports its own stage module (``from routerlib.stages import tune as
stage``). Each stage reads what the one before it wrote into the run folder and, when that is
missing (a notebook run alone), makes it first in this process. A stage imports only the stages
before it, nothing below imports them, and they never start papermill (docs/notebooks.md).
"""
