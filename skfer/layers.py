"""Registered Keras layers of the skfer graph (no ``Lambda``, so ``.keras`` files load safely)."""

from __future__ import annotations

import math

import keras
from keras import ops

__all__ = [
    "BackboneInput",
    "BackbonePreprocessing",
    "FaceAugmentation",
    "FrozenStatisticsBackbone",
    "GridAveragePooling2D",
]


@keras.saving.register_keras_serializable(package="skfer")
class FaceAugmentation(keras.layers.Layer):
    """Random mirror, shift, rotation and zoom of each training image, in one affine resampling.

    Active only in training. One ``keras.ops.image.affine_transform`` per batch (Keras' own
    RandomTranslation, RandomRotation and RandomZoom resample three times, and they mark
    themselves as not XLA-compilable, which makes Keras run a JAX model's every training step
    uncompiled). Runs in float32 whatever the dtype policy; reflects at the borders.

    Parameters
    ----------
    shift : float
        Largest shift, as a fraction of the image's height and width.
    rotation : float
        Largest rotation, as a fraction of a full turn (0.05: 18 degrees).
    zoom : float
        Largest zoom in or out, as a fraction of the size.
    flip : bool
        Mirror half of the images horizontally.
    seed : int or None
        Seed of the layer's own generator.
    """

    def __init__(self, shift=0.1, rotation=0.05, zoom=0.1, flip=True, seed=None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.shift = float(shift)
        self.rotation = float(rotation)
        self.zoom = float(zoom)
        self.flip = bool(flip)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        # TensorFlow's image transform op has no XLA kernel; JAX's resampling compiles.
        self.supports_jit = keras.backend.backend() != "tensorflow"

    def call(self, images, training=None):
        images = ops.cast(images, "float32")
        if not training:
            return images
        batch = ops.shape(images)[0]
        height, width = images.shape[1], images.shape[2]
        if height is None or width is None:
            height, width = ops.shape(images)[1], ops.shape(images)[2]
        height, width = ops.cast(height, "float32"), ops.cast(width, "float32")

        def uniform(bound):
            return keras.random.uniform(
                (batch,), minval=-bound, maxval=bound, seed=self.seed_generator
            )

        angle = uniform(self.rotation * 2 * math.pi)
        scale = 1.0 + uniform(self.zoom)  # > 1 samples a larger area: zooms out
        mirror = ops.ones((batch,))
        if self.flip:
            mirror = ops.where(uniform(1.0) < 0, -1.0, 1.0)
        cos, sin = ops.cos(angle) * scale, ops.sin(angle) * scale
        # Output pixel p maps to input pixel c + A (p - c) + t, A = scale R(angle) diag(mirror, 1)
        a0, a1, b0, b1 = cos * mirror, -sin, sin * mirror, cos
        cx, cy = (width - 1) / 2, (height - 1) / 2
        a2 = cx - a0 * cx - a1 * cy + uniform(self.shift) * width
        b2 = cy - b0 * cx - b1 * cy + uniform(self.shift) * height
        zeros = ops.zeros((batch,))
        transform = ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
        return ops.image.affine_transform(images, transform, fill_mode="reflect")

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "shift": self.shift,
            "rotation": self.rotation,
            "zoom": self.zoom,
            "flip": self.flip,
            "seed": self.seed,
        }


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


@keras.saving.register_keras_serializable(package="skfer")
class GridAveragePooling2D(keras.layers.Layer):
    """Average a ``(height, width, channels)`` map over each cell of a ``grid`` x ``grid``
    partition and flatten: ``grid * grid * channels`` features that keep coarsely where each
    feature lies (top left, top right, bottom left, bottom right for ``grid=2``), where global
    average pooling keeps none of it. Rows and columns beyond a multiple of ``grid`` are left
    out; the map must be at least ``grid`` cells wide and high.

    Parameters
    ----------
    grid : int
        Cells per side.
    """

    def __init__(self, grid=2, **kwargs):
        super().__init__(**kwargs)
        self.grid = int(grid)

    def call(self, maps):
        grid = self.grid
        _, height, width, channels = maps.shape
        rows, columns = height // grid, width // grid
        cells = ops.reshape(
            maps[:, : rows * grid, : columns * grid],
            (-1, grid, rows, grid, columns, channels),
        )
        return ops.reshape(ops.mean(cells, axis=(2, 4)), (-1, grid * grid * channels))

    def build(self, input_shape):
        _, height, width, _ = input_shape
        if height is None or width is None or min(height, width) < self.grid:
            raise ValueError(
                f"GridAveragePooling2D needs maps of a known size of at least {self.grid} x "
                f"{self.grid}; use a larger input_size or a smaller grid. Received: maps of "
                f"shape {tuple(input_shape)}"
            )

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.grid * self.grid * input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "grid": self.grid}
