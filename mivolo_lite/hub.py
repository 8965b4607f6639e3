"""Where models come from: the default model shipped inside the package, local folders, and
Hugging Face Hub repo ids (which also resolve offline from a pre-filled cache)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PRETRAINED_DIR = Path(__file__).parent / "pretrained"
# The models shipped inside the package, by name (the preset each one is of): the model zoo.
# Each folder is a saved model with its model card (README.md) and evaluation/.
SHIPPED_MODELS = {"mobile": PRETRAINED_DIR / "mivolo-mobile", "lite": PRETRAINED_DIR / "mivolo-lite-cpu"}
DEFAULT_MODEL = "mobile"
DEFAULT_MODEL_DIR = SHIPPED_MODELS[DEFAULT_MODEL]


PICKLE_REFUSED = ("mivolo_lite loads safetensors only, because unpickling a checkpoint can run arbitrary code. "
                  "Convert it with model.save_pretrained(folder) in a trusted environment.")


class ModelNotFoundError(OSError):
    """The model name is neither a local folder with a model nor a reachable/cached Hub repo."""


def resolve_model(name_or_path: str | Path | None) -> str:
    """``None`` -> the shipped default model's folder; a shipped model's name (``SHIPPED_MODELS``:
    ``"mobile"``, ``"lite"``) -> its folder, unless a local folder of that name exists; anything else
    is passed on to transformers' ``from_pretrained`` (a local folder or a Hub repo id)."""
    if name_or_path is None or (isinstance(name_or_path, str) and name_or_path in SHIPPED_MODELS
                                and not Path(name_or_path).exists()):
        name = DEFAULT_MODEL if name_or_path is None else name_or_path
        folder = SHIPPED_MODELS[name]
        if not (folder / "config.json").exists():
            raise ModelNotFoundError(f"the shipped model {name!r} is missing from {folder}; reinstall mivolo_lite")
        return str(folder)
    path = Path(name_or_path)
    if path.exists() and not (path / "config.json").exists():
        raise ModelNotFoundError(f"{str(name_or_path)!r} is a folder without config.json: not a saved mivolo_lite model")
    return str(name_or_path)


WEIGHT_DTYPES = ("float32", "float16")


def save_model(model, processor, folder: str | Path, weights_dtype: str = "float32") -> None:
    """``save_pretrained`` of model and processor, the floating-point weights stored in
    ``weights_dtype``. ``"float16"`` halves the file (the shipped model: 2.9 MB instead of 5.6) at
    no measurable cost in accuracy for ``lite``; the config keeps ``dtype: float32``, so every
    loader, ours and transformers' ``AutoModel``, builds the model in fp32 and widens the weights."""
    dtype = _weights_dtype(weights_dtype)
    # contiguous: a model trained channels-last holds its conv weights in that layout
    state = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    model.save_pretrained(folder, state_dict=state)
    processor.save_pretrained(folder)


def round_to_storage(model, weights_dtype: str = "float32"):
    """The model (in place) with its floating-point weights rounded to ``weights_dtype`` and back
    to fp32: what loading it after :func:`save_model` gives, so that what is fitted or measured on
    it (a calibration table) holds for the saved model exactly."""
    return model.to(_weights_dtype(weights_dtype)).float()


def _weights_dtype(name: str):
    import torch

    if name not in WEIGHT_DTYPES:
        raise ValueError(f"weights_dtype must be one of {WEIGHT_DTYPES}, not {name!r}")
    return getattr(torch, name)


@contextlib.contextmanager
def _quiet_transformers():
    from transformers.utils import logging as hf_logging

    bar_was_on, level = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bar_was_on:
            hf_logging.enable_progress_bar()


HUB_PROBE_TIMEOUT_S = 3.0


def hub_unreachable_reason(timeout: float = HUB_PROBE_TIMEOUT_S) -> str | None:
    """Why the Hugging Face Hub cannot be asked for files now (``None`` when it can): offline mode
    (``HF_HUB_OFFLINE``), or no TCP connection to its host (or to the proxy configured for it)
    within ``timeout`` s. Loaders then read the HF cache only and fail at once when the files
    are not there, instead of huggingface_hub's five retries (about 25 s, a warning each) that
    end in the same error."""
    import socket
    import urllib.request
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    endpoint = urlsplit(constants.ENDPOINT)
    proxy = urllib.request.getproxies().get(endpoint.scheme)
    if proxy and not urllib.request.proxy_bypass(endpoint.hostname or ""):
        endpoint = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    host, port = endpoint.hostname, endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as e:
        return f"no connection to {host}:{port} ({type(e).__name__}: {e})"


def load_model_and_processor(name_or_path: str | Path | None, revision: str | None = None, **hub_kwargs):
    """(model, processor) from a folder or repo id, with one clear error when it cannot be found.
    Weights are read from safetensors only: a folder that holds only a pickle checkpoint
    (``pytorch_model.bin``) is refused rather than unpickled. The model is always built in fp32,
    whatever dtype its weights were stored in (lower precisions run under autocast instead)."""
    import torch
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError

    from .models import MiVOLOLiteImageProcessor, MiVOLOLiteModel

    resolved = resolve_model(name_or_path)
    path = Path(resolved)
    if path.is_dir() and not any(path.glob("*.safetensors")):
        if any(path.glob("*.bin")) or any(path.glob("*.pt")) or any(path.glob("*.pth")):
            raise ModelNotFoundError(f"{resolved!r} holds only pickle weights (.bin/.pt); {PICKLE_REFUSED}")
        raise ModelNotFoundError(f"{resolved!r} has no model.safetensors")
    unreachable = None
    if not path.exists() and not hub_kwargs.get("local_files_only") and _is_repo_id(resolved):
        unreachable = hub_unreachable_reason()
        hub_kwargs["local_files_only"] = unreachable is not None
    try:
        with _quiet_transformers():  # a library call: no "Loading weights" bar, no backend-fallback notes
            model = MiVOLOLiteModel.from_pretrained(resolved, revision=revision, use_safetensors=True,
                                                    dtype=torch.float32, **hub_kwargs)
            processor = MiVOLOLiteImageProcessor.from_pretrained(resolved, revision=revision, **hub_kwargs)
    except (RepositoryNotFoundError, LocalEntryNotFoundError, HFValidationError) as e:
        raise ModelNotFoundError(_not_found_message(resolved, e, unreachable)) from None
    except OSError as e:
        if isinstance(e, ModelNotFoundError):
            raise
        if "model.safetensors" in str(e):  # a Hub repo (or cached one) that holds pickle weights only
            raise ModelNotFoundError(f"{resolved!r} has no model.safetensors; {PICKLE_REFUSED}") from None
        raise ModelNotFoundError(_not_found_message(resolved, e, unreachable)) from None
    return model, processor


def _is_repo_id(name: str) -> bool:
    """Could ``name`` be a Hub repo id? (A missing folder such as ``runs/lite/best`` cannot: no
    network probe for it.)"""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _not_found_message(name: str, error: Exception, unreachable: str | None = None) -> str:
    if unreachable:
        return (f"cannot load a mivolo_lite model from {name!r}: it is not a local folder nor in the HF cache, and "
                f"the Hugging Face Hub cannot be reached ({unreachable})")
    return (f"cannot load a mivolo_lite model from {name!r}: it is not a local folder, and the Hugging Face Hub "
            f"has no such repo or could not be reached (offline mode or no network: the repo must already be in "
            f"the HF cache). Details: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")


def add_to_hf_cache(folder: str | Path, repo_id: str, cache_dir: str | Path | None = None) -> Path:
    """Put a saved model folder into the local Hugging Face cache as if ``repo_id`` had been
    downloaded, so that ``AgePredictor.from_pretrained(repo_id)`` works offline
    (``HF_HUB_OFFLINE=1``), e.g. on a machine that cannot reach the Hub. The layout is
    huggingface_hub's: ``models--org--name/snapshots/<commit>/`` plus ``refs/main``; the commit
    name is a hash of the files, so re-adding changed weights makes a new snapshot. Returns the
    snapshot folder. ``cache_dir`` defaults to huggingface_hub's (``$HF_HUB_CACHE``)."""
    import hashlib
    import shutil

    from huggingface_hub import constants

    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file())
    if not (folder / "config.json").exists() or not any(p.suffix == ".safetensors" for p in files):
        raise ModelNotFoundError(f"{str(folder)!r} is not a saved mivolo_lite model (config.json + *.safetensors)")
    digest = hashlib.sha1()
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    commit = digest.hexdigest()
    repo_dir = Path(cache_dir or constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for path in files:
        shutil.copy2(path, snapshot / path.name)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit)
    return snapshot


def publish_model(folder: str | Path, repo_id: str, private: bool = False, token: str | None = None,
                  to_cache: bool = False) -> str:
    """Publish a saved model folder as Hub repo ``repo_id``: the whole folder (weights, config,
    image processor, model card README.md and its evaluation/ figures) through huggingface_hub's
    ``upload_folder``, so the Hub page shows the card. ``to_cache=True`` instead puts it into the
    local HF cache (:func:`add_to_hf_cache`), for machines that load it offline. Returns where it went."""
    folder = Path(folder)
    if not (folder / "config.json").exists() or not any(folder.glob("*.safetensors")):
        raise ModelNotFoundError(f"{str(folder)!r} is not a saved mivolo_lite model (config.json + *.safetensors)")
    if to_cache:
        return str(add_to_hf_cache(folder, repo_id))
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    commit = api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message="Upload mivolo_lite model",
                               ignore_patterns=["*.bin", "*.pt", "*.pth", "checkpoints/*"])
    return str(getattr(commit, "commit_url", f"https://huggingface.co/{repo_id}"))
