"""Alert text understanding: the multilingual E5 encoder and the category head (ONNX runtime)."""

from exporter.text.encoder import (
    CATEGORIES,
    Classification,
    ModelError,
    TextModel,
    normalize_alert_text,
)

__all__ = ["CATEGORIES", "Classification", "ModelError", "TextModel", "normalize_alert_text"]
