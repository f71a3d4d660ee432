"""Generation benchmarks of UniPose; every figure is a ratio of two timings taken in the same run.

1. pose step / floor: `generate` on a prompt ending with `<p>` (prefill + one step over `<p>` and the 80
   queries) over one forward pass over the same total length (the physical floor). Target <= 1.3.
2. parallel / token by token: the same 80 codes decoded by one step over the queries vs fed one token at a
   time through the KV cache, with the same model. Target >= 20x on the "small" config.
3. text decoding: our `generate` over stock `generate` of the same backbone (a `LlamaForCausalLM` with the
   same weights), greedy, on text. Target >= 0.9.
4. mixed batch: 8 mixed-task requests in one batch vs the same 8 one after another (throughput ratio).

    python benchmarks/bench_generation.py --config small    # -> benchmarks/results/generation_small.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, DynamicCache

from unipose.testing import tiny_model, tiny_unipose_config


CONFIGS = {
    # The tiny test model.
    "tiny": {},
    # A small language model (8 layers of width 256, ~6M parameters) with the paper's 2,048 codes: on a CPU,
    # one step over 80 queries is still far from compute-bound, as a 7B model's is on a GPU.
    "small": {
        "text_config": {
            "hidden_size": 256,
            "intermediate_size": 704,
            "num_hidden_layers": 8,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,
        },
        "pose_tokenizer_config": {"codebook_size": 2048, "hidden_size": 64, "code_dim": 32},
    },
    # Width 512 (~26M parameters): on one CPU thread the 80-query step becomes compute-bound, so the gain of
    # parallel decoding shrinks; reported to show where the CPU stops being a good stand-in.
    "medium": {
        "text_config": {
            "hidden_size": 512,
            "intermediate_size": 1408,
            "num_hidden_layers": 8,
            "num_attention_heads": 8,
            "num_key_value_heads": 8,
        },
        "pose_tokenizer_config": {"codebook_size": 2048, "hidden_size": 64, "code_dim": 32},
    },
}


def timed(fn, repeats: int, warmup: int = 2) -> float:
    """Median wall time of `fn()` in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.no_grad()
def run(config_name: str, prompt_length: int, text_tokens: int, repeats: int) -> dict:
    config = tiny_unipose_config(**CONFIGS[config_name])
    model = tiny_model(config, seed=0)
    n = config.num_pose_tokens
    generator = torch.Generator().manual_seed(0)
    prompt = torch.randint(3, 200, (1, prompt_length), generator=generator)
    pose_prompt = torch.cat([prompt, torch.tensor([[config.pose_start_token_id]])], dim=1)
    common = {"do_sample": False, "pad_token_id": 0, "eos_token_id": None}
    results = {"config": config_name, "prompt_length": prompt_length, "threads": torch.get_num_threads()}

    # 1. A pose step against the floor: one forward over prompt + <p> + 80 queries.
    full = torch.cat([pose_prompt, torch.full((1, n), config.pose_query_token_id)], dim=1)
    t_pose = timed(lambda: model.generate(input_ids=pose_prompt, max_new_tokens=n + 1, **common), repeats)
    t_floor = timed(lambda: model(input_ids=full, logits_to_keep=n), repeats)
    results["pose_generation_s"] = t_pose
    results["single_forward_same_length_s"] = t_floor
    results["pose_step_over_floor"] = t_pose / t_floor

    # 2. Parallel decoding vs the same codes fed token by token, both from the same cached prompt (the 80 new
    #    entries are cropped from the cache after every run, so only the decoding of the codes is timed).
    codes = model.generate(input_ids=pose_prompt, max_new_tokens=n + 1, return_dict_in_generate=True, **common)
    code_ids = codes.pose_codes[0][0] + config.pose_code_token_offset
    cache = DynamicCache(config=config.text_config)
    model(input_ids=pose_prompt, past_key_values=cache, use_cache=True, logits_to_keep=1)

    def parallel():
        model(input_ids=full[:, -n:], past_key_values=cache, use_cache=True)
        cache.crop(-n)

    def token_by_token():
        for token in code_ids:
            model(input_ids=token.view(1, 1), past_key_values=cache, use_cache=True, logits_to_keep=1)
        cache.crop(-n)

    t_parallel, t_sequential = timed(parallel, repeats), timed(token_by_token, max(1, repeats // 2))
    results["parallel_80_codes_s"] = t_parallel
    results["token_by_token_80_codes_s"] = t_sequential
    results["parallel_speedup"] = t_sequential / t_parallel

    # 3. Text decoding against stock generate of the same backbone, with the same weights. Both suppress the
    #    UniPose tokens (ours would otherwise be free to start a pose), so both write the same text.
    stock = AutoModelForCausalLM.from_config(config.text_config, attn_implementation="sdpa").eval()
    stock.model.load_state_dict(model.model.language_model.state_dict())
    stock.lm_head.load_state_dict(model.lm_head.state_dict())
    suppressed = list(range(config.image_token_id, config.text_config.vocab_size))
    text_kwargs = {**common, "min_new_tokens": text_tokens, "max_new_tokens": text_tokens}
    ours_kwargs = {**text_kwargs, "suppress_tokens": [config.pose_start_token_id]}
    stock_kwargs = {**text_kwargs, "suppress_tokens": suppressed}
    ours = model.generate(input_ids=prompt, **ours_kwargs)
    theirs = stock.generate(input_ids=prompt, **stock_kwargs)
    results["text_outputs_identical"] = bool(torch.equal(ours, theirs))
    t_ours = timed(lambda: model.generate(input_ids=prompt, **ours_kwargs), repeats)
    t_stock = timed(lambda: stock.generate(input_ids=prompt, **stock_kwargs), repeats)
    results["text_tokens"] = text_tokens
    results["ours_text_tokens_per_s"] = text_tokens / t_ours
    results["stock_text_tokens_per_s"] = text_tokens / t_stock
    results["text_speed_ratio"] = t_stock / t_ours

    # 4. Eight mixed requests: four that write a pose and four that write text.
    requests = []
    for i in range(8):
        ids = torch.randint(3, 200, (prompt_length + i,), generator=generator)
        if i % 2 == 0:
            ids = torch.cat([ids, torch.tensor([config.pose_start_token_id])])
        requests.append(ids)
    width = max(len(r) for r in requests)
    batch_ids = torch.stack([torch.cat([torch.zeros(width - len(r), dtype=torch.long), r]) for r in requests])
    batch_mask = torch.stack([torch.cat([torch.zeros(width - len(r)), torch.ones(len(r))]) for r in requests]).long()
    mixed_kwargs = {**common, "max_new_tokens": n + 1 + 16}
    t_batch = timed(lambda: model.generate(input_ids=batch_ids, attention_mask=batch_mask, **mixed_kwargs), repeats)
    t_single = timed(lambda: [model.generate(input_ids=r[None], **mixed_kwargs) for r in requests], max(1, repeats // 2))
    results["mixed_batch_8_s"] = t_batch
    results["eight_single_requests_s"] = t_single
    results["mixed_batch_throughput_ratio"] = t_single / t_batch
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="small")
    parser.add_argument("--prompt-length", type=int, default=64)
    parser.add_argument("--text-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 keeps small-kernel timings stable on a busy machine)"
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: results/generation_CONFIG.json)")
    args = parser.parse_args(argv)
    args.out = args.out or Path(__file__).parent / "results" / f"generation_{args.config}.json"
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    results = run(args.config, args.prompt_length, args.text_tokens, args.repeats)
    # Other processes on the machine slow the timings: record how busy it was.
    results["load_average_before_after"] = [load_before, os.getloadavg()[0]]
    results["targets"] = {"pose_step_over_floor": "<= 1.3", "parallel_speedup": ">= 20", "text_speed_ratio": ">= 0.9"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, args.out)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
