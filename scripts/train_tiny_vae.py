"""Train the tiny-random Z-Image's VAE so that it round-trips real photos.

Random VAE weights turn every latent into pixel noise, so tests could not check that
a refine keeps a picture's composition. This trains the tiny ``AutoencoderKL`` (the
class and config of ``pipeline/models/tiny.py``) for a couple of CPU minutes on a few
public-domain / CC0 photos bundled with scikit-image, then measures the latents'
mean and std so that ``(z - shift_factor) * scaling_factor`` has unit variance, as the
Flux VAE's config does (the img2img path adds unit noise to scaled latents).

    .venv/bin/pip install scikit-image   # only to run this script
    .venv/bin/python scripts/train_tiny_vae.py [--steps N] [--out PATH]

The result is deterministic for a given torch build and thread count (fixed seed,
fixed step count). Bump ``TINY_BUILD_VERSION`` in tiny.py after retraining.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.models.tiny import TINY_VAE_CONFIG, VAE_WEIGHTS_PATH, build_tiny_vae  # noqa: E402

# scikit-image's bundled photos and their licenses (skimage/data/_fetchers.py docstrings).
TRAIN_PHOTOS = {
    "astronaut": "public domain (NASA)",
    "chelsea": "CC0 (Stefan van der Walt)",
    "coffee": "CC0 (Rachel Michetti)",
    "hubble_deep_field": "public domain (NASA)",
    "camera": "CC0 (Lav Varshney)",
    "clock": "public domain (Stefan van der Walt)",
    "brick": "CC0 (CC0Textures)",
    "grass": "CC0 (CC0Textures)",
    "gravel": "CC0 (CC0Textures)",
}
# Held out: never seen in training; the same photo ships as tests/data/rocket.jpg.
HELDOUT_PHOTO = ("rocket", "public domain (SpaceX)")

SEED = 20260611
CROP = 128
BATCH = 8
LR = 2e-3
KL_WEIGHT = 1e-6


def load_photo(name: str) -> np.ndarray:
    """HxWx3 float32 in [-1, 1]."""
    import skimage.data

    image = getattr(skimage.data, name)()
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    image = image[..., :3].astype(np.float32) / 127.5 - 1.0
    return image


def to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)


def random_crops(photos: list[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
    crops = []
    for _ in range(BATCH):
        photo = photos[int(torch.randint(len(photos), (1,), generator=generator))]
        # random scale in [0.5, 1] so the VAE sees detail at several sizes
        scale = 0.5 + 0.5 * float(torch.rand((), generator=generator))
        _, h, w = photo.shape
        size = (max(CROP, round(h * scale)), max(CROP, round(w * scale)))
        scaled = F.interpolate(photo[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
        top = int(torch.randint(size[0] - CROP + 1, (1,), generator=generator))
        left = int(torch.randint(size[1] - CROP + 1, (1,), generator=generator))
        crop = scaled[:, top : top + CROP, left : left + CROP]
        if float(torch.rand((), generator=generator)) < 0.5:
            crop = crop.flip(-1)
        crops.append(crop)
    return torch.stack(crops)


def crop16(photo: torch.Tensor) -> torch.Tensor:
    _, h, w = photo.shape
    return photo[:, : h // 16 * 16, : w // 16 * 16]


@torch.no_grad()
def psnr(vae, photo: torch.Tensor) -> float:
    x = crop16(photo)[None]
    recon = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
    mse = F.mse_loss((recon + 1) / 2, (x + 1) / 2).item()
    return 10 * math.log10(1.0 / mse)


@torch.no_grad()
def latent_stats(vae, photos: list[torch.Tensor]) -> tuple[float, float]:
    latents = [vae.encode(crop16(p)[None]).latent_dist.sample().flatten() for p in photos]
    z = torch.cat(latents)
    return z.mean().item(), z.std().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--init", type=Path, default=None, help="continue from these VAE weights")
    parser.add_argument("--lr", type=float, default=LR)
    parser.add_argument("--out", type=Path, default=VAE_WEIGHTS_PATH)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    generator = torch.Generator().manual_seed(SEED)
    photos = [to_tensor(load_photo(name)) for name in TRAIN_PHOTOS]
    heldout = to_tensor(load_photo(HELDOUT_PHOTO[0]))

    vae = build_tiny_vae(weights=args.init).train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=args.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=args.steps, pct_start=0.05)

    start = time.perf_counter()
    for step in range(args.steps):
        x = random_crops(photos, generator)
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample(generator=generator)).sample
        l1 = F.l1_loss(recon, x)
        kl = posterior.kl().mean()
        loss = l1 + KL_WEIGHT * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step:5d}  l1 {l1.item():.4f}  kl {kl.item():8.1f}  {time.perf_counter() - start:6.1f}s", flush=True)
    seconds = time.perf_counter() - start

    vae.eval()
    train_psnr = {name: psnr(vae, p) for name, p in zip(TRAIN_PHOTOS, photos)}
    heldout_psnr = psnr(vae, heldout)
    mean, std = latent_stats(vae, photos)
    report = {
        "train_seconds": round(seconds, 1),
        "steps": args.steps,
        "train_psnr_mean": round(sum(train_psnr.values()) / len(train_psnr), 2),
        "train_psnr": {k: round(v, 2) for k, v in train_psnr.items()},
        "heldout_psnr": {HELDOUT_PHOTO[0]: round(heldout_psnr, 2)},
        "latent_mean": round(mean, 4),
        "latent_std": round(std, 4),
    }
    print(json.dumps(report, indent=2))

    metadata = {
        "format": "pt",
        "scaling_factor": f"{1.0 / std:.6f}",
        "shift_factor": f"{mean:.6f}",
        "config": json.dumps(TINY_VAE_CONFIG, sort_keys=True),
        "seed": str(SEED),
        "steps": str(args.steps),
        "init": args.init.name if args.init else "random",
        "lr": str(args.lr),
        "crop": str(CROP),
        "batch": str(BATCH),
        "kl_weight": str(KL_WEIGHT),
        "torch": torch.__version__,
        "train_photos": json.dumps({f"skimage.data.{k}": v for k, v in TRAIN_PHOTOS.items()}),
        "heldout_photo": f"skimage.data.{HELDOUT_PHOTO[0]}: {HELDOUT_PHOTO[1]}",
        "report": json.dumps(report, sort_keys=True),
    }
    from safetensors.torch import save_file

    state = {k: v.detach().to(torch.float16).contiguous() for k, v in vae.state_dict().items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(args.out), metadata=metadata)
    print(f"saved {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
