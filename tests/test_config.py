import json

import pytest

from lossbench.config import (
    PAPER_MILESTONES,
    SCALES,
    RunConfig,
    find_config,
    get_scale,
    paper_recipe,
    parse_model_name,
    seed_recipe,
)
from lossbench.train import lr_at


def test_config_id_is_readable():
    cfg = seed_recipe(depth=56, shortcut=False, batch_size=128)
    assert cfg.config_id == "resnet56-noshort-bs128-s0"
    assert seed_recipe(depth=20).replace(width=2, seed=3).config_id == "resnet20-w2-bs128-s3"


def test_hash_is_stable_and_sensitive():
    a = seed_recipe(depth=20)
    assert a.config_hash == seed_recipe(depth=20).config_hash
    assert a.config_hash != a.replace(seed=1).config_hash
    assert a.config_hash != a.replace(n_train=1000).config_hash  # not visible in config_id, still a new entry
    assert len(a.config_hash) == 64


def test_dict_round_trip_through_json():
    cfg = paper_recipe(depth=110, shortcut=False)
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_unknown_field_is_named():
    with pytest.raises(ValueError, match="unknown RunConfig field.*'depht'"):
        RunConfig.from_dict({"depht": 20})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(depth=21), "6n\\+2"),
        (dict(arch="resnett"), "unknown arch 'resnett'; expected one of resnet, vgg"),
        (dict(optimizer="adamw"), "unknown optimizer"),
        (dict(batch_size=0), "batch_size=0"),
        (dict(warmup=1.5), "warmup"),
        (dict(milestones=(0.75, 0.5)), "milestones"),
    ],
)
def test_bad_values_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RunConfig(**kwargs)


def test_seed_recipe_is_the_one_asked_for():
    short, noshort = seed_recipe(shortcut=True), seed_recipe(shortcut=False)
    assert (short.optimizer, short.lr, short.betas, short.eps) == ("adam", 0.01, (0.9, 0.999), 1e-7)
    assert short.init == "he_normal" and noshort.init == "normal"
    assert short.epochs == 300 and short.warmup == 0.0


def test_paper_recipe_is_the_authors():
    cfg = paper_recipe()
    assert (cfg.optimizer, cfg.lr, cfg.momentum, cfg.nesterov, cfg.weight_decay) == ("sgd", 0.1, 0.9, True, 5e-4)
    assert cfg.augment and cfg.dataset == "cifar10" and cfg.batch_size == 128
    assert cfg.epochs == 300 and cfg.milestones == PAPER_MILESTONES and cfg.warmup == 0.0
    # the authors' init_params for every net, with or without shortcuts
    assert paper_recipe(depth=56, shortcut=False, batch_size=128).init == "authors"
    assert paper_recipe(depth=20, shortcut=True).init == "authors"


def test_an_init_other_than_the_usual_one_shows_in_the_id():
    assert paper_recipe(depth=56, shortcut=False).config_id == "resnet56-noshort-sgd-wd0.0005-authors-bs128-s0"
    assert seed_recipe(depth=56, shortcut=False).config_id == "resnet56-noshort-bs128-s0"
    assert seed_recipe(depth=20, init="default").config_id == "resnet20-default-bs128-s0"


def test_a_peak_lr_other_than_the_recipes_shows_in_the_id():
    """Two nets of one recipe at two learning rates must not share a file stem (the authors' matrix at
    lr 0.05 beside the one at 0.1, benchmarks/RESULTS.md); the recipes' own lr adds nothing."""
    authors = paper_recipe(depth=56, shortcut=False)
    assert authors.replace(lr=0.05).config_id == "resnet56-noshort-sgd-wd0.0005-lr0.05-authors-bs128-s0"
    assert seed_recipe(depth=20).replace(lr=0.001).config_id == "resnet20-lr0.001-bs128-s0"
    assert authors.replace(lr=0.05).config_id != authors.config_id
    every = [c for s in SCALES.values() for c in s.known_configs + s.normalization_configs + s.connect_configs]
    assert all("-lr" not in c.config_id for c in every)  # no shipped net's files change name


def test_milestones_fall_at_epochs_150_225_275_of_300():
    cfg = seed_recipe()
    spe = 391  # CIFAR-10 at batch 128 with the last partial batch kept
    total = 300 * spe
    lrs = {epoch: lr_at(epoch * spe, total, cfg) for epoch in (0, 149, 150, 224, 225, 274, 275, 299)}
    assert lrs[0] == lrs[149] == pytest.approx(0.01)
    assert lrs[150] == lrs[224] == pytest.approx(1e-3)
    assert lrs[225] == lrs[274] == pytest.approx(1e-4)
    assert lrs[275] == lrs[299] == pytest.approx(1e-5)
    # the last step of epoch 149 is still at the peak
    assert lr_at(150 * spe - 1, total, cfg) == pytest.approx(0.01)
    assert PAPER_MILESTONES[2] * 300 == pytest.approx(275)


def test_warmup_is_linear_then_the_recipe():
    cfg = seed_recipe(warmup=0.1)
    assert [lr_at(s, 100, cfg) for s in (0, 4, 9, 10)] == pytest.approx([0.001, 0.005, 0.01, 0.01])


@pytest.mark.parametrize("scale", ["ci", "small", "paper"])
def test_each_scale_is_the_full_matrix(scale):
    configs = get_scale(scale).configs
    depths = {20, 56} | ({110} if scale == "paper" else set())
    combos = {(c.depth, c.shortcut, c.batch_size) for c in configs}
    assert combos == {(d, s, b) for d in depths for s in (True, False) for b in (128, 2000)}
    assert len({c.config_id for c in configs}) == len(configs)


def test_unknown_scale_lists_the_valid_ones():
    with pytest.raises(ValueError, match="expected one of ci, small, paper"):
        get_scale("tiny")


def test_find_config_and_model_names():
    cfg = find_config("ci", depth=56, shortcut=False, batch_size=2000, seed=2)
    assert cfg.config_id == "resnet56-noshort-bs2000-s2" and cfg in [c.replace(seed=2) for c in SCALES["ci"].configs]
    assert parse_model_name("resnet110") == ("resnet", 110)
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        parse_model_name("resnet")


def test_only_the_filter_normalisation_nets_draw_lines():
    from lossbench.reproduce import wants_lines

    small = SCALES["small"]
    assert all(wants_lines(c) for c in small.normalization_configs)
    assert not any(wants_lines(c) for c in small.configs + small.authors_configs)


def test_the_eigen_ratio_maps_are_of_each_recipes_resnet56_pair_at_batch_128():
    import dataclasses

    small = SCALES["small"]
    seed_pair = ["resnet56-bs128-s0", "resnet56-noshort-bs128-s0"]
    authors_pair = ["resnet56-sgd-wd0.0005-authors-clip5-bs128-s0", "resnet56-noshort-sgd-wd0.0005-authors-clip5-bs128-s0"]
    assert [c.config_id for c in small.eig_map_configs] == seed_pair + authors_pair
    # a matrix still being trained (authors_configs) has no maps in the suite until it joins configs
    moved = dataclasses.replace(small, configs=small.configs[:8], authors_configs=small.configs[8:])
    assert [c.config_id for c in moved.eig_map_configs] == seed_pair
    assert [c.config_id for c in SCALES["ci"].eig_map_configs] == ["resnet56-bs128-s0", "resnet56-noshort-bs128-s0"]


def test_the_spectra_are_of_the_matrix_less_the_nets_named_and_the_authors_join_with_it():
    import dataclasses

    small = SCALES["small"]
    ids = {c.config_id for c in small.configs}
    assert set(small.no_spectrum) <= ids, "a no_spectrum id that names no net of the matrix (a typo skips nothing)"
    authors = [f"resnet{d}{'' if s else '-noshort'}-sgd-wd0.0005-authors-clip5-bs128-s0" for d in (20, 56)
               for s in (True, False)]
    assert [c.config_id for c in small.spectrum_configs] == [
        "resnet20-bs128-s0", "resnet20-bs2000-s0", "resnet20-noshort-bs128-s0", "resnet20-noshort-bs2000-s0",
        *authors]
    moved = dataclasses.replace(small, configs=small.configs[:8], authors_configs=small.configs[8:])
    assert [c.config_id for c in moved.spectrum_configs] == [c.config_id for c in small.spectrum_configs][:4]
    assert SCALES["ci"].spectrum_configs == SCALES["ci"].configs
