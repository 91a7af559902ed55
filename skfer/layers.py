"""Registered Keras layers of the skfer graph (no ``Lambda``, so ``.keras`` files load safely)."""

from __future__ import annotations

import keras
from keras import ops

__all__ = ["BackboneInput", "BackbonePreprocessing", "FrozenStatisticsBackbone"]


@keras.saving.register_keras_serializable(package="skfer")
class BackboneInput(keras.layers.Layer):
    """Cast stored images to float32, replicate gray to RGB and resize to ``size`` x ``size``.

    Runs per batch inside the graph, so the data stays uint8 at its stored size in memory.

    Parameters
    ----------
    size : int
        Side of the square output.
    interpolation : str
        Resizing method of ``keras.ops.image.resize``.
    """

    def __init__(self, size: int, interpolation: str = "bilinear", **kwargs):
        super().__init__(**kwargs)
        self.size = int(size)
        self.interpolation = interpolation

    def call(self, images):
        images = ops.cast(images, "float32")
        if images.shape[-1] == 1:
            images = ops.repeat(images, 3, axis=-1)
        if tuple(images.shape[1:3]) != (self.size, self.size):
            images = ops.image.resize(
                images, (self.size, self.size), interpolation=self.interpolation
            )
        return images

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size, self.size, 3)

    def get_config(self):
        return {**super().get_config(), "size": self.size, "interpolation": self.interpolation}


@keras.saving.register_keras_serializable(package="skfer")
class BackbonePreprocessing(keras.layers.Layer):
    """``(x[channel order] * scale - mean) / std`` on RGB images in 0..255.

    Parameters
    ----------
    bgr : bool
        Flip RGB to BGR first (Caffe-trained weights).
    scale : float
        Multiplier applied before the mean is subtracted.
    mean, std : sequence of 3 floats
        Per channel, in the order after the optional flip.
    """

    def __init__(self, bgr=False, scale=1.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), **kwargs):
        super().__init__(**kwargs)
        self.bgr = bool(bgr)
        self.scale = float(scale)
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)

    def call(self, images):
        if self.bgr:
            images = ops.flip(images, axis=-1)
        mean = ops.convert_to_tensor(self.mean, dtype=images.dtype)
        std = ops.convert_to_tensor(self.std, dtype=images.dtype)
        return (images * self.scale - mean) / std

    def get_config(self):
        return {
            **super().get_config(),
            "bgr": self.bgr,
            "scale": self.scale,
            "mean": list(self.mean),
            "std": list(self.std),
        }


@keras.saving.register_keras_serializable(package="skfer")
class FrozenStatisticsBackbone(keras.layers.Layer):
    """Run a backbone with its BatchNormalization layers in inference mode, unless told otherwise.

    Inside a functional model, ``backbone(x, training=False)`` is overridden by the outer
    ``fit``'s ``training=True`` (Keras 3 propagates the call context to every layer that takes
    a ``training`` argument), so BatchNorm would update its statistics during fine-tuning and,
    on small grey faces, collapse the model. This wrapper decides itself what the backbone sees.

    Parameters
    ----------
    backbone : keras.Model
        The headless backbone.
    batchnorm_training : bool
        If True, the backbone runs in training mode when the outer model trains (BatchNorm
        statistics update). If False (default), it always runs in inference mode.
    """

    def __init__(self, backbone: keras.Model, batchnorm_training: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.batchnorm_training = bool(batchnorm_training)

    def build(self, input_shape):
        self.built = True

    def call(self, images, training=None):
        return self.backbone(images, training=bool(training) and self.batchnorm_training)

    def compute_output_shape(self, input_shape):
        return self.backbone.compute_output_shape(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "batchnorm_training": self.batchnorm_training,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)
