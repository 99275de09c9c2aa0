#!/usr/bin/python3
"""The update bench_dqn_update.cpp times, in PyTorch on the CPU, for comparison.

Nature DQN (batch 32, 4x84x84, 6 actions): target forward on s' (no grad),
online forward on s, Huber TD loss on Q(s, a), backward, Adam step.
Uses Debian's python3-torch (apt-get install python3-torch); prints one JSON line.

    /usr/bin/python3 bench/pytorch_dqn_update.py [seconds] [batch] [threads]
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
actions = 6
torch.manual_seed(1)
# PyTorch may default to fewer threads than cores; use what qrl uses.
torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else os.cpu_count())


def nature_dqn():
    return nn.Sequential(
        nn.Conv2d(4, 32, 8, 4), nn.ReLU(),
        nn.Conv2d(32, 64, 4, 2), nn.ReLU(),
        nn.Conv2d(64, 64, 3, 1), nn.ReLU(),
        nn.Flatten(), nn.Linear(3136, 512), nn.ReLU(), nn.Linear(512, actions))


online, target = nature_dqn(), nature_dqn()
target.load_state_dict(online.state_dict())
optimizer = torch.optim.Adam(online.parameters(), lr=1e-4)
states = torch.randint(0, 256, (batch, 4, 84, 84), dtype=torch.uint8)
next_states = torch.randint(0, 256, (batch, 4, 84, 84), dtype=torch.uint8)
taken = torch.randint(0, actions, (batch,))
rewards = torch.rand(batch)
terminated = (torch.arange(batch) % 10 == 0).float()


def update():
    with torch.no_grad():
        next_q = target(next_states.float() / 255.0).max(dim=1).values
        td_target = rewards + 0.99 * next_q * (1 - terminated)
    q = online(states.float() / 255.0).gather(1, taken.unsqueeze(1)).squeeze(1)
    loss = F.smooth_l1_loss(q, td_target)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss


for _ in range(5):
    update()
start = time.perf_counter()
updates = 0
while True:
    loss = update()
    updates += 1
    elapsed = time.perf_counter() - start
    if elapsed >= seconds:
        break
print(json.dumps({"bench": "dqn_update_cpu", "value": round(updates / elapsed, 3), "unit": "updates/s",
                  "batch": batch, "threads": torch.get_num_threads(), "updates": updates,
                  "impl": "pytorch " + torch.__version__}))
