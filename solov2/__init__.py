"""SOLOv2: Dynamic and Fast Instance Segmentation, in plain PyTorch."""
from .config import load_config
from .models import build_model

__all__ = ["load_config", "build_model", "Predictor"]
__version__ = "0.1.0"


def __getattr__(name):
    # Imported lazily so that `import solov2` stays cheap for the command line.
    if name == "Predictor":
        from .predictor import Predictor
        return Predictor
    raise AttributeError(name)
