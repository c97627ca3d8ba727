"""The floor every other part stands on: paths, machine facts, timing, file writes and the error base.

Nothing here imports another part of garbseg.
"""

from .errors import GarbsegError
from .files import atomic_write, read_json, update_json, write_json
from .machine import cpu_name, cpu_supports_bf16, cpu_supports_vnni, default_threads, torch_threads
from .paths import cache_root, checkpoint_dir, default_data_dir, embedded_data_dir, git_commit, project_root
from .timing import percentile_summary, time_blocks, time_calls

__all__ = ["GarbsegError", "atomic_write", "read_json", "update_json", "write_json", "cpu_name",
           "cpu_supports_bf16", "cpu_supports_vnni", "default_threads", "torch_threads", "cache_root",
           "checkpoint_dir", "default_data_dir", "embedded_data_dir", "git_commit", "project_root",
           "percentile_summary", "time_blocks", "time_calls"]
