"""Published numbers to compare against, kept apart from anything measured here.

``PAPER_TABLE1`` is meant to hold the seed paper's Table 1 (model, mIoU, FPS on an A100 GPU), each
point with its source. It is empty on purpose: the exact published values were not available when
this was written, and a chart must never show invented numbers. To add them, append dicts such as
``{"model": "...", "miou": 0.0, "fps": 0.0, "hardware": "NVIDIA A100", "source": "<paper>, Table 1"}``;
the speed/accuracy chart then draws them as a separate "paper, A100 GPU" series.
"""

from __future__ import annotations

PAPER_TABLE1: tuple[dict, ...] = ()
