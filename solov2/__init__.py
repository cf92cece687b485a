"""SOLOv2: Dynamic and Fast Instance Segmentation, in plain PyTorch."""
__all__ = ["load_config", "build_model", "Predictor"]
__version__ = "0.1.0"


def __getattr__(name):
    # Imported lazily: `import solov2` stays cheap for the command line, and the layers below the models
    # (solov2.ops, solov2.postprocess, solov2.targets, solov2.losses) import without solov2.models.
    if name == "Predictor":
        from solov2.inference.predictor import Predictor
        return Predictor
    if name == "build_model":
        from solov2.models import build_model
        return build_model
    if name == "load_config":
        from solov2.config import load_config
        return load_config
    raise AttributeError(name)
