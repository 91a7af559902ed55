"""The presets of ``skfer reproduce``: which base models, experts and stacker a run trains.

- ``paper``: Inception V3, ResNet50, VGG16 and VGGFace at the study's 224 px (Inception 299),
  then experts and the ensemble on the best; for a GPU machine that can download weights.
- ``cpu``: the same table with weights available offline, sized to run on all 28,709 Training
  images in under an hour on 2 CPU cores: the face-trained MobileNet 1.0 (VGGFace2) at 224 px
  with its top two blocks fine-tuned on cached block-11 maps (mixed up as they are read) from
  two seeds, frozen (an MLP head on its cached features; the experts reuse them), and its
  lower nine blocks alone (frozen, pooled over a 2 x 2 grid), all four trained on random
  mirror images (cached maps of them) and tested on each image and its mirror, and two cheap
  reference rows, MobileNet 0.25 with ImageNet weights fine-tuned at 96 px and a random-init
  control, both with short schedules that their labels state. The two MobileNets differ in
  width (1.0 / 0.25) as well as in pretraining.
- ``gpu``: the same table on one GPU in about 10 minutes, led by the face-trained MobileNet
  v1 1.0 (VGGFace2) fine-tuned at its native 224 px in bfloat16, with MobileNet 0.25 (ImageNet)
  at 128 px as the ImageNet comparison; needs Keras on JAX (or TensorFlow) with a GPU.
- ``quick``: a few-minute smoke run on a stratified subset.

:func:`smoke_preset` shrinks any preset to a run of a minute or two on a CPU (a few images per
class, small inputs, one epoch per phase) that exercises the same code end to end.

Every preset holds out two parts of Training, split by image (:mod:`skfer.protocol`): a
stopping part (``stop_fraction``) for early stopping and the choice of the best base model,
and a stacking part (``stack_fraction``) for the selection of the ensemble's members (the
first: the base model most accurate there) and the stacking MLP. A stack that does not beat
its best member in cross-validation on the stacking part is not shipped: the run's ensemble is
then that member alone (``fallback_to_best_member``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .backbones import get_backbone
from .ensemble import STACKERS

__all__ = [
    "FERPLUS_FIRST_MODEL",
    "PRESETS",
    "BaseModelPlan",
    "Preset",
    "base_models_for",
    "smoke_preset",
]

FERPLUS_FIRST_MODEL = ("both", "votes")
"""What the first base model of a preset trains on with FER+ (:class:`Preset`)."""

_VARIANT_KEYS = ("pooling", "head", "patience")
"""Params in which a variant of the first base model may differ from it
(:func:`base_models_for`)."""


@dataclass(frozen=True)
class BaseModelPlan:
    """One row of the table: a label, the ``TransferCNNClassifier`` parameters, whether it
    trains on vote distributions (FER+ only) rather than labels, and ``seed_offset``: the
    model's ``random_state`` is the run's seed plus it, so that a second copy of a recipe
    (another head initialisation, other mirror and mixup draws) differs from the first and
    a run with another ``--seed`` still changes both.

    ``vote_share`` (FER2013 runs only) trains the model on ``vote_share`` of the FER+
    annotators' vote distribution over FER2013's seven classes
    (:func:`skfer.ferplus.fer2013_vote_distribution`) plus ``1 - vote_share`` of the one-hot
    FER2013 label (:func:`skfer.soft_targets.mix_with_labels`): a member that learns from
    other annotators than the labels it is scored on. It needs FER+'s file; on FER+ runs,
    whose labels are those votes' majority, it is left out (:func:`base_models_for`).

    ``on_stacking_part`` trains the model on the fit and stacking parts together: a single
    model with more images, which the ensemble never takes as a member (it does not hold the
    stacking part out) and the experts never start from."""

    label: str
    params: dict
    soft_targets: bool = False
    seed_offset: int = 0
    vote_share: float = 0.0
    on_stacking_part: bool = False

    def __post_init__(self):
        if "random_state" in self.params:
            raise ValueError(
                f"A base model's random_state is the run's seed plus seed_offset; remove "
                f"random_state from its params and set seed_offset instead. Received: "
                f"random_state={self.params['random_state']!r} in {self.label!r}"
            )
        share = self.vote_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
            raise ValueError(
                f"vote_share must be a number in [0, 1]. Received: vote_share={share!r} in "
                f"{self.label!r}"
            )
        if not isinstance(self.on_stacking_part, bool):
            raise ValueError(
                f"on_stacking_part must be True or False. Received: "
                f"on_stacking_part={self.on_stacking_part!r} in {self.label!r}"
            )
        offset = self.seed_offset
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValueError(
                f"seed_offset must be a non-negative integer. Received: "
                f"seed_offset={self.seed_offset!r} in {self.label!r}"
            )


@dataclass(frozen=True)
class Preset:
    """A full run: base models, expert and ensemble settings, data size.

    ``experts_on`` names the base model whose backbone the experts start from (None: the best
    one on the stopping part); the cpu preset builds them on the frozen face model, whose
    cached features they share. ``feature_cache_bytes`` raises the feature cache's bound
    (:class:`skfer.cache.FeatureCache`) for the run, so that no cached map is computed
    twice. ``stacker`` is the ensemble's final estimator
    (:func:`skfer.ensemble.make_stacker`): the study's MLP (``stacker_layers``; the mean of
    ``stacker_seeds`` of them) or ``'logistic'``.
    ``ferplus_first_model`` says what the first base model trains on with
    ``dataset='ferplus'`` (:func:`base_models_for`): ``'both'``, the majority labels and, as a
    twin row, the vote distributions; ``'votes'``, the vote distributions alone, for it and
    for its variants (the rows whose params differ from its own at most in ``pooling``,
    ``head`` and ``patience``: its other seeds and heads) (any other value is a ValueError
    when the preset is made).
    ``ferplus_stacker`` is the final estimator with ``dataset='ferplus'`` where it differs
    from ``stacker`` (None: ``stacker`` on both datasets).
    ``fallback_to_best_member``: where the stack's cross-validated accuracy on the stacking
    part does not exceed its best member's accuracy there, the run ships that member alone as
    its ensemble and reports the stack beside it (False: the stack regardless).
    """

    name: str
    description: str
    base_models: tuple[BaseModelPlan, ...]
    expert_params: dict = field(default_factory=dict)
    experts_on: str | None = None
    train_per_class: int | None = None
    needs_gpu: bool = False
    stop_fraction: float = 0.05
    stack_fraction: float = 0.1
    stacker_layers: tuple[int, int] = (64, 32)
    stacker: str = "mlp"
    stacker_seeds: int = 1
    feature_cache_bytes: int | None = None
    ferplus_first_model: str = "both"
    ferplus_stacker: str | None = None
    fallback_to_best_member: bool = True

    def __post_init__(self):
        if not isinstance(self.fallback_to_best_member, bool):
            raise ValueError(
                "fallback_to_best_member must be True or False. Received: "
                f"fallback_to_best_member={self.fallback_to_best_member!r}"
            )
        seeds = self.stacker_seeds
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise ValueError(
                f"stacker_seeds must be an integer >= 1. Received: stacker_seeds={seeds!r}"
            )
        stackers = {"stacker": (self.stacker, STACKERS)}
        stackers["ferplus_stacker"] = (self.ferplus_stacker, (*STACKERS, None))
        for name, (kind, allowed) in stackers.items():
            if kind not in allowed:
                raise ValueError(f"{name} must be one of {allowed}. Received: {name}={kind!r}")
        if self.ferplus_first_model not in FERPLUS_FIRST_MODEL:
            raise ValueError(
                f"ferplus_first_model must be one of {FERPLUS_FIRST_MODEL}. Received: "
                f"ferplus_first_model={self.ferplus_first_model!r}"
            )

    def stacker_for(self, dataset: str) -> str:
        """The final estimator on ``dataset``: ``ferplus_stacker`` on FER+ where it is set,
        else ``stacker``."""
        if dataset == "ferplus" and self.ferplus_stacker is not None:
            return self.ferplus_stacker
        return self.stacker


_CPU_SCHEDULE = dict(
    input_size=96,
    short_epochs=3,
    short_learning_rate=1e-3,
    long_epochs=8,
    long_learning_rate=2e-4,
    augmentation=True,
    batch_size=64,
    patience=3,
)
_FACE_FROZEN = dict(
    backbone="mobilenet_vggface2",
    input_size=224,
    # The maps' forward pass in batches of 32: 1.05-1.18x faster than 64 on 2 cores, the same
    # maps (benchmarks/bench_feature_batch.py, docs/benchmarks.md).
    feature_batch_size=32,
    short_epochs=30,
    short_learning_rate=1e-3,
    long_epochs=0,
    batch_size=64,
    patience=5,
    flip_augmentation=True,
    test_time_flip=True,
    # Where the feature cache cuts the backbone, for the three face models on the whole
    # network: the fine-tuned ones train blocks 12 and 13 on the block-11 maps; without a
    # long phase it only says where the cache cuts, so the frozen one takes its features
    # through the same maps and the lower blocks run once for all three and the experts.
    unfreeze_blocks=2,
)
_FACE_FROZEN_LABEL = "MobileNet 1.0 (face-trained, VGGFace2), frozen, 224 px, mirrored, flip TTA"
_FACE_LOWER_BLOCKS_LABEL = (
    "MobileNet 1.0 (face-trained, VGGFace2), blocks 1 to 9 alone, frozen, 2 x 2 grid pooling, "
    "224 px, mirrored, flip TTA"
)
_FACE_LOWER_BLOCKS_PARAMS = {
    **_FACE_FROZEN,
    "backbone": "mobilenet_vggface2_block9",
    # Each quarter of the 14 x 14 maps averaged, standardized before the head: without the
    # standardization its head learnt little (FER+ stopping part 0.59 against 0.83).
    "pooling": "grid",
    "head_batchnorm": True,
    "head": (256,),
    # Its own backbone (blocks 1 to 9): nothing to share with the block-11 maps.
    "unfreeze_blocks": None,
}
_FACE_TOP_BLOCKS = (
    "MobileNet 1.0 (face-trained, VGGFace2), blocks 12 and 13 fine-tuned on cached maps, 224 px, "
    "mirrored, mixup of the maps, flip TTA"
)
_FACE_TOP_BLOCKS_PARAMS = {
    **_FACE_FROZEN,
    "long_epochs": 8,
    # Warmed up to 2e-4 and decayed to 0 (the gpu preset's long schedule) instead of a
    # constant 1e-4: the same mean rate, annealed, because with mixup the stopping part's
    # loss was still falling at the 8th and last long epoch (run v11, docs/results.md). Run
    # v12: stopping part 0.6832 and 0.6943 for the two seeds, against v11's 0.6769 and 0.6930.
    # Not a peak of 4e-4: in run v28 (docs/results.md) the first seed scored 0.6874 on the
    # stopping part (0.6957 with flip TTA) against 0.6964 (0.7020) at 2e-4, below it after
    # every long epoch.
    "long_learning_rate": 2e-4,
    "long_schedule": "cosine",
    # Blocks 12 and 13 (_FACE_FROZEN's unfreeze_blocks=2) on cached block-11 maps
    # (14x14x512), not block 13 alone on block-12 maps: run v25 (docs/results.md) 0.7020 and
    # 0.6971 on the stopping part for the two seeds against run v24's 0.6867 and 0.6950, the
    # ensemble 0.6921 on PublicTest against 0.6863, for 10 more minutes (44.6 in all on an
    # AMD EPYC).
    # Mixup of its cached features and block maps: in the levers run of 2026-12-02
    # (docs/results.md) 0.6769 on the stopping part against 0.6720.
    # Not alpha 0.2: in run v29 (docs/results.md) the first seed scored 0.6888 on the
    # stopping part (0.6971 with flip TTA) against 0.6964 (0.7020) at 0.4.
    "feature_mixup_alpha": 0.4,
    # Not average_last_epochs=3: in run v27 (docs/results.md) the mean of the last three
    # long epochs' weights scored below the best epoch on the stopping part for both seeds
    # (0.6950 against 0.6964, 0.6874 against 0.6936); the cosine decay to 0 leaves little
    # for an average of its tail.
}
_GPU_SCHEDULE = dict(
    short_epochs=2,
    short_learning_rate=1e-3,
    long_learning_rate=2e-4,
    long_schedule="cosine",
    augmentation=True,
    batch_size=128,
    precision="mixed_bfloat16",
    patience=5,
    test_time_flip=True,
)
_PAPER_SCHEDULE = dict(
    short_epochs=5, long_epochs=30, long_learning_rate=1e-4, augmentation=True, patience=5
)

PRESETS = {
    "quick": Preset(
        name="quick",
        description="smoke run: 300 Training images per class, MobileNet 0.25 at 96 px",
        base_models=(
            BaseModelPlan(
                "MobileNet 0.25 (ImageNet)",
                dict(
                    backbone="mobilenet",
                    input_size=96,
                    head=(256, 256),
                    short_epochs=10,
                    long_epochs=3,
                    long_learning_rate=1e-4,
                    batch_size=64,
                ),
            ),
        ),
        expert_params=dict(short_epochs=10),
        train_per_class=300,
        stop_fraction=0.1,
        stack_fraction=0.2,
    ),
    "cpu": Preset(
        name="cpu",
        description="all Training images; the face-trained MobileNet 1.0 (VGGFace2) at 224 px "
        "four times: its top two blocks (12 and 13) fine-tuned on cached block-11 maps (mixed "
        "up as they are read) from two seeds (the first on the fit and stacking parts: the "
        "run's single model, never an ensemble member), frozen (an MLP head on its cached "
        "features, which the experts share), and its lower nine blocks alone (frozen, pooled "
        "over a 2 x 2 grid); MobileNet 0.25 (ImageNet) "
        "fine-tuned at 96 px (3 + 4 epochs) and a random-init control (64 px, 1 + 1 epochs), both "
        "kept short; the face models train on random mirror images (their cached maps) and "
        "average each test image with its mirror image; 2 CPU cores, under an hour (42.7 "
        "minutes in run v30 on an AMD EPYC)",
        base_models=(
            # The run's single model: the first seed was never a member (no selection took
            # it in runs v25-v27 nor FER+ v15-v17), so it trains on the stacking part too
            # (2,867 more images on FER2013, +11.8%). On the 4,300 images of the stopping and
            # stacking parts, which both held out, the fit part beat the fit part less 2,867
            # images by +0.67 and +0.09 points for seeds 0 and 1 (docs/results.md, 2026-12-06;
            # the rule, set before seed 1: a mean above 0). Its maps are rows of the fit and
            # stacking parts' maps, which the models below read from the feature cache.
            BaseModelPlan(
                f"{_FACE_TOP_BLOCKS}, trained on the stacking part too",
                _FACE_TOP_BLOCKS_PARAMS,
                on_stacking_part=True,
            ),
            # The same recipe from another seed (head initialisation, mirror and mixup
            # draws): it reads the same cached maps, so it costs its training alone (10
            # minutes in run v25), and a second draw of the strongest model is a member that errs
            # on other images than the first.
            BaseModelPlan(
                f"{_FACE_TOP_BLOCKS}, second seed",
                _FACE_TOP_BLOCKS_PARAMS,
                seed_offset=1,
            ),
            # Its pooled features come from the block-11 maps of the models above.
            BaseModelPlan(_FACE_FROZEN_LABEL, _FACE_FROZEN),
            # The face network's lower nine blocks: features less specific to identity than
            # the top block's, so it errs on other images than the three above. Both runs'
            # selections take it first (docs/results.md): the stack's gain over its best
            # member rose from +0.36 to +1.07 points of stacking CV on FER+ (run v16 against
            # v15) and from +1.43 to +2.06 on FER2013 (v26 against v25), for 3.6-4.6 minutes
            # (its own pass of blocks 1 to 9 over every image set).
            BaseModelPlan(_FACE_LOWER_BLOCKS_LABEL, _FACE_LOWER_BLOCKS_PARAMS),
            BaseModelPlan(
                "MobileNet 0.25 (ImageNet), 96 px, 3 + 4 epochs",
                dict(backbone="mobilenet", **{**_CPU_SCHEDULE, "long_epochs": 4}),
            ),
            # At chance at 96 px and 1 + 2 epochs (run v12: 0.2494, every image called happy):
            # the control shows what no pretraining gives in this budget, so it is kept as
            # cheap as that (run v13: 1.0 minute, still at chance, against v12's 2.5).
            BaseModelPlan(
                "MobileNet 0.25 (random init, control), 64 px, 1 + 1 epochs",
                dict(
                    backbone="mobilenet",
                    weights=None,
                    batchnorm_training=True,
                    **{**_CPU_SCHEDULE, "input_size": 64, "short_epochs": 1, "long_epochs": 1},
                ),
            ),
        ),
        # Not members: the frozen model with a spatial head (a 1x1 convolution on the
        # unpooled block-13 maps), which no selection took in runs v25 and v26 nor in FER+ run
        # v16 (docs/results.md), for 2.5-3.0 minutes and the block-13 maps of every image set
        # on disk; and the frozen model trained on FER+'s votes over the seven classes
        # (vote_share=1) and half and half with the labels (0.5). In run v17 (docs/results.md)
        # neither vote model raised the stacking CV (0.6700 and 0.6690 in the first round
        # against the base model's 0.6721) and they cost 2.3 minutes of the hour.
        #
        # 8 epochs (v12: 10, 6.2 minutes for the seven): the frozen face model's own head
        # peaks by its 7th to 9th epoch on the stopping part.
        expert_params=dict(short_epochs=8),
        experts_on=_FACE_FROZEN_LABEL,
        # The stacker's MLP stops within a few dozen epochs, where its initial weights move
        # the selection's cross-validated accuracy by as much as a member does (FER+ run v7
        # kept no member on such a difference); the mean of five seeds costs seconds.
        stacker_seeds=5,
        # The float16 maps of block 11 of every image set and its mirror images (the training
        # images' for flip_augmentation), on disk.
        feature_cache_bytes=22 * 1024**3,
        # On FER+ the fine-tuned models (both seeds) train on the votes alone: in run v3
        # (docs/results.md) the soft-target twin beat the majority-label model on the
        # stopping part (0.8531 against 0.8468), and in run v5 the second seed on the
        # majority labels was 1.5 points below the first on the votes (PublicTest); run v6,
        # both on the votes, raised the second seed to 0.8378 and the ensemble to 0.8525.
        ferplus_first_model="votes",
        # On FER+ the MLP stacks standardized probabilities: on FER+ run v11's members the
        # selection's stacking CV rose from 0.8618 to 0.8662 (PublicTest 0.8525 to 0.8559);
        # on FER2013 run v20's it fell from 0.6903 to 0.6885. FER+ run v12 with it: CV
        # 0.8666, PublicTest 0.8571, +1.09 points over the best member (docs/results.md).
        ferplus_stacker="standardized_mlp",
    ),
    "gpu": Preset(
        name="gpu",
        needs_gpu=True,
        description="all Training images, face-trained MobileNet 1.0 at 224 px, one GPU "
        "(6.6 min on an H100)",
        base_models=(
            BaseModelPlan(
                "MobileNet 1.0 (face-trained, VGGFace2), 224 px",
                dict(
                    backbone="mobilenet_vggface2", input_size=224, long_epochs=30, **_GPU_SCHEDULE
                ),
            ),
            BaseModelPlan(
                "MobileNet 0.25 (ImageNet), 128 px",
                dict(backbone="mobilenet", input_size=128, long_epochs=6, **_GPU_SCHEDULE),
            ),
        ),
        expert_params=dict(short_epochs=10),
    ),
    "paper": Preset(
        name="paper",
        needs_gpu=True,
        description="the study's backbones at 224 px (Inception 299); a GPU and internet",
        base_models=(
            BaseModelPlan("Inception V3", dict(backbone="inception_v3", **_PAPER_SCHEDULE)),
            BaseModelPlan("ResNet50", dict(backbone="resnet50", **_PAPER_SCHEDULE)),
            BaseModelPlan("VGG16", dict(backbone="vgg16", **_PAPER_SCHEDULE)),
            BaseModelPlan("VGGFace", dict(backbone="vggface", **_PAPER_SCHEDULE)),
        ),
        expert_params=dict(short_epochs=10),
    ),
}


SMOKE_SCHEDULE = dict(
    short_epochs=1,
    long_epochs=1,
    batch_size=16,
    patience=None,
    # One long epoch: nothing to average.
    average_last_epochs=None,
)


def smoke_preset(plan: Preset) -> Preset:
    """``plan`` shrunk to a CPU run of a minute or two: 20 Training images per class, inputs
    of at most 48 px (the backbone's minimum if larger), one epoch per phase, one-epoch experts."""

    def shrink(params: dict) -> dict:
        minimum = get_backbone(params["backbone"]).min_input_size
        size = max(minimum, min(48, params.get("input_size") or 48))
        return {**params, **SMOKE_SCHEDULE, "input_size": size, "head": (32,)}

    return replace(
        plan,
        name=f"{plan.name} (smoke)",
        description=f"smoke run of {plan.name}: {plan.description}",
        base_models=tuple(replace(base, params=shrink(base.params)) for base in plan.base_models),
        expert_params={**plan.expert_params, "short_epochs": 1},
        train_per_class=20,
        needs_gpu=False,
        stop_fraction=0.25,
        stack_fraction=0.5,  # 10 per class: the expert selection's 5-fold split needs 5
        stacker_layers=(8, 8),
    )


def base_models_for(plan: Preset, dataset: str) -> tuple[BaseModelPlan, ...]:
    """The base models that ``plan`` trains on ``dataset``.

    On FER+ the first base model is trained on the vote distributions (soft targets,
    ``target_distribution=``): with ``plan.ferplus_first_model='both'`` as a twin row after
    the same model on the majority labels (both see the same images and are scored on the
    same majority labels, so the held-out split compares the two kinds of target), with
    ``'votes'`` instead of it, and so are its variants (the base models whose params differ
    from its own at most in ``pooling``, ``head`` and ``patience``). The other base models
    train on the majority labels. The base models with a ``vote_share`` (FER+ votes mixed
    into FER2013's labels) run on FER2013 alone and are left out on FER+.

    Raises
    ------
    ValueError
        If a base model is marked ``soft_targets`` off FER+.
    """
    if dataset != "ferplus":
        soft = [base.label for base in plan.base_models if base.soft_targets]
        if soft:
            raise ValueError(
                f"Base models with soft_targets=True need vote distributions, which only "
                f"dataset='ferplus' has; set soft_targets=False or use FER+. Received: "
                f"dataset={dataset!r}, soft-target base models {soft}"
            )
        return plan.base_models
    bases = tuple(base for base in plan.base_models if not base.vote_share)
    if not bases:
        return bases

    def on_votes(base: BaseModelPlan) -> BaseModelPlan:
        return replace(base, label=f"{base.label}, soft targets (FER+ votes)", soft_targets=True)

    first, *rest = bases
    if plan.ferplus_first_model == "votes":
        return tuple(on_votes(base) if _variant_of(base, first) else base for base in bases)
    return (first, on_votes(first), *rest)


def _variant_of(base: BaseModelPlan, first: BaseModelPlan) -> bool:
    """Whether ``base`` trains as ``first`` does, up to its seed, pooling, head and patience."""

    def recipe(params: dict) -> dict:
        return {key: value for key, value in params.items() if key not in _VARIANT_KEYS}

    return recipe(base.params) == recipe(first.params)
