"""Training stages 1-3 of UniPose with TRL: task mixtures (from the task formats of `unipose.task_formats`),
the collator and the trainer.

The modules import `trl` and `peft` (the `train` extra) only where they need them: `tasks` works without them.
"""

from .tasks import (
    CONVERSATION_FEATURES,
    TaskMixtureComponent,
    build_example,
    build_task_mixture,
    task_examples,
    text_only_conversations,
)

__all__ = [
    "CONVERSATION_FEATURES",
    "TaskMixtureComponent",
    "build_example",
    "build_task_mixture",
    "task_examples",
    "text_only_conversations",
]
