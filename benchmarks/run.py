"""Measure streamlift: kernels, model, engine and training, on this machine.

    python benchmarks/run.py                      # every suite on the best device
    python benchmarks/run.py --suite engine       # one suite
    python benchmarks/run.py --quick --json out.json

Every suite warms up before timing, synchronises the GPU around each timed call (CUDA events),
reports the median with the 20th/80th percentiles, and computes its ratios (fused vs
reference, CUDA graph vs eager, streamlift vs VideoPose3D, prior on vs off) from figures taken
side by side in the same run. Results go to stdout as tables and, with --json, to a file whose
rows carry the device, the torch/triton versions, the git commit and the time of the run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# run as a script, sys.path[0] is benchmarks/ itself; import the suites as `benchmarks.*`
sys.path[0] = str(ROOT)

import torch  # noqa: E402

from benchmarks.harness import Result, environment  # noqa: E402
from benchmarks.soak import CASES  # noqa: E402
from streamlift.device import pick_device  # noqa: E402
from streamlift.errors import UserError  # noqa: E402

SUITES = ("kernels", "model", "engine", "train")  # "all"; soak runs only when asked (40 min)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def table(rows: list[Result]) -> tuple[list[str], list[list[str]]]:
    """One suite's table: case, provider, sizes, median [p20-p80], then the derived figures."""
    extra_keys = [k for k in dict.fromkeys(k for r in rows for k in r.extra) if k != "repeats"]
    head = ["case", "provider", "sizes", "median", "p20-p80", "unit", *extra_keys]
    body = [[r.case, r.provider, " ".join(f"{k}={v}" for k, v in r.sizes.items()), _fmt(r.median),
             f"{_fmt(r.p20)}-{_fmt(r.p80)}", r.unit, *[_fmt(r.extra.get(k, "")) for k in extra_keys]]
            for r in rows]
    return head, body


def print_table(rows: list[Result], out=sys.stdout) -> None:
    head, body = table(rows)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    for line in [head, ["-" * w for w in widths], *body]:
        print("  " + "  ".join(str(x).ljust(w) for x, w in zip(line, widths)), file=out)


def markdown_table(rows: list[Result]) -> str:
    head, body = table(rows)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(x).replace("|", "\\|") for x in line) + " |" for line in body]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python benchmarks/run.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", choices=("all", *SUITES, "soak"), default="all",
                    help="kernels: attention and Procrustes, fused vs reference vs torch; "
                         "model: lifter windows/s, eager vs CUDA graph, vs VideoPose3D; "
                         "engine: the live server with N 30 fps streams, N swept to saturation; "
                         "train: training steps/s with and without the diffusion prior; "
                         "soak: long run with malformed traffic, a malformed flood, restarts, "
                         "CURVE vs plain (not part of all) (default: all)")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                    help="where to run (default: cuda when torch sees one, else cpu)")
    ap.add_argument("--quick", action="store_true",
                    help="small sizes and few repeats: checks that everything runs (under 2 "
                         "minutes on a 2-core CPU); the figures are not for publishing")
    ap.add_argument("--max-streams", type=int, default=None,
                    help="engine suite: stop the stream sweep at this N")
    ap.add_argument("--soak-cases", default=",".join(CASES), metavar="LIST",
                    help=f"soak suite: which cases, comma-separated (default: {','.join(CASES)})")
    ap.add_argument("--soak-streams", type=int, default=100, help="soak: streams (default 100)")
    ap.add_argument("--soak-fps", type=float, default=1.0,
                    help="soak: frames per second per stream, a rate the machine serves "
                         "(default 1)")
    ap.add_argument("--soak-minutes", type=float, default=30.0, help="soak: minutes (default 30)")
    ap.add_argument("--fuzz-messages", type=int, default=1_000_000,
                    help="soak suite's fuzz case: malformed messages (default 1,000,000)")
    ap.add_argument("--fuzz-rate", type=float, default=2000.0,
                    help="fuzz case: malformed messages per second (default 2,000: what a "
                         "2-core CPU absorbs beside 4 live streams without losing their frames)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--json", type=Path, default=None, metavar="OUT",
                    help="also write every result row, with the environment, to this file")
    ap.add_argument("--markdown", type=Path, default=None, metavar="OUT.md",
                    help="also write the tables as Markdown (one per suite, with the machine "
                         "and the command), for BENCHMARKS.md")
    return ap


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        device = pick_device(a.device)
    except UserError as e:
        raise SystemExit(f"benchmarks/run.py: error: {e}") from None
    env = environment(device)
    print(f"streamlift benchmarks on {env['device_name']} | torch {env['torch']} | "
          f"triton {env['triton']} | commit {env['git_commit']} | {env['timestamp']}"
          + (" | QUICK (not for publishing)" if a.quick else ""), flush=True)
    if unknown := set(a.soak_cases.split(",")) - set(CASES):
        raise SystemExit(f"benchmarks/run.py: error: unknown --soak-cases {sorted(unknown)}; "
                         f"choose from {','.join(CASES)}")
    suites = SUITES if a.suite == "all" else (a.suite,)
    rows: list[Result] = []
    by_suite: dict[str, list[Result]] = {}
    failed = []
    for name in suites:
        print(f"\n== {name} ==", flush=True)
        t0 = time.perf_counter()
        kwargs = {"max_streams": a.max_streams} if name == "engine" else {}
        if name == "soak":
            kwargs = {"cases": tuple(a.soak_cases.split(",")), "streams": a.soak_streams,
                      "fps": a.soak_fps, "minutes": a.soak_minutes, "fuzz": a.fuzz_messages,
                      "fuzz_rate": a.fuzz_rate}
        try:
            mod = __import__(f"benchmarks.{name}", fromlist=["run"])
            got = mod.run(device, a.quick, log=lambda line: print(line, flush=True), **kwargs)
        except Exception as e:  # one broken suite must not lose the others' figures
            print(f"  suite {name} failed: {type(e).__name__}: {e}", flush=True)
            failed.append(name)
            continue
        print_table(got)
        print(f"  ({time.perf_counter() - t0:.1f} s)", flush=True)
        rows.extend(got)
        by_suite[name] = got
    if a.json is not None:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        doc = {"environment": env, "quick": a.quick, "suites": list(suites), "failed": failed,
               "results": [{**r.to_json(), "device_name": env["device_name"],
                            "torch": env["torch"], "triton": env["triton"],
                            "git_commit": env["git_commit"], "timestamp": env["timestamp"]}
                           for r in rows]}
        a.json.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"\nwrote {len(rows)} results to {a.json}")
    if a.markdown is not None:
        cmd = "python benchmarks/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
        parts = [f"Machine: {env['device_name']}; torch {env['torch']}, triton {env['triton']}, "
                 f"CUDA {env['cuda']}, Python {env['python']}; commit {env['git_commit']}; "
                 f"{env['timestamp']}.\n\nCommand: `{cmd.strip()}`"]
        parts += [f"### {name}\n\n{markdown_table(got)}" for name, got in by_suite.items()]
        a.markdown.parent.mkdir(parents=True, exist_ok=True)
        a.markdown.write_text("\n\n".join(parts) + "\n")
        print(f"wrote the tables to {a.markdown}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
