"""Serving: the Predictor interface evaluation drives (base.py), a local batched predictor + HTTP
server (local.py), Vertex AI deploy/predict/cleanup (vertex.py), deploy hardware (hardware.py)
and Vertex batch prediction (batch.py).

Neither import pulls in torch or a Google SDK; they load lazily when first used.
"""

from routerlib.serving.local import GenerationResult, LocalPredictor, LocalServer, serve

__all__ = ["GenerationResult", "LocalPredictor", "LocalServer", "serve"]
