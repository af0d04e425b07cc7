"""Every wrong value a user can type ends in one ``error:`` line on stderr, exit status 2, no
traceback and no result file: train, eval, predict and export run in this process as their
command lines (Hydra's composition included), the scripts through their ``main(argv)``.

Add a row to ``WRONG_INPUTS`` for every new way a command can be misused."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import lightning
import pytest
import torch

from classicnets.run.setup import compose_config
from run_helpers import TINY, load_entry_point, load_script
from study_helpers import lenet_checkpoint

ENTRY_POINTS = ("train", "eval", "predict", "export", "filters", "neighbours")
RESULTS = ("metrics.json", "model.onnx", "predictions.csv")
# Seconds, not minutes: a few batches of LeNet-5 when a case gets as far as training.
QUICK = ("logger=none", *(o for o in TINY if not o.startswith("trainer.accelerator")))

# (command, arguments, what the one error line says). Placeholders: {ckpt} a LeNet-5 checkpoint,
# {other_shapes} one whose weights do not fit its network, {resume_other} a training checkpoint
# of LeNet-5 (modern) to resume with LeNet-5's network, {imagenet} a small ImageNet-layout tree,
# {empty} an empty folder, {file} a plain file, {tmp} the case's folder.
WRONG_INPUTS: dict[str, tuple[str, tuple[str, ...], str]] = {
    # Hydra's own errors, before any code of ours runs
    "misspelt-key": ("train", ("trainer.max_epoch=3",), "+trainer.max_epoch=3"),
    "unknown-group-option": ("train", ("model=resnet5",), "Could not find 'model/resnet5'"),
    "unknown-group-option-lists-choices": ("train", ("model=resnet5",), "resnet50, resnext"),
    "unknown-flag-of-a-command": ("train", ("--bogus",), "--bogus is not an option"),
    "override-not-parsed": ("train", ("trainer.max_epochs=[",), "cannot read the override"),
    "key-of-a-missing-group": ("eval", ("ckpt_path={ckpt}", "model=lenet5"), "model"),
    "eval-without-ckpt-path": ("eval", (), "ckpt_path must be given: pass ckpt_path=..."),
    "predict-without-inputs": ("predict", ("ckpt_path={ckpt}",), "inputs must be given"),
    "export-without-ckpt-path": ("export", (), "ckpt_path must be given"),
    # keys the code does not take
    "invented-net-key": ("train", ("+model.net.bogus=1",), "lenet5 takes no argument 'bogus'"),
    "invented-model-key": (
        "train", ("+model.bogus=1",), "PerPatternModule takes no argument 'bogus'",
    ),
    "misspelt-optimizer-key": (
        "train", ("model=lenet5_modern", "+model.optimizer.momentm=0.9"),
        "model.optimizer.momentm=0.9 is not allowed: SGD takes no argument 'momentm'",
    ),
    "gap-head-on-vgg": (
        "train", ("model=vgg11", "data=mnist", "+model.net.gap_head=true"), "has no nn.Flatten",
    ),
    "invented-trainer-key": ("train", ("+trainer.bogus=1",), "trainer.bogus=1 is not allowed"),
    "invented-data-key": (
        "train", ("+data.bogus=1",), "data.bogus=1 is not allowed: MNISTDataModule takes no",
    ),
    # the Trainer's arguments
    "epochs-not-a-number": ("train", ("trainer.max_epochs=abc",), "use an integer or null"),
    "epochs-negative": ("train", ("trainer.max_epochs=-5",), "`max_epochs` must be a non-neg"),
    "precision-unknown": ("train", ("trainer.precision=banana",), "precision='banana' is not"),
    "devices-zero": ("train", ("trainer.devices=0",), "devices=0"),
    "limit-negative": ("train", ("trainer.limit_train_batches=-1",), "limit_train_batches"),
    "strategy-unknown": ("train", ("trainer.strategy=bogus",), "invalid strategy name"),
    "eval-precision-unknown": (
        "eval", ("ckpt_path={ckpt}", "trainer.precision=banana"), "use one of 64, 32, 16",
    ),
    # numbers out of range
    "lr-nan": ("train", ("model.optimizer.lr=nan",), "model.optimizer.lr=nan is not allowed"),
    "lr-inf": ("train", ("model.optimizer.lr=inf",), "use a finite number"),
    "lr-negative-sdlm": ("train", ("model.optimizer.lr=-1",), "model.optimizer.lr=-1 is not"),
    "lr-negative-sgd": (
        "train", ("model=lenet5_modern", "model.optimizer.lr=-0.1"), "use a number >= 0",
    ),
    "momentum-above-1": (
        "train", ("model=lenet5_modern", "model.optimizer.momentum=1.5"),
        "model.optimizer.momentum=1.5 is not allowed: use a number in [0, 1)",
    ),
    "weight-decay-negative": (
        "train", ("model=lenet5_modern", "+model.optimizer.weight_decay=-1e-4"),
        "model.optimizer.weight_decay=-0.0001",
    ),
    "lr-multiplier-with-nothing-to-multiply": (
        "train", ("model=googlenet", "data=mnist", "model.no_weight_decay=[]"),
        "model.optimizer.spared_lr_mult=2.0 is not allowed: it sets the rate of the parameters "
        "spared weight decay, and this network has none",
    ),
    "lr-multiplier-negative": (
        "train", ("model=googlenet", "data=mnist", "model.optimizer.spared_lr_mult=-1"),
        "model.optimizer.spared_lr_mult=-1 is not allowed: use a positive number",
    ),
    "no-weight-decay-unknown-kind": (
        "train", ("model=googlenet", "data=mnist", "model.no_weight_decay=[biases]"),
        "model.no_weight_decay=['biases'] is not allowed: biases is not a kind",
    ),
    "label-smoothing-1": ("train", ("model.label_smoothing=1.0",), "model.label_smoothing=1.0"),
    "label-smoothing-negative": ("train", ("model.label_smoothing=-0.1",), "in [0, 1)"),
    "crop-too-small-for-alexnet": (
        "train", ("model=alexnet", "data.root={imagenet_root}", "data.input_size=8"),
        "data.input_size=8 is not allowed: alexnet's feature map vanishes at 8×8",
    ),
    "batch-size-0": ("train", ("data.batch_size=0",), "data.batch_size=0 is not allowed"),
    "workers-negative": ("train", ("data.num_workers=-1",), "data.num_workers=-1"),
    # files and folders
    "run-dir-under-a-file": ("train", ("hydra.run.dir={file}/run",), "choose a folder you can"),
    "run-dir-not-writable": ("train", ("hydra.run.dir=/sys/classicnets/run",), "/sys/classicnets"),
    "eval-missing-ckpt": ("eval", ("ckpt_path={tmp}/none.ckpt",), "none.ckpt does not exist"),
    "eval-other-shapes": ("eval", ("ckpt_path={other_shapes}",), "f6.weight has shape (3, 120)"),
    "resume-other-shapes": ("train", ("ckpt_path={resume_other}",), "cannot resume"),
    # predict and export
    "predict-top-k-negative": (
        "predict", ("ckpt_path={ckpt}", "inputs={imagenet}", "top_k=-2"), "top_k=-2 is not",
    ),
    "predict-top-k-0": ("predict", ("ckpt_path={ckpt}", "inputs={imagenet}", "top_k=0"), "top_k=0"),
    "predict-batch-0": (
        "predict", ("ckpt_path={ckpt}", "inputs={imagenet}", "batch_size=0"), "batch_size=0",
    ),
    "export-check-batch-0": ("export", ("ckpt_path={ckpt}", "check_batch=0"), "check_batch=0"),
    "export-format-unknown": ("export", ("ckpt_path={ckpt}", "format=tflite"), "format='tflite'"),
    # the scripts' own flags
    "pca-empty-folder": ("compute_pca", ("{empty}",), "no images under"),
    "pca-images-0": ("compute_pca", ("{empty}", "--images", "0"), "--images: '0' is not"),
    "fake-imagenet-no-classes": ("make_fake_imagenet", ("{tmp}/x", "--classes", "0"), "--classes"),
    "fake-imagenet-bad-size": ("make_fake_imagenet", ("{tmp}/x", "--size", "0", "5"), "--size"),
    "neighbours-k-0": ("neighbours", ("ckpt_path={ckpt}", "k=0"), "k=0 is not allowed"),
    "neighbours-no-ckpt": ("neighbours", (), "ckpt_path must be given"),
    "neighbours-unknown-layer": ("neighbours", ("ckpt_path={ckpt}", "layer=c9"), "layer='c9'"),
    "lr-schedule-flag": ("lr_schedule", ("--png", "x.png"), "takes overrides only"),
    "check-learning-flag": ("check_learning", ("--passes", "16"), "takes overrides only"),
    "check-learning-passes-0": ("check_learning", ("check.passes=0",), "check.passes=0"),
    "unknown-flag": ("make_fake_imagenet", ("{tmp}/x", "--bogus"), "unrecognized arguments"),
    "flag-not-a-number": ("compute_pca", ("{empty}", "--seed", "x"), "invalid int value: 'x'"),
    "filters-missing-ckpt": ("filters", ("ckpt_path={tmp}/none.ckpt",), "none.ckpt does not exist"),
    "filters-unknown-layer": ("filters", ("ckpt_path={ckpt}", "layer=c9"), "layer='c9'"),
    "model-table-size-0": ("model_table", ("--name", "lenet5", "--input-size", "0"), "--input"),
}  # fmt: skip


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, fake_imagenet: Path) -> dict[str, str]:
    """The files the cases point at."""
    folder = tmp_path_factory.mktemp("inputs")
    ckpt = lenet_checkpoint(folder / "lenet5.ckpt")
    checkpoint = torch.load(ckpt, weights_only=True)
    # a checkpoint of other shapes: the last layer of a 3-class LeNet-5 in a 10-class one
    other = dict(checkpoint, state_dict=dict(checkpoint["state_dict"]))
    last = [key for key in other["state_dict"] if key.endswith("weight")][-1]
    other["state_dict"][last] = torch.zeros(3, *other["state_dict"][last].shape[1:])
    torch.save(other, folder / "other_shapes.ckpt")
    # a whole training checkpoint, of another network than the one the run builds
    modern = lenet_checkpoint(folder / "modern" / "base.ckpt")
    resumable = torch.load(modern, weights_only=True)
    resumable["state_dict"] = {
        key: torch.zeros(1) for key in resumable["state_dict"]
    }  # every tensor of the wrong shape
    resumable.update({"loops": {}, "pytorch-lightning_version": lightning.__version__})
    torch.save(resumable, folder / "resume_other.ckpt")
    (folder / "empty").mkdir()
    (folder / "a-file").write_text("not a folder")
    return {
        "ckpt": str(ckpt),
        "other_shapes": str(folder / "other_shapes.ckpt"),
        "resume_other": str(folder / "resume_other.ckpt"),
        "imagenet": str(fake_imagenet / "val"),
        "imagenet_root": str(fake_imagenet),
        "empty": str(folder / "empty"),
        "file": str(folder / "a-file"),
    }


_mains: dict[str, Callable[..., object]] = {}


def run_command(command: str, arguments: list[str], run_dir: Path) -> int:
    """Run ``command`` as its command line would, in this process; its exit status."""
    if command in ENTRY_POINTS:
        if command not in _mains:
            _mains[command] = load_entry_point(command).main
        quick = QUICK if command == "train" else QUICK[:1] if command != "export" else ()
        # the case's arguments last: Hydra takes the last value a key is given
        argv = [f"src/{command}.py", *quick, f"hydra.run.dir={run_dir}", *arguments]
        saved, sys.argv = sys.argv, argv
        try:
            _mains[command]()
        except SystemExit as stop:
            return stop.code if isinstance(stop.code, int) else 1
        finally:
            sys.argv = saved
        return 0
    try:
        status = load_script(command).main(arguments)
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 1
    return status or 0


@pytest.mark.parametrize("case", WRONG_INPUTS, ids=list(WRONG_INPUTS))
def test_a_wrong_input_ends_in_one_error_line_and_exit_2(
    case: str, inputs: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    command, arguments, expected = WRONG_INPUTS[case]
    if "gpu" in case and torch.cuda.is_available():
        pytest.skip("there is a GPU here")
    arguments = [a.format(tmp=tmp_path, **inputs) for a in arguments]
    status = run_command(command, arguments, tmp_path / "run")
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert status == 2, err[-3000:]
    assert len(errors) == 1, err[-3000:]
    assert expected in errors[0], errors[0]
    assert "Traceback" not in err
    assert not [p for name in RESULTS for p in tmp_path.rglob(name)]


@pytest.mark.skipif(torch.cuda.is_available(), reason="there is a GPU here")
def test_an_accelerator_that_is_not_there_is_one_line(
    inputs: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_command("train", ["trainer.accelerator=gpu"], tmp_path / "run") == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "gpu" in errors[0], errors


def test_a_sweep_job_whose_loss_goes_nan_writes_its_line_to_error_txt(
    tmp_path: Path, train_main
) -> None:
    overrides = ["hparams_search=lenet5_optuna", "model=lenet5_modern", "model.optimizer.lr=1e30"]
    cfg = compose_config("train", [*overrides, *QUICK, "+model.check_every_n_steps=1"], tmp_path)
    assert train_main(cfg) == float("-inf")  # the search maximises: the worst value
    assert "the loss is NaN or infinite" in (tmp_path / "error.txt").read_text()
    assert not (tmp_path / "metrics.json").exists()
