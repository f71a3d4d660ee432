"""MPJPE and PA-MPJPE of SMPL-H body poses, as an `evaluate` module (`evaluate.load(evaluate_module("pose_error"))`).

The numbers are those of `unipose evaluate`: both call `unipose.metrics.pose_errors`.
"""

import datasets
import evaluate

from unipose.body_model import BodyJoints
from unipose.evaluation.paper_metrics import evaluate_module_info
from unipose.metrics import pose_errors

_DESCRIPTION = """
Mean per-joint position error of 3D human body poses, in millimetres: MPJPE after aligning the pelvis (joint 0),
and PA-MPJPE after a Procrustes (similarity) alignment. Poses are the 22 SMPL-H body joints' rotations (root
orientation first), given as axis-angle, 66 numbers per pose; joints come from the body model's forward kinematics
(the user's SMPL-H file through `body_model_path`, else the project's generated stand-in, whose numbers are not
comparable with published ones).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of 66 floats per pose): predicted poses, SMPL-H body axis-angle.
    references (`list` of 66 floats per pose): true poses, same layout.
    body_model_path (`str`, *optional*): an SMPL-H `.npz` file (`SMPLH_NEUTRAL.npz`); defaults to the generated one.
Returns:
    `MPJPE` and `PA-MPJPE` (`float`, millimetres), averaged over the poses.
Example:
    >>> import evaluate
    >>> from unipose.evaluation import evaluate_module
    >>> metric = evaluate.load(evaluate_module("pose_error"))
    >>> metric.compute(predictions=[[0.0] * 66], references=[[0.0] * 66])
    {'MPJPE': 0.0, 'PA-MPJPE': 0.0}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PoseError(evaluate.Metric):
    def _info(self):
        pose = datasets.Sequence(datasets.Value("float32"), length=66)
        return evaluate_module_info(_DESCRIPTION, _KWARGS_DESCRIPTION, datasets.Features({"predictions": pose, "references": pose}))

    def _compute(self, predictions, references, body_model_path=None):
        body = BodyJoints.from_body_model_file(body_model_path) if body_model_path is not None else None
        poses = [[list(p) for p in batch] for batch in (predictions, references)]
        return pose_errors(
            [_as_joint_rotations(p) for p in poses[0]], [_as_joint_rotations(p) for p in poses[1]], body=body
        )


def _as_joint_rotations(values: list) -> list:
    return [values[i : i + 3] for i in range(0, len(values), 3)]
