"""Where models come from: the default model shipped inside the package, local folders, and
Hugging Face Hub repo ids (which also resolve offline from a pre-filled cache)."""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL_DIR = Path(__file__).parent / "pretrained" / "mivolo-lite-cpu"


PICKLE_REFUSED = ("mivolo_lite loads safetensors only, because unpickling a checkpoint can run arbitrary code. "
                  "Convert it with model.save_pretrained(folder) in a trusted environment.")


class ModelNotFoundError(OSError):
    """The model name is neither a local folder with a model nor a reachable/cached Hub repo."""


def resolve_model(name_or_path: str | Path | None) -> str:
    """``None`` -> the shipped default model folder; anything else is passed on to
    transformers' ``from_pretrained`` (a local folder or a Hub repo id)."""
    if name_or_path is None:
        if not (DEFAULT_MODEL_DIR / "config.json").exists():
            raise ModelNotFoundError(f"the default model is missing from {DEFAULT_MODEL_DIR}; reinstall mivolo_lite")
        return str(DEFAULT_MODEL_DIR)
    path = Path(name_or_path)
    if path.exists() and not (path / "config.json").exists():
        raise ModelNotFoundError(f"{str(name_or_path)!r} is a folder without config.json: not a saved mivolo_lite model")
    return str(name_or_path)


def load_model_and_processor(name_or_path: str | Path | None, revision: str | None = None, **hub_kwargs):
    """(model, processor) from a folder or repo id, with one clear error when it cannot be found.
    Weights are read from safetensors only: a folder that holds only a pickle checkpoint
    (``pytorch_model.bin``) is refused rather than unpickled."""
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError

    from .models import MiVOLOLiteImageProcessor, MiVOLOLiteModel

    resolved = resolve_model(name_or_path)
    path = Path(resolved)
    if path.is_dir() and not any(path.glob("*.safetensors")):
        if any(path.glob("*.bin")) or any(path.glob("*.pt")) or any(path.glob("*.pth")):
            raise ModelNotFoundError(f"{resolved!r} holds only pickle weights (.bin/.pt); {PICKLE_REFUSED}")
        raise ModelNotFoundError(f"{resolved!r} has no model.safetensors")
    try:
        model = MiVOLOLiteModel.from_pretrained(resolved, revision=revision, use_safetensors=True, **hub_kwargs)
        processor = MiVOLOLiteImageProcessor.from_pretrained(resolved, revision=revision, **hub_kwargs)
    except (RepositoryNotFoundError, LocalEntryNotFoundError, HFValidationError) as e:
        raise ModelNotFoundError(_not_found_message(resolved, e)) from None
    except OSError as e:
        if isinstance(e, ModelNotFoundError):
            raise
        if "model.safetensors" in str(e):  # a Hub repo (or cached one) that holds pickle weights only
            raise ModelNotFoundError(f"{resolved!r} has no model.safetensors; {PICKLE_REFUSED}") from None
        raise ModelNotFoundError(_not_found_message(resolved, e)) from None
    return model, processor


def _not_found_message(name: str, error: Exception) -> str:
    return (f"cannot load a mivolo_lite model from {name!r}: it is not a local folder, and the Hugging Face Hub "
            f"has no such repo or could not be reached (offline mode or no network: the repo must already be in "
            f"the HF cache). Details: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
