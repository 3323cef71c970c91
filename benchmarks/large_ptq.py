"""Memory-bounded int8 PTQ of a large decoder (issue 21, "Must show"): peak RSS against the largest shard + output.

    python benchmarks/large_ptq.py --quick     # a 0.24 B-parameter Llama decoder (~2 minutes)
    python benchmarks/large_ptq.py             # a 2.09 B-parameter Llama decoder (4.2 GB of bf16 shards)

1. A Llama decoder is built from a config with random weights (normal, std 0.02; norms 1) and saved
   as bf16 sharded safetensors with a Hugging Face index, one stage at a time (the generator never
   holds the model either).
2. A fresh process runs :func:`torchslim.quantization.streaming.quantize_checkpoint` on it (int8
   weights per output channel, calibration token ids carried block to block) and reports its peak
   resident memory (``VmHWM`` of /proc/self/status, the kernel's own high-water mark, which counts
   everything: Python, torch, transformers, mapped shard pages) and its RSS after the imports.

The issue's bound is peak RSS <= 1.5 x (largest source shard + quantized output). Writes
``benchmarks/results/large_ptq[_quick].json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from _harness import env_line, log, md_table, new_results, write_results  # noqa: E402

CONFIGS = {
    # hidden, intermediate, layers, heads, kv heads, vocab
    "quick": {"hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": 12, "num_attention_heads": 16},
    "full": {"hidden_size": 2560, "intermediate_size": 6912, "num_hidden_layers": 28, "num_attention_heads": 20},
}

CHILD = """
import json, sys, time
from pathlib import Path

def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) * 1024

import torch
import transformers
from torchslim.quantization.streaming import quantize_checkpoint

torch.set_num_threads(int(sys.argv[4]))
after_imports = status("VmRSS:")
ids = torch.randint(0, 32000, (int(sys.argv[5]), int(sys.argv[6])), generator=torch.Generator().manual_seed(0))
peaks = []
def progress(block):
    peaks.append(status("VmHWM:"))
    print(f"{block.name}: {block.sqnr_db:.1f} dB, {block.seconds:.1f} s, peak so far {peaks[-1] / 2**30:.2f} GiB",
          file=sys.stderr, flush=True)
result = quantize_checkpoint(sys.argv[1], sys.argv[2], calibration=ids, max_shard_bytes=int(sys.argv[3]),
                             on_block=progress)
print(json.dumps({"result": result.to_dict(), "rss_after_imports": after_imports, "peak_rss": status("VmHWM:"),
                  "peak_after_each_block": peaks}))
"""


def generate(directory: Path, sizes: dict[str, int], shard_bytes: int) -> dict[str, Any]:
    """Save a random-weight bf16 Llama decoder as sharded safetensors, one stage in memory at a time."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from torchslim.quantization.streaming import ShardWriter

    config = LlamaConfig(num_key_value_heads=4, vocab_size=32000, max_position_embeddings=2048, **sizes)
    config.tie_word_embeddings = False
    with torch.device("meta"):
        skeleton = LlamaForCausalLM(config).to(torch.bfloat16)
    directory.mkdir(parents=True, exist_ok=True)
    writer = ShardWriter(directory, shard_bytes)
    generator = torch.Generator().manual_seed(0)
    stages = [("model.embed_tokens.", skeleton.model.embed_tokens)]
    stages += [(f"model.layers.{i}.", layer) for i, layer in enumerate(skeleton.model.layers)]
    stages += [("model.norm.", skeleton.model.norm), ("lm_head.", skeleton.lm_head)]
    parameters = 0
    for prefix, module in stages:
        module.to_empty(device="cpu")
        with torch.no_grad():
            for name, param in module.named_parameters():
                if param.dim() == 1:
                    param.fill_(1.0)
                else:
                    param.normal_(0.0, 0.02, generator=generator)
                writer.add(prefix + name, param)
                parameters += param.numel()
        module.to("meta")
    writer.close({"format": "pt"})
    config.save_pretrained(directory)
    return {"parameters": parameters, "config": {**sizes, "num_key_value_heads": 4, "vocab_size": 32000}}


def quantize_in_child(source: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    command = [sys.executable, "-c", CHILD, str(source), str(out), str(args.out_shard_mb << 20), str(args.threads)]
    command += [str(args.sequences), str(args.length)]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"quantization failed ({done.returncode}): {done.stderr[-3000:]}")
    numbers: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    numbers["wall_seconds"] = round(time.perf_counter() - started, 1)
    return numbers


def markdown(results: dict[str, Any]) -> str:
    r = results["sections"]["ptq"]
    q = r["result"]
    gib = 2**30
    bound = r["largest_shard_plus_output"]
    rows = [
        ["parameters", f"{q['parameters']:,}"],
        [
            "source (bf16 shards)",
            f"{q['source_bytes'] / gib:.2f} GiB, largest shard {q['largest_source_shard_bytes'] / gib:.3f} GiB",
        ],
        [
            "quantized output (int8 + scales)",
            f"{q['output_bytes'] / gib:.2f} GiB, largest shard {q['largest_output_shard_bytes'] / gib:.3f} GiB",
        ],
        ["RSS after imports (torch, transformers)", f"{r['rss_after_imports'] / gib:.2f} GiB"],
        ["peak RSS (VmHWM)", f"{r['peak_rss'] / gib:.2f} GiB"],
        ["largest shard + output", f"{bound / gib:.2f} GiB"],
        ["peak RSS / (largest shard + output)", f"{r['peak_rss'] / bound:.3f} (issue bound: <= 1.5)"],
        ["peak RSS / largest source shard", f"{r['peak_rss'] / q['largest_source_shard_bytes']:.2f}"],
        ["peak RSS / float32 model", f"{r['peak_rss'] / (4 * q['parameters']):.3f}"],
        ["logits SQNR vs float (calibration tokens)", f"{q['logits_sqnr_db']:.1f} dB"],
        ["next-token top-1 agreement", f"{100 * q['top1_agreement']:.2f}%"],
        ["block SQNR min / median", f"{r['block_sqnr_min']:.1f} / {r['block_sqnr_median']:.1f} dB"],
        ["quantization time", f"{q['seconds']:.0f} s ({r['wall_seconds']:.0f} s with imports)"],
        ["generation time (random weights, bf16 shards)", f"{results['generate_seconds']:.0f} s"],
    ]
    s = results["settings"]
    return (
        "\n".join(
            [
                "# Memory-bounded int8 PTQ of a large decoder (issue 21)",
                "",
                env_line(results["env"]),
                "",
                f"Llama decoder {json.dumps(results['model']['config'])}, random weights, bf16 shards of at most "
                f"{s['shard_mb']} MiB; output shards of at most {s['out_shard_mb']} MiB; calibration "
                f"{s['sequences']} x {s['length']} random token ids; {s['threads']} thread(s).",
                "",
                *md_table(["", "measured"], rows),
                "",
                "Random weights make the SQNR numbers a check of the pipeline, not of a real model's quality.",
                "",
                "Reproduce: `python benchmarks/large_ptq.py" + (" --quick`" if results["quick"] else "`"),
            ]
        )
        + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--shard-mb", type=int, default=1024, help="Largest source shard (MiB).")
    parser.add_argument("--out-shard-mb", type=int, default=512, help="Largest output shard (MiB).")
    parser.add_argument("--sequences", type=int, default=4)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None, help="Where the shards go (default: a temp dir).")
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args()
    if args.quick:
        args.shard_mb, args.out_shard_mb = min(args.shard_mb, 128), min(args.out_shard_mb, 64)
    work = Path(tempfile.mkdtemp(prefix="torchslim-large-ptq-", dir=args.workdir))
    results = new_results(quick=args.quick, threads=args.threads, settings={k: str(v) for k, v in vars(args).items()})
    results["settings"] = {k: v for k, v in vars(args).items() if k not in ("out", "workdir")}
    try:
        log(f"generating {'quick' if args.quick else 'full'} model in {work}")
        started = time.perf_counter()
        results["model"] = generate(work / "source", CONFIGS["quick" if args.quick else "full"], args.shard_mb << 20)
        results["generate_seconds"] = time.perf_counter() - started
        log(f"{results['model']['parameters']:,} parameters in {results['generate_seconds']:.0f} s; quantizing")
        numbers = quantize_in_child(work / "source", work / "int8", args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    q = numbers["result"]
    sqnrs = sorted(b["sqnr_db"] for b in q["blocks"])
    numbers["block_sqnr_min"], numbers["block_sqnr_median"] = sqnrs[0], sqnrs[len(sqnrs) // 2]
    numbers["largest_shard_plus_output"] = q["largest_source_shard_bytes"] + q["output_bytes"]
    results["sections"]["ptq"] = numbers
    stem = "large_ptq_quick" if args.quick else "large_ptq"
    write_results(args.out, stem, results, markdown(results))
    log(f"peak RSS {numbers['peak_rss'] / 2**30:.2f} GiB; wrote {args.out / stem}.md")


if __name__ == "__main__":
    main()
