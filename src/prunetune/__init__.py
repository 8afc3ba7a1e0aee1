"""prunetune: structured layer pruning + LoRA fine-tuning for Hugging Face language models.

Reference: Zhu et al., "Parameter-Efficient Fine-Tuning with Layer Pruning on Free-Text
Sequence-to-Sequence Modeling", arXiv 2305.08285 (LoraLPrun).
"""

__version__ = "0.1.0"
