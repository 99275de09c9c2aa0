#!/usr/bin/python3
"""qrl's CPU update and acting beside PyTorch's, in one run, as ratios.

Runs bench_dqn_update (which also measures the SGEMM peak) and
pytorch_dqn_update.py with every torch it finds: Debian's python3-torch
(/usr/bin/python3) and a PyPI torch in BUILD/torch-venv or the source tree's
build/torch-venv (made by
`python3 -m venv build/torch-venv && build/torch-venv/bin/pip install torch`).
Each PyTorch figure is its best over 1 thread and all threads. Prints every
figure as its own JSON line, then one `*_vs_pytorch` line per case.

    python3 bench/compare_cpu_update.py [build-dir] [seconds]
"""
import json
import os
import subprocess
import sys

build = sys.argv[1] if len(sys.argv) > 1 else "build"
seconds = sys.argv[2] if len(sys.argv) > 2 else "10"
here = os.path.dirname(os.path.abspath(__file__))
threads = os.cpu_count()
cases = [("nature", "0"), ("nature", "1"), ("tutorial", "0")]


def run(command, env=None):
    out = subprocess.run(command, check=True, capture_output=True, text=True,
                         env=None if env is None else {**os.environ, **env}).stdout
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    for line in lines:
        print(json.dumps(line), flush=True)
    return lines


venvs = [os.path.join(build, "torch-venv"), os.path.join(os.path.dirname(here), "build", "torch-venv")]
pythons = ["/usr/bin/python3"] + sorted({os.path.abspath(os.path.join(v, "bin", "python")) for v in venvs
                                         if os.path.exists(os.path.join(v, "bin", "python"))})
for net, double in cases:
    qrl = run([os.path.join(build, "bench", "bench_dqn_update"), seconds, "32", net, double])
    # One thread, as an actor or a second run beside this one would have it.
    qrl_one = run([os.path.join(build, "bench", "bench_dqn_update"), seconds, "32", net, double], {"OMP_NUM_THREADS": "1"})
    qrl_one_update = next(l["value"] for l in qrl_one if l["bench"] == "dqn_update_cpu")
    peak = next(l["value"] for l in qrl if l["bench"] == "sgemm_peak")
    qrl_update = next(l["value"] for l in qrl if l["bench"] == "dqn_update_cpu")
    qrl_act = min(l["value"] for l in qrl if l["bench"] == "act_latency_cpu" and l["threads"] == 1)
    gflop = next(l["gflop_per_update"] for l in qrl if l["bench"] == "dqn_update_cpu")
    for python in pythons:
        torch_lines = []
        for t in sorted({1, threads}):
            torch_lines += run([python, os.path.join(here, "pytorch_dqn_update.py"), seconds, "32", str(t), net, double])
        updates = [l for l in torch_lines if l["bench"] == "dqn_update_cpu"]
        best = max(updates, key=lambda l: l["value"])
        one = next(l["value"] for l in updates if l["threads"] == 1)
        act = min(l["value"] for l in torch_lines if l["bench"] == "act_latency_cpu" and l["threads"] == 1)
        print(json.dumps({"bench": "dqn_update_vs_pytorch", "net": net, "double_dqn": double == "1",
                          "qrl": qrl_update, "pytorch": best["value"], "pytorch_threads": best["threads"],
                          "ratio": round(qrl_update / best["value"], 3),
                          "qrl_ratio_to_sgemm_peak": round(qrl_update * gflop / peak, 3),
                          "pytorch_ratio_to_sgemm_peak": round(best["value"] * gflop / peak, 3),
                          "qrl_1_thread": qrl_one_update, "pytorch_1_thread": one,
                          "ratio_1_thread": round(qrl_one_update / one, 3), "impl": best["impl"]}), flush=True)
        print(json.dumps({"bench": "act_latency_vs_pytorch", "net": net, "threads": 1, "qrl_ms": qrl_act,
                          "pytorch_ms": act, "ratio": round(act / qrl_act, 3), "impl": best["impl"]}), flush=True)
