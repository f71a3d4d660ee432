"""Record the published pose tokenizer as the published UniPose runs it: in bfloat16.

The release's inference casts its pose VQ-VAE to bfloat16 (weights, codebook and the input rotation matrices), so
the codes its language model reads, and was trained on, are the codes of bfloat16 arithmetic. This script runs the
release's own VQ-VAE that way and writes the input poses, their codes and the poses decoded from those codes, for
`tests/test_release_parity.py` (a converted tokenizer with `compute_dtype="bfloat16"` must give the same codes).

Like `record_reference.py`, it runs in the environment of the published code (`parity/README.md`; torch, numpy,
PyTorch Lightning and the release's `posegpt` package are enough here) and imports nothing of `unipose`. The VQ-VAE
constructor opens `cache/smpl_models/smplh/SMPLH_NEUTRAL.npz` under the working directory (`--workdir`); the file
`unipose body-model` writes is enough, encoding and decoding never use it.

    python parity/record_pose_tokenizer.py --unipose-src UniPose --workdir UniPose \\
        --config UniPose/configs/inference.py --checkpoint cache/pose_vqvae/best_MPJPE.ckpt \\
        --pose-files UniPose/assets/demo_smpl_rotmat_1.npy --out pose_tokenizer_bfloat16.safetensors
    # a test fixture (its VQ-VAE configuration comes from make_release_fixture.py):
    python parity/record_pose_tokenizer.py --unipose-src UniPose --workdir WORK --variant a \\
        --checkpoint tests/fixtures/release_a/pose_vqvae.ckpt --out tests/fixtures/release_a/pose_tokenizer_bfloat16.safetensors
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
from pathlib import Path

import numpy as np
import torch

NUM_GENERATED_POSES = 64


def _vqvae_config(args) -> dict:
    if args.variant is not None:
        sys.path.insert(0, str(Path(__file__).parent))
        import make_release_fixture

        return make_release_fixture._vqvae_config(make_release_fixture.VARIANTS[args.variant]["vqvae"])
    tree = ast.parse(Path(args.config).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "pose_vqvae_config" for t in node.targets):
            return ast.literal_eval(node.value)
    raise SystemExit(f"{args.config} assigns no `pose_vqvae_config`.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--unipose-src", type=Path, required=True, help="the release's source folder")
    parser.add_argument("--workdir", type=Path, required=True, help="holds cache/smpl_models/smplh/SMPLH_NEUTRAL.npz")
    parser.add_argument("--checkpoint", type=Path, required=True, help="the VQ-VAE's Lightning checkpoint")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="the release's inference config (its `pose_vqvae_config`)")
    source.add_argument("--variant", choices=("a", "b"), help="a fixture of make_release_fixture.py")
    parser.add_argument("--pose-files", nargs="*", default=[], type=Path, help="(22, 3, 3) rotation matrices")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    config = _vqvae_config(args)
    checkpoint = args.checkpoint.resolve()
    out = args.out.resolve()
    sys.path.insert(0, str(Path(__file__).parent))
    import record_reference

    poses = record_reference.generated_poses(NUM_GENERATED_POSES, seed=3)
    if args.pose_files:
        poses = np.concatenate([np.stack([np.load(f).astype(np.float32) for f in args.pose_files]), poses])
    poses = torch.as_tensor(poses, dtype=torch.float32)

    sys.path.insert(0, str(args.unipose_src.resolve()))
    os.chdir(args.workdir)
    from posegpt.models.base_module import build_model
    from posegpt.utils import load_checkpoint

    # As the release's loader and inference do: build, load, freeze, cast the whole module to bfloat16; the input
    # matrices are cast to bfloat16 too, one pose per call.
    vqvae = load_checkpoint(build_model(config), str(checkpoint)).eval().to(torch.bfloat16)
    codes, rotmat, axis_angle = [], [], []
    with torch.no_grad():
        for pose in poses:
            pose_codes = vqvae.encode(pose[None].to(torch.bfloat16))
            codes.append(pose_codes[0])
            rotmat.append(vqvae.decode(pose_codes, return_type="rotmat")[0].float())
            axis_angle.append(vqvae.decode(pose_codes, return_type="axis_angle")[0].float())

    from safetensors.torch import save_file

    tensors = {
        "poses": poses,
        "codes": torch.stack(codes).long(),
        "decoded_rotmat": torch.stack(rotmat),
        "decoded_axis_angle": torch.stack(axis_angle).view(len(poses), -1, 3),
    }
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out), metadata={"dtype": "bfloat16"})
    print(f"{len(poses)} poses -> {out}")


if __name__ == "__main__":
    main()
