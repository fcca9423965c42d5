"""CNN-BiLSTM speed: flowhawk's MindSpore network vs the same architecture in PyTorch (CPU), one process.

Measures training windows/s (forward + backward + Adam step), scoring windows/s (eval forward) at
batch B, and per-window latency at batch 1 and batch B, for:

  torch          PyTorch CPU reference (Conv1d -> ReLU -> MaxPool -> Dropout -> BiLSTM -> Linear)
  ms_baseline    straightforward MindSpore: nn.Conv1d + nn.LSTM, PyNative (no jit)
  ms_native      flowhawk network, impl="native" (nn.LSTM), im2col conv, mindspore.jit steps
  ms_unrolled    flowhawk network, impl="unrolled" (matmul recurrence in the graph), jit steps
  ms_fused       flowhawk network, impl="fused" (C++ BiLSTM kernel, the default), jit steps

Variants are timed round-robin (each round runs every variant once) so machine noise hits all of
them alike; medians over rounds are reported with ratios against torch from the same run.
torch is optional: without it the torch row and ratios are skipped.

    python benchmarks/bench_model_speed.py [--batch 512] [--rounds 5] [--threads 2] [--torch-threads N]
        [--runtime-threads 1]
        [--variants torch,ms_baseline,ms_native,ms_unrolled,ms_fused] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mindspore as ms
from mindspore import Tensor, nn, ops

from flowhawk.model.config import ModelConfig
from flowhawk.model.kernels import KernelCache, cache_root_from_env, kernel_library, kernel_stats, use_kernel_cache
from flowhawk.model.network import build_network, make_predict, make_train_step, set_threads

log = logging.getLogger("bench_model_speed")
T, F, HIDDEN, CONV, NCLS = 16, 24, 64, 64, 2


class MsBaseline(nn.Cell):
    """The obvious MindSpore port: nn.Conv1d (channels-first), nn.MaxPool1d, nn.LSTM, PyNative."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(F, CONV, 3, pad_mode="same", has_bias=True)
        self.pool = nn.MaxPool1d(2, 2)
        self.drop = nn.Dropout(p=0.3)
        self.lstm = nn.LSTM(CONV, HIDDEN, 1, batch_first=True, bidirectional=True)
        self.head = nn.Dense(2 * HIDDEN, NCLS)

    def construct(self, x: Tensor, mask: Tensor) -> Tensor:
        x = (x * mask.expand_dims(-1)).transpose(0, 2, 1)  # (B, F, T)
        y = self.drop(self.pool(ops.relu(self.conv(x))))  # (B, C, T/2)
        out = self.lstm(y.transpose(0, 2, 1))[0]  # (B, T/2, 2H)
        return self.head(ops.concat([out[:, -1, :HIDDEN], out[:, 0, HIDDEN:]], axis=-1))  # (B, 2)


def ms_baseline_fns() -> tuple[Callable, Callable]:
    net = MsBaseline()
    loss_fn = nn.CrossEntropyLoss()
    opt = nn.Adam(net.trainable_params(), 1e-3)
    grad_fn = ms.value_and_grad(lambda x, m, y: loss_fn(net(x, m), y), None, opt.parameters)

    def train(x: Tensor, m: Tensor, y: Tensor) -> float:
        net.set_train(True)
        loss, grads = grad_fn(x, m, y)
        opt(grads)
        return float(loss.asnumpy())

    def score(x: Tensor, m: Tensor) -> np.ndarray:
        net.set_train(False)
        return net(x, m).asnumpy()

    return train, score


def ms_fns(impl: str) -> tuple[Callable, Callable]:
    net = build_network(ModelConfig(arch="cnn_bilstm", n_features=F, n_classes=NCLS, window=T,
                                    conv_channels=CONV, hidden=HIDDEN, impl=impl))
    step = make_train_step(net, nn.CrossEntropyLoss(), nn.Adam(net.trainable_params(), 1e-3))
    predict = make_predict(net)
    return (lambda x, m, y: float(step(x, m, y).asnumpy())), (lambda x, m: predict(x, m).asnumpy())


def torch_fns(threads: int) -> tuple[Callable, Callable] | None:
    try:
        import torch
    except ImportError:
        log.warning("torch not installed: skipping the PyTorch reference (pip install torch==2.13.0)")
        return None
    torch.set_num_threads(threads)

    class TorchNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv1d(F, CONV, 3, padding=1)
            self.pool = torch.nn.MaxPool1d(2)
            self.drop = torch.nn.Dropout(0.3)
            self.lstm = torch.nn.LSTM(CONV, HIDDEN, 1, batch_first=True, bidirectional=True)
            self.head = torch.nn.Linear(2 * HIDDEN, NCLS)

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            x = (x * mask.unsqueeze(-1)).transpose(1, 2)  # (B, F, T)
            y = self.drop(self.pool(torch.relu(self.conv(x))))  # (B, C, T/2)
            out = self.lstm(y.transpose(1, 2))[0]  # (B, T/2, 2H)
            return self.head(torch.cat([out[:, -1, :HIDDEN], out[:, 0, HIDDEN:]], dim=-1))

    net = TorchNet()
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()

    def train(x: np.ndarray, m: np.ndarray, y: np.ndarray) -> float:
        net.train()
        opt.zero_grad()
        loss = loss_fn(net(x, m), y)
        loss.backward()
        opt.step()
        return float(loss)

    def score(x: np.ndarray, m: np.ndarray) -> np.ndarray:
        net.eval()
        with torch.no_grad():
            return net(x, m).numpy()

    return train, score


def make_data(batch: int, framework: str, seed: int = 0) -> tuple:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, T, F)).astype(np.float32)
    m = np.ones((batch, T), np.float32)
    m[: batch // 2, : T // 4] = 0.0
    y = rng.integers(0, NCLS, size=batch).astype(np.int32)
    if framework == "torch":
        import torch
        return torch.from_numpy(x), torch.from_numpy(m), torch.from_numpy(y.astype(np.int64))
    return Tensor(x), Tensor(m), Tensor(y)


def timed(fn: Callable, args: tuple, reps: int) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) per call; one warm call first, not timed."""
    fn(*args)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(reps):
        fn(*args)
    return (time.perf_counter() - t0) / reps, (time.process_time() - c0) / reps


def reps_for(fn: Callable, args: tuple, budget_s: float) -> int:
    t0 = time.perf_counter()
    fn(*args)
    return max(1, min(50, int(budget_s / max(time.perf_counter() - t0, 1e-6))))


def kernel_seconds() -> dict[str, float]:
    return {k: sec for k, (_, sec) in kernel_stats().items()}


def run(batch: int, rounds: int, threads: tuple[int, int], runtime_threads: int,
        variants: list[str]) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Medians per variant, and for ms_fused the seconds per call spent inside each C++ kernel.
    threads = (fused-kernel threads, torch threads)."""
    set_threads(threads[0], runtime_threads=runtime_threads)
    builders = {"torch": lambda: torch_fns(threads[1]), "ms_baseline": ms_baseline_fns,
                "ms_native": lambda: ms_fns("native"), "ms_unrolled": lambda: ms_fns("unrolled"),
                "ms_fused": lambda: ms_fns("fused")}
    fns, data = {}, {}
    for name in variants:
        built = builders[name]()
        if built is None:
            continue
        fw = "torch" if name == "torch" else "ms"
        fns[name] = built
        data[name] = (make_data(batch, fw), make_data(1, fw, seed=1))
    keys = ("train", "train_cpu", "score", "score_cpu", "lat1", "lat1_cpu")
    samples: dict[str, dict[str, list[float]]] = {n: {k: [] for k in keys} for n in fns}
    inside: dict[str, dict[str, float]] = {"train": {}, "score": {}}
    calls = {"train": 0, "score": 0}
    reps: dict[str, tuple[int, int, int]] = {}
    for name, (train, score) in fns.items():  # warm-up/compile + pick repetitions (~0.5 s a measurement)
        (xb, mb, yb), (x1, m1, _) = data[name]
        reps[name] = (reps_for(train, (xb, mb, yb), 0.5), reps_for(score, (xb, mb), 0.5),
                      reps_for(score, (x1, m1), 0.5))
    for r in range(rounds):
        for name, (train, score) in fns.items():
            (xb, mb, yb), (x1, m1, _) = data[name]
            rt, rs, r1 = reps[name]
            for key, fn, args, n in (("train", train, (xb, mb, yb), rt), ("score", score, (xb, mb), rs),
                                     ("lat1", score, (x1, m1), r1)):
                before = kernel_seconds() if name == "ms_fused" else {}
                wall, cpu = timed(fn, args, n)
                if before and key in inside:
                    calls[key] += n + 1
                    for k, sec in kernel_seconds().items():
                        inside[key][k] = inside[key].get(k, 0.0) + sec - before[k]
                samples[name][key].append(wall)
                samples[name][key + "_cpu"].append(cpu)
        log.info("round %d/%d done", r + 1, rounds)
    per_call = {key: {k: v / max(calls[key], 1) for k, v in d.items()} for key, d in inside.items()}
    return {n: {k: statistics.median(v) for k, v in s.items()} for n, s in samples.items()}, per_call


def report(res: dict[str, dict[str, float]], inside: dict[str, dict[str, float]], batch: int,
           threads: tuple[int, int], runtime_threads: int, cmd: str, load: tuple[float, float]) -> str:
    ref = res.get("torch")
    lines = [f"B={batch}, T={T}, F={F}, conv {CONV}, hidden {HIDDEN}; fused kernels {threads[0]} thread(s), "
             f"MindSpore runtime {runtime_threads}, torch {threads[1]}; medians over interleaved rounds; load average "
             f"{load[0]:.1f} before, {load[1]:.1f} after (2 cores, shared).", f"Command: `{cmd}`", "",
             "| variant | train windows/s | score windows/s | train x torch | score x torch "
             f"| latency B=1 (ms) | latency B={batch} (ms/batch) | CPU-s/step train, score |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in res.items():
        tr, sc = batch / r["train"], batch / r["score"]
        rt = f"{r_train:.2f}x" if ref and (r_train := ref["train"] / r["train"]) else "n/a"
        rs = f"{r_score:.2f}x" if ref and (r_score := ref["score"] / r["score"]) else "n/a"
        lines.append(f"| {name} | {tr:,.0f} | {sc:,.0f} | {rt} | {rs} | {r['lat1'] * 1e3:.2f} "
                     f"| {r['score'] * 1e3:.1f} | {r['train_cpu']:.3f}, {r['score_cpu']:.3f} |")
    fused = res.get("ms_fused")
    if fused and inside["train"]:
        for key, label in (("train", "train step"), ("score", f"scoring call (B={batch})")):
            parts = ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in inside[key].items() if v > 0)
            total = sum(inside[key].values())
            lines.append(f"\nms_fused {label}: {res['ms_fused'][key] * 1e3:.1f} ms wall (median), of which inside "
                         f"the C++ kernels {total * 1e3:.1f} ms (mean): {parts}.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="torch threads and fused-kernel threads")
    ap.add_argument("--runtime-threads", type=int, default=1, help="MindSpore runtime threads")
    ap.add_argument("--torch-threads", type=int, help="torch threads (default: --threads)")
    ap.add_argument("--variants", default="torch,ms_baseline,ms_native,ms_unrolled,ms_fused")
    ap.add_argument("--out", type=Path, help="also write the markdown table here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    use_kernel_cache(KernelCache(cache_root_from_env(os.environ)))  # as the CLI: $FLOWHAWK_CACHE, XDG, ~/.cache
    load0 = os.getloadavg()[0]
    threads = (args.threads, args.torch_threads or args.threads)
    res, inside = run(args.batch, args.rounds, threads, args.runtime_threads, args.variants.split(","))
    text = report(res, inside, args.batch, threads, args.runtime_threads,
                  "python " + " ".join(sys.argv), (load0, os.getloadavg()[0]))
    lib = kernel_library() if "ms_fused" in args.variants else None
    text += f"\nKernel library: {lib.name if lib else 'none'}.\n" if "ms_fused" in args.variants else ""
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
