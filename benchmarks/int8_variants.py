"""Which layers should openvino-int8 keep in float? Score quantisation variants on the val split.

    python benchmarks/int8_variants.py mobilenet_v3_large-lraspp --classes SqueezeExcitation --preset MIXED

Builds ``openvino-int8`` for one shipped model at one size with the float-kept module scopes, module
classes, NNCF preset and weight bits given (defaults: the shipped recipe on this CPU), then runs the
same check ``auto`` runs (``garbseg.inference.runtimes.checks``): val mIoU of the int8 file against
eager float32. Each variant gets its own cached file name, so variants never overwrite one another
or the real one.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from garbseg.core.paths import default_data_dir  # noqa: E402
from garbseg.inference.runtimes import int8_layers, openvino_engines  # noqa: E402
from garbseg.inference.runtimes.base import BuildContext  # noqa: E402
from garbseg.inference.runtimes.checks import build_reference, run_check  # noqa: E402
from garbseg.inference.runtimes.torch_engines import TorchEngine  # noqa: E402
from garbseg.models.zoo import open_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--scopes", nargs="*", default=None,
                        help="module paths kept float with what is inside them, e.g. model.classifier "
                             "(default: the model's own, openvino_engines.FLOAT_SCOPES)")
    parser.add_argument("--classes", nargs="*", default=list(int8_layers.FLOAT_CLASSES),
                        help="module class names kept float (default: SqueezeExcitation)")
    parser.add_argument("--preset", default=openvino_engines.INT8_PRESET, choices=["PERFORMANCE", "MIXED"])
    parser.add_argument("--weight-bits", type=int, choices=[7, 8], default=openvino_engines.int8_weight_bits(),
                        help="8, or 7 against the int8 saturation of CPUs without VNNI (default: by this CPU)")
    parser.add_argument("--data", default=str(default_data_dir()))
    args = parser.parse_args()
    if args.scopes is None:
        args.scopes = list(openvino_engines.float_scopes(args.model))
    openvino_engines.FLOAT_SCOPES = {args.model: tuple(args.scopes)}
    int8_layers.FLOAT_CLASSES = tuple(args.classes)
    openvino_engines.INT8_PRESET = args.preset
    openvino_engines.int8_weight_bits = lambda: args.weight_bits
    parts = [args.preset[:3].lower(), f"w{args.weight_bits}", *args.scopes, *args.classes]
    variant = "-".join(parts).replace(".", "_")
    # The cache file name carries the variant; a long list of scopes would pass the file system's limit.
    tag = variant if len(variant) <= 80 else hashlib.sha1(variant.encode()).hexdigest()[:12]
    openvino_engines.INT8_RECIPE = f"variant-{tag}"
    ctx = BuildContext(open_model(args.model), args.size, 2, Path(args.data), log=print)
    t0 = time.perf_counter()
    engine = openvino_engines.OpenVinoInt8Engine(ctx)
    built = time.perf_counter() - t0
    result = run_check(ctx, engine, build_reference(ctx, TorchEngine(ctx), with_miou=True), f"variant {variant}")
    print(f"{args.model} at {args.size}, {variant}: built in {built:.1f} s; val mIoU eager {result['eager_miou']:.4f}, "
          f"int8 {result['miou']:.4f}, change {100 * result['miou_delta']:+.2f} points "
          f"({'passes' if result['passed'] else 'fails'} the 1-point check)")


if __name__ == "__main__":
    main()
