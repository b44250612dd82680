"""genlab: train, sample, evaluate, export and serve generative models on your own data."""

from genlab.api import Run, load, train
from genlab.config import RunConfig, build_config
from genlab.errors import GenlabError

__version__ = "0.1.0"
__all__ = ["GenlabError", "Run", "RunConfig", "build_config", "load", "train", "__version__"]
