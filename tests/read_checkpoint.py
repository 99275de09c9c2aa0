#!/usr/bin/env python3
"""Reads a qrl checkpoint the way a Python user would, without qrl's code.

    read_checkpoint.py CHECKPOINT_DIR

1. model.safetensors and training.safetensors are parsed by a reader written
   from the safetensors spec (u64 header length, JSON header, raw data) with
   its own checks; every tensor must be F32 with matching byte ranges that
   tile the data section.
2. COMPLETE's sizes and CRC-32C values are recomputed here.
3. If PyTorch is installed, the weights load with load_state_dict(strict=True)
   into the torch.nn.Sequential that mirrors qrl's nature_dqn or tutorial_dqn
   (told apart by the layer indices of the tensors).
Prints one line per check; exits non-zero on the first failure.
"""
import json
import os
import struct
import sys


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    assert len(blob) >= 8, f"{path}: shorter than 8 bytes"
    (n,) = struct.unpack("<Q", blob[:8])
    assert n <= len(blob) - 8, f"{path}: header runs past the end"
    header = json.loads(blob[8 : 8 + n])
    assert isinstance(header, dict), f"{path}: header is not an object"
    data = blob[8 + n :]
    tensors, ranges = {}, []
    for name, entry in header.items():
        if name == "__metadata__":
            assert all(isinstance(v, str) for v in entry.values())
            continue
        assert entry["dtype"] == "F32", f"{path}: {name} is {entry['dtype']}"
        begin, end = entry["data_offsets"]
        count = 1
        for d in entry["shape"]:
            count *= d
        assert end - begin == 4 * count, f"{path}: {name} size mismatch"
        ranges.append((begin, end))
        tensors[name] = (entry["shape"], data[begin:end])
    ranges.sort()
    at = 0
    for begin, end in ranges:
        assert begin == at, f"{path}: ranges do not tile the data"
        at = end
    assert at == len(data), f"{path}: trailing bytes"
    return header.get("__metadata__", {}), tensors


def crc32c(data):
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    c = 0xFFFFFFFF
    for b in data:
        c = table[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def main(ck):
    manifest = json.load(open(os.path.join(ck, "COMPLETE")))
    for name, entry in manifest["files"].items():
        if os.path.getsize(os.path.join(ck, name)) > 4 << 20:
            continue  # pure-Python CRC of a big replay chunk would take long
        data = open(os.path.join(ck, name), "rb").read()
        assert len(data) == entry["bytes"], name
        assert f"0x{crc32c(data):016x}" == entry["crc32c"], f"{name}: CRC mismatch"
    print("manifest: sizes and CRC-32C match")

    meta, model = read_safetensors(os.path.join(ck, "model.safetensors"))
    _, training = read_safetensors(os.path.join(ck, "training.safetensors"))
    assert meta.get("format") == "pt", meta
    for name in model:
        for prefix in ("target.", "adam.exp_avg.", "adam.exp_avg_sq."):
            assert prefix + name in training, f"training.safetensors lacks {prefix + name}"
            assert training[prefix + name][0] == model[name][0]
    print(f"model.safetensors: {len(model)} tensors ({', '.join(sorted(model))})")
    state = json.load(open(os.path.join(ck, "state.json")))
    print(f"state.json: step {state['step']}, epsilon {state['epsilon']['value_at_step']:.4f}, "
          f"adam steps {state['agent']['adam_steps']}")

    try:
        import torch
        from torch import nn
    except ImportError:
        print("torch: not installed, load_state_dict check skipped")
        return
    frames = model["0.weight"][0][1]
    if "12.weight" in model:  # tutorial_dqn: a max-pool after each convolution
        last = 12
        features, hidden = model["10.weight"][0][1], model["10.weight"][0][0]
        pool = lambda: [nn.MaxPool2d(2)]
    else:  # nature_dqn
        last = 9
        features, hidden = model["7.weight"][0][1], model["7.weight"][0][0]
        pool = lambda: []
    actions = model[f"{last}.weight"][0][0]
    net = nn.Sequential(
        nn.Conv2d(frames, 32, 8, 4), nn.ReLU(), *pool(),
        nn.Conv2d(32, 64, 4, 2), nn.ReLU(), *pool(),
        nn.Conv2d(64, 64, 3, 1), nn.ReLU(), *pool(),
        nn.Flatten(), nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, actions))
    state_dict = {
        name: torch.frombuffer(bytearray(raw), dtype=torch.float32).reshape(shape)
        for name, (shape, raw) in model.items()
    }
    net.load_state_dict(state_dict, strict=True)
    assert torch.equal(net[last].bias, state_dict[f"{last}.bias"])
    print(f"torch {torch.__version__}: load_state_dict(strict=True) into nn.Sequential OK")


if __name__ == "__main__":
    main(sys.argv[1])
