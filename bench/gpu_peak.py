"""The two ceilings the GPU figures are read against, measured on the device in the same call:
a bf16 matrix product's rate (random operands: zeros run faster than real data) and a device-to-device
copy's bandwidth (bytes read + written). Prints one JSON line; ``--out`` writes it too.

    python bench/gpu_peak.py [--n 8192] [--out peak.json]
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch


def _time(fn, reps: int) -> float:
    """Median seconds of ``fn`` over ``reps`` calls, timed with CUDA events after three warm-ups."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / 1e3)
    return sorted(times)[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=8192, help="square matmul size")
    ap.add_argument("--copy-gb", type=float, default=4.0, help="size of the copied buffer")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    info = {"torch": torch.__version__, "python": platform.python_version()}
    try:
        import transformers
        info["transformers"] = transformers.__version__
    except ImportError:
        info["transformers"] = None
    if not torch.cuda.is_available():
        info["device"] = "cpu (no CUDA device: nothing measured)"
    else:
        p = torch.cuda.get_device_properties(0)
        info.update(device=p.name, sms=p.multi_processor_count, mem_gib=round(p.total_memory / 2 ** 30, 1),
                    cuda=torch.version.cuda)
        n = args.n
        # two operand sets, alternated, so repeated products do not run out of one set held in L2
        ops = [(torch.randn(n, n, device="cuda", dtype=torch.bfloat16),
                torch.randn(n, n, device="cuda", dtype=torch.bfloat16)) for _ in range(2)]
        i = [0]

        def mm():
            a, b = ops[i[0] % 2]
            i[0] += 1
            return a @ b
        s = _time(mm, args.reps)
        info["bf16_matmul_tflops"] = round(2 * n ** 3 / s / 1e12, 1)
        info["bf16_matmul_shape"] = [n, n, n]
        src = torch.empty(int(args.copy_gb * 2 ** 30) // 4, device="cuda", dtype=torch.float32).uniform_()
        dst = torch.empty_like(src)
        s = _time(lambda: dst.copy_(src), args.reps)
        info["copy_tb_per_s"] = round(2 * src.numel() * 4 / s / 1e12, 2)
        info["sdpa_flash_available"] = bool(torch.backends.cuda.flash_sdp_enabled())
        del ops, src, dst
        torch.cuda.empty_cache()
    line = json.dumps(info)
    print(line)
    if args.out:
        args.out.write_text(line + "\n")


if __name__ == "__main__":
    main()
