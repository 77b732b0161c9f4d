"""Train the learned aponeurosis segmenter and export it for OpenCV DNN.

Reproducible: every random draw comes from ``--seed``; the split is fixed by
frame-number blocks (:mod:`training.aponeurosis_data`). Checkpoints every
epoch to ``--checkpoint`` and resumes from it when it exists (a session may
stop a long CPU run), so the same command finishes an interrupted run.

Data: ``../shared/data/real/dl-track-apo-train`` (430 frames; Apache-2.0,
DL_Track, Cronin et al.): about 80 validation frames are never trained on.

Outputs (``--out-dir``, default ``models/``):
- ``aponeurosis_unet.onnx``: the network (opset 17, input 1x1xSxS, logits 1x2xSxS);
- ``aponeurosis_unet.json``: input size and normalisation, SHA-256, split,
  training settings and history.

Usage::

    .venv/bin/pip install -e '.[train]'
    nohup .venv/bin/python -m training.train_aponeurosis_segmenter > training/train_aponeurosis.log 2>&1 &

Needs the ``train`` extra (torch, onnx); nothing here is needed at run time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from pipeline.segmentation.nerve_model import file_sha256, metadata_path  # noqa: E402
from pipeline.segmentation.nerve_preprocess import letterbox, normalize_input  # noqa: E402
from training.aponeurosis_data import load_examples, split_names, write_split  # noqa: E402
from training.data import augment  # noqa: E402
from training.model import UNet, count_parameters  # noqa: E402
from training.train_nerve_segmenter import export_onnx, seed_everything  # noqa: E402

MODEL_NAME = "aponeurosis_unet"
MODEL_VERSION = "1.0"
ATTRIBUTION = (
    "DL_Track aponeurosis training frames (N. J. Cronin et al., njcronin/DL_Track), Apache-2.0: longitudinal "
    "B-mode screens of lower-limb muscles from several devices, aponeurosis masks"
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=80)
    p.add_argument("--size", type=int, default=256, help="network input size (multiple of 16)")
    p.add_argument("--widths", default="8,16,32,64,128", help="channels per U-Net level")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out-dir", type=Path, default=REPO / "models")
    p.add_argument("--checkpoint", type=Path, default=REPO / "training" / "aponeurosis.ckpt")
    p.add_argument("--eval-every", type=int, default=5)
    return p.parse_args(argv)


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p = torch.softmax(logits, dim=1)[:, 1]
    t = (target == 1).float()
    return 1.0 - (2.0 * (p * t).sum() + 1.0) / (p.sum() + t.sum() + 1.0)


def batch_tensors(examples, size: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for ex in examples:
        img, lab, valid = augment(ex, size, rng)
        xs.append(normalize_input(img, valid))
        ys.append(lab)
    return torch.from_numpy(np.stack(xs)[:, None]), torch.from_numpy(np.stack(ys).astype(np.int64))


@torch.no_grad()
def band_dice(model: torch.nn.Module, val, size: int) -> float:
    model.eval()
    scores = []
    for ex in val:
        square, box = letterbox(ex.image, size)
        x = normalize_input(square, box.valid_mask())
        lab = np.zeros((size, size), dtype=np.uint8)
        lab[box.y0 : box.y0 + box.rows, box.x0 : box.x0 + box.cols] = cv2.resize(
            ex.labels, (box.cols, box.rows), interpolation=cv2.INTER_NEAREST
        )
        pred = model(torch.from_numpy(x[None, None])).argmax(1)[0].numpy() == 1
        t = lab == 1
        scores.append(2.0 * (pred & t).sum() / max(1, pred.sum() + t.sum()))
    model.train()
    return float(np.mean(scores))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    seed_everything(args.seed)
    widths = tuple(int(w) for w in args.widths.split(","))
    split = write_split()
    train_names, val_names = split["train"], split["validation"]
    print(f"split: {len(train_names)} train, {len(val_names)} validation", flush=True)
    base = int(round(args.size * 1.4))
    t0 = time.time()
    train = load_examples(train_names, base)
    val = load_examples(val_names, base)
    print(f"data loaded in {time.time() - t0:.0f} s", flush=True)

    model = UNet(widths, n_classes=2).to(memory_format=torch.channels_last)
    steps_per_epoch = math.ceil(len(train) / args.batch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch, pct_start=0.15
    )
    rng = np.random.default_rng(args.seed)
    history: list[dict] = []
    start_epoch = 1
    train_seconds = 0.0
    if args.checkpoint.is_file():
        state = torch.load(args.checkpoint, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        history = state["history"]
        start_epoch = state["epoch"] + 1
        train_seconds = state["train_seconds"]
        print(f"resumed from {args.checkpoint} after epoch {state['epoch']}", flush=True)
    use_bf16 = bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    print(f"model: U-Net widths {widths}, {count_parameters(model)} parameters, input {args.size}, bf16 {use_bf16}",
          flush=True)
    for epoch in range(start_epoch, args.epochs + 1):
        t_epoch = time.time()
        order = rng.permutation(len(train))
        losses = []
        for step in range(steps_per_epoch):
            chunk = [train[i] for i in order[step * args.batch : (step + 1) * args.batch]]
            if len(chunk) < 2:
                continue
            x, y = batch_tensors(chunk, args.size, rng)
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
                logits = model(x)
            logits = logits.float()
            loss = F.cross_entropy(logits, y) + dice_loss(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
        seconds = time.time() - t_epoch
        train_seconds += seconds
        entry = {"epoch": epoch, "loss": float(np.mean(losses)), "seconds": round(seconds, 1)}
        if epoch % args.eval_every == 0 or epoch == args.epochs:
            entry["band_dice@S"] = band_dice(model, val, args.size)
        history.append(entry)
        print(json.dumps(entry), flush=True)
        torch.save(
            {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "history": history,
                "epoch": epoch, "train_seconds": train_seconds,
            },
            args.checkpoint.with_suffix(".tmp"),
        )
        args.checkpoint.with_suffix(".tmp").replace(args.checkpoint)

    args.out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = args.out_dir / f"{MODEL_NAME}.onnx"
    export_onnx(model, onnx_path, args.size)
    sha = file_sha256(onnx_path)
    meta = {
        "model": onnx_path.name,
        "model_version": MODEL_VERSION,
        "sha256": sha,
        "architecture": f"U-Net, {len(widths)} levels, widths {list(widths)}, 3x3 conv + BN (folded) + ReLU, "
        "max-pool, bilinear upsampling, 1x1 head",
        "parameters": count_parameters(model),
        "onnx_opset": 17,
        "input_size": args.size,
        "input": "the whole gray frame letterboxed (aspect kept, INTER_AREA, black padding) into SxS; standardised "
        "with the mean and SD of the frame's pixels (/255, SD >= 0.02); padding = standardised black (the runtime "
        "crops the probabilities to the tissue region)",
        "output": "logits 1x2xSxS",
        "classes": ["background", "aponeurosis"],
        "split": {"file": "training/aponeurosis_split.json", "method": split["method"],
                  "train": len(train_names), "validation": len(val_names)},
        "training": {
            "seed": args.seed, "epochs": args.epochs, "batch": args.batch,
            "optimizer": f"AdamW lr {args.lr} (one-cycle), weight decay {args.weight_decay}",
            "loss": "cross-entropy + soft Dice (aponeurosis)",
            "augmentation": "as the nerve model (training.data.augment): scale 0.75-1.35, shift, rotation +-10 deg, "
            "left-right flip, gain, contrast, gamma, TGC ramp, speckle, noise, blur/sharpen",
            "threads": args.threads, "bf16_autocast": use_bf16, "cpu": platform.processor() or platform.machine(),
            "torch": torch.__version__, "train_seconds": round(train_seconds, 1), "history": history,
            "final_model": "last epoch (no selection on the validation split)",
        },
        "data": ATTRIBUTION,
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
    }
    metadata_path(onnx_path).write_text(json.dumps(meta, indent=2) + "\n")
    print(f"exported {onnx_path} (sha256 {sha[:12]})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
