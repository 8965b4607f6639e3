"""accelerate launch with 2 CPU processes on a tiny real subset (with teacher soft labels for some faces):
checkpoint, then exact resume; and a run that refits only one branch (optim.train_only)."""

import json
import os
import subprocess
import sys

import pytest
import torch

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


def launch_one(config):
    """One CPU process, as on this machine."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", str(REPO / "tools" / "train.py"), "--config", str(config)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=REPO)


def write_teacher_labels(path, records):
    """Soft labels as tools/research/teacher_labels.py writes them (a made-up teacher: the run must use them,
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
    from mivolo_lite.data.annotations import evenly_spaced, read_annotations

    out = tmp_path / "run"
    config = tmp_path / "tiny.yaml"
    teacher = tmp_path / "teacher.csv"
    # the run takes 16 rows spread over each file (limit_per_csv); the teacher labels 10 of them
    write_teacher_labels(teacher, evenly_spaced(read_annotations(annotations / "utkface_train.csv"), 16)[:10])
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


def test_train_only_refits_the_body_branch_and_leaves_every_other_weight_untouched(tmp_path, annotations, tiny_model):
    """optim.train_only: a real run from saved weights moves the body encoder and nothing else, not even
    the frozen encoders' BatchNorm statistics, so face-only predictions stay exactly as they were."""
    from safetensors.torch import load_file

    start = tmp_path / "start"
    tiny_model.save_pretrained(start)
    out = tmp_path / "run"
    config = tmp_path / "body.yaml"
    config.write_text(f"""
output_dir: {out}
model: {{init_from: {start}}}
data:
  train_csv: [{annotations}/peta_train.csv, {annotations}/aaf_train.csv]
  limit_per_csv: 8
  cache_images: false
  num_workers: 0
optim: {{epochs: 1, batch_size: 4, warmup_steps: 1, lr: 0.01, train_only: [body_encoder, missing_face]}}
""")
    done = launch_one(config)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "the rest is frozen" in done.stdout + done.stderr
    before, after = load_file(start / "model.safetensors"), load_file(out / "final" / "model.safetensors")
    assert before.keys() == after.keys()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all(k.startswith(("body_encoder.", "missing_face")) for k in moved), sorted(moved)[:5]
    assert any(k.startswith("body_encoder.stem") and k.endswith("running_mean") for k in moved)  # trained BN adapts
    assert any(k.startswith("body_encoder.blocks") for k in moved)


def test_train_only_names_must_match_parameters(tiny_model):
    from mivolo_lite.training.trainer import freeze_all_but

    with pytest.raises(ValueError, match="body_encodr"):
        freeze_all_but(tiny_model, ["body_encodr"])
    frozen = freeze_all_but(tiny_model, ["body_encoder"])
    assert tiny_model.face_encoder in frozen and tiny_model.body_encoder not in frozen and tiny_model not in frozen
    assert all(p.requires_grad == n.startswith("body_encoder.") for n, p in tiny_model.named_parameters())


def test_feature_distillation_run_adds_the_head_to_a_saved_model_and_logs_its_loss(tmp_path, annotations, tiny_model):
    """data.teacher_embeddings + model.overrides.face_embedding_dim on a start without the head: the
    run builds it, trains it on the faces that have descriptors and logs the descriptor loss; a
    descriptor size that does not match the head is refused before training."""
    import numpy as np
    from safetensors.torch import load_file

    from mivolo_lite.data.annotations import evenly_spaced, read_annotations

    start = tmp_path / "start"
    tiny_model.save_pretrained(start)
    faces = evenly_spaced(read_annotations(annotations / "utkface_train.csv"), 8)[:6]  # 6 of the run's 8 faces
    descriptors = tmp_path / "desc.npz"
    np.savez(descriptors, image=np.array([r.image for r in faces]), box=np.array([r.face_box for r in faces], float),
             desc=np.random.default_rng(0).normal(size=(6, 2, 6)).astype(np.float32))

    def run(dim):
        out = tmp_path / f"run{dim}"
        config = tmp_path / f"features{dim}.yaml"
        config.write_text(f"""
output_dir: {out}
model: {{init_from: {start}, overrides: {{face_embedding_dim: {dim}}}}}
data:
  train_csv: [{annotations}/utkface_train.csv, {annotations}/peta_train.csv]
  limit_per_csv: 8
  cache_images: false
  num_workers: 0
  teacher_embeddings: {descriptors}
  center_teacher_embeddings: true
optim: {{epochs: 1, batch_size: 4, warmup_steps: 1, embedding_distill_weight: 1.0}}
log_every: 1
""")
        return out, launch_one(config)

    out, done = run(6)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "face descriptors for 6 of 16 training samples" in done.stdout + done.stderr
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any(0.0 < rec.get("embedding_loss", -1) <= 2.0 for rec in logged)
    weights = load_file(out / "final" / "model.safetensors")
    assert weights["face_embedding_head.1.weight"].shape == (6, tiny_model.config.stage_dims[0])

    _, refused = run(5)
    assert refused.returncode != 0 and "holds 6-d descriptors but the model's face_embedding_dim is 5" in refused.stderr
