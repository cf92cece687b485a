"""Inference: :class:`Predictor` (``predictor``), the speedups that keep results (``optimize``, ``winograd``,
``tuning``) and pictures of the results (``visualize``)."""


def __getattr__(name):
    if name == "Predictor":  # lazily, so that importing solov2.inference.visualize stays light
        from solov2.inference.predictor import Predictor
        return Predictor
    raise AttributeError(name)
