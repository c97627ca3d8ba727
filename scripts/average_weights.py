"""Average the weights of several checkpoints of one model into a new file (a "model soup").

Runs that start from the same weights and differ only a little (another loss, another epoch of the
same run) often end in one basin of the loss, where the average of their weights can score above
each of them (Wortsman et al. 2022, "Model soups"). This writes the uniform average; score it with
``python -m garbseg eval``:

    python -m scripts.average_weights --out /tmp/soup.safetensors \\
        runs/seed2/mobilenet_v3_large-deeplabv3/last.safetensors \\
        runs/lovasz-seed2/mobilenet_v3_large-deeplabv3/last.safetensors
    python -m garbseg eval --checkpoint /tmp/soup.safetensors --split val

Batch-norm running statistics are averaged like the weights (not re-estimated on training photos).
The new file keeps the first input's metadata, with ``averaged_from`` naming every input file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from garbseg.core.errors import GarbsegError
from garbseg.models.checkpoints import inference_state, load_checkpoint, save_checkpoint


def average_states(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of floating tensors (summed in float64); integer buffers from the first."""
    keys = set(states[0])
    for i, state in enumerate(states[1:], start=2):
        if set(state) != keys:
            raise GarbsegError(f"input {i} has other tensors than the first: not the same model")
    averaged = {}
    for key, first in states[0].items():
        if not first.is_floating_point():
            averaged[key] = first
            continue
        if any(s[key].shape != first.shape for s in states):
            raise GarbsegError(f"{key}: the inputs' shapes differ, so they are not the same model")
        total = sum(s[key].double() for s in states)
        averaged[key] = (total / len(states)).to(first.dtype)
    return averaged


def average_checkpoints(paths: list[Path], out: Path) -> Path:
    """Write the uniform average of the checkpoints at ``paths`` (all of one model) to ``out``."""
    if len(paths) < 2:
        raise GarbsegError("averaging needs at least two checkpoints")
    loaded = [load_checkpoint(p) for p in paths]
    names = {x.name for x in loaded}
    if len(names) > 1:
        raise GarbsegError(f"the checkpoints are of different models: {', '.join(sorted(names))}")
    first = loaded[0]
    first.model.load_state_dict(average_states([inference_state(x.model) for x in loaded]), strict=False)
    # Up to three trailing parts (run/model/file) name an input without the machine's own folders.
    meta = first.meta.replace(averaged_from=["/".join(Path(p).parts[-3:]) for p in paths],
                              metrics={}, training_metrics={}, epoch=None)
    return save_checkpoint(out, first.model, meta)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", type=Path, help="two or more checkpoints of one model")
    parser.add_argument("--out", type=Path, required=True, help="the averaged checkpoint to write (.safetensors)")
    args = parser.parse_args(argv)
    try:
        path = average_checkpoints(args.checkpoints, args.out)
    except GarbsegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}: the average of {len(args.checkpoints)} checkpoints")
    return 0


if __name__ == "__main__":
    sys.exit(main())
