"""The package's layers run models -> {targets, losses, postprocess} -> ops: the lower layers import alone."""
import subprocess
import sys


def test_ops_postprocess_targets_and_losses_import_without_the_models():
    code = ("import sys, solov2.ops, solov2.postprocess, solov2.targets, solov2.losses; "
            "print(sorted(m for m in sys.modules if m.startswith('solov2.models')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_package_still_offers_build_model_load_config_and_predictor():
    import solov2
    from solov2.models import build_model
    assert solov2.build_model is build_model
    assert callable(solov2.load_config) and solov2.Predictor.__name__ == "Predictor"
