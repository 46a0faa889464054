"""Training-loader throughput: our clip store + vectorised clip augmentation vs. plain JPEG frame
folders read the usual way (PIL per frame, per-frame PIL RandAugment, tensor crop), as the
MAE-DFER/VideoMAE DFEW loader does. Both produce 16 x 160^2 training clips with full augmentation
(random resized crop, flip, RandAugment rand-m7-n4-mstd0.5-inc1) from the same DFEW-like clips
(256 x 256 JPEG frames, real face texture), measured in the same run. Also prints the store's bytes
per clip and the projected store size for VoxCeleb2.

The fine-tuning clip in both RandAugment orders (`finetune.randaug_order`): `before_crop` (the
authors' order, the default) against `after_crop` (the order before it), timed alternately in the
same process (`--finetune-only` skips the pre-training and baseline measurements).

Pre-training (`--pretrain-only` skips the rest): VIEWS per second per core of the dual-modal MAE
video loader at the paper shape (16 x 160^2 from the 176-px store, stride 4, the authors' short side
192 -> random resized crop 160), with repeated sampling (each clip decoded once, k views) at k = 1
and the paper's k = 4, and where one view's time goes: decode (store read + JPEG), augmentation
(one warp per frame), collation (stacking the batch); then the views cut on the device from the
same clips stored as JPEG frames and as H.264 groups (`data.store.codec`), timed alternately.

`python bench/loader.py [--clips 16] [--frames 80] [--items 160] [--views 4] [--pretrain-only]
[--finetune-only]`
"""

from __future__ import annotations

import argparse
import glob
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from store_formats import face_clip  # noqa: E402

from unilearn.config.training import FinetuneConfig  # noqa: E402
from unilearn.data.clip_dataset import ClipDataset  # noqa: E402
from unilearn.data.preprocess import PreprocessSettings, preprocess  # noqa: E402
from unilearn.data.store import load_store_table  # noqa: E402
from unilearn.data.transforms import TrainClipTransform  # noqa: E402

NUM_FRAMES, STRIDE, INPUT, SHORT_SIDE = 16, 4, 160, 176
RANDAUG = "rand-m7-n4-mstd0.5-inc1"
VOX_CLIPS, VOX_SECONDS, VOX_FPS = 1_092_009, 7.8, 25


def make_inputs(root: Path, n_clips: int, n_frames: int) -> Path:
    """DFEW-like frame folders (256 x 256 JPEG, quality 95) and their manifest."""
    rows = []
    for i in range(n_clips):
        folder = root / "Clip" / "jpg_256" / f"{i + 1:05d}"
        folder.mkdir(parents=True)
        for t, frame in enumerate(face_clip(n_frames, 256, seed=i)):
            Image.fromarray(frame).save(folder / f"{i + 1:05d}_{t + 1:05d}.jpg", quality=95)
        rows.append({"dataset": "dfew", "clip_id": f"{i + 1:05d}", "path": str(folder), "media": "frames", "label": i % 7,
                     "label_name": "", "fold": 1, "split": "train", "n_frames": n_frames, "source_file": "bench"})  # fmt: skip
    manifest = root / "manifests" / "dfew.parquet"
    manifest.parent.mkdir()
    df = pd.DataFrame(rows).astype({"label": "int16", "fold": "Int8", "n_frames": "int32"})
    df.to_parquet(manifest)
    return manifest


class FrameFolderBaseline:
    """The usual DFER loader, written for this benchmark: glob + PIL per frame, resize each frame to
    160 x 160, RandAugment per frame with one draw of ops (timm's PIL ops), ToTensor + normalise per
    frame, random resized crop + flip on the float clip (MAE-DFER's VideoClsDatasetFrame recipe)."""

    def __init__(self, folders: list[str]) -> None:
        from timm.data.auto_augment import rand_augment_transform

        self.folders = folders
        self.randaug = rand_augment_transform(
            RANDAUG, {"translate_const": int(INPUT * 0.45), "img_mean": (124, 116, 104)}
        )
        self.mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
        self.std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)

    def __getitem__(self, index: int) -> torch.Tensor:
        import torch.nn.functional as F
        from torchvision.transforms import RandomResizedCrop
        from torchvision.transforms.functional import to_tensor

        frames = sorted(glob.glob(os.path.join(self.folders[index], "*.jpg")))
        span = NUM_FRAMES * STRIDE
        end = np.random.randint(span, len(frames))
        idx = np.clip(np.linspace(end - span, end, NUM_FRAMES), end - span, end - 1).astype(int)
        imgs = []
        for i in idx:
            with open(frames[i], "rb") as f:
                imgs.append(Image.open(f).convert("RGB").resize((INPUT, INPUT), Image.BILINEAR))
        for op in np.random.choice(self.randaug.ops, self.randaug.num_layers):  # one draw per clip
            if random.random() > op.prob:
                continue
            magnitude = min(
                max(random.gauss(op.magnitude, op.magnitude_std), 0), op.magnitude_max or 10
            )
            args = op.level_fn(magnitude, op.hparams) if op.level_fn else ()
            imgs = [op.aug_fn(img, *args, **op.kwargs) for img in imgs]
        clip = torch.stack(
            [(to_tensor(img) - self.mean) / self.std for img in imgs], dim=1
        )  # C T H W
        i, j, h, w = RandomResizedCrop.get_params(clip[:, 0], (0.08, 1.0), (3 / 4, 4 / 3))
        clip = F.interpolate(
            clip[:, :, i : i + h, j : j + w],
            size=(INPUT, INPUT),
            mode="bilinear",
            align_corners=False,
        )
        return clip.flip(-1) if random.random() < 0.5 else clip


def rate(get, n_items: int, n_total: int) -> tuple[float, float]:
    """(clips per wall-clock second, clips per CPU second of this process). On a shared machine
    the CPU-time rate is the fairer "per core" number: it does not count time other jobs ran."""
    for i in range(3):
        get(i % n_total)
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(n_items):
        get(i % n_total)
    return n_items / (time.perf_counter() - wall), n_items / (time.process_time() - cpu)


def train_transform(size: int, order: str = "before_crop") -> TrainClipTransform:
    """The fine-tuning augmentation at `size`, the config's crop and erasing."""
    ft = FinetuneConfig()
    return TrainClipTransform(size, RANDAUG, scale=ft.crop_scale, erasing=ft.random_erasing,
                              randaug_order=order)  # fmt: skip


def order_rates(store: Path, table, n_items: int, rounds: int = 4) -> dict[str, float]:
    """Clips per CPU second of the fine-tuning dataset with RandAugment before and after the crop,
    measured in alternating rounds (load on a shared machine drifts) and summed per order."""
    sets = {
        order: ClipDataset(store, table, mode="train", num_frames=NUM_FRAMES, input_size=INPUT,
                           frame_stride=STRIDE,
                           transform=train_transform(INPUT, order))
        for order in ("after_crop", "before_crop")
    }  # fmt: skip
    items, cpu = dict.fromkeys(sets, 0), dict.fromkeys(sets, 0.0)
    per_round = max(n_items // rounds, 4)
    for r in range(rounds):
        for order, ds in sets.items():
            start = time.process_time()
            for i in range(per_round):  # the same seeds in both orders
                ds[(i % len(ds), r * per_round + i)]
            cpu[order] += time.process_time() - start
            items[order] += per_round
    return {order: items[order] / cpu[order] for order in sets}


def loader_rate(dataset, n_items: int, workers: int) -> float:
    from torch.utils.data import DataLoader

    from unilearn.data.loaders import _worker_init

    items = [(i % len(dataset), i) for i in range(n_items + 8 * workers)]
    loader = DataLoader(
        dataset,
        batch_size=8,
        sampler=items,
        num_workers=workers,
        worker_init_fn=_worker_init,
        persistent_workers=True,
        prefetch_factor=4,
    )
    it = iter(loader)
    for _ in range(workers):
        next(it)
    start, count = time.perf_counter(), 0
    for batch in it:
        count += len(batch[0])
    return count / (time.perf_counter() - start)


def pretrain_rates(
    store: Path, table, n_items: int, views: int, on_device: bool = False
) -> dict[str, float]:
    """Views per CPU second of the pre-training video path with `views` per decoded clip, and the
    CPU milliseconds per view of decode, augmentation and collation (one process = one core)."""
    from unilearn.data.batches import collate_pretrain
    from unilearn.data.frame_sampling import pretrain_indices
    from unilearn.data.transforms import ResizedCropPretrainTransform

    aug = ResizedCropPretrainTransform(INPUT, (0.08, 1.0), short_side=round(1.2 * INPUT))
    ds = ClipDataset(store, table, mode="pretrain", num_frames=NUM_FRAMES, input_size=INPUT,
                     frame_stride=STRIDE, transform=aug, views=views,
                     crop_on_device=on_device)  # fmt: skip
    keys, lengths = table["store_key"].tolist(), table["n_frames"].tolist()
    clips = max(n_items // views, 4)
    rng = random.Random(0)
    decode = augment = 0.0
    for i in range(clips):  # the parts, timed apart
        t = time.process_time()
        frames = ds.store.read_numpy(
            keys[i % len(keys)], pretrain_indices(lengths[i % len(keys)], NUM_FRAMES, STRIDE, rng)
        )
        decode += time.process_time() - t
        t = time.process_time()
        if not on_device:  # on the device the loader only draws the boxes
            for _ in range(views):
                aug(frames, random.Random(rng.getrandbits(64)))
        augment += time.process_time() - t
    collate = float("nan")
    if not on_device:  # stacking separately augmented items (what the batch path saves)
        batch = [(ds[(i % len(ds), i)][0], -1, i, "video") for i in range(max(192 // views, 1))]
        t = time.process_time()
        for _ in range(3):
            collate_pretrain(batch)
        collate = (time.process_time() - t) / 3 / (len(batch) * views)
    # end to end as a DataLoader worker runs it: the batch from the dataset, then its collation
    from unilearn.data.batches import SourceDataset

    source = SourceDataset({"video": ds})
    per_batch = max(192 // views, 1)
    t = time.process_time()
    for start in range(0, clips, per_batch):
        items = [("video", i % len(ds), i) for i in range(start, min(start + per_batch, clips))]
        collate_pretrain(source.__getitems__(items))
    total = time.process_time() - t
    n_views = clips * views
    return {
        "views_per_cpu_s": n_views / total,
        "decode_ms": 1e3 * decode / n_views,
        "augment_ms": 1e3 * augment / n_views,
        "collate_ms": 1e3 * collate,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--frames", type=int, default=80)
    ap.add_argument(
        "--items",
        type=int,
        default=160,
        help="clips timed per measurement (ours); the baseline gets a quarter",
    )
    ap.add_argument(
        "--workers", type=int, default=2, help="DataLoader workers for the multi-core measurement"
    )
    ap.add_argument(
        "--views", type=int, default=4, help="repeated views per decoded clip (paper: 4)"
    )
    ap.add_argument("--pretrain-only", action="store_true", help="only the pre-training loader")
    ap.add_argument("--finetune-only", action="store_true",
                    help="only the fine-tuning clip in both RandAugment orders")  # fmt: skip
    args = ap.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        manifest = make_inputs(root, args.clips, args.frames)
        summary = preprocess(
            manifest,
            root / "store",
            PreprocessSettings(
                short_side=SHORT_SIDE, frame_stride=1, framing="default", codec="jpeg"
            ),
            workers=0,
            progress=False,
        )
        prep = time.perf_counter() - t0
        table = load_store_table(root / "store", "dfew", 1, "train")
        orders = order_rates(root / "store", table, args.items)
        print(f"fine-tuning clip, {NUM_FRAMES} x {INPUT}^2, crop + flip + {RANDAUG} + store read, "
              "per CPU second (one process = one core), the two orders timed alternately:")  # fmt: skip
        for order, r in orders.items():
            print(f"  randaug_order {order:12s} {r:8.1f} clips/s per core")
        print(f"  before_crop / after_crop: {orders['before_crop'] / orders['after_crop']:.3f}x")
        if args.finetune_only:
            return
        one = pretrain_rates(root / "store", table, args.items, 1)
        many = pretrain_rates(root / "store", table, args.items, args.views)
        device = pretrain_rates(root / "store", table, args.items, args.views, on_device=True)
        print(f"pre-training video loader, {NUM_FRAMES} x {INPUT}^2 views (stride {STRIDE}, short side 192 -> "
              f"random resized crop {INPUT}), per CPU second (one process = one core):")  # fmt: skip
        print(
            "  views/clip                      views/s per core   ms per view: decode   augment   stack items"
        )
        rows = ((f"{1:d}, cut in the loader", one), (f"{args.views:d}, cut in the loader", many),
                (f"{args.views:d}, cut on the device", device))  # fmt: skip
        for name, r in rows:
            print(f"  {name:28s} {r['views_per_cpu_s']:18.1f} {r['decode_ms']:20.2f} {r['augment_ms']:9.2f} {r['collate_ms']:13.2f}")  # fmt: skip
        print("  (views/s end to end: the batch as a worker builds it, written in place; 'stack items' is the copy that saves)")  # fmt: skip
        print(f"  repeated sampling x{args.views}: {many['views_per_cpu_s'] / one['views_per_cpu_s']:.2f}x the views/s of one view per clip; "
              f"cut on the device {device['views_per_cpu_s'] / one['views_per_cpu_s']:.2f}x (goal >= 820 views/s per core)")  # fmt: skip
        # the same clips stored as H.264 groups (`data.store.codec: h264`), timed alternately
        preprocess(manifest, root / "store-h264",
                   PreprocessSettings(short_side=SHORT_SIDE, frame_stride=1, framing="default",
                                      codec="h264"), workers=0, progress=False)  # fmt: skip
        h264_table = load_store_table(root / "store-h264", "dfew", 1, "train")
        rates = {"jpeg": [], "h264": []}
        for _ in range(2):
            for codec, (store, t) in {"jpeg": (root / "store", table),
                                      "h264": (root / "store-h264", h264_table)}.items():  # fmt: skip
                rates[codec].append(
                    pretrain_rates(store, t, args.items, args.views, on_device=True)
                )
        mean = {c: {k: sum(r[k] for r in rs) / len(rs) for k in rs[0]} for c, rs in rates.items()}
        for codec, r in mean.items():
            print(f"  {args.views:d}, cut on the device, {codec:4s} store {r['views_per_cpu_s']:10.1f} views/s per core, decode {r['decode_ms']:.2f} ms per view")  # fmt: skip
        print(f"  h264 / jpeg store: {mean['h264']['views_per_cpu_s'] / mean['jpeg']['views_per_cpu_s']:.2f}x the views/s per core")  # fmt: skip
        if args.pretrain_only:
            return
        ours = ClipDataset(
            root / "store",
            table,
            mode="train",
            num_frames=NUM_FRAMES,
            input_size=INPUT,
            frame_stride=STRIDE,
            transform=train_transform(INPUT),
        )
        baseline = FrameFolderBaseline(table["path"].tolist())
        x = ours[(0, 0)][0]
        assert x.shape == (3, NUM_FRAMES, INPUT, INPUT) and x.dtype == torch.uint8
        assert baseline[0].shape == (3, NUM_FRAMES, INPUT, INPUT)

        base_a = rate(baseline.__getitem__, max(args.items // 4, 8), len(table))
        ours_wall, ours_cpu = rate(lambda i: ours[(i, i)], args.items, len(table))
        base_b = rate(
            baseline.__getitem__, max(args.items // 4, 8), len(table)
        )  # bracket: load drifts
        base_wall, base_cpu = (base_a[0] + base_b[0]) / 2, (base_a[1] + base_b[1]) / 2
        multi = loader_rate(ours, args.items, args.workers) if args.workers > 0 else float("nan")

        shard_bytes = sum(p.stat().st_size for p in (root / "store" / "dfew").glob("shard-*.ulc"))
        per_clip, per_frame = shard_bytes / args.clips, shard_bytes / (args.clips * args.frames)
        folder_bytes = sum(p.stat().st_size for p in (root / "Clip").rglob("*.jpg")) / args.clips
        vox_frames = VOX_SECONDS * VOX_FPS
        vox_bytes = VOX_CLIPS * vox_frames * per_frame

    print(f"input: {args.clips} DFEW-like clips x {args.frames} frames, 256x256 JPEG q95 (real face texture); "
          f"store: {SHORT_SIDE}px short side, JPEG q90 shards; preprocessing took {prep:.1f} s ({summary.stored_now} clips)")  # fmt: skip
    print(
        f"training clip: {NUM_FRAMES} x {INPUT}^2, random resized crop + flip + {RANDAUG}; one process = one core"
    )
    print("  clips/s per core                            wall clock   per CPU second")
    print(f"  frame folders, PIL per frame (baseline): {base_wall:10.1f} {base_cpu:16.1f}")
    print(f"  clip store, vectorised clip aug (ours):  {ours_wall:10.1f} {ours_cpu:16.1f}")
    print(f"  ratio ours / baseline:                   {ours_wall / base_wall:9.1f}x {ours_cpu / base_cpu:15.1f}x   (target >= 5x and >= 100 clips/s per core)")  # fmt: skip
    if args.workers > 0:
        print(f"  ours through a DataLoader, {args.workers} workers:    {multi:7.1f} clips/s ({multi / args.workers:.1f} per core; machine has {os.cpu_count()} cores, shared)")  # fmt: skip
    print(f"store: {per_clip / 1024:.0f} KiB per {args.frames}-frame clip ({per_frame / 1024:.1f} KiB per frame) vs {folder_bytes / 1024:.0f} KiB as 256px JPEG frames")  # fmt: skip
    print(f"VoxCeleb2 at full scale: {VOX_CLIPS:,} clips x {VOX_SECONDS} s x {VOX_FPS} fps = {vox_frames:.0f} frames/clip -> "
          f"{vox_bytes / 1e12:.2f} TB at {SHORT_SIDE}px ({vox_bytes / 1e12 * (112 / 176) ** 2:.2f} TB at 112px)")  # fmt: skip


if __name__ == "__main__":
    main()
