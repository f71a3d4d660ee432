"""`pipeline("image-text-to-text", ...)` on a saved UniPose checkpoint returns the text and the poses of each
answer, with the package, as remote code without it, and batched; and loading a saved checkpoint is quiet."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import pipeline

import unipose.pipeline_unipose as pipeline_module
from unipose.pipeline_unipose import UniPosePipeline
from unipose.testing import tiny_model_and_processor

MAX_NEW_TOKENS = 6
GENERATE = {"max_new_tokens": MAX_NEW_TOKENS, "generate_kwargs": {"do_sample": False}}


def describe(pose):
    return [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Describe this pose:"}, {"type": "pose", "pose": pose}],
        }
    ]


KNEEL = [
    {"role": "user", "content": "Generate the pose described as follows: a person kneeling."},
    {"role": "assistant", "content": "<p>"},
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A saved tiny checkpoint (model, then processor, as every saver does), its objects and the answers that
    `generate` gives to a text request and to a pose request."""
    path = tmp_path_factory.mktemp("checkpoint")
    model, processor = tiny_model_and_processor(seed=5)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    pose = torch.randn(22, 3, generator=torch.Generator().manual_seed(0)) * 0.4
    expected = {}
    for name, chat, options in (
        ("text", describe(pose), {}),
        ("pose", KNEEL, {"continue_final_message": True}),
    ):
        inputs = processor.apply_chat_template(chat, tokenize=True, return_dict=True, **options)
        out = model.generate(
            **inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, return_dict_in_generate=True
        )
        answer = processor.decode(out.sequences[0, inputs["input_ids"].shape[1] :])
        expected[name] = {"answer": answer, "poses": out.poses[0], "pose_codes": out.pose_codes[0]}
    # The requests are what they say: a text answer without a pose, a pose answer with one.
    assert len(expected["text"]["poses"]) == 0 and expected["text"]["answer"].strip()
    assert len(expected["pose"]["poses"]) == 1
    torch.save({"pose": pose, "expected": expected}, path / "expected.pt")
    return {"path": path, "model": model, "processor": processor, "pose": pose, "expected": expected}


def check_text_result(result, chat, expected):
    assert result["generated_text"][:-1] == chat
    assert result["generated_text"][-1] == {"role": "assistant", "content": expected["answer"].strip()}
    assert result["poses"].shape == (0, 22, 3) and result["pose_codes"].shape == (0, 80)


def check_pose_result(result, expected):
    assert result["generated_text"][0] == KNEEL[0]
    # The `<p>` that opened the answer and the pose the model wrote are one `<pose>` marker, as the processor
    # decodes the new tokens alone (they open with the codes and `</p>` of that span).
    assert expected["answer"].startswith("<pose>") and expected["answer"].count("<pose>") == 1
    assert result["generated_text"][-1] == {"role": "assistant", "content": expected["answer"]}
    assert torch.equal(result["pose_codes"], expected["pose_codes"])
    torch.testing.assert_close(result["poses"], expected["poses"])


def test_a_saved_checkpoint_carries_and_names_its_pipeline(checkpoint):
    path = checkpoint["path"]
    config = json.loads((path / "config.json").read_text())
    assert config["custom_pipelines"] == UniPosePipeline.registration()
    assert config["custom_pipelines"]["image-text-to-text"]["impl"] == "pipeline_unipose.UniPosePipeline"
    assert (path / "pipeline_unipose.py").read_bytes() == Path(pipeline_module.__file__).read_bytes()
    # Saving the processor again leaves the config as it is.
    before = (path / "config.json").read_bytes()
    checkpoint["processor"].save_pretrained(path)
    assert (path / "config.json").read_bytes() == before


def test_pipeline_returns_the_text_and_the_poses_of_each_answer(checkpoint):
    pipe = pipeline("image-text-to-text", model=str(checkpoint["path"]), trust_remote_code=True)
    assert type(pipe).__name__ == "UniPosePipeline"
    expected, chat = checkpoint["expected"], describe(checkpoint["pose"])

    (text,) = pipe(text=chat, **GENERATE)
    check_text_result(text, chat, expected["text"])
    (pose,) = pipe(text=KNEEL, **GENERATE)
    check_pose_result(pose, expected["pose"])

    # A mixed batch, one request at a time and as one batch: each gets what it gets alone.
    for batch_size in (1, 2):
        (text, *rest), (pose, *more) = pipe(text=[chat, KNEEL], batch_size=batch_size, **GENERATE)
        assert not rest and not more
        check_text_result(text, chat, expected["text"])
        check_pose_result(pose, expected["pose"])


def test_pipeline_with_plain_prompts_and_its_return_options(checkpoint):
    pipe = pipeline("image-text-to-text", model=str(checkpoint["path"]), pipeline_class=UniPosePipeline)
    processor, expected = checkpoint["processor"], checkpoint["expected"]
    prompt = processor.apply_chat_template(KNEEL, continue_final_message=True)
    assert prompt.endswith(" <p>")

    (full,) = pipe(text=prompt, **GENERATE)
    assert full["generated_text"] == prompt.removesuffix("<p>") + expected["pose"]["answer"]
    torch.testing.assert_close(full["poses"], expected["pose"]["poses"])
    (new,) = pipe(text=prompt, return_full_text=False, **GENERATE)
    assert new["generated_text"] == expected["pose"]["answer"]
    (tensors,) = pipe(text=prompt, return_tensors=True, **GENERATE)
    assert processor.extract_pose_codes(tensors["generated_token_ids"][None])[0].tolist() == [
        expected["pose"]["pose_codes"][0].tolist()
    ]

    # A plain prompt takes its poses as `poses=`.
    text_prompt = processor.apply_chat_template(describe(checkpoint["pose"]))
    (text,) = pipe(text=text_prompt, poses=[checkpoint["pose"]], return_full_text=False, **GENERATE)
    assert text["generated_text"] == expected["text"]["answer"] and len(text["poses"]) == 0


def test_pipeline_needs_a_unipose_model(checkpoint):
    from transformers import AutoModelForCausalLM, LlamaConfig

    other = AutoModelForCausalLM.from_config(
        LlamaConfig(
            vocab_size=32, hidden_size=8, intermediate_size=8, num_hidden_layers=1, num_attention_heads=1
        )
    )
    with pytest.raises(TypeError, match="UniPose"):
        UniPosePipeline(model=other, processor=checkpoint["processor"])


def test_pipeline_loads_where_unipose_cannot_be_imported(checkpoint, tmp_path):
    path = checkpoint["path"]
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["unipose"] = None  # the checkpoint's own files must be enough
        import torch
        from transformers import pipeline

        saved = torch.load({str(path / "expected.pt")!r})
        chat = [{{"role": "user", "content": [{{"type": "text", "text": "Describe this pose:"}},
                                            {{"type": "pose", "pose": saved["pose"]}}]}}]
        kneel = [{{"role": "user", "content": "Generate the pose described as follows: a person kneeling."}},
                 {{"role": "assistant", "content": "<p>"}}]
        pipe = pipeline("image-text-to-text", model={str(path)!r}, trust_remote_code=True)
        generate = {{"max_new_tokens": {MAX_NEW_TOKENS}, "generate_kwargs": {{"do_sample": False}}}}
        results = {{
            "class": type(pipe).__module__ + "." + type(pipe).__name__,
            "text": pipe(text=chat, **generate)[0],
            "pose": pipe(text=kneel, **generate)[0],
            "batch": [result[0] for result in pipe(text=[chat, kneel], batch_size=2, **generate)],
        }}
        torch.save(results, {str(tmp_path / "results.pt")!r})
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = torch.load(tmp_path / "results.pt", weights_only=False)
    assert results["class"].startswith("transformers_modules.") and results["class"].endswith(
        "UniPosePipeline"
    )
    expected, chat = checkpoint["expected"], describe(checkpoint["pose"])
    for text, pose in ((results["text"], results["pose"]), results["batch"]):
        check_text_result(
            {**text, "generated_text": [chat[0], text["generated_text"][-1]]}, chat, expected["text"]
        )
        check_pose_result(pose, expected["pose"])


def test_a_plain_load_and_generate_of_a_saved_checkpoint_prints_no_warning(checkpoint, capfd):
    path = checkpoint["path"]
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["unipose"] = None
        import torch
        from transformers import AutoModel, AutoProcessor

        model = AutoModel.from_pretrained({str(path)!r}, trust_remote_code=True)
        processor = AutoProcessor.from_pretrained({str(path)!r}, trust_remote_code=True)
        print(type(processor.image_processor).__name__, type(processor.pose_image_processor).__name__)
        inputs = processor(
            text=["[INST] Describe this pose: <pose> [/INST]", "[INST] Kneel. [/INST] <p>"],
            poses=[torch.zeros(22, 3)],
        )
        out = model.generate(**inputs, max_new_tokens=4, return_dict_in_generate=True)
        print("poses", [tuple(poses.shape) for poses in out.poses])
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": "", "TRANSFORMERS_VERBOSITY": "warning"}
    # Python warnings shown every time, so that none can hide behind an earlier one.
    returncode = subprocess.call(
        [sys.executable, "-W", "always", "-c", script], cwd=path, env=env, timeout=300
    )
    out, err = capfd.readouterr()
    assert returncode == 0, err[-3000:]
    assert "CLIPImageProcessorPil CLIPImageProcessorPil" in out and "poses [(0, 22, 3), (1, 22, 3)]" in out
    # What is left on stderr is the progress bar of the weights.
    noise = [line for line in err.splitlines() if line.strip() and "Loading weights" not in line]
    assert not noise, "\n".join(noise)


def test_pipeline_with_images_and_several_prompts_in_one_request(checkpoint):
    import numpy as np
    import PIL.Image

    model, processor = checkpoint["model"], checkpoint["processor"]
    images = [
        PIL.Image.fromarray(np.random.default_rng(seed).integers(0, 256, (48, 40, 3), dtype=np.uint8))
        for seed in (1, 2)
    ]
    prompts = [
        "[INST] <image> Describe the pose of the person in this image. [/INST]",
        "[INST] <image> Estimate the 3D pose of the person in this image. [/INST] <p>",
    ]
    inputs = processor(text=prompts, images=images)
    out = model.generate(
        **inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, return_dict_in_generate=True
    )

    pipe = pipeline("image-text-to-text", model=str(checkpoint["path"]), pipeline_class=UniPosePipeline)
    results = pipe(images=images, text=prompts, return_full_text=False, **GENERATE)
    assert len(results) == 2
    length = inputs["input_ids"].shape[1]
    for row, result in enumerate(results):
        assert result["input_text"] == prompts[row]
        assert torch.equal(result["pose_codes"], out.pose_codes[row])
        opened = [processor.pose_start_token_id] * (row == 1)
        assert result["generated_text"] == processor.decode(opened + out.sequences[row, length:].tolist())
    assert results[1]["poses"].shape == (1, 22, 3)


def test_pipeline_returns_every_answer_of_num_return_sequences(checkpoint):
    # Sampling restricted to the most likely token gives the greedy answer each time, so every one of the n
    # answers of a request is known.
    pipe = pipeline("image-text-to-text", model=str(checkpoint["path"]), pipeline_class=UniPosePipeline)
    expected, chat = checkpoint["expected"], describe(checkpoint["pose"])
    sample = {"do_sample": True, "top_k": 1, "num_return_sequences": 3}
    for batch_size in (1, 2):
        texts, poses = pipe(
            text=[chat, KNEEL], batch_size=batch_size, max_new_tokens=MAX_NEW_TOKENS, generate_kwargs=sample
        )
        assert len(texts) == len(poses) == 3
        for text in texts:
            check_text_result(text, chat, expected["text"])
        for pose in poses:
            check_pose_result(pose, expected["pose"])


def test_pipeline_with_several_prompts_in_one_request_and_several_answers_each(checkpoint):
    import numpy as np
    import PIL.Image

    model, processor = checkpoint["model"], checkpoint["processor"]
    images = [PIL.Image.fromarray(np.full((40, 48, 3), value, dtype=np.uint8)) for value in (30, 200)]
    prompts = [
        "[INST] <image> Describe the pose of the person in this image. [/INST]",
        "[INST] <image> Estimate the 3D pose of the person in this image. [/INST] <p>",
    ]
    pipe = pipeline("image-text-to-text", model=str(checkpoint["path"]), pipeline_class=UniPosePipeline)
    torch.manual_seed(0)
    results = pipe(
        images=images,
        text=prompts,
        return_full_text=False,
        max_new_tokens=MAX_NEW_TOKENS,
        generate_kwargs={"do_sample": True, "pose_do_sample": False, "num_return_sequences": 2},
    )
    # The answers of the first prompt, then those of the second; the second's pose is the most likely one, the
    # same in both answers, and what greedy decoding of that prompt alone writes.
    assert [result["input_text"] for result in results] == [prompts[0]] * 2 + [prompts[1]] * 2
    alone = model.generate(
        **processor(text=prompts[1:], images=images[1:]), max_new_tokens=1, do_sample=False,
        return_dict_in_generate=True,
    )
    for result in results[2:]:
        assert torch.equal(result["pose_codes"], alone.pose_codes[0])
        assert result["generated_text"].startswith("<pose>")
    assert all(len(result["poses"]) == 0 for result in results[:2])
