"""Reference throughput: the same augmentation recipe with batchgenerators 0.25 (the library
nnU-Net v1 trains with), one patch per call, single thread. Prints the same tab-separated
lines as `cargo bench -p flow-patches --bench augment` (wall-clock and CPU-time rates).

Interpolation orders are matched to flow (image linear, labels nearest, low-res upsampling
linear) unless --nnunet-orders is given (image cubic, labels linear, low-res upsampling cubic,
as nnU-Net v1 configures them).

Usage: python bg_augment.py [--nnunet-orders] [PATCH SOURCE PER_BLOCK BLOCKS]...
"""
import sys
import time

import numpy as np
from batchgenerators.transforms.abstract_transforms import Compose
from batchgenerators.transforms.color_transforms import (
    BrightnessMultiplicativeTransform,
    ContrastAugmentationTransform,
    GammaTransform,
)
from batchgenerators.transforms.noise_transforms import GaussianBlurTransform, GaussianNoiseTransform
from batchgenerators.transforms.resample_transforms import SimulateLowResolutionTransform
from batchgenerators.transforms.spatial_transforms import MirrorTransform, SpatialTransform


def recipe(patch, p, orders):
    """nnU-Net v1 (nnUNetTrainerV2) data augmentation, probabilities from `p`."""
    order_data, order_seg, order_up = orders
    a = 30 / 360 * 2 * np.pi
    scale = (0.8, 1.25) if p["all"] else (0.7, 1.4)
    t = [
        SpatialTransform(
            patch, patch_center_dist_from_border=None, do_elastic_deform=False,
            do_rotation=p["rot"] > 0, angle_x=(-a, a), angle_y=(-a, a), angle_z=(-a, a), p_rot_per_axis=1,
            do_scale=p["scale"] > 0, scale=scale, border_mode_data="constant", border_cval_data=0,
            order_data=order_data, border_mode_seg="constant", border_cval_seg=0, order_seg=order_seg,
            random_crop=False, p_el_per_sample=0, p_scale_per_sample=p["scale"], p_rot_per_sample=p["rot"],
            independent_scale_for_each_axis=False,
        )
    ]
    if p["noise"] > 0:
        t.append(GaussianNoiseTransform(p_per_sample=p["noise"]))
    if p["blur"] > 0:
        # nnU-Net adds p_per_channel=0.5; flow applies the blur to its one channel with p 0.2.
        t.append(GaussianBlurTransform((0.5, 1.0), different_sigma_per_channel=True, p_per_sample=p["blur"], p_per_channel=1))
    if p["bright"] > 0:
        t.append(BrightnessMultiplicativeTransform(multiplier_range=(0.75, 1.25), p_per_sample=p["bright"]))
    if p["contrast"] > 0:
        t.append(ContrastAugmentationTransform(p_per_sample=p["contrast"]))
    if p["lowres"] > 0:
        t.append(SimulateLowResolutionTransform(zoom_range=(0.5, 1), per_channel=True, p_per_channel=1,
                                                order_downsample=0, order_upsample=order_up,
                                                p_per_sample=p["lowres"], ignore_axes=None))
    if p["gamma_inv"] > 0:
        t.append(GammaTransform((0.7, 1.5), True, True, retain_stats=True, p_per_sample=p["gamma_inv"]))
    if p["gamma"] > 0:
        t.append(GammaTransform((0.7, 1.5), False, True, retain_stats=True, p_per_sample=p["gamma"]))
    if p["mirror"] > 0:
        t.append(MirrorTransform((0, 1, 2)))
    return Compose(t)


NONE = dict(rot=0, scale=0, noise=0, blur=0, bright=0, contrast=0, lowres=0, gamma_inv=0, gamma=0, mirror=0, all=False)
MODES = {
    "recipe": dict(rot=0.2, scale=0.2, noise=0.1, blur=0.2, bright=0.15, contrast=0.15, lowres=0.25,
                   gamma_inv=0.1, gamma=0.3, mirror=1, all=False),
    "all": dict(rot=1, scale=1, noise=1, blur=1, bright=1, contrast=1, lowres=1, gamma_inv=1, gamma=1, mirror=1, all=True),
    "none": NONE,
    "spatial": {**NONE, "rot": 1, "scale": 1, "all": True},
    "noise": {**NONE, "noise": 1},
    "blur": {**NONE, "blur": 1},
    "contrast": {**NONE, "contrast": 1},
    "low_res": {**NONE, "lowres": 1},
    "gamma": {**NONE, "gamma": 1},
    "mirror": {**NONE, "mirror": 1},
}


def run(patch, source, per_block, blocks, orders, tag):
    rng = np.random.default_rng(0)
    data = rng.uniform(-1, 1, size=(1, 1, source, source, source)).astype(np.float32)
    z, y, x = np.meshgrid(*[np.arange(source)] * 3, indexing="ij")
    seg = (((z // 8) + (y // 8) + (x // 8)) % 3).astype(np.float32)[None, None]
    np.random.seed(1)
    for name, p in MODES.items():
        tr = recipe((patch,) * 3, p, orders)
        tr(data=data.copy(), seg=seg.copy())  # warm-up
        rates, cpu_rates = [], []
        for _ in range(blocks):
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(per_block):
                tr(data=data, seg=seg)
            rates.append(per_block / (time.perf_counter() - t0))
            cpu_rates.append(per_block / (time.process_time() - c0))
        print(f"{tag}\t{name}\t{patch}\t{source}\t1\t{np.median(rates):.2f}\t{np.median(cpu_rates):.2f}", flush=True)


def main():
    args = sys.argv[1:]
    nnunet = "--nnunet-orders" in args
    nums = [int(a) for a in args if a.isdigit()]
    configs = [nums[i:i + 4] for i in range(0, len(nums) - 3, 4)] or [[64, 96, 20, 5], [128, 192, 4, 5]]
    orders = (3, 1, 3) if nnunet else (1, 0, 1)
    tag = "batchgenerators-nnunet-orders" if nnunet else "batchgenerators"
    print("impl\tmode\tpatch\tsource\tthreads\tpatches_per_s\tpatches_per_cpu_s")
    for patch, source, per_block, blocks in configs:
        run(patch, source, per_block, blocks, orders, tag)


if __name__ == "__main__":
    main()
