"""Benchmarks: the one measuring pipeline (:mod:`.measure`), the app's multi-model suite
(:mod:`.suite`) and the store of results that outlive a session (:mod:`.results`)."""

from .measure import (ACCURACY_COLUMNS, RESULT_COLUMNS, bench_runtimes, count_gflops, file_size_mb, result_row,
                      rows_to_frame, write_results)
from .suite import SuiteResult, open_eval_set, run_suite

__all__ = ["ACCURACY_COLUMNS", "RESULT_COLUMNS", "bench_runtimes", "count_gflops", "file_size_mb", "result_row",
           "rows_to_frame", "write_results", "SuiteResult", "open_eval_set", "run_suite"]
