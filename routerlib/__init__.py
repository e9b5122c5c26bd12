"""routerlib: router dataset -> Vertex AI tuning data -> tuned router agents -> evaluation -> report."""

import warnings

__version__ = "0.1.0"

# transformers/peft import tqdm.auto, which warns in a kernel without ipywidgets; routerlib's own
# progress bars are plain text, so the warning only adds noise to executed notebooks.
warnings.filterwarnings("ignore", message="IProgress not found")
