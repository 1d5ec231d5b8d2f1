"""Latency tables of a model shape on this device.

    python -m cofi_lightning.latency profile --model <hf dir or hub name> --device cpu|cuda \\
        --dtype fp32|bf16 --batch <b> --seq <s> --threads <n> --out <file.json>

times one attention sublayer for every number of kept heads, one FFN sublayer on a grid of kept
widths (dense near 0, powers of two and their 1.5x, multiples of 64), each at 1/4, 1/2, 3/4 and
all of the hidden size, and the fixed cost outside the layers, with the benchmark's protocol
(warm-up rounds dropped, median of interleaved rounds, CUDA events on a GPU). Only the model's
config is read (no weights): latency depends on shapes alone.
"""

from __future__ import annotations

import argparse
import sys

from transformers import AutoConfig

from cofi_lightning.latency.profile import profile
from cofi_lightning.latency.timing import BenchError
from cofi_lightning.run.preflight import check_source


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cofi_lightning.latency",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("profile", help="measure a latency table (see --help of profile)")
    p.add_argument("--model", required=True, help="HF model dir or hub name (its config only)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default cpu)")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="weights/activations")
    p.add_argument("--batch", type=int, default=32, help="examples per forward (default 32)")
    p.add_argument("--seq", type=int, default=128, help="padded sequence length (default 128)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds per shape (default 5)")
    p.add_argument("--warmup", type=int, default=2, help="discarded rounds (default 2)")
    p.add_argument("--out", required=True, help="where to write the table (JSON)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    for name in ("batch", "seq", "rounds"):
        if getattr(args, name) < 1:
            raise SystemExit(f"error: --{name} must be >= 1, got {getattr(args, name)}")
    try:
        check_source("--model", args.model)  # a missing directory is named as such
        config = AutoConfig.from_pretrained(args.model)
        table = profile(
            config,
            device=args.device,
            dtype=args.dtype,
            batch=args.batch,
            seq=args.seq,
            threads=args.threads,
            rounds=args.rounds,
            warmup=args.warmup,
        )
    except (BenchError, OSError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    table.save(args.out)
    m = table.meta
    print(  # noqa: T201  (a CLI's output)
        f"{m['device_name']} {m['dtype']} batch {m['batch']} x {m['seq']}: unpruned "
        f"{table.full_ms():.1f} ms (parts: fixed {table.fixed[-1]:.1f}, attention "
        f"{table.attention[-1][-1]:.1f}, FFN {table.ffn[-1][-1]:.1f} per layer; whole / parts "
        f"{table.calibration:.3f}); wrote {args.out}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
