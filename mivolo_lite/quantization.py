"""int8 graphs of a model, shipped beside its weights: ``AgePredictor(..., backend="onnx-int8")``.

Static quantisation (onnxruntime, QDQ format): the weights of every Conv, MatMul and Gemm become
int8 per output channel, their inputs uint8 with ranges fixed once on real crops. Those ranges
need real faces and bodies, which a user's machine does not have, so the graphs are made once,
when the model is made (``mivolo-lite quantize``), and stored in the model folder:
``int8_face.onnx`` (face-only batches) and ``int8_face_body.onnx`` (any other batch with a face),
as the fp32 backend exports a graph per set of inputs. The body branch stays fp32 in both (see
``KEEP_FP32``), so body-only batches run the fp32 graph.

Each graph records a digest of the weights it was made from (ONNX metadata); a graph of other
weights (the model was fine-tuned into a folder that kept old graphs) is refused rather than run.

int8 moves ages (0.6 years for the median face, more than 3 for one in 20), so the fp32 intervals
fit them less well: ``mivolo-lite quantize`` refits the age calibration on the int8 graphs' own
ages (:func:`calibrate_int8`, same CSVs, their exactly-aged people) and stores it beside them
(``int8_calibration.json``, with the digest), which the int8 backend then uses.

Dynamic quantisation (no calibration crops) is not offered: it turns the convolutions into
ConvInteger, which onnxruntime ran 4x slower than fp32 on the MobileNet trunk, and wrongly
(age MAE 21 against 5 on UTKFace, in a check while this was built).
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import numpy as np

from .export import (BOTH, INT8_CALIBRATION_FILE, INT8_GRAPH_SETS, INT8_WEIGHTS_KEY, export_onnx, input_names,
                     int8_graph_name, weights_digest)

QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")
# Graph nodes left in fp32, by name prefix: the body branch. Quantised, it read PETA's age groups
# 7 points worse (62.9 -> 55.5 % per image) while faces lost 0.16 years; kept in fp32, PETA is
# unchanged (see docs/benchmarks.md). The face trunk's names are checked, so that a change of the
# exporter's names cannot silently quantise the body too.
KEEP_FP32 = ("/model/body_encoder/",)
QUANTIZED_CHECK = "/model/face_encoder/"
DEFAULT_CALIBRATION_SIZE = 256  # crops per graph (UTKFace validation MAE against fp32: +0.12; +0.16 with 96)


def _needs(branches: tuple[str, ...], record) -> bool:
    """Can ``record`` calibrate the graph of ``branches``? The two-input graph takes any person (a
    missing crop is zeros and a False mask, as at run time); a one-input graph needs its crop."""
    if branches == BOTH:
        return record.face_box is not None or record.body_box is not None
    return (record.face_box if branches == ("face",) else record.body_box) is not None


def calibration_batches(processor, records, branches: tuple[str, ...], n: int = DEFAULT_CALIBRATION_SIZE,
                        batch_size: int = 8) -> list[dict]:
    """Feeds for the graph of ``branches``: ``n`` evenly spaced usable records, preprocessed as
    the predictor does (crop, resize, normalise), in batches."""
    from .data.annotations import evenly_spaced
    from .data.dataset import AgeDataset

    usable = [r for r in records if _needs(branches, r)]
    if not usable:
        raise ValueError(f"no calibration record has the crop the {'+'.join(branches)} graph takes")
    dataset = AgeDataset(evenly_spaced(usable, n), processor)
    samples = [dataset[i] for i in range(len(dataset))]
    names = input_names(branches)
    batches = []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start:start + batch_size]
        batches.append({name: np.ascontiguousarray(np.stack([s[name].numpy() for s in chunk])) for name in names})
    return batches


def quantize_graph(fp32_path: str | Path, int8_path: str | Path, batches: list[dict],
                   metadata: dict[str, str] | None = None) -> Path:
    """Static int8 quantisation of an fp32 graph from :func:`~mivolo_lite.export.export_onnx`,
    its activation ranges fixed on ``batches`` (feeds of its inputs)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Feeds(CalibrationDataReader):
        def __init__(self):
            self.remaining = iter(batches)

        def get_next(self):
            return next(self.remaining, None)

    int8_path = Path(int8_path)
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared))  # shape inference + graph clean-up first
        nodes = [node.name for node in onnx.load(str(prepared)).graph.node]
        if not any(name.startswith(QUANTIZED_CHECK) for name in nodes):
            raise ValueError(f"{fp32_path}: no node is named {QUANTIZED_CHECK}...: the exporter's names changed, "
                             f"and the body branch could not be told apart")
        fp32_nodes = [name for name in nodes if name.startswith(KEEP_FP32)]
        quantize_static(str(prepared), str(Path(scratch) / "int8.onnx"), Feeds(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=list(QUANTIZED_OPS), nodes_to_exclude=fp32_nodes)
        graph = onnx.load(str(Path(scratch) / "int8.onnx"))
    onnx.helper.set_model_props(graph, {**{p.key: p.value for p in graph.metadata_props}, **(metadata or {})})
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(graph, str(int8_path))
    return int8_path


def quantize_model(model, processor, records, folder: str | Path, n: int = DEFAULT_CALIBRATION_SIZE,
                   progress: bool = False) -> dict[tuple[str, ...], Path]:
    """Write the int8 graphs of ``model`` (one per entry of ``INT8_GRAPH_SETS``) into ``folder``
    (a saved model folder), their ranges fixed on ``n`` crops of ``records`` per graph (crops the
    model may have seen in training or calibration; never the ones it is evaluated on). Returns
    the paths."""
    from tqdm.auto import tqdm

    fused = copy.deepcopy(model).float().cpu().eval().fuse_for_inference()  # what AgePredictor runs
    metadata = {INT8_WEIGHTS_KEY: weights_digest(fused)}
    folder = Path(folder)
    written = {}
    with tempfile.TemporaryDirectory() as scratch:
        for branches in tqdm(INT8_GRAPH_SETS, desc="quantising", disable=not progress):
            fp32 = export_onnx(fused, Path(scratch) / f"{'_'.join(branches)}.onnx", branches=branches)
            batches = calibration_batches(processor, records, branches, n)
            written[branches] = quantize_graph(fp32, folder / int8_graph_name(branches), batches, metadata)
    return written


def calibrate_int8(model, processor, annotations, batch_size: int = 64) -> dict:
    """Fit the age calibration of the int8 graphs made by :func:`quantize_model` in the folder
    ``model`` was loaded from, on their own ages of the exactly-aged people in ``annotations`` (CSVs
    the model was calibrated or trained on, never its test set), and write it to
    ``int8_calibration.json`` there with the weights' digest. Returns the table; raises ValueError
    when the CSVs hold too few exact ages."""
    import json
    import warnings

    from .evaluation.report import fit_age_calibration, runner_for

    with warnings.catch_warnings():  # "no int8_calibration.json yet": it is what this makes
        warnings.simplefilter("ignore")
        estimator = runner_for(model, "onnx-int8")
    calibration = fit_age_calibration((estimator, processor), annotations, model.config, batch_size)
    calibration.fitted_on += " (int8 graphs)"
    table = calibration.to_dict()
    saved = {INT8_WEIGHTS_KEY: weights_digest(estimator.model), "age_calibration": table}
    (Path(model.config._name_or_path) / INT8_CALIBRATION_FILE).write_text(json.dumps(saved))
    return table
