"""Generation benchmarks of UniPose; every figure is a ratio of two timings taken in the same run.

Each ratio is measured in pairs, the two sides one right after the other, so that a burst of load from other
processes hits both sides of a pair alike; the JSON gives, for every ratio and every timing, the median with the
minimum and maximum over the repeats.

1. pose step / floor: `generate` on a prompt ending with `<p>` (the prompt and the 80 queries go through the
   model in one pass, then the codes are read off) over one forward pass over the same total length (the
   physical floor). Target <= 1.3.
2. text decoding: our `generate` over stock `generate` of the same backbone (a `LlamaForCausalLM` with the
   same weights), greedy, on text, in tokens per second. Target >= 0.95.
3. parallel / token by token: the same 80 codes decoded by one step over the queries vs fed one token at a
   time through the KV cache, with the same model. Target >= 20x on the "small" config.
4. mixed batch: 8 mixed-task requests in one batch vs the same 8 one after another (throughput ratio): four
   write a pose then 16 tokens of text, four write 97 tokens of text. Target >= 3x.
5. growing cache: the same mixed batch with the decoding loop's cache layers (each step written in place into
   buffers that double) vs transformers' `DynamicLayer` (each step concatenated to a copy of the whole layer).

    python benchmarks/bench_generation.py --config small    # -> benchmarks/results/generation_small.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
from report import write_report
from transformers import AutoModelForCausalLM, DynamicCache

from unipose import modeling_unipose
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

# name: (numerator timing, denominator timing, bar). Every ratio reads "higher is better" except the first.
RATIOS = {
    "pose_step_over_floor": ("pose_generation_s", "single_forward_same_length_s", "<= 1.3"),
    "text_speed_ratio": ("stock_text_generate_s", "ours_text_generate_s", ">= 0.95"),
    "parallel_speedup": ("token_by_token_80_codes_s", "parallel_80_codes_s", ">= 20"),
    "mixed_batch_throughput_ratio": ("eight_single_requests_s", "mixed_batch_8_s", ">= 3"),
    "growing_cache_speedup": ("mixed_batch_8_concatenating_cache_s", "mixed_batch_8_growing_cache_s", "> 1"),
}


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "repeats": len(values)}


def paired(first, second, repeats: int, warmup: int = 1) -> tuple[list[float], list[float]]:
    """Wall times in seconds of `first()` and `second()`, run in pairs, one right after the other."""
    for _ in range(warmup):
        first()
        second()
    times = ([], [])
    for _ in range(repeats):
        for fn, record in zip((first, second), times):
            start = time.perf_counter()
            fn()
            record.append(time.perf_counter() - start)
    return times


def meets(value: float, bar: str) -> bool:
    operator, threshold = bar.split()
    comparisons = {"<=": value <= float(threshold), ">=": value >= float(threshold), ">": value > float(threshold)}
    return comparisons[operator]


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
    timings = {}

    # 1. A pose step against the floor: one forward over prompt + <p> + 80 queries.
    full = torch.cat([pose_prompt, torch.full((1, n), config.pose_query_token_id)], dim=1)
    timings["pose_generation_s"], timings["single_forward_same_length_s"] = paired(
        lambda: model.generate(input_ids=pose_prompt, max_new_tokens=n + 1, **common),
        lambda: model(input_ids=full, logits_to_keep=n),
        repeats,
    )

    # 2. Text decoding against stock generate of the same backbone, with the same weights. Both suppress the
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
    results["text_tokens"] = text_tokens
    timings["stock_text_generate_s"], timings["ours_text_generate_s"] = paired(
        lambda: stock.generate(input_ids=prompt, **stock_kwargs),
        lambda: model.generate(input_ids=prompt, **ours_kwargs),
        repeats,
    )

    # 3. Parallel decoding vs the same codes fed token by token, both from the same cached prompt (the 80 new
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

    timings["token_by_token_80_codes_s"], timings["parallel_80_codes_s"] = paired(token_by_token, parallel, repeats)

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
    batch = model.generate(
        input_ids=batch_ids, attention_mask=batch_mask, return_dict_in_generate=True, **mixed_kwargs
    )
    results["mixed_batch_poses_per_request"] = [len(codes) for codes in batch.pose_codes]
    timings["eight_single_requests_s"], timings["mixed_batch_8_s"] = paired(
        lambda: [model.generate(input_ids=r[None], **mixed_kwargs) for r in requests],
        lambda: model.generate(input_ids=batch_ids, attention_mask=batch_mask, **mixed_kwargs),
        repeats,
    )

    # 5. The same batch with transformers' concatenating cache layers, the loop left otherwise unchanged.
    def with_concatenating_cache():
        modeling_unipose._with_growing_layers = lambda cache: cache
        try:
            return model.generate(input_ids=batch_ids, attention_mask=batch_mask, **mixed_kwargs)
        finally:
            modeling_unipose._with_growing_layers = growing

    growing = modeling_unipose._with_growing_layers
    results["concatenating_cache_same_output"] = bool(torch.equal(with_concatenating_cache(), batch.sequences))
    timings["mixed_batch_8_concatenating_cache_s"], timings["mixed_batch_8_growing_cache_s"] = paired(
        with_concatenating_cache,
        lambda: model.generate(input_ids=batch_ids, attention_mask=batch_mask, **mixed_kwargs),
        repeats,
    )
    results["timings"] = {name: spread(values) for name, values in timings.items()}
    results["ratios"] = {}
    for name, (numerator, denominator, bar) in RATIOS.items():
        ratios = [a / b for a, b in zip(timings[numerator], timings[denominator])]
        median = statistics.median(ratios)
        results["ratios"][name] = {**spread(ratios), "target": bar, "meets_target": meets(median, bar)}
    stock_tokens_per_s = [text_tokens / t for t in timings["stock_text_generate_s"]]
    ours_tokens_per_s = [text_tokens / t for t in timings["ours_text_generate_s"]]
    results["text_tokens_per_s"] = {"ours": spread(ours_tokens_per_s), "stock": spread(stock_tokens_per_s)}
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="small")
    parser.add_argument("--prompt-length", type=int, default=64)
    parser.add_argument("--text-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=7, help="pairs per ratio (at least 5)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 keeps small-kernel timings stable on a busy machine)"
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: results/generation_CONFIG.json)")
    args = parser.parse_args(argv)
    if args.repeats < 5:
        parser.error(f"--repeats must be at least 5 (medians over fewer are not reported), got {args.repeats}.")
    args.out = args.out or Path(__file__).parent / "results" / f"generation_{args.config}.json"
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    results = run(args.config, args.prompt_length, args.text_tokens, args.repeats)
    results["wall_time_s"] = time.perf_counter() - start
    # Other processes on the machine slow the timings: record how busy it was (2 cores here).
    results["load_average_before_after"] = [load_before, os.getloadavg()[0]]
    return write_report(args.out, results, shown=results["ratios"])


if __name__ == "__main__":
    raise SystemExit(main())
