"""What ``--resume`` continues and what it lets you change.

A resumed run continues the config stored in its checkpoint, with the command line's overrides on top.
What may change is what happens from the saved iteration on and where things are
(:data:`CHANGEABLE_ON_RESUME`). Everything else would make the saved state belong to another run and is
refused: the network and its training targets (every model option but the test-time ones), the training
data and the order of its batches, the batch, the seed, the optimizer's own settings (momentum and weight
decay live in its saved state), and the learning-rate steps already taken.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..checkpoint import checkpoint_config, load_checkpoint
from ..config import Config, config_to_dict, override_config
from ..errors import CheckpointError
from ..modeling.options import TEST_TIME_OPTIONS
from .run_checkpoints import newest_checkpoint
from .run_folder import CONFIG_FILE, RunFolderError, holds_config, preview_names, run_results, same_folder

# Keys (or sections, ending in ".") a resumed run may change.
CHANGEABLE_ON_RESUME = (
    "output_dir",
    "device",
    "log_period",
    "test.",  # evaluation only
    *(f"model.{name}" for name in TEST_TIME_OPTIONS),
    "data.root",  # the same data elsewhere
    "data.num_workers",  # the batches do not depend on it
    "data.on_bad_image",
    "data.test_split",
    "data.test_json",
    "data.test_images",
    "solver.max_iter",
    "solver.steps",  # those after the saved iteration
    "solver.base_lr",
    "solver.reference_batch_size",
    "solver.gamma",
    "solver.warmup_iters",
    "solver.warmup_factor",
    "solver.clip_grad_norm",
    "solver.amp",
    "solver.channels_last",
    "solver.checkpoint_period",
)


@dataclass(frozen=True)
class ConfigChange:
    """One config key whose value differs: ``str()`` reads ``"solver.max_iter 20 -> 800"``."""

    key: str
    before: Any
    after: Any

    def __str__(self) -> str:
        return f"{self.key} {_show(self.before)} -> {_show(self.after)}"


def config_changes(before: Config, after: Config) -> list[ConfigChange]:
    """Every key (``backbone_kwargs`` entries included) whose value differs, in the config's order."""
    old, new = _flatten(config_to_dict(before)), _flatten(config_to_dict(after))
    changes = [ConfigChange(key, old.get(key), new.get(key)) for key in {**old, **new} if old.get(key) != new.get(key)]
    return [
        change for change in changes if not (change.key == "output_dir" and same_folder(change.before, change.after))
    ]


def resume_changes(stored: Config, config: Config, iteration: int, source: str) -> list[ConfigChange]:
    """How ``config`` changes the checkpoint ``source``'s config ``stored`` (saved after ``iteration``).

    Raises:
        CheckpointError: a change that a resumed run may not make, one line naming each.
    """
    changes = config_changes(stored, config)
    refused = [str(change) for change in changes if not _changeable(change.key)]
    past_before, past_after = _steps_taken(stored, iteration), _steps_taken(config, iteration)
    if past_before != past_after:
        refused.append(
            f"solver.steps taken by iteration {iteration}: {_show(past_before)} -> {_show(past_after)} "
            "(only later steps may change)"
        )
    if refused:
        raise CheckpointError(
            f"--resume {source}: refused {'; '.join(refused)}: a resumed run keeps its network, training data, "
            "batch, seed, optimizer settings and past schedule; drop the change, or start a new run from this "
            f"model with --weights {source}"
        )
    return changes


def resumed_config(checkpoint_path: str, overrides: Sequence[str]) -> Config:
    """The config stored in the checkpoint ``checkpoint_path``, with ``key=value`` overrides applied.

    Reads the file memory-mapped: only the config is loaded.
    """
    stored = checkpoint_config(load_checkpoint(checkpoint_path, mmap=True), checkpoint_path)
    return override_config(stored, overrides, source=f"{checkpoint_path} (stored config) with --opts")


def restart_checkpoint(config: Config, resumed_from: str | None) -> str | None:
    """The checkpoint a torchrun restart of the run ``config`` continues from (torchrun started the processes again,
    with the same command line, after one failed): the newest in the run's folder where it is this run's (its
    config is ``config``), else ``resumed_from`` (the run's own ``--resume``, which has saved nothing since), else
    None: the run has saved no checkpoint and starts over.

    Raises:
        RunFolderError: the folder holds another run.
    """
    folder = config.output_dir
    newest = newest_checkpoint(folder)
    if newest is not None and not config_changes(checkpoint_config(load_checkpoint(newest, mmap=True), newest), config):
        return newest
    if resumed_from is not None:
        return resumed_from
    results = run_results(folder)
    if results and (newest is not None or not holds_config(folder, config)):
        raise RunFolderError(
            f"torchrun restarted this run's processes, but {folder} holds another run ({preview_names(results)}, "
            f"{newest or CONFIG_FILE} of another config): continue that one with --resume, or start this one "
            "in another --output-dir"
        )
    return None


def _changeable(key: str) -> bool:
    return any(
        key == allowed or (allowed.endswith(".") and key.startswith(allowed)) for allowed in CHANGEABLE_ON_RESUME
    )


def _steps_taken(config: Config, iteration: int) -> list[int]:
    """The learning-rate steps that iterations ``1..iteration`` were trained under."""
    return [step for step in config.solver.steps if step < iteration]


def _flatten(raw: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _show(value: Any) -> str:
    """A value as ``--opts`` would take it: ``800``, ``[640, 800]``, ``null``, ``output/x``."""
    return value if isinstance(value, str) else json.dumps(value)
