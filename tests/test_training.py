"""accelerate launch with 2 CPU processes on a tiny real subset (with teacher soft labels for some faces):
checkpoint, then exact resume."""

import json
import os
import subprocess
import sys

from conftest import REPO

CONFIG = """
output_dir: {out}
model:
  preset: lite
  overrides: {{image_size: 32, stem_channels: [8, 16], stem_strides: [2, 2], stage_dims: [32], stage_heads: [2],
              stage_depths: [1]}}
data:
  train_csv: [{ann}/utkface_train.csv, {ann}/peta_train.csv, {ann}/aaf_train.csv]
  val_csv: [{ann}/utkface_val.csv]
  limit_per_csv: 16
  cache_images: false
  num_workers: 0
  teacher_labels: {teacher}
optim:
  epochs: 3
  batch_size: 4
  warmup_steps: 2
checkpoint_every: 2
"""


def launch(config, *extra):
    # "--multi_gpu" with no GPU visible starts torchrun with 2 processes; accelerate then runs DDP on
    # the CPU over gloo ("--cpu" alone would start a single process).
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", str(REPO / "tools" / "train.py"), "--config", str(config),
           *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "ACCELERATE_USE_CPU": "true"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=REPO)


def write_teacher_labels(path, records):
    """Soft labels as tools/teacher_labels.py writes them (a made-up teacher: the run must use them,
    not learn from them)."""
    import csv

    import numpy as np

    from mivolo_lite.data.teacher import TEACHER_COLUMNS, format_teacher_row

    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(TEACHER_COLUMNS)
        for r in records:
            probs = np.exp(-0.5 * ((np.arange(81) - r.age) / 4.0) ** 2)
            writer.writerow(format_teacher_row(r.image, r.face_box, 0.7, probs / probs.sum()))


def test_two_process_training_checkpoints_and_resumes(tmp_path, annotations):
    from mivolo_lite.data.annotations import read_annotations

    out = tmp_path / "run"
    config = tmp_path / "tiny.yaml"
    teacher = tmp_path / "teacher.csv"
    write_teacher_labels(teacher, read_annotations(annotations / "utkface_train.csv")[:10])
    config.write_text(CONFIG.format(out=out, ann=annotations, teacher=teacher))
    first = launch(config, "--max-steps", "4")
    assert first.returncode == 0, first.stderr[-3000:]
    assert (out / "checkpoints" / "step_4").is_dir()
    assert "stopped at step 4" in first.stdout + first.stderr
    assert "teacher labels for 10 of 48 training samples" in first.stdout + first.stderr  # distillation is on

    second = launch(config, "--resume")
    assert second.returncode == 0, second.stderr[-3000:]
    log = second.stdout + second.stderr
    assert "resumed from" in log and "at step 4" in log
    # 3 sets x 16 rows = 48 samples, 2 processes x batch 4 -> 6 steps per epoch, 3 epochs
    summary = json.loads((out / "final" / "training_summary.json").read_text())
    assert summary["steps"] == 18 and summary["processes"] == 2
    assert (out / "final" / "model.safetensors").exists() and (out / "final" / "preprocessor_config.json").exists()
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps and max(steps) == 18
