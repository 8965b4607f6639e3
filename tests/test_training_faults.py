"""Training faults: a real ``accelerate launch`` run killed (SIGKILL, no chance to clean up) at a
random step resumes from its last complete checkpoint and ends exactly where an uninterrupted
run ends: every optimizer step once, same losses, same final weights. A corrupt image in the
training data is skipped and counted, not fatal."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO
from mivolo_lite.data.annotations import read_annotations, write_annotations
from mivolo_lite.training.trainer import latest_checkpoint, rewind_metrics

CONFIG = """
output_dir: {out}
seed: 7
model:
  preset: lite
  overrides: {{image_size: 32, stem_channels: [8, 16], stem_strides: [2, 2], stage_dims: [32], stage_heads: [2],
              stage_depths: [1]}}
data:
  train_csv: [{train}, {ann}/peta_train.csv, {ann}/aaf_train.csv]
  val_csv: [{ann}/utkface_val.csv]
  limit_per_csv: 8
  cache_images: false
  num_workers: 0
optim:
  epochs: 4
  batch_size: 4
  warmup_steps: 2
checkpoint_every: 3
log_every: 1
eval_every_epochs: 2
"""
TOTAL_STEPS = 24  # 3 CSVs x 8 rows = 24 samples, batch 4 -> 6 steps per epoch, 4 epochs
BAD_ROWS = 1


def _command(config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1", "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", str(REPO / "tools" / "train.py"), "--config",
            str(config), *extra]


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1"}


def _train_lines(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    lines = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # being written
            continue
        if "val" not in record:
            lines.append(record)
    return lines


@pytest.fixture(scope="module")
def setup(annotations, tmp_path_factory):
    """Two configs (reference and faulty run) over the same data, one training image corrupt."""
    root = tmp_path_factory.mktemp("faults")
    corrupt = root / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this JPEG stops here")
    records = read_annotations(annotations / "utkface_train.csv")[:8]
    records[3] = dataclasses.replace(records[3], image=str(corrupt))
    train = write_annotations(records, root / "utkface_with_corrupt.csv")
    configs = {}
    for name in ("reference", "faulty"):
        configs[name] = root / f"{name}.yaml"
        configs[name].write_text(CONFIG.format(out=root / name, train=train, ann=annotations))
    return root, configs


@pytest.fixture(scope="module")
def reference(setup):
    root, configs = setup
    done = subprocess.run(_command(configs["reference"]), capture_output=True, text=True, timeout=600, env=ENV,
                          cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "reference", done.stdout + done.stderr


@pytest.mark.slow
def test_corrupt_training_image_is_skipped_and_counted(reference):
    run, log = reference
    summary = json.loads((run / "final" / "training_summary.json").read_text())
    assert summary["steps"] == TOTAL_STEPS
    assert summary["skipped_bad_images"] == BAD_ROWS * 4  # seen once per epoch
    assert "corrupt.jpg" in log and "skipping training sample" in log  # named once, not silent
    assert f"skipped {BAD_ROWS * 4} unreadable training sample(s)" in log
    assert _train_lines(run)[-1]["bad_images"] == BAD_ROWS * 4


@pytest.mark.slow
def test_run_killed_at_a_random_step_resumes_without_lost_or_repeated_steps(setup, reference):
    root, configs = setup
    run = root / "faulty"
    kill_at = random.randint(4, 17)
    with open(root / "killed.log", "w") as log:
        proc = subprocess.Popen(_command(configs["faulty"]), stdout=log, stderr=subprocess.STDOUT, env=ENV, cwd=REPO,
                                start_new_session=True)  # its own process group: the launcher and the trainer
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            lines = _train_lines(run)
            if lines and lines[-1]["step"] >= kill_at:
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.005)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the run was not killed at step {kill_at}: exit {proc.returncode}, " \
                                               + (root / "killed.log").read_text()[-2000:]
    died_at = _train_lines(run)[-1]["step"]
    assert died_at < TOTAL_STEPS and not (run / "final").exists()
    checkpoint = latest_checkpoint(run)
    resumed_from = int(checkpoint.name.split("_")[1])
    assert resumed_from <= died_at

    done = subprocess.run(_command(configs["faulty"], "--resume"), capture_output=True, text=True, timeout=600, env=ENV,
                          cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"at step {resumed_from}" in done.stdout + done.stderr
    assert not list((run / "checkpoints").glob("*.partial"))

    # every optimizer step exactly once, with the loss of the uninterrupted run
    steps = _train_lines(run)
    assert [s["step"] for s in steps] == list(range(1, TOTAL_STEPS + 1)), f"killed at {died_at}"
    expected = _train_lines(reference[0])
    for got, want in zip(steps, expected):
        assert (got["age_loss"], got["gender_loss"], got["lr"]) == (want["age_loss"], want["gender_loss"], want["lr"]), \
            f"step {got['step']} differs after a kill at step {died_at} and a resume from {resumed_from}"
    summary = json.loads((run / "final" / "training_summary.json").read_text())
    assert summary["steps"] == TOTAL_STEPS and summary["skipped_bad_images"] == BAD_ROWS * 4
    final, want = load_file(run / "final" / "model.safetensors"), load_file(reference[0] / "final" / "model.safetensors")
    assert final.keys() == want.keys() and all(torch.equal(final[k], want[k]) for k in final)


def test_checkpoints_being_written_are_never_resumed_from(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    for name in ("step_3", "step_12", "step_15.partial", "step_x", "notes"):
        (checkpoints / name).mkdir(parents=True)
    assert latest_checkpoint(tmp_path).name == "step_12"


def test_metrics_are_rewound_to_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [{"step": 5, "loss": 1}, {"step": 6, "loss": 1}, {"step": 6, "epoch": 1, "val": {}}, {"step": 7, "loss": 1}]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"step": 8, "lo')  # cut short by the kill
    rewind_metrics(path, 6)
    assert [json.loads(x) for x in path.read_text().splitlines()] == lines[:2]


def test_augmentation_depends_on_seed_epoch_and_sample_only(annotations):
    """What makes the resume exact whatever fetched the sample (worker, prefetch, resumed run)."""
    from mivolo_lite.data.dataset import AgeDataset, EpochShuffleSampler
    from mivolo_lite.models import MiVOLOLiteImageProcessor

    records = read_annotations(annotations / "aaf_val.csv")[:3]
    dataset = AgeDataset(records, MiVOLOLiteImageProcessor(size=32), train=True, seed=3)
    first, again, next_epoch = dataset[(1, 0)], dataset[(1, 0)], dataset[(1, 1)]
    assert torch.equal(first["face_pixel_values"], again["face_pixel_values"]) and first["index"] == 1
    assert not torch.equal(first["face_pixel_values"], next_epoch["face_pixel_values"])
    sampler = EpochShuffleSampler(3, seed=3, with_epoch=True)
    sampler.set_epoch(5)
    assert sorted(sampler) == [(0, 5), (1, 5), (2, 5)]
