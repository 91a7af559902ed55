"""What early stopping watches: plain accuracy, or balanced accuracy for imbalanced problems.

A one-vs-all expert for a rare class (FER2013's disgust is 1.5% of the images) trains with
``class_weight='balanced'``, but its validation data are not weighted: plain validation
accuracy is then highest at the epoch nearest to always answering "rest", and early stopping
with best-weight restore keeps exactly that epoch. Balanced accuracy, the mean recall over
the classes, scores "always rest" at 1/K whatever the class sizes, so it stops at the epoch
that recognises the class best.
"""

from __future__ import annotations

import keras
from keras import ops

__all__ = ["STOPPING_METRICS", "BalancedAccuracy", "stopping_metric"]

STOPPING_METRICS = ("accuracy", "balanced_accuracy")


@keras.saving.register_keras_serializable(package="skfer")
class BalancedAccuracy(keras.metrics.Metric):
    """Mean recall over the classes that occur in the labels seen (scikit-learn's
    ``balanced_accuracy_score``), of softmax outputs against class indices or one-hot rows.

    Sample weights are ignored: per-class weights do not change a per-class recall.

    Parameters
    ----------
    n_classes : int
        Number of output columns.
    name : str
        The metric's name in Keras' logs (``val_balanced_accuracy``).
    """

    def __init__(self, n_classes: int, name: str = "balanced_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.n_classes = int(n_classes)
        self.hits = self.add_variable((self.n_classes,), "zeros", name="hits")
        self.counts = self.add_variable((self.n_classes,), "zeros", name="counts")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.convert_to_tensor(y_true)
        if len(y_true.shape) == len(y_pred.shape):  # one-hot rows, or (n, 1) indices
            y_true = (
                ops.argmax(y_true, axis=-1)
                if y_true.shape[-1] == self.n_classes and self.n_classes > 1
                else ops.reshape(y_true, (-1,))
            )
        truth = ops.one_hot(ops.cast(y_true, "int32"), self.n_classes, dtype=self.dtype)
        right = ops.cast(
            ops.equal(ops.argmax(y_pred, axis=-1), ops.argmax(truth, axis=-1)), self.dtype
        )
        self.counts.assign_add(ops.sum(truth, axis=0))
        self.hits.assign_add(ops.sum(truth * right[:, None], axis=0))

    def result(self):
        present = ops.cast(self.counts > 0, self.dtype)
        recall = ops.divide_no_nan(self.hits, self.counts)
        return ops.divide_no_nan(ops.sum(recall * present), ops.sum(present))

    def reset_state(self):
        for variable in (self.hits, self.counts):
            variable.assign(ops.zeros(variable.shape, variable.dtype))

    def get_config(self):
        return {**super().get_config(), "n_classes": self.n_classes}


def stopping_metric(name: str, n_classes: int):
    """The Keras metric logged as ``name`` (a member of :data:`STOPPING_METRICS`)."""
    if name == "accuracy":
        return "accuracy"
    if name == "balanced_accuracy":
        return BalancedAccuracy(n_classes)
    raise ValueError(f"The stopping metric must be one of {STOPPING_METRICS}. Received: {name!r}")
