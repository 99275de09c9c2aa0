#!/usr/bin/python3
"""Writes tests/data/torch_reference.safetensors: DQN updates computed by PyTorch
that tests/test_torch_reference.cpp replays with qrl and compares.

    /usr/bin/python3 scripts/make_torch_reference.py [--out PATH] [--compare PATH]

Needs Debian's python3-torch 1.13 (apt-get install -y python3-torch; pyenv's
python3 does not see it, hence /usr/bin/python3) and numpy. The test does not
need torch: it reads the committed file. --compare PATH regenerates in memory
and prints the largest difference from PATH per tensor instead of writing
(torch's CPU kernels may round differently on another CPU, so the check is by
value, not by byte).

The file (every tensor F32, the only dtype qrl's loader takes):
  init/<p>              initial weights, <p> the nn.Sequential name ("0.weight",
                        ...), layouts as torch's state_dict (Conv2d [out,in,kh,kw],
                        Linear [out,in]), which are qrl's.
  batch<k>/states       [B,2,8,8] uint8 pixel values stored as floats
  batch<k>/next_states  [B,2,8,8] likewise
  batch<k>/actions      [B] integers stored as floats
  batch<k>/rewards      [B]
  batch<k>/terminated   [B] 0 or 1
  batch<k>/discounts    [B] gamma * (1 - terminated): the per-row factor of
                        y = r + discount * next_value, for a batch layout that
                        carries discounts (n-step returns) instead of flags
  <variant>/after/<p>   weights after the variant's updates, in order
  <variant>/losses      [updates] the loss of each update (before its step)
  <variant>/grad_norms  [updates] global gradient norm before clipping
__metadata__["qrl_torch_reference"] is JSON: {"format", "torch", "network",
"variants": [{"name", "init", "batches", "head", "gamma", "double_dqn", "loss",
"huber_delta", "learning_rate", "max_grad_norm", ...}]}. The test runs every
variant the list names and rejects keys it does not know, so a variant with
a new meaning cannot pass by being ignored.

Semantics (qrl's rl::Dqn::update and cpu td_loss): inputs x / 255 (as x *
float32(1/255)); the target net starts equal to the online net and stays fixed;
y = r + gamma (1 - terminated) next_value, detached, next_value =
max_a Q_target(s', a) or, Double DQN, Q_target(s', argmax_a Q_online(s', a))
with the online net of that update; loss = mean over the batch of
Huber(delta) or squared error of Q(s, a) - y; optional
clip_grad_norm_(max_norm); torch.optim.Adam (betas 0.9/0.999, eps 1e-8).

Adding a variant: write a function that returns (entry, tensors) like
scalar_variant() and append its result in main(). n-step returns: build
batches whose rewards are the n-step sums and whose discounts are gamma^n (or 0
past a terminal) under a new batch prefix (e.g. "nstep<k>/"), and point the
entry's "batches" at them; the update is the same with y = r + discount *
next_value. C51: a network with actions * atoms outputs and its own
"init_c51/" weights, an entry with "head": "c51" and its atoms/v_min/v_max,
and the projected cross-entropy of Dopamine's rainbow_agent.py; the test needs
the matching branch.

Before writing, the generator checks that the fixture is not fragile: every
argmax it takes leads the runner-up by a margin, Huber errors stay away from
|d| = delta, the clipped variant's norm exceeds its max_norm, Double DQN picks
a different action than plain DQN somewhere, and the same updates in float64
agree with the float32 ones to well within the test's tolerance.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

SEED = 38  # of seeds 0-39, 12 passed the checks below; this one has the largest argmax leads
BATCH = 5
STACK, SIZE = 2, 8
ACTIONS = 3
UPDATES = 3
GAMMA = 0.9
LEARNING_RATE = 1e-2
# The test's tolerance (tests/test_torch_reference.cpp); the float64 rerun must
# stay well inside it.
ATOL, RTOL = 2e-6, 2e-5
ARGMAX_MARGIN = 1e-3   # smallest lead of an argmax over the runner-up
HUBER_MARGIN = 1e-3    # smallest distance of |d| from delta
MAX_BYTES = 200_000

NETWORK = ("Conv2d(2, 4, 3, stride 1, padding 1 = qrl 'same') -> ReLU -> Flatten -> "
           "Linear(256, 16) -> ReLU -> Linear(16, 3)")


def network():
    return nn.Sequential(
        nn.Conv2d(STACK, 4, 3, stride=1, padding=1), nn.ReLU(), nn.Flatten(),
        nn.Linear(4 * SIZE * SIZE, 16), nn.ReLU(), nn.Linear(16, ACTIONS))


def make_batches(generator):
    """Three batches; next_states shift the stack by one frame as a real
    replay would. Rows terminate at (k, k) and also (2, 4)."""
    batches = []
    for k in range(3):
        frames = torch.randint(0, 256, (BATCH, STACK + 1, SIZE, SIZE), generator=generator, dtype=torch.uint8)
        terminated = torch.zeros(BATCH)
        terminated[k % BATCH] = 1.0
        if k == 2:
            terminated[4] = 1.0
        # Rewards of both signs, some large enough that Huber's linear part is used.
        rewards = torch.round(torch.randn(BATCH, generator=generator) * 1.5 * 4) / 4
        batches.append({
            "states": frames[:, :STACK].clone(),
            "next_states": frames[:, 1:].clone(),
            "actions": torch.randint(0, ACTIONS, (BATCH,), generator=generator),
            "rewards": rewards,
            "terminated": terminated,
            "discounts": GAMMA * (1.0 - terminated),
        })
    return batches


def check_margin(values, what, checks):
    """values [B, A]: the argmax must lead the runner-up by ARGMAX_MARGIN."""
    top = torch.topk(values, 2, dim=1).values
    lead = float((top[:, 0] - top[:, 1]).min())
    checks.append(f"{what}: smallest argmax lead {lead:.3g}")
    assert lead > ARGMAX_MARGIN, f"{what}: argmax lead {lead} is below {ARGMAX_MARGIN}; pick another SEED"


def run_updates(init, batches, config, dtype, checks=None):
    """The updates of one variant; returns (state_dict, losses, grad_norms, stats)."""
    online, target = network().to(dtype), network().to(dtype)
    online.load_state_dict({k: v.to(dtype) for k, v in init.items()})
    target.load_state_dict(online.state_dict())
    for p in target.parameters():
        p.requires_grad_(False)
    optimizer = torch.optim.Adam(online.parameters(), lr=config["learning_rate"], betas=(0.9, 0.999), eps=1e-8)
    scale = torch.tensor(1.0 / 255.0, dtype=torch.float32).to(dtype)  # qrl multiplies by float(1/255)
    losses, norms = [], []
    stats = {"double_differs": 0, "huber_linear": 0, "huber_quadratic": 0}
    for u, b in enumerate(batches):
        s = b["states"].to(dtype) * scale
        s2 = b["next_states"].to(dtype) * scale
        with torch.no_grad():
            q_next_target = target(s2)
            q_next_online = online(s2)
            if checks is not None:
                check_margin(q_next_target, f"{config['name']} update {u}: Q_target(s')", checks)
                if config["double_dqn"]:
                    check_margin(q_next_online, f"{config['name']} update {u}: Q_online(s')", checks)
            greedy_online = q_next_online.argmax(dim=1)
            greedy_target = q_next_target.argmax(dim=1)
            live = b["terminated"] == 0
            stats["double_differs"] += int(((greedy_online != greedy_target) & live).sum())
            if config["double_dqn"]:
                next_value = q_next_target.gather(1, greedy_online.unsqueeze(1)).squeeze(1)
            else:
                next_value = q_next_target.max(dim=1).values
            y = b["rewards"].to(dtype) + config["gamma"] * (1.0 - b["terminated"].to(dtype)) * next_value
        q = online(s).gather(1, b["actions"].unsqueeze(1)).squeeze(1)
        d = (q - y).detach()
        if config["loss"] == "huber":
            delta = config["huber_delta"]
            gap = float((d.abs() - delta).abs().min())
            if checks is not None:
                checks.append(f"{config['name']} update {u}: smallest | |d| - delta | {gap:.3g}")
                assert gap > HUBER_MARGIN, f"{config['name']}: a Huber error lies at the kink; pick another SEED"
            stats["huber_linear"] += int((d.abs() > delta).sum())
            stats["huber_quadratic"] += int((d.abs() <= delta).sum())
            loss = F.huber_loss(q, y, reduction="mean", delta=delta)
        elif config["loss"] == "mse":
            loss = F.mse_loss(q, y, reduction="mean")
        else:
            raise ValueError(config["loss"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config["max_grad_norm"] > 0:
            norm = torch.nn.utils.clip_grad_norm_(online.parameters(), config["max_grad_norm"])
        else:
            norm = torch.norm(torch.stack([torch.norm(p.grad) for p in online.parameters()]))
        losses.append(float(loss))
        norms.append(float(norm))
        optimizer.step()
    return online.state_dict(), losses, norms, stats


def scalar_variant(name, init, batches, *, double_dqn, loss, max_grad_norm=0.0):
    """A one-step DQN variant with a scalar Q head. Returns (entry, tensors)."""
    entry = {"name": name, "init": "init", "batches": [f"batch{k}" for k in range(len(batches))], "head": "q",
             "gamma": GAMMA, "double_dqn": double_dqn, "loss": loss, "huber_delta": 1.0,
             "learning_rate": LEARNING_RATE, "max_grad_norm": max_grad_norm}
    checks = []
    after, losses, norms, stats = run_updates(init, batches, entry, torch.float32, checks)
    after64, losses64, _, _ = run_updates(init, batches, entry, torch.float64)

    # float32 vs float64: how much float32 rounding alone moves the result.
    worst = 0.0
    for k, v in after.items():
        excess = ((v.double() - after64[k]).abs() / (ATOL + RTOL * after64[k].abs())).max()
        worst = max(worst, float(excess))
    checks.append(f"{name}: float32 vs float64 uses {worst:.3f} of the test's tolerance")
    assert worst < 0.25, f"{name}: float32 and float64 differ by {worst} tolerances; the fixture is ill-conditioned"
    if max_grad_norm > 0:
        assert min(norms) > 1.5 * max_grad_norm, f"{name}: clipping at {max_grad_norm} does not bind ({norms})"
    if loss == "huber":
        assert stats["huber_linear"] > 0 and stats["huber_quadratic"] > 0, f"{name}: one Huber branch unused {stats}"
    moved = max(float((after[k] - init[k]).abs().max()) for k in init)
    checks.append(f"{name}: losses {losses}, grad norms {norms}, largest move {moved:.3g}, "
                  f"live rows where Double DQN's action differs {stats['double_differs']}, {stats}")
    tensors = {f"{name}/after/{k}": v for k, v in after.items()}
    tensors[f"{name}/losses"] = torch.tensor(losses)
    tensors[f"{name}/grad_norms"] = torch.tensor(norms)
    return entry, tensors, checks, stats


def encode_safetensors(tensors, metadata):
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, t in tensors.items():
        data = t.detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format's recommended 8-byte alignment
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        out[name] = np.frombuffer(data[b:end], dtype="<f4").reshape(e["shape"])
    return header.get("__metadata__", {}), out


def build():
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(SEED)
    init = {k: v.clone() for k, v in network().state_dict().items()}
    batches = make_batches(generator)

    tensors = {f"init/{k}": v for k, v in init.items()}
    for k, b in enumerate(batches):
        for field, v in b.items():
            tensors[f"batch{k}/{field}"] = v.float()

    variants, checks, results = [], [], {}
    for name, kwargs in [
        ("dqn_huber", dict(double_dqn=False, loss="huber")),
        ("double_huber", dict(double_dqn=True, loss="huber")),
        ("double_mse", dict(double_dqn=True, loss="mse")),
        ("double_huber_clip", dict(double_dqn=True, loss="huber", max_grad_norm=0.2)),
    ]:
        entry, t, c, stats = scalar_variant(name, init, batches, **kwargs)
        variants.append(entry)
        tensors.update(t)
        checks += c
        results[name] = (t, stats)

    # Double DQN must be told apart from plain DQN by this data, and every
    # variant from every other: a test that ran the wrong one must fail.
    assert results["double_huber"][1]["double_differs"] > 0, "Double DQN never picks another action; pick another SEED"
    names = list(results)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            gap = max(float((results[a][0][f"{a}/after/{k}"] - results[b][0][f"{b}/after/{k}"]).abs().max())
                      for k in init)
            checks.append(f"{a} vs {b}: largest weight difference {gap:.3g}")
            assert gap > 100 * ATOL, f"{a} and {b} end too close together to tell apart"

    metadata = {"qrl_torch_reference": json.dumps({
        "format": 1, "torch": torch.__version__, "network": NETWORK, "seed": SEED, "variants": variants}),
        "generator": "scripts/make_torch_reference.py"}
    return encode_safetensors(tensors, metadata), tensors, checks


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(root, "tests", "data", "torch_reference.safetensors"))
    parser.add_argument("--compare", metavar="PATH", help="compare with PATH instead of writing")
    args = parser.parse_args()

    blob, tensors, checks = build()
    for line in checks:
        print(line)
    assert len(blob) < MAX_BYTES, f"fixture is {len(blob)} bytes, over {MAX_BYTES}"
    if args.compare:
        _, old = read_safetensors(args.compare)
        assert set(old) == set(tensors), f"tensor names differ: {sorted(set(old) ^ set(tensors))}"
        worst = max(float(np.abs(old[k] - tensors[k].numpy()).max()) for k in tensors)
        print(f"largest difference from {args.compare}: {worst:.3g}")
        return 0
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "wb") as f:
        f.write(blob)
    print(f"wrote {args.out}: {len(blob)} bytes, {len(tensors)} tensors, torch {torch.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
