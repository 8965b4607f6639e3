"""The MiVOLO-lite model family, registered with transformers' Auto classes on import."""

from transformers import AutoConfig, AutoImageProcessor, AutoModel

from .configuration_mivolo_lite import PRESETS, MiVOLOLiteConfig
from .image_processing_mivolo_lite import MiVOLOLiteImageProcessor
from .modeling_mivolo_lite import MiVOLOLiteModel, MiVOLOLiteOutput

AutoConfig.register(MiVOLOLiteConfig.model_type, MiVOLOLiteConfig, exist_ok=True)
AutoModel.register(MiVOLOLiteConfig, MiVOLOLiteModel, exist_ok=True)
AutoImageProcessor.register(MiVOLOLiteConfig, slow_image_processor_class=MiVOLOLiteImageProcessor, exist_ok=True)

__all__ = ["PRESETS", "MiVOLOLiteConfig", "MiVOLOLiteModel", "MiVOLOLiteOutput", "MiVOLOLiteImageProcessor"]
