"""Record how the published UniPose writes conversations as token ids, for `tests/test_release_parity.py`.

The release's training and inference build each prompt with LLaVA's `mistral_instruct` conversation and tokenize it
with LLaVA's `tokenizer_image_token` and the release's own (slow) tokenizer. This script does the same for a few
text conversations (with answers, and with several turns) and writes the messages and the ids as JSON; a converted
release's chat template must give the same ids.

It runs in the environment of the published code (`parity/README.md`) with LLaVA's source (`--llava-src`, the folder
holding the `llava` package) and imports nothing of `unipose`.

    python parity/record_chat_ids.py --llava-src LLaVA --tokenizer cache/unipose --out chat_ids.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

# Each: the turns, user first; a final `None` answer is the generation prompt.
CONVERSATIONS = [
    ["Describe the pose of this person.", "The person kneels on the right knee.", "Now raise both arms.", None],
    ["Describe the pose of this person.", "The person stands upright."],
    ["How should the first pose change?", "Bend the left elbow.", "And then?", "Lift the right leg.", "Done?", None],
]


def _module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llava-src", type=Path, required=True, help="the folder holding LLaVA's `llava` package")
    parser.add_argument("--tokenizer", type=Path, required=True, help="the release's folder (its tokenizer files)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    sys.path.insert(0, str(args.llava_src.resolve()))
    conversation = _module(args.llava_src / "llava" / "conversation.py", "llava_conversation")
    from llava.mm_utils import tokenizer_image_token
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(args.tokenizer), use_fast=False)  # as LLaVA's loader does
    records = []
    for turns in CONVERSATIONS:
        conv = conversation.conv_templates["mistral_instruct"].copy()
        for index, text in enumerate(turns):
            conv.append_message(conv.roles[index % 2], text)
        prompt = conv.get_prompt()
        messages = [
            {"role": "user" if index % 2 == 0 else "assistant", "content": text}
            for index, text in enumerate(turns)
            if text is not None
        ]
        records.append({"messages": messages, "prompt": prompt, "ids": tokenizer_image_token(prompt, tokenizer)})
    args.out.write_text(json.dumps(records, indent=1) + "\n")
    print(f"{len(records)} conversations -> {args.out}")


if __name__ == "__main__":
    main()
