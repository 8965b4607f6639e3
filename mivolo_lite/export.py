"""ONNX export of the estimator, and an onnxruntime backend that stands in for the torch model.

The exported graph takes both crops and both presence masks with a dynamic batch and returns the
age distribution and P(male); everything derived from them (age, spread, flip TTA) is
computed here with the torch model's own code, so the two backends cannot drift apart.

A graph cannot skip an encoder for a batch that lacks that input, as eager torch does, so the
backend also exports a face-only and a body-only graph (on first need) and runs the one that
matches the batch: face crops alone do not pay for the body encoder.

Used by :class:`~mivolo_lite.AgePredictor` (``backend="onnx"``), ``tools/export_onnx.py`` and
``tools/benchmark.py``.
"""

from __future__ import annotations

import copy
import hashlib
import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from .models.modeling_mivolo_lite import MiVOLOLiteModel, MiVOLOLiteOutput, append_mirrored

BRANCH_INPUTS = {"face": ("face_pixel_values", "face_mask"), "body": ("body_pixel_values", "body_mask")}
BOTH = ("face", "body")
OUTPUT_NAMES = ("age_probs", "gender_prob")
DEFAULT_OPSET = 17
BACKENDS = ("torch", "onnx", "onnx-int8", "auto")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# Below this many parameters a model on a GPU waits on kernel launches, not arithmetic, and
# autocast's casts only add launches: on an H200 the lite preset (1.5 M) took 4.7 ms per call in
# bf16 against 3.0 in fp32 at batch 1, and the same at batch 512; d1 (27 M) ran 2.3x faster in bf16.
AUTOCAST_MIN_PARAMS = 10_000_000
CACHE_KEEP = 24  # graphs kept in the cache folder (three per model at most: both inputs, face-only, body-only)
# Bump when the graph's inputs/outputs or the export recipe change: old cached files are then ignored.
_EXPORT_RECIPE = "3"
# The int8 graphs a model folder ships, per set of inputs; body-only batches run the fp32 graph
# (the body branch stays fp32 in every graph: see mivolo_lite.quantization)
INT8_GRAPH_SETS = (("face",), BOTH)
INT8_WEIGHTS_KEY = "mivolo_lite_weights"  # ONNX metadata: weights_digest of the model a graph was made from
# The age calibration refitted on the int8 graphs' own ages (made with them by mivolo-lite quantize):
# {INT8_WEIGHTS_KEY: digest, "age_calibration": table}. A sidecar rather than graph metadata, so
# that refitting it does not rewrite 25 MB of graphs.
INT8_CALIBRATION_FILE = "int8_calibration.json"


def onnx_exportable(config) -> bool:
    """VOLO outlookers fold patches back with col2im, which the ONNX exporter cannot write with a
    dynamic batch: presets with outlooker stages (``d1``) stay on torch. ``lite`` has none."""
    return "outlooker" not in config.stage_types


def input_names(branches: tuple[str, ...] = BOTH) -> list[str]:
    """Graph inputs, in order: for each branch its pixels (B, 3, S, S) then its mask (B,, bool)."""
    return [name for branch in branches for name in BRANCH_INPUTS[branch]]


class _ProbabilityGraph(nn.Module):
    """What the ONNX graph computes. With both branches the model runs with ``static_branches``:
    both encoders on the whole batch, selected per sample by the masks."""

    def __init__(self, model: MiVOLOLiteModel, branches: tuple[str, ...]):
        super().__init__()
        self.model, self.names = model, input_names(branches)

    def forward(self, *tensors):
        named = dict(zip(self.names, tensors))
        out = self.model(named.get("face_pixel_values"), named.get("body_pixel_values"),
                         named.get("face_mask"), named.get("body_mask"))
        return out.age_probs, out.gender_prob


def export_onnx(model: MiVOLOLiteModel, path: str | Path, opset: int = DEFAULT_OPSET,
                branches: tuple[str, ...] = BOTH) -> Path:
    """Write ``model`` as an ONNX graph with a dynamic batch axis, taking the inputs of ``branches``
    (both by default). The caller's model is left as it was (the export works on a BatchNorm-fused copy)."""
    if not onnx_exportable(model.config):
        raise NotImplementedError(f"preset {model.config.preset!r} has outlooker stages, which do not export to ONNX "
                                  "(col2im with a dynamic batch); use backend='torch'")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    graph_model = copy.deepcopy(model).float().cpu().eval().fuse_for_inference()
    graph_model.static_branches = True
    size = graph_model.config.image_size
    # Mixed masks in the example so that no mask-dependent value is frozen into the trace.
    example = {"face_pixel_values": torch.randn(2, 3, size, size), "face_mask": torch.tensor([True, False]),
               "body_pixel_values": torch.randn(2, 3, size, size), "body_mask": torch.tensor([True, True])}
    names = input_names(branches)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings about shape-derived Python ints; checked by the tests
        torch.onnx.export(_ProbabilityGraph(graph_model, branches), tuple(example[n] for n in names), str(path),
                          input_names=names, output_names=list(OUTPUT_NAMES), opset_version=opset, dynamo=False,
                          dynamic_axes={name: {0: "batch"} for name in names + list(OUTPUT_NAMES)})
    return path


def weights_digest(model: nn.Module) -> str:
    """SHA-256 of the model's tensors (names and fp32 values): which weights a graph was made from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def model_fingerprint(model: MiVOLOLiteModel, opset: int = DEFAULT_OPSET, branches: tuple[str, ...] = BOTH) -> str:
    """Hash of everything the exported graph depends on: config, weights, inputs, exporter versions."""
    digest = hashlib.sha256()
    digest.update(f"{_EXPORT_RECIPE}|{opset}|{'+'.join(branches)}|{torch.__version__}|".encode())
    digest.update(model.config.to_json_string(use_diff=False).encode())
    digest.update(weights_digest(model).encode())
    return digest.hexdigest()


def cache_dir() -> Path:
    """``$MIVOLO_LITE_CACHE`` or ``~/.cache/mivolo_lite`` (``$XDG_CACHE_HOME`` honoured)."""
    if os.environ.get("MIVOLO_LITE_CACHE"):
        return Path(os.environ["MIVOLO_LITE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mivolo_lite"


def cached_onnx(model: MiVOLOLiteModel, opset: int = DEFAULT_OPSET, branches: tuple[str, ...] = BOTH) -> Path:
    """Path of the model's ONNX graph, exported on first use (a few seconds) and then reused.
    The file name is the fingerprint of the weights, so a changed model never reuses a stale graph."""
    fingerprint = model_fingerprint(model, opset, branches)
    name = f"{model.config.preset or 'model'}-{'+'.join(branches)}-{fingerprint[:20]}.onnx"
    for folder in (cache_dir() / "onnx", Path(tempfile.gettempdir()) / "mivolo_lite_onnx"):
        path = folder / name
        if path.exists():
            path.touch()  # recently used: kept by _prune
            return path
        partial = folder / f".{name}.{os.getpid()}.partial"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            export_onnx(model, partial, opset, branches)
            os.replace(partial, path)  # atomic: a concurrent reader never sees half a file
            _prune(folder)
            return path
        except OSError:
            continue  # read-only cache (e.g. a locked-down home): fall back to the temp folder
        finally:
            partial.unlink(missing_ok=True)
    raise OSError(f"cannot write the ONNX graph to {cache_dir()} nor to the temp folder")


def _prune(folder: Path, keep: int = CACHE_KEEP) -> None:
    """Every new set of weights (each fine-tune, each test model) adds graphs: keep the most recently used."""
    graphs = sorted(folder.glob("*.onnx"), key=lambda f: f.stat().st_mtime, reverse=True)
    for stale in graphs[keep:]:
        stale.unlink(missing_ok=True)


def ort_session(path: str | Path | bytes, threads: int | None = None):
    """An onnxruntime CPU session with full graph optimisation (``path``: a file, or the model's
    bytes). ``threads`` defaults to torch's thread count, so ``torch.set_num_threads`` governs
    both backends alike."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    # Idle workers sleep instead of spinning: on a small CPU spinning threads steal the cores the
    # detector and torch need between two estimator calls.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


class OnnxEstimator:
    """The estimator in onnxruntime. :meth:`predict` takes the arguments of
    :meth:`MiVOLOLiteModel.predict` and returns the same :class:`MiVOLOLiteOutput` (CPU tensors).

    ``onnx_path``: a graph from :func:`export_onnx` with both inputs, used for every batch; by
    default the graphs come from :func:`cached_onnx`, one per set of inputs present. ``graphs``:
    given graphs per set of inputs instead (the int8 graphs a model folder ships,
    :func:`int8_backend`). ``age_calibration``: the calibration table fitted on these graphs' ages,
    which the predictor then uses instead of the model's (``None``: the model's)."""

    def __init__(self, model: MiVOLOLiteModel, onnx_path: str | Path | None = None, threads: int | None = None,
                 graphs: dict[tuple[str, ...], Path] | None = None, age_calibration: dict | None = None):
        self.model, self.threads, self.graphs = model, threads, graphs
        self.age_calibration = age_calibration
        self.fixed_graph = onnx_path is not None
        self.sessions = {BOTH: ort_session(onnx_path if self.fixed_graph else self._graph(BOTH), threads)}

    def _graph(self, branches: tuple[str, ...]) -> Path:
        if self.graphs is not None and branches in self.graphs:
            return self.graphs[branches]
        return cached_onnx(self.model, branches=branches)

    def session(self, branches: tuple[str, ...]):
        if self.fixed_graph:
            return self.sessions[BOTH]
        if branches not in self.sessions:
            self.sessions[branches] = ort_session(self._graph(branches), self.threads)
        return self.sessions[branches]

    @torch.no_grad()
    def predict(self, face_pixel_values=None, body_pixel_values=None, face_mask=None, body_mask=None,
                flip_tta: bool = True) -> MiVOLOLiteOutput:
        pixels = {"face": face_pixel_values, "body": body_pixel_values}
        masks = {"face": face_mask, "body": body_mask}
        like = face_pixel_values if face_pixel_values is not None else body_pixel_values
        if like is None:
            raise ValueError("OnnxEstimator.predict needs face_pixel_values, body_pixel_values or both")
        batch = like.shape[0]
        # The graph of the inputs present (skips an absent encoder), or the one fixed graph for all
        branches = BOTH if self.fixed_graph else tuple(b for b in BOTH if pixels[b] is not None)
        feeds = {}
        for branch in branches:
            if pixels[branch] is None:  # only with the fixed graph: zeros and a False mask
                x = torch.zeros_like(like, dtype=torch.float32, device="cpu")
                present = torch.zeros(batch, dtype=torch.bool)
            else:
                x = pixels[branch].float().cpu()
                present = torch.ones(batch, dtype=torch.bool) if masks[branch] is None else \
                    masks[branch].cpu().bool().reshape(batch)
            if flip_tta:  # the mirrored copies ride in the same run: one call, twice the batch
                x, present = append_mirrored(x), present.repeat(2)
            pixel_name, mask_name = BRANCH_INPUTS[branch]
            feeds[pixel_name], feeds[mask_name] = x.contiguous().numpy(), present.numpy()
        probs, male = (torch.from_numpy(v) for v in self.session(branches).run(list(OUTPUT_NAMES), feeds))
        # age and spread (and the TTA average): the torch code itself
        return self.model.summarize_mirrored(probs, male) if flip_tta else self.model.summarize_probs(probs, male)


# -- int8 graphs shipped in a model folder (made by mivolo_lite.quantization) --------------------

def int8_graph_name(branches: tuple[str, ...]) -> str:
    return f"int8_{'_'.join(branches)}.onnx"


def _model_file(model, name: str) -> Path | None:
    """The file ``name`` beside the model's weights: in its folder, or in its Hub repo (the HF
    cache, downloaded once; offline, the cache only)."""
    source = getattr(model.config, "_name_or_path", "") or ""
    if not source:
        return None
    if Path(source).is_dir():
        path = Path(source) / name
        return path if path.exists() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(hf_hub_download(source, name, revision=getattr(model.config, "_commit_hash", None)))
    except (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError, OSError, ValueError):
        return None


def int8_backend(model) -> tuple[dict[tuple[str, ...], Path], dict | None]:
    """The int8 graphs shipped with ``model`` (as loaded by ``from_pretrained``), checked against
    its weights, and the age calibration fitted on their ages (``None``, with a warning, when the
    folder has none or one of other weights: intervals then use the fp32 table). Raises
    FileNotFoundError (no graphs, or some missing) or ValueError (graphs made from other weights),
    each naming the model and the command that makes them."""
    import json

    import onnx

    source = getattr(model.config, "_name_or_path", "") or "this model"
    make = (f"make them with: mivolo-lite quantize CALIBRATION.csv --model {source} "
            "(annotation CSVs of crops the model may have seen, not your test set)")
    found = {branches: _model_file(model, int8_graph_name(branches)) for branches in INT8_GRAPH_SETS}
    missing = [int8_graph_name(b) for b, path in found.items() if path is None]
    if missing:
        raise FileNotFoundError(f"backend='onnx-int8': {source} has no int8 graphs ({', '.join(missing)} missing); "
                                f"{make}")
    digest = weights_digest(copy.deepcopy(model).fuse_for_inference())  # as quantize_model hashed it
    for branches, path in found.items():
        meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        if meta.get(INT8_WEIGHTS_KEY) != digest:
            raise ValueError(f"backend='onnx-int8': {path} was made from other weights than {source}'s "
                             f"(fine-tuned or recalibrated since?); {make}")
    sidecar = _model_file(model, INT8_CALIBRATION_FILE)
    saved = json.loads(sidecar.read_text()) if sidecar is not None else {}
    if saved.get(INT8_WEIGHTS_KEY) != digest or not saved.get("age_calibration"):
        problem = "no" if sidecar is None else "a stale or empty"
        warnings.warn(f"backend='onnx-int8': {source} has {problem} {INT8_CALIBRATION_FILE}, so age intervals and "
                      f"age checks use the fp32 calibration, which int8 ages fit less well; rerun mivolo-lite "
                      f"quantize with annotation CSVs holding exact ages", stacklevel=3)
        return found, None
    return found, saved["age_calibration"]


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_precision(precision: str, device: str | torch.device, model: nn.Module | None = None) -> str:
    """``"auto"``: bf16 on a CUDA device that has it (fp16 on older GPUs) for models of at least
    :data:`AUTOCAST_MIN_PARAMS` parameters; fp32 for smaller ones and on the CPU (most CPUs have
    no bf16 units and run it slower; onnxruntime runs the fp32 graph)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    if torch.device(device).type != "cuda":
        return "fp32"
    if model is not None and sum(p.numel() for p in model.parameters()) < AUTOCAST_MIN_PARAMS:
        return "fp32"
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp16"


class AutocastEstimator:
    """The torch model under ``torch.autocast``: matrix products and convolutions in bf16/fp16,
    softmax and everything after it in fp32 (autocast keeps softmax in fp32, and the age
    and spread are computed from those fp32 probabilities). Outputs are fp32 tensors, as from
    the model itself."""

    def __init__(self, model: MiVOLOLiteModel, precision: str, device_type: str):
        self.model, self.precision, self.device_type = model, precision, device_type
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]

    @torch.no_grad()
    def predict(self, *args, **kwargs) -> MiVOLOLiteOutput:
        with torch.autocast(self.device_type, dtype=self.dtype):
            out = self.model.predict(*args, **kwargs)
        return MiVOLOLiteOutput(**{k: v.float() if v.is_floating_point() else v for k, v in out.items()})


def build_estimator(model: MiVOLOLiteModel, backend: str = "torch", device: str | torch.device = "cpu",
                    precision: str = "auto"):
    """The object whose ``predict`` AgePredictor calls: the torch model itself, an
    :class:`AutocastEstimator` (torch in bf16/fp16, by default on a GPU), or an
    :class:`OnnxEstimator` (fp32 graphs exported on first use, or with ``"onnx-int8"`` the int8
    graphs the model folder ships). ``"auto"`` backend: the fp32 onnxruntime graph on CPU when
    onnxruntime is installed and the model exports (measured faster there, see the README's Speed
    section), torch otherwise; never int8, which reads ages a little less well."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    on_cpu = torch.device(device).type == "cpu"
    precision = resolve_precision(precision, device, model)
    if backend == "auto":  # onnxruntime runs the fp32 graph: a lower precision asks for torch
        backend = "onnx" if (on_cpu and precision == "fp32" and onnxruntime_available()
                             and onnx_exportable(model.config)) else "torch"
    if backend == "torch":
        return model if precision == "fp32" else AutocastEstimator(model, precision, torch.device(device).type)
    if precision != "fp32":
        graph = "int8 graphs" if backend == "onnx-int8" else "fp32 graph"
        raise ValueError(f"backend={backend!r} runs the {graph}; precision={precision!r} needs backend='torch'")
    if not on_cpu:
        raise ValueError(f"backend={backend!r} runs on the CPU (onnxruntime's CPU provider); use device='cpu'")
    if not onnxruntime_available():
        raise ImportError(f"backend={backend!r} needs onnxruntime: pip install 'mivolo_lite[onnx]'")
    if backend == "onnx-int8":
        graphs, age_calibration = int8_backend(model)
        return OnnxEstimator(model, graphs=graphs, age_calibration=age_calibration)
    return OnnxEstimator(model)
