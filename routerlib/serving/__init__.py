"""Serving: a local batched predictor + HTTP server (local.py) and Vertex AI deploy (vertex.py).

Neither import pulls in torch or a Google SDK; they load lazily when first used.
"""

from routerlib.serving.local import GenerationResult, LocalPredictor, LocalServer, serve

__all__ = ["GenerationResult", "LocalPredictor", "LocalServer", "serve"]
