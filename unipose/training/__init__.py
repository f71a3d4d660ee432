"""Training stages 1-3 of UniPose with TRL: instruction templates, task mixtures, the collator and the
trainer.

The modules import `trl` and `peft` (the `train` extra) only where they need them: `instructions` and `tasks`
work without them.
"""

from .instructions import INSTRUCTION_TEMPLATES, SIMPLE_TEMPLATES, TASKS, render_template, templates_for
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
    "INSTRUCTION_TEMPLATES",
    "SIMPLE_TEMPLATES",
    "TASKS",
    "TaskMixtureComponent",
    "build_example",
    "build_task_mixture",
    "render_template",
    "task_examples",
    "templates_for",
    "text_only_conversations",
]
