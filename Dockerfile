# routerlib's pipeline image: the package with the pipelines extra (kfp), its notebooks and
# params, and a "python3" Jupyter kernel, so each Vertex AI Pipelines task runs the notebook chain
# exactly as `routerlib run` does. `routerlib pipeline compile --image URI` names it; how to build
# and push it to Artifact Registry: docs/pipelines.md.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ROUTERLIB_ROOT=/opt/routerlib \
    ROUTERLIB_CACHE=/opt/routerlib-cache

WORKDIR /opt/routerlib

# The tasks run on CPU machines: torch's CPU build (pyproject.toml pins the version; the default
# Linux wheels bring CUDA libraries the tasks never use).
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY routerlib ./routerlib
RUN TORCH=$(python -c "import re; print(re.search(r'\"(torch==[^\"]+)\"', open('pyproject.toml').read()).group(1))") \
    && pip install "$TORCH" --index-url "$TORCH_INDEX" \
    && pip install ".[pipelines]" \
    && python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (routerlib)"

# The notebooks the chain executes and the params files (project_root() is ROUTERLIB_ROOT).
COPY notebooks ./notebooks
COPY params ./params

# The embedded tiny model, built once (local points need it; nothing is downloaded at run time).
RUN python -c "from routerlib import tinymodel; tinymodel.ensure_embedded_model()"

# KFP starts each lightweight component with `python3 -m kfp.dsl.executor_main` in this image.
CMD ["python3", "-m", "routerlib", "--help"]
