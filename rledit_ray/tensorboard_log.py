"""TensorBoard events of a run: `RUN/tb/`, one event file per PPO iteration.

    tensorboard --logdir runs/        # every run; a sweep's trials side by side

Per iteration, at step = env steps sampled so far (RLlib's x axis):
- `train/`: the iteration row training.py builds (mean episode return, env steps per second);
- `validation/`: the task's validation metrics and the checkpoint-selection score, on the
  iterations that evaluate;
- `learner/`: RLlib's learner statistics of the policy (policy and value loss, explained
  variance, KL, entropy, and the clip fraction and |log ratio| EditPPOLearner logs; under ES
  (agent/es.py) the spread of the population's returns and the RMS step of the action offsets);
- `env_runners/`: episode return spread and length, sampling seconds.
After the run, `test/` holds the chosen policy's final metrics at the last step.

Why a file per iteration: every file the project writes appears whole or not at all
(atomic.py), and an event file is normally one stream appended for the whole run. TensorBoard
reads every `*tfevents*` file of a folder in name order, and a finished one never changes, so
complete files named by iteration show live and survive a kill. The records are
tensorboardX's (its Summary/Event protos and TFRecord framing); only the writing is ours.
"""
from __future__ import annotations

import math
import struct
import time
from pathlib import Path

from rledit_ray.atomic import write_bytes

PREFIX = "events.out.tfevents."
AXES = ("iteration", "env_steps")  # the row's own counters: x axes, not curves
LEARNER_KEYS = ("policy_loss", "vf_loss", "vf_loss_unclipped", "vf_explained_var", "mean_kl_loss", "curr_kl_coeff",
                "entropy", "clip_fraction", "mean_abs_log_ratio", "total_loss", "default_optimizer_learning_rate",
                "es_fitness_std", "es_step_rms")
ENV_RUNNER_KEYS = ("episode_return_min", "episode_return_max", "episode_len_mean", "num_episodes", "sample")
TRAIN_KEYS = ("episode_return_mean", "env_steps_per_s")
# Learner statistics an iteration row repeats (the report quotes them): how far each iteration
# moved the policy, PPO's share of samples outside the clip range or ES's step and the spread
# of its population's returns. Written under learner/ only.
OPTIMISER_STATS = ("clip_fraction", "es_step_rms", "es_fitness_std")


class TensorBoardLog:
    """Writes `folder`'s event files. `retrain_from`: the first iteration this process trains;
    a resumed run retrains the iterations after its checkpoint, so their old files go."""

    def __init__(self, folder: str | Path, retrain_from: int | None = None):
        self.folder = Path(folder)
        if retrain_from is not None:
            for old in self.folder.glob(f"{PREFIX}*"):
                suffix = old.name.rsplit(".", 1)[-1]
                if suffix == "final" or (suffix.isdigit() and int(suffix) >= retrain_from):
                    old.unlink()

    def iteration(self, row: dict, result: dict) -> Path:
        """One iteration's scalars: its row (training.py) and RLlib's result dict."""
        scalars = {f"train/{k}": row[k] for k in TRAIN_KEYS if k in row}
        scalars.update({f"validation/{k}": v for k, v in row.items()
                        if k not in (*AXES, *TRAIN_KEYS, *OPTIMISER_STATS)})
        scalars["train/iteration"] = row["iteration"]
        scalars.update(learner_scalars(result))
        return self.write(f"{row['iteration']:06d}", row["env_steps"], scalars)

    def final(self, after: dict, env_steps: int) -> Path:
        """The chosen policy's metrics after the run (held-out test and the other pools)."""
        return self.write("final", env_steps, {f"test/{k}": v for k, v in after.items()})

    def write(self, name: str, step: int, scalars: dict) -> Path:
        """One complete event file of the numbers in `scalars` (others are skipped)."""
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.summary import scalar

        now = time.time()
        events = [Event(wall_time=now, file_version="brain.Event:2")]
        for tag, value in scalars.items():
            if _is_number(value):
                events.append(Event(wall_time=now, step=int(step), summary=scalar(tag, float(value))))
        path = self.folder / f"{PREFIX}rledit.{name}"
        write_bytes(path, b"".join(_record(e.SerializeToString()) for e in events))
        return path


def learner_scalars(result: dict) -> dict[str, float]:
    """The learner and EnvRunner statistics of an RLlib result worth a curve. One policy
    module's keys are `learner/<key>`; with several, `learner/<module>/<key>`."""
    from ray.rllib.core import ALL_MODULES
    from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, LEARNER_RESULTS

    modules = {m: stats for m, stats in result.get(LEARNER_RESULTS, {}).items() if m != ALL_MODULES}
    out = {}
    for module, stats in modules.items():
        prefix = "learner/" if len(modules) == 1 else f"learner/{module}/"
        out.update({prefix + k: stats[k] for k in LEARNER_KEYS if k in stats})
    runners = result.get(ENV_RUNNER_RESULTS, {})
    out.update({f"env_runners/{k}": runners[k] for k in ENV_RUNNER_KEYS if k in runners})
    return out


def _is_number(value) -> bool:
    try:
        return not isinstance(value, (bool, str, dict, list)) and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _record(data: bytes) -> bytes:
    """TFRecord framing: length, its masked CRC, the data, its masked CRC (as tensorboardX's
    RecordWriter.write, which only writes to open files)."""
    from tensorboardX.record_writer import masked_crc32c

    header = struct.pack("Q", len(data))
    return header + struct.pack("I", masked_crc32c(header)) + data + struct.pack("I", masked_crc32c(data))
