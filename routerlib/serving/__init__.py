"""Serving: every way a checkpoint answers prompts, behind one interface (``base.Predictor``)
made by one factory (``factory``). Importing this package imports nothing heavy (no torch, no
Google SDK); modules load when used. Module map: docs/architecture.md; how to serve: docs/serving.md.
"""
