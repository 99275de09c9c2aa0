#!/usr/bin/python3
"""The update bench_cuda times (dqn_update_cuda), in PyTorch eager on the GPU.

Nature DQN (batch 32, 4x84x84 uint8 scaled to [0, 1], 6 actions), Double DQN
target (online argmax on s', target value), Huber loss (smooth_l1, beta 1),
backward, Adam (lr 1e-4), all on one CUDA device. TF32 is off, as in qrl's
default. Prints one JSON line, or a "skipped" line without a CUDA device.

    python3 bench/pytorch_dqn_update_cuda.py [seconds] [batch]
"""
import json
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
batch = int(sys.argv[2]) if len(sys.argv) > 2 else 32
actions = 6
if not torch.cuda.is_available():
    print(json.dumps({"bench": "dqn_update_cuda", "impl": "pytorch " + torch.__version__,
                      "skipped": "no CUDA device (torch.cuda.is_available() is False)"}))
    sys.exit(0)
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.backends.cudnn.benchmark = True  # qrl times cuDNN's algorithms once per shape too
device = torch.device("cuda")
torch.manual_seed(1)


def nature_dqn():
    return nn.Sequential(
        nn.Conv2d(4, 32, 8, 4), nn.ReLU(),
        nn.Conv2d(32, 64, 4, 2), nn.ReLU(),
        nn.Conv2d(64, 64, 3, 1), nn.ReLU(),
        nn.Flatten(), nn.Linear(3136, 512), nn.ReLU(), nn.Linear(512, actions)).to(device)


online, target = nature_dqn(), nature_dqn()
target.load_state_dict(online.state_dict())
optimizer = torch.optim.Adam(online.parameters(), lr=1e-4)
states = torch.randint(0, 256, (batch, 4, 84, 84), dtype=torch.uint8, device=device)
next_states = torch.randint(0, 256, (batch, 4, 84, 84), dtype=torch.uint8, device=device)
taken = torch.randint(0, actions, (batch,), device=device)
rewards = torch.rand(batch, device=device)
terminated = (torch.arange(batch, device=device) % 10 == 0).float()


def update():
    with torch.no_grad():
        next_input = next_states.float() / 255.0
        best = online(next_input).argmax(dim=1, keepdim=True)
        next_q = target(next_input).gather(1, best).squeeze(1)
        td_target = rewards + 0.99 * next_q * (1 - terminated)
    q = online(states.float() / 255.0).gather(1, taken.unsqueeze(1)).squeeze(1)
    loss = F.smooth_l1_loss(q, td_target)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss


for _ in range(20):
    update()
torch.cuda.synchronize()
start = time.perf_counter()
updates = 0
while True:
    for _ in range(100):
        loss = update()
    torch.cuda.synchronize()
    updates += 100
    elapsed = time.perf_counter() - start
    if elapsed >= seconds:
        break
assert torch.isfinite(loss).item()
print(json.dumps({"bench": "dqn_update_cuda", "value": round(updates / elapsed, 1), "unit": "updates/s",
                  "batch": batch, "updates": updates, "graph": False, "gpu": torch.cuda.get_device_name(),
                  "impl": "pytorch " + torch.__version__}))
