"""What differs between the two kinds of `rledit train` run, behind one interface.

`SingleRequest`: one edit request (the config's forget classes, or the bias task), one
factorised policy. `Generalist` (config `generalist:`): one row-wise policy over a
distribution of forget classes, scored on its training requests for checkpoint choice and on
held-out requests for the report (generalist.py holds that scoring). training.py runs the
same loop for both and asks its strategy at each point where they differ.
"""
from __future__ import annotations

import numpy as np

from rledit_ray import generalist
from rledit_ray.config import RunConfig
from rledit_ray.worlds.rollout import random_policy, run_episode

RANDOM_EPISODES = 20


def random_policy_metrics(world, episodes: int = RANDOM_EPISODES, seed: int = 0) -> dict:
    """Mean test/validation metrics of the edits a uniform random policy makes (scalars only)."""
    act = random_policy(world, seed)
    runs = []
    for ep in range(episodes):
        run_episode(world, act, seed=seed + ep)
        runs.append(world.task_metrics(pools=("validation", "test")))
    return {k: float(np.mean([r[k] for r in runs])) for k, v in runs[0].items() if isinstance(v, (int, float))}


class SingleRequest:
    """One request: "before" is the unedited network, "after" the best policy's edit."""

    module = "factorized"

    def __init__(self, cfg: RunConfig, world):
        self.cfg, self.world, self.task = cfg, world, world.task
        self._before_scores = None

    def env_config(self) -> dict:
        return {}

    def before(self, progress) -> tuple[dict, dict]:
        """Metrics of the unedited network and of a uniform random policy."""
        world, task = self.world, self.task
        run_episode(world, generalist.no_edit(world))
        before = world.task_metrics()
        # Tasks with paired bootstrap intervals (bias) compare the same test rows before/after.
        if hasattr(task, "paired_intervals"):
            self._before_scores = task.pool_scores(world.scores, "test")
        rand = random_policy_metrics(world, seed=self.cfg.seed)
        progress(f"before: {task.summary(before)} | random policy: {task.summary(rand)}")
        return before, rand

    def validation_row(self, policy) -> dict:
        run_episode(self.world, policy)
        return self.world.task_metrics(pools=("validation",))

    def met_stop(self, row: dict) -> bool:
        return self.task.met_stop(row, self.cfg.training)

    def progress(self, row: dict) -> str:
        return self.task.progress(row)

    def after(self, policy) -> tuple[dict, dict, dict]:
        """(after metrics, the final step's reward terms, extra metrics.json entries)."""
        final = run_episode(self.world, policy)
        after = self.world.task_metrics()
        extra = {}
        if self._before_scores is not None:
            extra["intervals"] = self.task.paired_intervals(self._before_scores,
                                                            self.task.pool_scores(self.world.scores, "test"))
        return after, final, extra

    def weights_metadata(self) -> dict:
        return {}

    def report_sections(self, metrics: dict) -> list[str] | None:
        return None


class Generalist:
    """Many requests: "before"/"after" are means over the held-out requests, and every
    request's metrics are kept in `per_request`."""

    module = "rowwise"

    def __init__(self, cfg: RunConfig, world):
        self.cfg, self.world, self.task = cfg, world, world.task
        self.spec = cfg.generalist

    def env_config(self) -> dict:
        return {"obs_layout": self.world.obs_layout}

    def before(self, progress) -> tuple[dict, dict]:
        world, g = self.world, self.spec
        before = generalist.mean_over(generalist.per_request(world, generalist.no_edit(world), g.heldout_classes))
        rand = generalist.mean_over(generalist.per_request(world, random_policy(world, self.cfg.seed),
                                                           g.heldout_classes))
        world.use_request(None)
        summary = self.task.summary
        progress(f"generalist: train requests {g.train_classes}, held out {g.heldout_classes} | held-out mean "
                 f"before: {summary(before)} | random policy: {summary(rand)}")
        return before, rand

    def validation_row(self, policy) -> dict:
        return generalist.validation_row(self.world, policy, self.spec.train_classes)

    def met_stop(self, row: dict) -> bool:
        return generalist.met_stop(row, self.cfg.training)

    def progress(self, row: dict) -> str:
        return generalist.progress(row)

    def after(self, policy) -> tuple[dict, dict, dict]:
        g = self.spec
        results = generalist.per_request(self.world, policy, [*g.train_classes, *g.heldout_classes])
        after = generalist.mean_over({k: results[k] for k in g.heldout_classes})
        final = results[g.heldout_classes[0]]["final_reward_terms"] if g.heldout_classes else {}
        self.world.use_request(None)
        return after, final, {"per_request": {str(k): r for k, r in results.items()},
                              "train_classes": list(g.train_classes), "heldout_classes": list(g.heldout_classes)}

    def weights_metadata(self) -> dict:
        # The world holds the edit of the last request it served: the saved weights name it.
        return {"forget_class": self.world.request}

    def report_sections(self, metrics: dict) -> list[str] | None:
        return [generalist.report_section(metrics)]


def strategy_for(cfg: RunConfig, world) -> SingleRequest | Generalist:
    return Generalist(cfg, world) if cfg.generalist is not None else SingleRequest(cfg, world)
