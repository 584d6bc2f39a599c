"""The bias target with its sentence encoder inside: MiniLM, mean pooling, L2 norm, the head.

The bias task's usual target is the head alone on cached sentence embeddings
(targets/text_head.py), the cheapest network to edit. An edit that names a module of the
encoder (`minilm.encoder.layer.5.output.dense`, the FFN output of MiniLM's last layer) needs
the encoder in the network: `SentenceClassifier` computes from token ids (the packed (N, 2, L)
batch of targets/sources.py) exactly what the embedding cache holds, then the same trained
head, whose layers keep their names (fc1, fc2). A world splits it like any transformer
(targets/split.py, "memo"): the frozen layers below the edit run once per input set.
"""
from __future__ import annotations

import torch
from torch import nn

from rledit_ray.targets.encoder import load_encoder, mean_pooled
from rledit_ray.targets.forward import PACKED_INPUTS

ENCODER_ATTRIBUTE = "minilm"  # edits of the encoder name its modules under this prefix


class SentenceClassifier(nn.Module):
    def __init__(self, minilm: nn.Module, head: nn.Sequential):
        super().__init__()
        self.minilm = minilm
        self.fc1, self.relu1, self.fc2 = head.fc1, head.relu1, head.fc2

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.minilm(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.pooled_logits(mean_pooled(hidden, attention_mask))

    # A low-rank edit of the last layer's FFN output has a closed form through the LayerNorm
    # and the pooling (targets/pooled_tail.py); the memo split asks for these two.
    def pooled_tail_norm(self, edited: str) -> str | None:
        """The LayerNorm whose output is the last hidden state, when `edited` (a module name)
        is the FFN output that feeds it with its residual; None for any other module."""
        last = f"{ENCODER_ATTRIBUTE}.encoder.layer.{len(self.minilm.encoder.layer) - 1}.output"
        return f"{last}.LayerNorm" if edited == f"{last}.dense" else None

    def pooled_logits(self, pooled: torch.Tensor) -> torch.Tensor:
        """The logits of texts whose last hidden states average to `pooled` over their tokens."""
        return self.fc2(self.relu1(self.fc1(torch.nn.functional.normalize(pooled, dim=1))))


setattr(SentenceClassifier, PACKED_INPUTS, ("input_ids", "attention_mask"))


def edits_encoder(edit: list[str]) -> bool:
    """Whether the edit names a module or parameter of the encoder."""
    return any(name.split(".")[0] == ENCODER_ATTRIBUTE for name in edit)


def sentence_classifier(head: nn.Sequential, encoder: str):
    """(the SentenceClassifier of `head` over the encoder at `encoder`, its tokenizer)."""
    tokenizer, minilm = load_encoder(encoder, pooling_layer=False)  # the pooler is never used
    return SentenceClassifier(minilm, head).eval(), tokenizer
