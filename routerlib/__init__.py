"""routerlib: router dataset -> Vertex AI tuning data -> tuned router agents -> evaluation -> report."""

__version__ = "0.1.0"
