"""``--isa avx2``: run a benchmark with the kernels of a CPU without AVX512 (most laptops'), on this machine.

Each kernel library reads its own cap once, when the process starts, so the script starts itself again with
them set (processes it starts inherit them). The engine then chooses as it does on such a CPU
(engine.quantize reads torch's kernel level and oneDNN's bf16 check). The caches and memory stay this
machine's: the figures say which choices pay there, not a laptop's times.
"""
from __future__ import annotations

import os
import sys

# The environment variables that cap each kernel library's instruction set, read when a process starts.
ISA_CAPS = {"avx2": {"ATEN_CPU_CAPABILITY": "avx2", "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                     "MKL_ENABLE_INSTRUCTIONS": "AVX2"}}
ISA_HELP = ("CPU: run torch's, fbgemm's, oneDNN's and MKL's kernels as on a CPU with only this instruction set "
            "(avx2: most laptops'), through their own environment variables")


def restart_capped(isa: str | None) -> None:
    """Start this script again with ``isa``'s caps unless they are all set already (or ``isa`` is None)."""
    if isa and any(os.environ.get(k) != v for k, v in ISA_CAPS[isa].items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **ISA_CAPS[isa]})
