"""The pipeline stages as the notebooks call them, one module per notebook stage (``from
routerlib.stages import tune as stage``); each makes what an earlier stage left missing, and none
starts papermill (docs/notebooks.md, docs/architecture.md)."""
