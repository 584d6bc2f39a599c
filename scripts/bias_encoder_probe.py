"""What a direct gradient optimisation of the bias reward reaches by editing MiniLM's last layer.

Not the product (the product is the RL agent): a measurement of what the bias task can gain
when the edit reaches into the sentence encoder, before any RL is built for it. The edited
matrix is the FFN output of MiniLM's last transformer layer (`encoder.layer.5.output.dense`,
384 x 1536 with its bias), the rest of the bias target as `rledit train --task bias` builds
it: mean pooling, L2 norm, the project's trained head (fc1 -> relu -> fc2). Everything below
the edited matrix is frozen, so its inputs (the layer's FFN activations and the attention
output its residual adds) are computed once per text, and each step runs only
dense -> LayerNorm -> pooling -> head. The edit has the worlds' form (mask: W0 * clamp(1 + U
V^T); shift: W0 + s * U V^T, s the matrix's std), Adam follows the task's reward
(`BiasTask.reward_tensors`) on the task's reward samples, the step is chosen on validation
with the task's `selection_score` and its test metrics are printed.

    PYTHONPATH=. python scripts/bias_encoder_probe.py --world shift --rank 4 \
        --objective worst_group --temperature 0.05 --per-set 64 --pairs-per-set 128

What to expect: the encoder's pass over the ~5,800 texts it needs takes 1-3 min on 2 cores;
each Adam step then costs about a second at these sample counts.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from bias_edit_probe import HEADLINE, report  # the sibling script: one report format for both probes

from rledit_ray.config import build_config
from rledit_ray.data.text import load_text_dataset, text_splits
from rledit_ray.targets.encoder import MAX_TOKENS, dataset_embeddings, encoder_path, load_encoder
from rledit_ray.targets.text_head import load_text_head
from rledit_ray.tasks import BiasTask
from rledit_ray.tasks.bias import bias_data

LAYER = 5
BATCH = 128


def main() -> None:
    args = _parse_args()
    torch.manual_seed(args.seed)
    cfg = build_config({"task": "bias", "seed": args.seed})
    task, suffix, acts, mat0 = _setup(args, cfg)
    current = [mat0[:, :-1], mat0[:, -1]]  # the weights `scores` evaluates

    def scores(name, labeled):
        with torch.no_grad():
            return suffix.logits(labeled.x[:, 0].long(), *current).softmax(1)[:, 1]

    before = task.metrics(scores, pools=("validation", "test"))
    reward_rows = task.reward_x[:, 0].long()
    with torch.no_grad():
        reference = suffix.logits(reward_rows, *current)
    if args.basis_from == "gradient":
        bu, bv = _gradient_bases(task, suffix, reward_rows, reference, args, mat0)
    else:
        bu, bv = _bases(acts, reward_rows, args.basis_out, args.basis_in, mat0)
    u = torch.zeros(bu.shape[1], args.rank, requires_grad=True)
    v = (0.1 * torch.randn(bv.shape[1], args.rank)).requires_grad_(True)
    opt = torch.optim.Adam([u, v], lr=args.lr)
    scale, (lo, hi) = float(mat0.std()), cfg.mask_bounds

    def edited():
        d = (bu @ u) @ (bv @ v).T
        mat = mat0 * (1 + d).clamp(lo, hi) if args.world == "mask" else mat0 + scale * d
        return mat[:, :-1], mat[:, -1]

    rows, started = [], time.perf_counter()
    for step in range(args.steps + 1):
        if step % args.eval_every == 0:
            with torch.no_grad():
                current[:] = [t.detach() for t in edited()]
            rows.append(_evaluate(task, scores, step, started))
        if step == args.steps:
            break
        loss = -_reward(task, suffix.logits(reward_rows, *edited()), reference, args)
        opt.zero_grad()
        loss.backward()
        opt.step()
    report(args, f"{args.world} layer{LAYER}.output.dense r{args.rank} basis{args.basis_out}x{args.basis_in} {args.objective} "
                 f"tau{args.temperature} uc{args.utility_coef} n{args.per_set} p{args.pairs_per_set} lr{args.lr}",
           before, max(rows, key=lambda r: r["selection_score"]), rows, started)


def _setup(args, cfg):
    """The index-keyed task, the suffix over the encoder's activations, and the edited matrix
    (weight columns, then the bias column) as it is."""
    ds = load_text_dataset(cfg.dataset, cfg.data_root)
    splits = text_splits(ds)
    texts, task = _index_task(ds, splits, args)
    emb = dataset_embeddings(ds)
    head, _ = load_text_head(ds.name, torch.from_numpy(emb["texts"][splits.fit]),
                             torch.from_numpy(ds.labels[splits.fit]), seed=cfg.target_seed)
    head.eval().requires_grad_(False)
    started = time.perf_counter()
    needed = _needed_rows(task)
    encoder, tokenizer = _encoder()
    acts = Activations(encoder, tokenizer, texts, needed)
    output = encoder.encoder.layer[LAYER].output
    suffix = Suffix(acts, output.LayerNorm, head)
    mat0 = torch.cat([output.dense.weight.detach(), output.dense.bias.detach()[:, None]], 1).clone()
    _check_matches_cache(suffix, mat0[:, :-1], mat0[:, -1], emb, ds, needed)
    print(f"# activations of {len(needed)} texts in {time.perf_counter() - started:.0f} s", flush=True)
    return task, suffix, acts, mat0


def _evaluate(task, scores, step: int, started: float) -> dict:
    m = task.metrics(scores, pools=("validation", "test"))
    row = {"step": step, **{k: m[k] for k in HEADLINE}, **{f"{k}_val": m[f"{k}_val"] for k in HEADLINE},
           "selection_score": task.selection_score(m)}
    print(f"step {step}: val bias {row['bias_score_val']:.4f} worst {row['worst_group_bias_auc_val']:.4f} "
          f"auc {row['overall_auc_val']:.4f} | test bias {row['bias_score']:.4f} "
          f"({time.perf_counter() - started:.0f} s)", flush=True)
    return row


def _parse_args() -> argparse.Namespace:
    base = build_config({"task": "bias"})
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", default="shift", choices=("mask", "shift"))
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--objective", default=base.bias.objective)
    ap.add_argument("--temperature", type=float, default=base.bias.temperature)
    ap.add_argument("--utility-coef", type=float, default=base.reward.utility_coef)
    ap.add_argument("--objective-coef", type=float, default=base.reward.objective_coef)
    ap.add_argument("--per-set", type=int, default=64)
    ap.add_argument("--pairs-per-set", type=int, default=128)
    ap.add_argument("--pools", default=",".join(base.bias.reward_pools))
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--basis", type=int, default=0, help="k > 0: the factors over k directions per side, as "
                    "`factor_basis: k` builds them")
    ap.add_argument("--basis-from", default="weights", choices=("weights", "gradient"),
                    help="weights: as worlds/bases.py builds them; gradient: the top-k singular vectors of "
                         "the reward's gradient at the original matrix")
    ap.add_argument("--basis-out", type=int, default=None, help="the output side's k alone (0: all 384 "
                    "coordinates); --basis by default")
    ap.add_argument("--basis-in", type=int, default=None, help="the input side's k alone (0: all 1,537); "
                    "--basis by default")
    args = ap.parse_args()
    args.basis_out = args.basis if args.basis_out is None else args.basis_out
    args.basis_in = args.basis if args.basis_in is None else args.basis_in
    if args.basis_from == "gradient" and args.basis < 1:
        ap.error("--basis-from gradient needs --basis k > 0 (how many singular vectors to keep)")
    return args


def _index_task(ds, splits, args):
    """The bias task with each row's input being its text's index (texts, then the pairs'
    originals, then their swaps), so the probe knows which texts every reward row and pool holds."""
    n, m = len(ds.texts), len(ds.pairs)
    texts = ds.texts + [a for a, _, _ in ds.pairs] + [b for _, b, _ in ds.pairs]
    index = np.arange(n + 2 * m, dtype=np.float32)[:, None]
    data = bias_data(ds.labels, ds.membership, ds.groups, splits, index[:n], index[n:n + m], index[n + m:],
                     np.asarray([g for _, _, g in ds.pairs], np.int64))
    task = BiasTask(data, samples_per_set=args.per_set, seed=args.seed, objective=args.objective,
                    temperature=args.temperature, reward_pools=tuple(args.pools.split(",")),
                    pairs_per_set=args.pairs_per_set)
    return texts, task


def _bases(acts, rows, k_out: int, k_in: int, mat0: torch.Tensor):
    """(B_u, B_v): the orthonormal directions the factors live in, as a world with
    `factor_basis: k` builds them (worlds/bases.py: the matrix's top-k left singular vectors;
    the top-k principal directions of the layer's inputs on the reward texts, with the 1 of
    the bias column); a side whose k is 0 keeps all its coordinates."""
    m, n = mat0.shape
    left = torch.linalg.svd(mat0.double(), full_matrices=False).U[:, :k_out].float() if k_out else torch.eye(m)
    if not k_in:
        return left, torch.eye(n)
    tokens = torch.cat([acts.inter[int(r)] for r in rows.unique()])
    x = torch.cat([tokens, torch.ones(len(tokens), 1)], 1).double()
    _, vectors = torch.linalg.eigh(x.T @ x / len(x))
    return left, vectors[:, -k_in:].flip(1).float().contiguous()


def _reward(task, logits, reference, args) -> torch.Tensor:
    """The reward the probe follows: the task's terms weighted by the run's coefficients."""
    terms = task.reward_tensors(logits, reference)
    return args.utility_coef * terms["utility"] + args.objective_coef * terms["objective"]


def _gradient_bases(task, suffix, rows, reference, args, mat0: torch.Tensor):
    """(B_u, B_v): the top-k left and right singular vectors of d reward / d matrix at the
    original matrix, the directions a first-order step of the reward would use."""
    mat = mat0.clone().requires_grad_(True)
    _reward(task, suffix.logits(rows, mat[:, :-1], mat[:, -1]), reference, args).backward()
    svd = torch.linalg.svd(mat.grad.double(), full_matrices=False)
    k = args.basis
    print(f"# gradient spectrum: top-{k} share {float((svd.S[:k] ** 2).sum() / (svd.S ** 2).sum()):.3f}", flush=True)
    return svd.U[:, :k].float(), svd.Vh[:k].T.float().contiguous()


def _needed_rows(task) -> list[int]:
    rows = set(task.reward_x[:, 0].long().tolist())
    for labeled in task.evaluation_sets(("validation", "test")).values():
        rows |= set(labeled.x[:, 0].long().tolist())
    return sorted(rows)


def _encoder():
    tokenizer, model = load_encoder(encoder_path())
    return model.requires_grad_(False), tokenizer


class Activations:
    """Per text: the inputs of the last layer's FFN output (the intermediate activations and
    the attention output), unpadded, from one pass of the frozen encoder."""

    def __init__(self, encoder, tokenizer, texts: list[str], rows: list[int]):
        self.inter, self.attn = {}, {}
        captured = {}
        hook = encoder.encoder.layer[LAYER].output.register_forward_pre_hook(
            lambda module, inputs: captured.update(inter=inputs[0], attn=inputs[1]))
        try:
            with torch.inference_mode():
                for i in range(0, len(rows), BATCH):
                    chunk = rows[i:i + BATCH]
                    batch = tokenizer([texts[r] for r in chunk], padding=True, truncation=True,
                                      max_length=MAX_TOKENS, return_tensors="pt")
                    encoder(**batch)
                    lengths = batch["attention_mask"].sum(1).tolist()
                    for j, r in enumerate(chunk):
                        self.inter[r] = captured["inter"][j, :lengths[j]].clone()
                        self.attn[r] = captured["attn"][j, :lengths[j]].clone()
        finally:
            hook.remove()


class Suffix:
    """dense (edited) -> LayerNorm(+ residual) -> mean pooling -> L2 norm -> head, batched by
    length so padding stays small."""

    def __init__(self, acts: Activations, norm, head):
        self.acts, self.norm, self.head = acts, norm, head
        self.plans: dict[tuple, list] = {}

    def _plan(self, rows: torch.Tensor):
        key = tuple(rows.tolist())
        if key not in self.plans:
            order = sorted(range(len(key)), key=lambda i: len(self.acts.inter[key[i]]))
            batches = []
            for i in range(0, len(order), BATCH):
                pos = order[i:i + BATCH]
                ids = [key[p] for p in pos]
                inter = torch.nn.utils.rnn.pad_sequence([self.acts.inter[r] for r in ids], batch_first=True)
                attn = torch.nn.utils.rnn.pad_sequence([self.acts.attn[r] for r in ids], batch_first=True)
                mask = torch.nn.utils.rnn.pad_sequence([torch.ones(len(self.acts.inter[r])) for r in ids],
                                                       batch_first=True)[..., None]
                batches.append((torch.tensor(pos), inter, attn, mask))
            self.plans[key] = batches
        return self.plans[key]

    def logits(self, rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        parts, positions = [], []
        for pos, inter, attn, mask in self._plan(rows):
            hidden = self.norm(F.linear(inter, weight, bias) + attn)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
            parts.append(self.head(F.normalize(pooled, dim=1)))
            positions.append(pos)
        out = torch.cat(parts)
        return out[torch.argsort(torch.cat(positions))]


def _check_matches_cache(suffix, w0, b0, emb, ds, needed) -> None:
    """The suffix at the original weights must give the cached embeddings' logits."""
    rows = torch.tensor([r for r in needed if r < len(ds.texts)][:256])
    with torch.no_grad():
        got = suffix.logits(rows, w0, b0)
        expected = suffix.head(torch.from_numpy(emb["texts"][rows.numpy()]))
    err = float((got - expected).abs().max())
    if err > 1e-3:
        raise SystemExit(f"the suffix does not reproduce the cached embeddings' logits (max error {err:.2g})")
    print(f"# suffix vs cached embeddings: max logit error {err:.2g}", flush=True)


if __name__ == "__main__":
    main()
