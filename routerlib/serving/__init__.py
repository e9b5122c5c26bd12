"""Serving: every way a checkpoint answers prompts, behind one interface.

- base.py       the Predictor protocol (predict a batch of prompts, describe, close)
- factory.py    the one place deciding how a checkpoint is served; the registry of kinds
- cache.py      the resumable cache, a wrapper around any predictor
- online.py     request-by-request kinds (``:predict`` URL, OpenAI-compatible, Vertex endpoint,
                an endpoint deployed for the block, the local HTTP server)
- transports.py one request, one answer, per protocol; client.py HTTP on httpx + one retry policy
- wire.py       the predict JSON both ways; constrained.py schema-constrained decoding
- local.py      a checkpoint on this machine: batched generation, in-process kind, HTTP server
- vertex.py     deploy / predict / cleanup on Vertex AI; batch.py batch prediction jobs
- hardware.py   machines that fit a checkpoint; settings.py the Vertex settings of a run

Importing this package imports nothing (no torch, no Google SDK); modules load when used.
"""
