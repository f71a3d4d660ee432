"""Tests of MPJPE, PA-MPJPE and the Procrustes alignment."""

import math

import numpy as np
import pytest
import torch

from unipose.metrics import mpjpe, pa_mpjpe, procrustes_align
from unipose.rotations import axis_angle_to_matrix


NUM_JOINTS = 22


def _skeletons(batch: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    """Random joint clouds about a metre across, `(batch, 22, 3)`."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, NUM_JOINTS, 3, generator=generator, dtype=torch.float64) - 0.5).to(dtype)


def _similar_copies(target: torch.Tensor, seed: int) -> torch.Tensor:
    """Each skeleton rotated, scaled and translated at random."""
    generator = torch.Generator().manual_seed(seed)
    batch = target.shape[0]
    rotation = axis_angle_to_matrix(torch.randn(batch, 3, generator=generator, dtype=torch.float64))
    scale = 0.5 + 1.5 * torch.rand(batch, 1, 1, generator=generator, dtype=torch.float64)
    shift = torch.randn(batch, 1, 3, generator=generator, dtype=torch.float64)
    return (scale * target.double() @ rotation.transpose(-1, -2) + shift).to(target.dtype)


def test_pa_mpjpe_of_a_similar_copy_is_zero():
    target = _skeletons(16, seed=0)
    pred = _similar_copies(target, seed=1)
    errors = pa_mpjpe(pred, target, reduce=False)
    assert errors.shape == (16,)
    assert float(errors.max()) < 1e-4
    np.testing.assert_allclose(procrustes_align(pred, target).numpy(), target.numpy(), atol=1e-9)
    # The same in float32 (within float32 precision) and for numpy input.
    assert pa_mpjpe(pred.float(), target.float()) < 1e-2
    assert pa_mpjpe(pred.numpy(), target.numpy()) < 1e-4
    # ...while MPJPE sees the rotation and scale.
    assert mpjpe(pred, target) > 10


def test_pa_mpjpe_does_not_align_by_a_reflection():
    target = _skeletons(8, seed=2)
    mirrored = target * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    # A mirror image is not a rotated copy of a random (chiral) joint cloud: some error must remain.
    assert float(pa_mpjpe(mirrored, target, reduce=False).min()) > 1.0
    aligned = procrustes_align(mirrored, target)
    centred_in = mirrored - mirrored.mean(1, keepdim=True)
    centred_out = aligned - aligned.mean(1, keepdim=True)
    # The map applied is a positive multiple of a proper rotation: it keeps the handedness of the cloud.
    solution = torch.linalg.lstsq(centred_in, centred_out).solution
    assert bool((torch.linalg.det(solution) > 0).all())


def test_pa_mpjpe_is_invariant_to_a_similarity_of_the_prediction():
    target = _skeletons(8, seed=3)
    pred = target + 0.05 * _skeletons(8, seed=4)
    expected = pa_mpjpe(pred, target, reduce=False)
    torch.testing.assert_close(pa_mpjpe(_similar_copies(pred, seed=5), target, reduce=False), expected)
    assert float(expected.min()) > 0


def test_mpjpe_matches_a_hand_computation():
    target = _skeletons(5, seed=6).numpy()
    pred = target + 0.03 * _skeletons(5, seed=7).numpy()
    expected = []
    for p, t in zip(pred, target):
        distances = [math.dist(p[j] - p[0], t[j] - t[0]) for j in range(NUM_JOINTS)]
        expected.append(1000 * sum(distances) / NUM_JOINTS)
    np.testing.assert_allclose(mpjpe(pred, target, reduce=False), expected, rtol=1e-12)
    assert mpjpe(pred, target) == pytest.approx(np.mean(expected), rel=1e-12)
    without_alignment = [1000 * np.linalg.norm(p - t, axis=-1).mean() for p, t in zip(pred, target)]
    unaligned = mpjpe(pred, target, root_index=None, reduce=False)
    np.testing.assert_allclose(unaligned, without_alignment, rtol=1e-12)


def test_mpjpe_root_alignment_removes_translation_only():
    target = _skeletons(4, seed=8)
    shifted = target + torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    assert float(mpjpe(shifted, target)) < 1e-9
    assert float(mpjpe(shifted, target, root_index=None)) == pytest.approx(1000 * math.sqrt(0.09 + 1 + 4))
    rotated = _similar_copies(target, seed=9)
    assert float(mpjpe(rotated, target)) > 1.0


def test_array_types_shapes_and_dtypes():
    target = _skeletons(3, seed=10, dtype=torch.float32)
    pred = target + 0.01
    assert isinstance(mpjpe(pred.numpy(), target.numpy()), float)
    assert isinstance(pa_mpjpe(pred.numpy(), target.numpy(), reduce=False), np.ndarray)
    result = mpjpe(pred, target)
    assert isinstance(result, torch.Tensor) and result.dtype == torch.float32 and result.ndim == 0
    # One skeleton without a batch axis, and extra leading axes.
    assert pa_mpjpe(pred[0], target[0], reduce=False).shape == ()
    leading = (1, 3, NUM_JOINTS, 3)
    assert mpjpe(pred.reshape(leading), target.reshape(leading), reduce=False).shape == (1, 3)
    assert procrustes_align(pred.numpy(), target.numpy()).dtype == np.float32


def test_metrics_are_differentiable():
    target = _skeletons(2, seed=11)
    pred = (target + 0.02 * _skeletons(2, seed=12)).requires_grad_()
    (mpjpe(pred, target) + pa_mpjpe(pred, target)).backward()
    assert pred.grad is not None and bool(torch.isfinite(pred.grad).all())
    assert float(pred.grad.abs().sum()) > 0


def test_degenerate_prediction_gives_a_finite_error():
    target = _skeletons(2, seed=13)
    collapsed = torch.zeros_like(target)
    aligned = procrustes_align(collapsed, target)
    torch.testing.assert_close(aligned, target.mean(1, keepdim=True).expand_as(target))
    assert bool(torch.isfinite(pa_mpjpe(collapsed, target, reduce=False)).all())


def test_bad_input_raises_errors_naming_the_argument():
    target = _skeletons(2, seed=14)
    with pytest.raises(ValueError, match="`pred_joints`"):
        mpjpe(target[..., :2], target)
    with pytest.raises(ValueError, match="`target_joints`"):
        pa_mpjpe(target, target[0, 0])
    with pytest.raises(ValueError, match=r"same shape.*\(2, 22, 3\).*\(2, 21, 3\)"):
        pa_mpjpe(target, target[:, :21])
    with pytest.raises(ValueError, match="`pred_joints`.*NaN"):
        procrustes_align(torch.full_like(target, float("nan")), target)
    with pytest.raises(ValueError, match="`root_index`"):
        mpjpe(target, target, root_index=NUM_JOINTS)
    with pytest.raises(TypeError, match="`pred_joints`"):
        mpjpe("joints", target)
