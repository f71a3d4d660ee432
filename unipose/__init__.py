"""UniPose: one multimodal language model for 3D human poses, native to Hugging Face Transformers."""

__version__ = "0.1.0"
