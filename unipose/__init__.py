"""UniPose: one multimodal language model for 3D human poses, native to Hugging Face Transformers.

`import unipose` registers the UniPose classes with transformers' Auto classes, so that `AutoConfig`,
`AutoModel`, `AutoModelForCausalLM`, `AutoModelForImageTextToText` and `AutoProcessor` load UniPose
checkpoints without `trust_remote_code` (saved checkpoints also carry their code for users who do not
install this package).
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
)

from .configuration_pose_vqvae import PoseVQVAEConfig
from .configuration_unipose import UniPoseConfig
from .modeling_pose_vqvae import PoseVQVAE
from .modeling_unipose import UniPoseForConditionalGeneration, UniPoseModel, UniPosePreTrainedModel
from .processing_unipose import UniPoseProcessor


__version__ = "0.1.0"

AutoConfig.register(UniPoseConfig.model_type, UniPoseConfig)
AutoConfig.register(PoseVQVAEConfig.model_type, PoseVQVAEConfig)
AutoModel.register(PoseVQVAEConfig, PoseVQVAE)
# Every model Auto class gives the model that can `generate`.
for _auto_class in (AutoModel, AutoModelForCausalLM, AutoModelForImageTextToText):
    _auto_class.register(UniPoseConfig, UniPoseForConditionalGeneration)
AutoProcessor.register(UniPoseConfig, UniPoseProcessor)

__all__ = [
    "PoseVQVAE",
    "PoseVQVAEConfig",
    "UniPoseConfig",
    "UniPoseForConditionalGeneration",
    "UniPoseModel",
    "UniPosePreTrainedModel",
    "UniPoseProcessor",
]
