#!/usr/bin/python3
"""The update and the acting bench_dqn_update.cpp times, in PyTorch on the CPU.

Exactly qrl's update: target forward on s' (no grad; with Double DQN the
online network picks the action there), online forward on s, Huber TD loss on
Q(s, a) (mean over the batch), backward, Adam step (qrl's defaults: lr 1e-4,
torch's betas and eps, no clipping). Then acting: one state's forward, with `threads` threads and
with one. Prints one JSON line per figure. Runs with Debian's python3-torch
(/usr/bin/python3) or any other torch (bench/compare_cpu_update.sh uses a
PyPI torch in build/torch-venv too).

    python3 bench/pytorch_dqn_update.py [seconds] [batch] [threads] [nature|tutorial] [double: 0|1]
"""
import json
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
batch = int(sys.argv[2]) if len(sys.argv) > 2 else 32
threads = int(sys.argv[3]) if len(sys.argv) > 3 else os.cpu_count()
net_name = sys.argv[4] if len(sys.argv) > 4 else "nature"
double_dqn = len(sys.argv) > 5 and sys.argv[5] == "1"
actions = 6
torch.manual_seed(1)
torch.set_num_threads(threads)


def make_net():
    if net_name == "tutorial":  # Keras 'same' padding: PyTorch's padding="same" needs stride 1, so pad explicitly
        def same(k, s, size):
            out = -(-size // s)
            total = max((out - 1) * s + k - size, 0)
            return nn.ZeroPad2d((total // 2, total - total // 2, total // 2, total - total // 2)), out

        layers, channels, size = [], 4, 80
        for out_c, k, s in ((32, 8, 4), (64, 4, 2), (64, 3, 1)):
            pad, size = same(k, s, size)
            layers += [pad, nn.Conv2d(channels, out_c, k, s), nn.ReLU()]
            pool_pad, size = same(2, 2, size)
            layers += [pool_pad, nn.MaxPool2d(2, 2)]  # zero padding after a ReLU never wins the max
            channels = out_c
        return nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels * size * size, 256), nn.ReLU(),
                             nn.Linear(256, actions)), 80
    return nn.Sequential(
        nn.Conv2d(4, 32, 8, 4), nn.ReLU(),
        nn.Conv2d(32, 64, 4, 2), nn.ReLU(),
        nn.Conv2d(64, 64, 3, 1), nn.ReLU(),
        nn.Flatten(), nn.Linear(3136, 512), nn.ReLU(), nn.Linear(512, actions)), 84


online, size = make_net()
target, _ = make_net()
target.load_state_dict(online.state_dict())
optimizer = torch.optim.Adam(online.parameters(), lr=1e-4)  # qrl: optim::AdamConfig{}
states = torch.randint(0, 256, (batch, 4, size, size), dtype=torch.uint8)
next_states = torch.randint(0, 256, (batch, 4, size, size), dtype=torch.uint8)
taken = torch.randint(0, actions, (batch,))
rewards = torch.rand(batch)
discounts = torch.where(torch.arange(batch) % 10 == 0, 0.0, 0.99)


def update():
    with torch.no_grad():
        next_input = next_states.float() / 255.0
        next_target = target(next_input)
        if double_dqn:
            best = online(next_input).argmax(dim=1, keepdim=True)
            next_q = next_target.gather(1, best).squeeze(1)
        else:
            next_q = next_target.max(dim=1).values
        td_target = rewards + discounts * next_q
    q = online(states.float() / 255.0).gather(1, taken.unsqueeze(1)).squeeze(1)
    loss = F.smooth_l1_loss(q, td_target)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss


def seconds_per_call(f, budget):
    for _ in range(3):
        f()
    start = time.perf_counter()
    calls = 0
    while True:
        f()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= budget:
            return elapsed / calls


impl = "pytorch " + torch.__version__
update_s = seconds_per_call(update, seconds)
print(json.dumps({"bench": "dqn_update_cpu", "value": round(1 / update_s, 3), "unit": "updates/s", "net": net_name,
                  "double_dqn": double_dqn, "batch": batch, "threads": torch.get_num_threads(), "impl": impl}))
state = torch.rand(1, 4, size, size)
actor, _ = make_net()
for t in sorted({threads, 1}, reverse=True):
    torch.set_num_threads(t)
    with torch.no_grad():
        act_s = seconds_per_call(lambda: actor(state), seconds / 5)
    print(json.dumps({"bench": "act_latency_cpu", "value": round(act_s * 1e3, 3), "unit": "ms", "net": net_name,
                      "batch": 1, "threads": t, "impl": impl}))
