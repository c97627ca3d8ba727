"""Export a model to ONNX once per (weights, input size) and keep the file in the cache.

The file is written to a temporary name and renamed, so a crash never leaves half a model under
the final name; a file that exists but cannot be parsed (truncated, overwritten) is exported again.
"""

from __future__ import annotations

import ast
import os
import tempfile
import warnings
from pathlib import Path

import torch

from .base import BuildContext, RuntimeUnavailable
from .cache import model_dir
from .torch_engines import HeadLogits

OPSET = 18


def onnx_path(ctx: BuildContext) -> Path:
    return model_dir(ctx.loaded) / f"model-{ctx.size}.onnx"


def is_valid_onnx(path: Path) -> bool:
    """True when the file parses as an ONNX model with a graph (a cheap check for corruption)."""
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        return len(model.graph.node) > 0 and len(model.graph.output) > 0
    except Exception:  # onnx raises DecodeError, OSError, ... for broken files
        return False


def export_onnx(ctx: BuildContext, *, force: bool = False) -> Path:
    """The cached ONNX file of ``ctx.loaded`` at ``ctx.size`` (batch 1), exported if needed."""
    path = onnx_path(ctx)
    if path.is_file() and not force:
        if is_valid_onnx(path):
            return path
        ctx.log(f"cached {path.name} is corrupt; exporting again")
    ctx.log(f"exporting {ctx.name} at {ctx.size} to ONNX")
    wrapper = HeadLogits(ctx.loaded.model.eval()).eval()
    example = (torch.zeros(1, 3, ctx.size, ctx.size),)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".onnx", dir=path.parent)
    os.close(fd)
    try:
        with ctx.exclusive(), warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            _export(wrapper, example, Path(tmp))
        if not is_valid_onnx(Path(tmp)):
            raise RuntimeUnavailable("the exported ONNX file does not parse")
        os.replace(tmp, path)
    except RuntimeUnavailable:
        raise
    except Exception as exc:  # exporter errors come in many types
        raise RuntimeUnavailable(f"ONNX export of {ctx.name} failed: {exc}") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def nodes_of_modules(path: Path, scopes: tuple[str, ...] = (), classes: tuple[str, ...] = ()) -> list[str]:
    """Names of the ONNX nodes computed inside the modules at ``scopes`` or below them (e.g.
    ``model.classifier``; whole path parts, so ``model.backbone.1`` is not ``model.backbone.10``) or
    whose class name is one of ``classes`` (e.g. ``SqueezeExcitation``).

    The dynamo exporter records each node's module path and class hierarchy in its metadata; a file
    without them (another exporter) yields no names."""
    import onnx

    names = []
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        meta = {prop.key: prop.value for prop in node.metadata_props}
        try:
            paths = ast.literal_eval(meta.get("pkg.torch.onnx.name_scopes", "[]"))
            hierarchy = ast.literal_eval(meta.get("pkg.torch.onnx.class_hierarchy", "[]"))
        except (ValueError, SyntaxError):  # a truncated or foreign value: no scope known
            continue
        in_scope = any(part == scope or part.startswith(scope + ".") for part in paths for scope in scopes)
        in_class = any(entry.rsplit(".", 1)[-1] in classes for entry in hierarchy)
        if in_scope or in_class:
            names.append(node.name)
    return names


def _export(module: torch.nn.Module, example: tuple, path: Path) -> None:
    import contextlib
    import io

    # The dynamo exporter prints progress lines; keep the CLI's stdout clean (--json).
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(module, example, str(path), input_names=["input"], output_names=["logits"],
                          opset_version=OPSET, dynamo=True, external_data=False, optimize=True)
