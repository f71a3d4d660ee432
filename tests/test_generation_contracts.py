"""`UniPoseForConditionalGeneration.generate` honours the contracts of `GenerationMixin.generate`: streamers,
stopping criteria, `synced_gpus`, the length rule of a pose, refused modes, dtypes and memory.

Each test states one contract. Where transformers gives the reference (a streamer's output, a stopping
criterion's meaning), the test compares against that reference, not against our own reading of it.
"""

import copy
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading

import pytest
import torch
import torch.nn.functional as F
from transformers import (
    GenerationConfig,
    StoppingCriteria,
    StoppingCriteriaList,
    TextIteratorStreamer,
    TextStreamer,
)
from transformers.generation.streamers import BaseStreamer

from unipose.testing import tiny_model_and_processor

N = 80  # tokens per pose


@pytest.fixture(scope="module")
def p_model():
    """The tiny model with a head that always prefers `<p>`: every text step opens a pose."""
    model, _ = tiny_model_and_processor(seed=0)
    model.lm_head.bias = torch.nn.Parameter(torch.zeros(model.config.text_config.vocab_size))
    with torch.no_grad():
        model.lm_head.bias[model.config.pose_start_token_id] = 50.0
    return model


def _prompt(processor, texts):
    return processor(text=texts, return_tensors="pt")


def _greedy(model, inputs, **kwargs):
    kwargs = {"do_sample": False, "return_dict_in_generate": True, **kwargs}
    return model.generate(**inputs, **kwargs)


def _stock_backbone(model):
    """transformers' own `LlamaForCausalLM` with the weights of UniPose's language model and head."""
    from transformers import AutoModelForCausalLM

    stock = AutoModelForCausalLM.from_config(model.config.text_config, attn_implementation="sdpa").eval()
    stock.model.load_state_dict(model.model.language_model.state_dict())
    stock.lm_head.load_state_dict(model.lm_head.state_dict())
    return stock


class RecordingStreamer(BaseStreamer):
    """Keeps what `generate` hands a streamer: every `put` value and whether `end` was called."""

    def __init__(self):
        self.values, self.ended = [], 0

    def put(self, value):
        self.values.append(value.clone())

    def end(self):
        self.ended += 1


# ---------------------------------------------------------------------------------------------------------------------
# Streaming
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("skip_special_tokens", [False, True])
def test_text_streamer_prints_exactly_the_decoded_generation(model, processor, capsys, skip_special_tokens):
    inputs = _prompt(processor, ["A person standing with arms raised. <p>"])
    streamer = TextStreamer(processor.tokenizer, skip_special_tokens=skip_special_tokens)
    out = _greedy(model, inputs, max_new_tokens=N + 12, streamer=streamer)
    assert out.pose_codes[0].shape == (1, N)
    printed = capsys.readouterr().out
    expected = processor.tokenizer.decode(out.sequences[0], skip_special_tokens=skip_special_tokens)
    assert printed == expected + "\n"


def test_text_streamer_with_skip_prompt_prints_only_the_new_text(model, processor, capsys):
    inputs = _prompt(processor, ["Describe a pose."])
    out = _greedy(model, inputs, max_new_tokens=15, streamer=TextStreamer(processor.tokenizer, skip_prompt=True))
    prompt_length = inputs["input_ids"].shape[1]
    assert capsys.readouterr().out == processor.tokenizer.decode(out.sequences[0, prompt_length:]) + "\n"


def test_streamer_gets_the_prompt_then_each_token_and_each_pose_as_one_unit(p_model, processor):
    config = p_model.config
    inputs = _prompt(processor, ["A person"])
    streamer = RecordingStreamer()
    out = _greedy(p_model, inputs, max_new_tokens=N + 3, streamer=streamer)
    assert streamer.ended == 1
    assert torch.equal(streamer.values[0], inputs["input_ids"])  # the prompt first, as stock generate does
    # With `<p>` always preferred: `<p>` + pose, then `<p>` + pose again (the limit falls inside the second).
    units = [value.reshape(-1).tolist() for value in streamer.values[1:]]
    assert [len(unit) for unit in units] == [N + 2, N + 2]
    for unit in units:
        assert unit[0] == config.pose_start_token_id and unit[-1] == config.pose_end_token_id
        codes = torch.tensor(unit[1:-1]) - config.pose_code_token_offset
        assert codes.min() >= 0 and codes.max() < config.pose_codebook_size
    assert torch.equal(torch.cat([streamer.values[0].reshape(-1)] + [torch.tensor(u) for u in units]), out.sequences[0])


def test_streamer_gets_text_tokens_one_by_one_like_stock_generate(model, processor):
    """On text, the streamer receives what stock `generate` of the same backbone hands it: the prompt, then one
    `(1,)` tensor per token, then `end()`."""
    config = model.config
    inputs = _prompt(processor, ["Describe a pose."])
    ours, theirs = RecordingStreamer(), RecordingStreamer()
    common = {"max_new_tokens": 6, "do_sample": False, "eos_token_id": None}
    model.generate(**inputs, streamer=ours, suppress_tokens=[config.pose_start_token_id], **common)
    suppressed = list(range(config.image_token_id, config.text_config.vocab_size))
    _stock_backbone(model).generate(**inputs, streamer=theirs, suppress_tokens=suppressed, **common)
    assert len(ours.values) == len(theirs.values) == 1 + 6 and ours.ended == theirs.ended == 1
    for mine, stock in zip(ours.values, theirs.values):
        assert mine.shape == stock.shape and torch.equal(mine, stock)


def test_text_iterator_streamer_consumed_in_a_thread_ends(model, processor):
    inputs = _prompt(processor, ["A person kneeling. <p>"])
    # With a timeout, a stream that never ends fails the test (queue.Empty) instead of hanging it.
    streamer = TextIteratorStreamer(processor.tokenizer, timeout=120)
    result = {}

    def run():
        result["out"] = _greedy(model, inputs, max_new_tokens=N + 8, streamer=streamer)

    thread = threading.Thread(target=run)
    thread.start()
    text = "".join(streamer)
    thread.join(timeout=120)
    assert not thread.is_alive()
    assert text == processor.tokenizer.decode(result["out"].sequences[0])


@pytest.mark.parametrize(
    "bad",
    [{"pose_temperature": 0.0}, {"num_beams": 2}, {"max_new_tokens": -3}],
    ids=["refused-in-the-loop", "refused-mode", "refused-by-transformers"],
)
def test_a_streamer_is_ended_when_generation_fails(model, processor, bad):
    inputs = _prompt(processor, ["A person"])
    streamer = RecordingStreamer()
    with pytest.raises(ValueError):
        model.generate(**inputs, streamer=streamer, **{"max_new_tokens": 3, **bad})
    assert streamer.ended == 1


def test_streaming_a_batch_is_refused(model, processor):
    inputs = _prompt(processor, ["A person", "Another person"])
    with pytest.raises(ValueError, match="streamer"):
        model.generate(**inputs, streamer=RecordingStreamer(), max_new_tokens=3)


# ---------------------------------------------------------------------------------------------------------------------
# Stopping criteria, evaluated per sequence
# ---------------------------------------------------------------------------------------------------------------------


def test_stop_strings_stop_a_sequence_where_the_string_ends(model, processor):
    tokenizer = processor.tokenizer
    inputs = _prompt(processor, ["Describe a pose."])
    prompt_length = inputs["input_ids"].shape[1]
    kwargs = {"max_new_tokens": 20, "eos_token_id": None, "suppress_tokens": [model.config.pose_start_token_id]}
    free = _greedy(model, inputs, **kwargs).sequences[0, prompt_length:]
    # A stop string made of the text of new tokens 4 and 5: the first place where it is complete.
    stop = tokenizer.decode(free[4:6]).strip()
    assert stop
    end = next(i for i in range(1, len(free) + 1) if stop in tokenizer.decode(free[:i]))
    stopped = _greedy(model, inputs, stop_strings=[stop], tokenizer=tokenizer, **kwargs).sequences[0, prompt_length:]
    assert torch.equal(stopped, free[:end])
    assert end < len(free)


def test_stop_strings_need_the_tokenizer(model, processor):
    with pytest.raises(ValueError, match="tokenizer"):
        model.generate(**_prompt(processor, ["A person"]), stop_strings=["x"], max_new_tokens=3)


class StopAfterPoseEnd(StoppingCriteria):
    """Stops the sequences whose last token is `</p>`; records the last token of every row it is shown."""

    def __init__(self, pose_end_token_id):
        self.pose_end_token_id = pose_end_token_id
        self.seen = []

    def __call__(self, input_ids, scores, **kwargs):
        self.seen.append(input_ids.clone())
        return input_ids[:, -1] == self.pose_end_token_id


def test_a_user_stopping_criterion_stops_only_the_sequence_it_fires_on(model, processor):
    config = model.config
    inputs = _prompt(processor, ["A person kneeling. <p>", "Describe a pose in words."])
    kwargs = {"max_new_tokens": N + 10, "eos_token_id": None, "suppress_tokens": [config.pose_start_token_id]}
    free = _greedy(model, inputs, **kwargs)
    criterion = StopAfterPoseEnd(config.pose_end_token_id)
    stopped = _greedy(model, inputs, stopping_criteria=StoppingCriteriaList([criterion]), **kwargs)
    prompt_length = inputs["input_ids"].shape[1]
    # Row 0 stops right after its pose, row 1 writes all its text.
    row0 = stopped.sequences[0, prompt_length:]
    assert row0[N] == config.pose_end_token_id
    assert (row0[N + 1 :] == processor.tokenizer.pad_token_id).all()
    assert torch.equal(stopped.sequences[1], free.sequences[1])
    assert torch.equal(stopped.pose_codes[0], free.pose_codes[0])
    # It is shown the whole batch, every row at its index, as stock `generate` shows it.
    assert all(ids.shape[0] == 2 for ids in criterion.seen)


def test_finished_sequences_leave_the_batch_and_the_others_decode_as_alone(model, processor):
    """A row stopped by its end-of-sequence token costs nothing more: later steps run without it, and the
    rows still running write what they write alone."""
    inputs = _prompt(processor, ["Describe a pose.", "A person is"])
    kwargs = {"max_new_tokens": 12, "suppress_tokens": [model.config.pose_start_token_id]}
    prompt_length = inputs["input_ids"].shape[1]
    free = _greedy(model, inputs, eos_token_id=None, **kwargs).sequences[:, prompt_length:]
    eos = int(free[0, 1])  # row 0 stops after 2 tokens
    assert eos not in free[1].tolist() and eos != int(free[0, 0])
    batch_sizes = []
    hook = model.model.register_forward_hook(lambda module, args, output: batch_sizes.append(len(output[0])))
    try:
        out = _greedy(model, inputs, eos_token_id=eos, **kwargs)
    finally:
        hook.remove()
    assert batch_sizes == [2, 2] + [1] * 10
    assert torch.equal(out.sequences[1, prompt_length:], free[1])
    assert getattr(out, "cache", None) is None and getattr(out, "past_key_values", None) is None
    single = _prompt(processor, ["A person is"])
    alone = _greedy(model, single, eos_token_id=eos, **kwargs).sequences[0, single["input_ids"].shape[1] :]
    assert torch.equal(out.sequences[1, -len(alone) :], alone)


def test_max_time_stops_generation(model, processor):
    inputs = _prompt(processor, ["Describe a pose."])
    kwargs = {"max_new_tokens": 40, "eos_token_id": None, "suppress_tokens": [model.config.pose_start_token_id]}
    prompt_length = inputs["input_ids"].shape[1]
    assert _greedy(model, inputs, **kwargs).sequences.shape[1] == prompt_length + 40
    # Time is up at the first check, which follows the first token (as in stock `generate`).
    assert _greedy(model, inputs, max_time=0.0, **kwargs).sequences.shape[1] == prompt_length + 1


def test_a_list_of_eos_token_ids_stops_each_sequence_at_its_own(model, processor):
    inputs = _prompt(processor, ["Describe a pose.", "A person is"])
    kwargs = {"max_new_tokens": 20, "suppress_tokens": [model.config.pose_start_token_id]}
    prompt_length = inputs["input_ids"].shape[1]
    free = _greedy(model, inputs, eos_token_id=None, **kwargs).sequences[:, prompt_length:]
    # Stop row 0 at its 4th new token and row 1 at its 7th (each the first occurrence in its row).
    eos = [int(free[0, 3]), int(free[1, 6])]
    assert eos[0] not in free[0, :3].tolist() and eos[1] not in free[1, :6].tolist()
    assert eos[0] not in free[1, :6].tolist() and eos[1] not in free[0, :3].tolist()
    out = _greedy(model, inputs, eos_token_id=eos, pad_token_id=processor.tokenizer.pad_token_id, **kwargs)
    new = out.sequences[:, prompt_length:]
    assert torch.equal(new[0, :4], free[0, :4]) and torch.equal(new[1, :7], free[1, :7])
    assert new.shape[1] == 7 and (new[0, 4:] == processor.tokenizer.pad_token_id).all()


STOCK_SETTINGS = {
    "processors": {"repetition_penalty": 1.5, "no_repeat_ngram_size": 2, "min_new_tokens": 5},
    "eos-list": {"eos_token_id": "first-two-tokens"},
    "stop-strings": {"stop_strings": "third-token"},
    "sampling": {"do_sample": True, "temperature": 0.7, "top_k": 20, "top_p": 0.9},
    "token-healing": {"token_healing": True, "tokenizer": "the-tokenizer"},
}


@pytest.mark.parametrize("setting", STOCK_SETTINGS.values(), ids=STOCK_SETTINGS.keys())
def test_text_generation_equals_stock_generate_of_the_backbone(model, processor, setting):
    """On text, UniPose writes what transformers' stock `generate` writes with the same backbone and weights
    (the UniPose tokens suppressed there), under the stopping criteria and logits processors in `setting`,
    for a left-padded batch."""
    config, tokenizer = model.config, processor.tokenizer
    stock = _stock_backbone(model)
    inputs = _prompt(processor, ["Describe a pose.", "A person is"])
    prompt_length = inputs["input_ids"].shape[1]
    common = {"max_new_tokens": 12, "do_sample": False, "pad_token_id": tokenizer.pad_token_id, "eos_token_id": None}
    ours_kwargs = {**common, "suppress_tokens": [config.pose_start_token_id]}
    stock_kwargs = {**common, "suppress_tokens": list(range(config.image_token_id, config.text_config.vocab_size))}
    free = stock.generate(**inputs, **stock_kwargs)[:, prompt_length:]
    setting = dict(setting)
    if setting.get("eos_token_id") == "first-two-tokens":
        setting["eos_token_id"] = [int(free[0, 4]), int(free[1, 2])]
    if setting.get("tokenizer") == "the-tokenizer":
        setting["tokenizer"] = tokenizer
    if setting.get("stop_strings") == "third-token":
        setting["stop_strings"] = [tokenizer.decode(free[0, 2:4]).strip()]
        setting["tokenizer"] = tokenizer
    torch.manual_seed(0)
    theirs = stock.generate(**inputs, **{**stock_kwargs, **setting})
    torch.manual_seed(0)
    ours = model.generate(**inputs, **{**ours_kwargs, **setting})
    assert torch.equal(ours, theirs)


def test_logits_processors_read_each_sequences_own_tokens(processor):
    """Rows at different lengths (one writes a pose while the other writes text): the processors that read
    the history (minimum length, repetition penalty, n-gram blocking) give every row what they give it alone."""
    model, _ = tiny_model_and_processor(seed=0)
    model = model.double()
    config, eos = model.config, processor.tokenizer.eos_token_id
    # A head that would end every sequence at once: only `min_new_tokens` keeps each one going.
    model.lm_head.bias = torch.nn.Parameter(torch.zeros(config.text_config.vocab_size, dtype=torch.float64))
    with torch.no_grad():
        model.lm_head.bias[eos] = 5.0
    prompts = ["A person kneeling. <p>", "Describe a pose in a few words."]
    kwargs = {
        "max_new_tokens": N + 12,
        "min_new_tokens": 10,
        "eos_token_id": eos,
        "repetition_penalty": 1.3,
        "no_repeat_ngram_size": 2,
        "suppress_tokens": [config.pose_start_token_id],
    }
    inputs = _prompt(processor, prompts)
    batch = _greedy(model, inputs, **kwargs)
    for row, prompt in enumerate(prompts):
        single = _prompt(processor, [prompt])
        alone = _greedy(model, single, **kwargs).sequences[0, single["input_ids"].shape[1] :]
        written = batch.sequences[row, inputs["input_ids"].shape[1] :]
        assert alone[-1] == eos and len(alone) == (N + 2 if row == 0 else 11)
        assert torch.equal(written[: len(alone)], alone), row
        assert (written[len(alone) :] == processor.tokenizer.pad_token_id).all()


WARPERS = {
    "min_p": ({"min_p": 0.9}, "MinPLogitsWarper", {"min_p": 0.9}),
    "typical_p": ({"typical_p": 0.3}, "TypicalLogitsWarper", {"mass": 0.3}),
    "epsilon_cutoff": ({"epsilon_cutoff": 0.02}, "EpsilonLogitsWarper", {"epsilon": 0.02}),
    "eta_cutoff": ({"eta_cutoff": 0.95}, "EtaLogitsWarper", {"epsilon": 0.95}),
    "top_h": ({"top_h": 0.5}, "TopHLogitsWarper", {"top_h": 0.5}),
}


@pytest.mark.parametrize("option, warper, arguments", WARPERS.values(), ids=WARPERS.keys())
def test_sampling_warpers_apply_to_the_codes_as_to_text(model, processor, option, warper, arguments):
    # Every sampled code is one that transformers' warpers keep (the option's, in `generate`'s order with its
    # default `top_k=50`), applied to the code scores of a forward pass over the prompt, `<p>` and the queries
    # (what generation's first pass computes).
    import transformers.generation.logits_process as processors

    config = model.config
    inputs = _prompt(processor, ["A person kneeling. <p>"])
    queries = torch.full((1, N), config.pose_query_token_id)
    with torch.no_grad():
        logits = model(input_ids=torch.cat([inputs["input_ids"], queries], dim=-1)).logits[0, -N:]
    scores = logits[:, config.pose_code_token_ids.start : config.pose_code_token_ids.stop]
    chain = [getattr(processors, warper)(**arguments), processors.TopKLogitsWarper(50)]
    kept = torch.isfinite(processors.LogitsProcessorList(chain if warper == "TopHLogitsWarper" else chain[::-1])(None, scores))
    assert kept.float().mean() < 0.6  # the warper removes codes that sampling would otherwise draw
    for seed in range(3):
        torch.manual_seed(seed)
        out = model.generate(**inputs, max_new_tokens=1, do_sample=True, return_dict_in_generate=True, **option)
        assert kept.gather(1, out.pose_codes[0][0][:, None]).all()


@pytest.mark.parametrize(
    "option, name",
    [
        ({"guidance_scale": 3.0}, "guidance_scale"),
        ({"watermarking_config": {"keys": [11, 12, 13, 14], "ngram_len": 3}}, "SynthID"),
        ({"prefill_chunk_size": 2}, "prefill_chunk_size"),
    ],
)
def test_options_that_need_one_token_per_step_are_refused(model, processor, option, name):
    # Classifier-free guidance and SynthID keep a record of the tokens fed, one per call; a pose step feeds 81.
    from transformers import SynthIDTextWatermarkingConfig

    if "watermarking_config" in option:
        option = {"watermarking_config": SynthIDTextWatermarkingConfig(**option["watermarking_config"])}
    with pytest.raises(ValueError, match=name):
        model.generate(**_prompt(processor, ["A person"]), max_new_tokens=3, **option)


def test_token_healing_of_prompts_with_poses_is_refused(model, processor):
    inputs = _prompt(processor, ["A person kneeling. <p>"])
    with pytest.raises(ValueError, match="Token healing"):
        model.generate(**inputs, max_new_tokens=3, token_healing=True, tokenizer=processor.tokenizer)


# ---------------------------------------------------------------------------------------------------------------------
# The length rule
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_new_tokens", [2, 50, N + 3, N + 4, N + 9])
def test_a_forced_eos_ends_the_sequence_at_max_length_when_poses_are_written(p_model, processor, max_new_tokens):
    # As `ForcedEOSTokenLogitsProcessor` does for stock `generate`: the last position is the EOS. `<p>` (which
    # this head always prefers) opens a pose only where the pose and `</p>` end before it.
    eos = processor.tokenizer.eos_token_id
    inputs = _prompt(processor, ["A person"])
    out = _greedy(p_model, inputs, max_new_tokens=max_new_tokens, forced_eos_token_id=eos, eos_token_id=eos)
    new = out.sequences[0, inputs["input_ids"].shape[1] :].tolist()
    assert len(new) == max_new_tokens and new[-1] == eos
    assert len(out.pose_codes[0]) == (1 if max_new_tokens >= N + 3 else 0)
    assert eos not in new[:-1]


def test_a_pose_begun_at_the_length_limit_is_finished(p_model, processor):
    config = p_model.config
    inputs = _prompt(processor, ["A person"])
    out = _greedy(p_model, inputs, max_new_tokens=1)
    new = out.sequences[0, inputs["input_ids"].shape[1] :]
    assert len(new) == N + 2  # max_new_tokens + num_pose_tokens + 1
    assert new[0] == config.pose_start_token_id and new[-1] == config.pose_end_token_id
    assert out.pose_codes[0].shape == (1, N) and out.poses[0].shape == (1, 22, 3)


@pytest.mark.parametrize("max_new_tokens", [1, 2, N + 1, N + 2, N + 3, 2 * N + 5])
@pytest.mark.parametrize("prompt", ["A person", "A person <p>"])
def test_new_tokens_exceed_max_new_tokens_by_at_most_one_pose(p_model, processor, max_new_tokens, prompt):
    config = p_model.config
    inputs = _prompt(processor, [prompt])
    out = _greedy(p_model, inputs, max_new_tokens=max_new_tokens)
    new = out.sequences[0, inputs["input_ids"].shape[1] :].tolist()
    assert max_new_tokens <= len(new) <= max_new_tokens + N + 1
    # Every pose is closed, and there is one decoded pose per span.
    ids = inputs["input_ids"][0].tolist() + new
    assert ids.count(config.pose_start_token_id) == ids.count(config.pose_end_token_id) == len(out.poses[0])
    assert ids[-1] == config.pose_end_token_id


# ---------------------------------------------------------------------------------------------------------------------
# Refused modes and options
# ---------------------------------------------------------------------------------------------------------------------


REFUSED = {
    "num_beams-kwarg": ({"num_beams": 2}, "num_beams"),
    "num_beams-config": ({"generation_config": GenerationConfig(num_beams=2, max_new_tokens=3)}, "num_beams"),
    "contrastive": ({"penalty_alpha": 0.6, "top_k": 4}, "penalty_alpha"),
    "prompt_lookup": ({"prompt_lookup_num_tokens": 3}, "prompt_lookup_num_tokens"),
}


@pytest.mark.parametrize("arguments, name", REFUSED.values(), ids=REFUSED.keys())
def test_unsupported_modes_are_refused_however_they_are_passed(model, processor, arguments, name):
    with pytest.raises(ValueError, match=name):
        model.generate(**_prompt(processor, ["A person"]), **{"max_new_tokens": 3, **arguments})


def test_several_samples_per_prompt_each_see_their_own_images_and_poses(model, processor):
    # Sampling restricted to the most likely token is greedy decoding: each of the n sequences of a prompt is then
    # what greedy decoding gives for the processor's batch with every prompt written out n times.
    batch = _seven_task_batch(processor)
    assert batch["pixel_values"].shape[0] == 4 and batch["pose_values"].shape[0] == 4  # 0, 1 or 2 per prompt
    got = model.generate(
        **batch, max_new_tokens=N + 3, do_sample=True, top_k=1, num_return_sequences=3, return_dict_in_generate=True
    )
    expected = _greedy(model, _seven_task_batch(processor, repeats=3), max_new_tokens=N + 3)
    assert got.sequences.shape[0] == 21
    assert torch.equal(got.sequences, expected.sequences)
    assert [codes.tolist() for codes in got.pose_codes] == [codes.tolist() for codes in expected.pose_codes]


def test_several_samples_per_prompt_are_drawn_independently(p_model, processor):
    torch.manual_seed(0)
    inputs = _prompt(processor, ["A person kneeling. <p>", "A person running. <p>"])
    out = p_model.generate(
        **inputs, max_new_tokens=1, do_sample=True, num_return_sequences=4, return_dict_in_generate=True
    )
    codes = [tuple(row[0].tolist()) for row in out.pose_codes]
    assert len(codes) == 8 and len(set(codes)) == 8


def test_unsupported_modes_in_the_models_generation_config_are_refused(processor):
    model, _ = tiny_model_and_processor(seed=0)
    model.generation_config.num_beams = 2
    with pytest.raises(ValueError, match="num_beams"):
        model.generate(**_prompt(processor, ["A person"]), max_new_tokens=3)


def test_an_assistant_model_is_refused(model, processor):
    with pytest.raises(ValueError, match="assistant_model"):
        model.generate(**_prompt(processor, ["A person"]), assistant_model=model, max_new_tokens=3)


def test_right_padding_is_refused_with_a_message(model, processor):
    tokenizer = processor.tokenizer
    ids = tokenizer(["A person kneeling", "A person"], padding=True, padding_side="right", return_tensors="pt")
    assert ids["attention_mask"][1, -1] == 0
    with pytest.raises(ValueError, match="padding_side='left'"):
        model.generate(**ids, max_new_tokens=3)


@pytest.mark.parametrize(
    "arguments, name",
    [
        ({"pose_temperature": 0.0}, "pose_temperature"),
        ({"pose_temperature": -1.0}, "pose_temperature"),
        ({"pose_top_p": 1.5}, "pose_top_p"),
        ({"pose_top_p": 0.0}, "pose_top_p"),
        ({"pose_top_k": -1}, "pose_top_k"),
        ({"pose_top_k": 2.5}, "pose_top_k"),
    ],
)
def test_pose_sampling_options_are_validated_under_their_own_names(model, processor, arguments, name):
    with pytest.raises((ValueError, TypeError), match=name):
        model.generate(**_prompt(processor, ["A person <p>"]), do_sample=True, max_new_tokens=N + 1, **arguments)


# ---------------------------------------------------------------------------------------------------------------------
# synced_gpus
# ---------------------------------------------------------------------------------------------------------------------


def test_synced_gpus_without_a_process_group_decodes_as_usual(model, processor):
    inputs = _prompt(processor, ["A person <p>", "Describe a pose."])
    reference = _greedy(model, inputs, max_new_tokens=N + 6)
    synced = _greedy(model, inputs, max_new_tokens=N + 6, synced_gpus=True)
    assert torch.equal(synced.sequences, reference.sequences)


SYNCED_PEER = """
import json, sys
import torch
import torch.distributed as dist
from unipose.testing import tiny_model_and_processor

rank, port = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(1)
model, processor = tiny_model_and_processor(seed=0)
# Rank 0 writes 2 tokens; rank 1 a pose and 6 more tokens: rank 0 must keep stepping until rank 1 is done.
text, budget = (["Describe a pose."], 2) if rank == 0 else (["A person <p>"], {n} + 7)
inputs = processor(text=text, return_tensors="pt")
kwargs = dict(max_new_tokens=budget, do_sample=False, eos_token_id=None, return_dict_in_generate=True)
torch.manual_seed(0)
alone = model.generate(**inputs, **kwargs).sequences
forwards = []
for module in (model.model, model.lm_head, model.pose_tokenizer.decoder):  # each is one gather under ZeRO-3
    module.register_forward_hook(lambda module, args, output: forwards.append(type(module).__name__))
dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{{port}}", rank=rank, world_size=2)
synced = model.generate(**inputs, synced_gpus=True, **kwargs).sequences
dist.destroy_process_group()
print(json.dumps({{"forwards": forwards, "equal": bool(torch.equal(synced, alone))}}))
"""


def test_synced_gpus_peers_step_together_until_all_finish(tmp_path):
    """Two processes under a gloo process group (as ZeRO-3 / FSDP ranks would be): the rank that finishes
    first keeps running forward passes until the other is done, and both get what they get alone."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = tmp_path / "peer.py"
    script.write_text(textwrap.dedent(SYNCED_PEER.format(n=N)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    peers = [
        subprocess.Popen([sys.executable, str(script), str(rank), str(port)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
        for rank in range(2)
    ]
    results = []
    for peer in peers:
        stdout, stderr = peer.communicate(timeout=600)
        assert peer.returncode == 0, stderr[-3000:]
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    assert all(result["equal"] for result in results)
    assert results[0]["forwards"] == results[1]["forwards"]


# ---------------------------------------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------------------------------------


def test_memory_grows_with_the_tokens_written_not_with_max_new_tokens(model, processor):
    from torch.profiler import ProfilerActivity, profile

    inputs = _prompt(processor, ["Describe a pose."])
    first = _greedy(model, inputs, max_new_tokens=1).sequences[0, -1]
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        # The first token is the end of sequence: one token written, out of a limit of 10**8.
        out = _greedy(model, inputs, max_new_tokens=10**8, eos_token_id=int(first))
    assert out.sequences.shape[1] == inputs["input_ids"].shape[1] + 1
    largest = max(event.cpu_memory_usage for event in profiler.events())
    assert largest < 2**24, f"one allocation of {largest / 2**20:.0f} MiB"


def test_the_decoding_cache_keeps_what_transformers_dynamic_layer_keeps():
    # The decoding loop's cache layers write each step in place; transformers' `DynamicLayer` is the reference for
    # what a layer holds after every operation that generation or a user applies to a cache.
    from transformers.cache_utils import DynamicLayer

    from unipose.modeling_unipose import _GrowingCacheLayer

    generator = torch.Generator().manual_seed(0)
    ours, reference = _GrowingCacheLayer(), DynamicLayer()

    def states(batch, length):
        return [torch.randn(batch, 2, length, 4, generator=generator) for _ in range(2)]

    operations = [
        ("update", 3, 7),
        ("update", 3, 1),
        ("update", 3, 30),  # past the buffer: it grows
        ("crop", -5),
        ("update", 3, 2),  # written over the cropped entries
        ("batch_select_indices", torch.tensor([2, 0])),  # rows left: the next update starts new buffers
        ("update", 2, 1),
        ("reorder_cache", torch.tensor([1, 0])),
        ("update", 2, 1),
        ("batch_repeat_interleave", 2),
        ("update", 4, 3),
    ]
    for name, *arguments in operations:
        if name == "update":
            keys, values = states(*arguments)
            returned = ours.update(keys, values)
            expected = reference.update(keys, values)
            for got, want in zip(returned, expected, strict=True):
                torch.testing.assert_close(got, want, rtol=0, atol=0)
        else:
            getattr(ours, name)(*arguments)
            getattr(reference, name)(*arguments)
        assert ours.get_seq_length() == reference.get_seq_length(), name
        torch.testing.assert_close(ours.keys, reference.keys, rtol=0, atol=0)
        torch.testing.assert_close(ours.values, reference.values, rtol=0, atol=0)


def test_the_returned_cache_continues_the_sequence(model, processor):
    inputs = _prompt(processor, ["Describe a pose."])
    out = _greedy(model, inputs, max_new_tokens=6, suppress_tokens=[model.config.pose_start_token_id])
    cache = getattr(out, "cache", None) or out.past_key_values
    assert cache.get_seq_length() == out.sequences.shape[1] - 1  # the last token is not fed yet
    with torch.no_grad():
        continued = model(input_ids=out.sequences[:, -1:], past_key_values=cache, use_cache=True).logits[:, -1]
        full = model(input_ids=out.sequences).logits[:, -1]
    torch.testing.assert_close(continued, full, rtol=1e-4, atol=1e-4)


def test_generate_refuses_a_cache_it_cannot_start_from(model, processor):
    inputs = _prompt(processor, ["Describe a pose. <p>"])
    out = _greedy(model, inputs, max_new_tokens=3)
    name = "cache" if getattr(out, "cache", None) is not None else "past_key_values"  # transformers >= 5.24: cache
    with pytest.raises(ValueError, match=r"the cache given holds \d+ positions already.*whole conversation"):
        model.generate(input_ids=out.sequences, max_new_tokens=2, **{name: getattr(out, name)})
    # A fixed-size cache, asked for by name: refused before anything is computed, not an IndexError midway.
    with pytest.raises(ValueError, match=r"needs a cache that grows.*StaticCache.*cache_implementation"):
        model.generate(**inputs, max_new_tokens=5, cache_implementation="static")
    with pytest.raises(ValueError, match=r"pass `input_ids` without `inputs_embeds`"):
        model.generate(**inputs, inputs_embeds=model.get_input_embeddings()(inputs["input_ids"]), max_new_tokens=2)


def test_a_batch_near_the_context_limit_fits_where_each_row_fits_alone():
    # Two rows write two poses each, at different steps, in a context of 256 positions. The queries of one row's
    # pose take masked-out columns of the other rows; they hold no position, so they do not count against it.
    model, processor = tiny_model_and_processor(seed=0, text_config={"max_position_embeddings": 256})
    start = model.config.pose_start_token_id
    texts, opened_at = ["Say a thing", "Say another"], [(0, 83), (1, 84)]
    batch = processor(text=texts, return_tensors="pt")
    width = batch["input_ids"].shape[1]

    def plan(row, prompt_length):
        return lambda _, ids: [start] if ids.shape[-1] - prompt_length in opened_at[row] else list(range(10, 300))

    alone = []
    for row in range(2):
        ids = batch["input_ids"][row : row + 1][:, batch["attention_mask"][row].bool()]
        out = _greedy(model, {"input_ids": ids}, max_new_tokens=170, prefix_allowed_tokens_fn=plan(row, ids.shape[1]))
        assert len(out.pose_codes[0]) == 2
        alone.append(out.sequences[0, ids.shape[1] :])
    out = _greedy(model, batch, max_new_tokens=170, prefix_allowed_tokens_fn=lambda row, ids: plan(row, width)(row, ids))
    for row in range(2):
        assert torch.equal(out.sequences[row, width : width + len(alone[row])], alone[row])
    assert out.sequences.shape[1] - width == max(len(new) for new in alone) == 170
    # Each row's cache also held the other row's two sets of masked-out queries: more columns than positions.
    assert width + 170 + 2 * N > 256


def test_a_sequence_stops_at_the_end_of_the_context_and_opens_a_pose_only_where_it_fits(p_model, processor):
    # 256 positions, and a head that opens a pose at every text step: the first fits, the second would not (`<p>`
    # and its 80 queries need 81 positions), so the row writes text to the end of the context and stops there,
    # with what it wrote, instead of failing at the next forward pass.
    model, _ = tiny_model_and_processor(seed=0, text_config={"max_position_embeddings": 256})
    model.lm_head.bias = p_model.lm_head.bias
    limit = 256
    inputs = processor(text=["A person " + "kneeling on the floor " * 300], truncation=True, max_length=150)
    prompt_length = inputs["input_ids"].shape[1]
    out = _greedy(model, inputs, max_new_tokens=400, eos_token_id=None)
    sequence = out.sequences[0]
    assert len(sequence) == limit + 1  # every position fed, and the token written from the last one
    assert sequence[prompt_length] == model.config.pose_start_token_id
    assert sequence[prompt_length + N + 1] == model.config.pose_end_token_id
    assert (sequence[prompt_length + 1 :] == model.config.pose_start_token_id).sum() == 0
    assert out.pose_codes[0].shape == (1, N)
    # In a batch, the long row stops there and the short one goes on as it would alone.
    short = processor(text=["A person"])
    alone = _greedy(model, short, max_new_tokens=200, eos_token_id=None).sequences[0]
    gap = prompt_length - short["input_ids"].shape[1]
    batch = {
        "input_ids": torch.cat([inputs["input_ids"], F.pad(short["input_ids"], (gap, 0), value=0)]),
        "attention_mask": torch.cat([inputs["attention_mask"], F.pad(short["attention_mask"], (gap, 0), value=0)]),
    }
    both = _greedy(model, batch, max_new_tokens=200, eos_token_id=None).sequences
    width = batch["input_ids"].shape[1]
    assert torch.equal(both[1, width:], alone[short["input_ids"].shape[1] :])
    assert torch.equal(both[0, width : width + limit + 1 - prompt_length], sequence[prompt_length:])


def test_forward_and_the_model_answer_tuples_when_return_dict_is_off(model, processor):
    inputs = _prompt(processor, ["Describe a person", "Say something else"])
    with torch.no_grad():
        expected = model(**inputs)
        as_tuple = model(**inputs, return_dict=False)
        inner = model.model(**inputs, return_dict=False)
    assert isinstance(as_tuple, tuple) and isinstance(inner, tuple)
    torch.testing.assert_close(as_tuple[0], expected.logits, rtol=0, atol=0)
    torch.testing.assert_close(inner[0], model.model(**inputs).last_hidden_state, rtol=0, atol=0)
    off = copy.deepcopy(model)
    off.config.return_dict = False
    with torch.no_grad():
        assert isinstance(off(**inputs), tuple)
    assert torch.equal(off.generate(**inputs, max_new_tokens=4, do_sample=False),
                       model.generate(**inputs, max_new_tokens=4, do_sample=False))


def test_prompt_learning_adapters_are_refused_by_generate(model, processor):
    peft = pytest.importorskip("peft")
    inputs = _prompt(processor, ["Describe a person"])
    for config in (peft.PrefixTuningConfig(num_virtual_tokens=4), peft.PromptTuningConfig(num_virtual_tokens=4)):
        config.task_type = "CAUSAL_LM"
        wrapped = peft.get_peft_model(copy.deepcopy(model), config).eval()
        with pytest.raises(ValueError, match=f"prompt-learning adapters \\(got a {type(config).__name__}\\)"):
            wrapped.generate(**inputs, max_new_tokens=2)
        # Once PEFT has put the model's own method back, the model alone generates as before.
        alone = wrapped.base_model.generate(**inputs, max_new_tokens=2)
        assert torch.equal(alone, model.generate(**inputs, max_new_tokens=2))


def test_a_mixed_adapter_batch_decodes_each_row_with_its_adapter_when_rows_finish_apart(p_model, processor):
    # PEFT's `adapter_names` gives each row of the batch its own LoRA adapter through forward pre-hooks that split
    # the batch by row; a finished row must then stay in the batch (fed masked-out padding), as in stock `generate`.
    # The stage adapters: LoRA on the language model, trainable rows of the embeddings and of the head (whose
    # per-row hook also needs one row per row of the batch), given random values so that the two differ.
    peft = pytest.importorskip("peft")
    from unipose.training.sft import stage_peft_config

    wrapped = peft.get_peft_model(
        copy.deepcopy(p_model), stage_peft_config(p_model.config, 1, r=4, lora_alpha=8), adapter_name="one"
    )
    wrapped.add_adapter("two", stage_peft_config(p_model.config, 1, r=4, lora_alpha=8))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in wrapped.named_parameters():
            if name.endswith((".one", ".two", ".one.weight", ".two.weight")):
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    wrapped.eval()
    texts = ["A person", "Another person stands"]
    batch = processor(text=texts, return_tensors="pt")
    width = batch["input_ids"].shape[1]

    class StopRowAfter(StoppingCriteria):
        """Stops row `row` once it holds `count` new tokens after its prompt of `width` columns."""

        def __init__(self, row, width, count):
            self.row, self.width, self.count = row, width, count

        def __call__(self, input_ids, scores, **kwargs):
            done = torch.zeros(input_ids.shape[0], dtype=torch.bool)
            done[self.row] = input_ids.shape[1] - self.width >= self.count
            return done

    def generate(inputs, **kwargs):
        options = {"do_sample": False, "max_new_tokens": 2 * N + 5, "return_dict_in_generate": True}
        return wrapped.generate(**inputs, **options, **kwargs)

    stop = StoppingCriteriaList([StopRowAfter(0, width, 3)])  # the first row stops early, the second writes on
    out = generate(batch, adapter_names=["one", "two"], stopping_criteria=stop)
    assert sum(len(codes) for codes in out.pose_codes) > 0  # a pose step with the rows in the batch too
    for row, (text, name) in enumerate(zip(texts, ["one", "two"])):
        alone = processor(text=[text], return_tensors="pt")
        length = alone["input_ids"].shape[1]
        wrapped.set_adapter(name)
        stop = StoppingCriteriaList([StopRowAfter(0, length, 3)] if row == 0 else [])
        expected = generate(alone, stopping_criteria=stop)
        new = expected.sequences[0, length:]
        assert torch.equal(out.sequences[row, width : width + len(new)], new)
        assert (out.sequences[row, width + len(new) :] == processor.tokenizer.pad_token_id).all()
        assert torch.equal(out.pose_codes[row], expected.pose_codes[0])


def test_int32_ids_with_poses_give_what_int64_ids_give(model, processor):
    inputs = processor(text=["Describe: <pose> and write one. <p>"], poses=[torch.zeros(22, 3)], return_tensors="pt")
    narrow = {**inputs, "input_ids": inputs["input_ids"].int(), "attention_mask": inputs["attention_mask"].int()}
    with torch.no_grad():
        torch.testing.assert_close(model(**narrow).logits, model(**inputs).logits, rtol=0, atol=0)
    expected = _greedy(model, inputs, max_new_tokens=4)
    got = _greedy(model, narrow, max_new_tokens=4)
    assert torch.equal(got.sequences, expected.sequences) and got.sequences.dtype == torch.long
    torch.testing.assert_close(got.poses[0], expected.poses[0], rtol=0, atol=0)


def test_pose_values_reach_the_model_through_given_input_embeddings(model, processor):
    poses = torch.zeros(2, 22, 3)
    poses[1, 0, 0] = 1.5
    logits = []
    for pose in poses:
        inputs = processor(text=["Describe: <pose>"], poses=[pose], return_tensors="pt")
        with torch.no_grad():
            embeds = model.get_input_embeddings()(inputs["input_ids"])
            given = model(**inputs, inputs_embeds=embeds).logits
            torch.testing.assert_close(given, model(**inputs).logits, rtol=0, atol=0)
        logits.append(given)
    assert not torch.allclose(logits[0], logits[1])


# ---------------------------------------------------------------------------------------------------------------------
# Dtypes
# ---------------------------------------------------------------------------------------------------------------------


def _seven_task_batch(processor, repeats=1):
    """The demo's prompt of each task (images and poses in varying numbers), each written `repeats` times."""
    from unipose.demo import load_inputs, task_records
    from unipose.evaluation.runner import evaluation_prompt

    prompts = [
        evaluation_prompt(task.replace("_", "-"), record, text, processor.tokenizer)
        for task, (record, text) in task_records(load_inputs()).items()
        for _ in range(repeats)
    ]
    return processor(
        text=[prompt.text for prompt in prompts],
        images=[prompt.images for prompt in prompts],
        poses=[prompt.poses for prompt in prompts],
        return_tensors="pt",
    )


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_models_run_all_seven_tasks(checkpoint, dtype):
    from unipose.modeling_unipose import UniPoseForConditionalGeneration
    from unipose.processing_unipose import UniPoseProcessor

    model = UniPoseForConditionalGeneration.from_pretrained(checkpoint, dtype=dtype).eval()
    processor = UniPoseProcessor.from_pretrained(checkpoint)
    assert model.lm_head.weight.dtype == dtype
    assert all(p.dtype == torch.float32 for p in model.pose_tokenizer.parameters())
    batch = _seven_task_batch(processor)
    assert batch["pixel_values"].dtype == torch.float32  # the model casts them
    out = model.generate(**batch, max_new_tokens=N + 4, do_sample=False, return_dict_in_generate=True)
    # The prompts of the three pose tasks (text-to-pose, pose estimation, pose editing) end with `<p>`.
    assert all(len(out.poses[i]) >= 1 for i in (4, 5, 6))
    assert all(bool(torch.isfinite(poses).all()) for poses in out.poses)


def test_a_model_cast_with_to_runs_image_and_pose_inputs(processor):
    model, _ = tiny_model_and_processor(seed=0)
    model = model.to(torch.bfloat16)
    batch = _seven_task_batch(processor)
    out = model.generate(**batch, max_new_tokens=N + 1, do_sample=False, return_dict_in_generate=True)
    assert all(len(out.poses[i]) == 1 for i in (4, 5, 6))


def test_dtype_auto_round_trips_the_saved_dtype(checkpoint, tmp_path):
    from unipose.modeling_unipose import UniPoseForConditionalGeneration

    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        model = UniPoseForConditionalGeneration.from_pretrained(checkpoint, dtype=dtype)
        model.save_pretrained(tmp_path / str(dtype))
        loaded = UniPoseForConditionalGeneration.from_pretrained(tmp_path / str(dtype), dtype="auto")
        assert loaded.lm_head.weight.dtype == dtype and loaded.model.vision_tower.dtype == dtype
        assert all(p.dtype == torch.float32 for p in loaded.pose_tokenizer.parameters())
