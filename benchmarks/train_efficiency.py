"""Training and generation efficiency of full fine-tuning, LoRA and pruned LoRA; prints JSON.

A thin wrapper around ``prunetune bench`` (same flags), e.g.

    python benchmarks/train_efficiency.py --model smollm2-135m --output benchmarks/results/smollm2-135m-cpu.json
    python benchmarks/train_efficiency.py --shape t5-large --batch-size 8 --seq-length 512   # on a GPU
"""

import sys

from prunetune.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
