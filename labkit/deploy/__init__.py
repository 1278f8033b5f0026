"""labkit.deploy: the on-device int8 chain, from an ImageNet model to a program on the phone.

    mobilenet  MobileNetV2, ImageNet preprocessing, class names, parameter and MAC counts
    images     the photos shipped offline, calibration images, labelled folders, accuracy
    adaround   AdaRound: learned rounding of the int8 weights
    qat        label-free quantization-aware fine-tuning, distilled from the fp32 logits
    pt2e       int8 PT2E quantization for XNNPACK (ReLU6-aware ranges, bias correction)
    sensitivity the error budget: which quantizers (weights, each activation) cost the int8 network most
    xnnpack    XNNPACK's int8 arithmetic emulated bit for bit
    fixedpoint the requantization multiplier as a fixed-point M0·2⁻ⁿ (Jacob et al. 2018), gemmlowp's integer steps
    mobile     export to ExecuTorch (.pte) or ONNX Runtime (.onnx), load, benchmark
    int8_text  MiniLM on real int8 GEMMs: ONNX Runtime dynamic int8, torchao int8, throughput

    from labkit.deploy import mobile, pt2e

The old names keep working: `from labkit import mobile` and `import labkit.mobile` give these
same module objects. `_fx` holds the graph helpers the modules here share. Submodules are
imported on first use.
"""
from importlib import import_module
from importlib.util import find_spec


def __getattr__(name):
    if not name.startswith("_") and find_spec(f"{__name__}.{name}") is not None:
        return import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
