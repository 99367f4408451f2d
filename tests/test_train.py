import json
import multiprocessing as mp
import shutil

import pytest
import torch

from lossbench.config import RunConfig
from lossbench.errors import CheckpointError
from lossbench.train import load_checkpoint, load_trained, model_from_checkpoint, train

TINY = RunConfig(depth=8, batch_size=32, epochs=2, n_train=128, n_test=64, image_size=16, lr=0.01)


def states_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_is_bit_identical(tmp_path):
    a = train(TINY, cache_dir=tmp_path / "a")
    b = train(TINY, cache_dir=tmp_path / "b")
    assert not a.from_cache and not b.from_cache
    assert states_equal(a.model.state_dict(), b.model.state_dict())
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]
    c = train(TINY.replace(seed=1), cache_dir=tmp_path / "c")
    assert not states_equal(a.model.state_dict(), c.model.state_dict())


def test_testing_less_often_leaves_the_weights_and_the_final_numbers_as_they_are(tmp_path):
    """``test_every`` only skips test evaluations: the same weights and final numbers bit for bit, the
    rows in between without test numbers, the last epoch always tested."""
    cfg = TINY.replace(epochs=3)
    every = train(cfg, cache_dir=tmp_path / "every")
    sparse = train(cfg, cache_dir=tmp_path / "sparse", test_every=2)
    assert states_equal(every.model.state_dict(), sparse.model.state_dict())
    assert sparse.final == every.final
    assert [r["test_acc"] is None for r in sparse.history] == [True, False, False]
    assert sparse.history[1]["test_loss"] == every.history[1]["test_loss"]
    assert [r["train_loss"] for r in sparse.history] == [r["train_loss"] for r in every.history]
    with pytest.raises(ValueError, match="test_every=0 must be a number of epochs >= 1"):
        train(cfg, cache_dir=tmp_path / "none", test_every=0)


def test_augmented_sgd_recipe_is_deterministic_too(tmp_path):
    cfg = TINY.replace(optimizer="sgd", lr=0.05, weight_decay=5e-4, augment=True, epochs=1)
    a = train(cfg, cache_dir=tmp_path / "a")
    b = train(cfg, cache_dir=tmp_path / "b")
    assert states_equal(a.model.state_dict(), b.model.state_dict())


def test_gradient_clipping_that_never_binds_changes_nothing_and_one_that_always_does_is_reported(tmp_path):
    """clip_grad_norm caps each step's loss gradient: a bound above every norm leaves the weights bit
    identical to no clipping, a bound below every norm clips every step (and trains other weights); the
    history says which, with the largest norm seen."""
    cfg = TINY.replace(optimizer="sgd", lr=0.05, weight_decay=5e-4, epochs=1)
    plain = train(cfg, cache_dir=tmp_path / "plain")
    loose = train(cfg.replace(clip_grad_norm=1e9), cache_dir=tmp_path / "loose")
    tight = train(cfg.replace(clip_grad_norm=1e-3), cache_dir=tmp_path / "tight")
    assert states_equal(plain.model.state_dict(), loose.model.state_dict())
    assert loose.history[0]["clipped"] == 0.0 and tight.history[0]["clipped"] == 1.0
    assert 1e-3 < tight.history[0]["grad_norm_max"] == pytest.approx(loose.history[0]["grad_norm_max"], rel=0.5)
    assert "clipped" not in plain.history[0]
    assert not states_equal(plain.model.state_dict(), tight.model.state_dict())  # clipping every step trains others
    assert cfg.replace(clip_grad_norm=1.0).config_id.endswith("-clip1-bs32-s0")
    assert "clip_grad_norm" not in cfg.to_dict() and cfg.replace(clip_grad_norm=1.0).config_hash != cfg.config_hash
    with pytest.raises(ValueError, match="clip_grad_norm=-1.*>= 0"):
        cfg.replace(clip_grad_norm=-1.0)


def test_checkpoint_per_epoch_and_weights_only(tmp_path):
    result = train(TINY, cache_dir=tmp_path)
    assert [p.name for p in result.checkpoints] == ["epoch-0000.pt", "epoch-0001.pt", "epoch-0002.pt"]
    assert all(p.exists() for p in result.checkpoints)
    data = torch.load(result.checkpoints[-1], weights_only=True)  # data, never code
    assert data["epoch"] == 2 and RunConfig.from_dict(data["config"]) == TINY
    config, model = model_from_checkpoint(result.checkpoints[-1])
    assert config == TINY and states_equal(model.state_dict(), result.model.state_dict())
    assert len(result.history) == 2 and {"train_loss", "test_acc", "lr"} <= result.history[0].keys()
    assert set(result.final) == {"train_loss", "train_acc", "test_loss", "test_acc"}


def test_cache_is_reused(tmp_path):
    first = train(TINY, cache_dir=tmp_path)
    again = train(TINY, cache_dir=tmp_path)
    assert again.from_cache and states_equal(first.model.state_dict(), again.model.state_dict())
    assert load_trained(TINY, cache_dir=tmp_path).final == first.final


def test_a_killed_writers_temporaries_are_removed_by_the_next_run(tmp_path):
    # what SIGKILL in the middle of torch_save_atomic leaves: a dot-file beside the checkpoint it never
    # replaced (tests/test_kill_resume.py hits this only when the kill lands inside a write)
    folder = tmp_path / TINY.config_hash
    folder.mkdir()
    leftovers = [folder / ".resume.pt.k1ll3d.tmp", folder / ".epoch-0001.pt.x.tmp"]
    for path in leftovers:
        path.write_bytes(b"half a checkpoint")
    train(TINY, cache_dir=tmp_path)
    assert not list(folder.glob(".*.tmp"))
    assert (folder / "final.json").exists()


def test_cache_refuses_an_entry_of_another_config(tmp_path):
    other = TINY.replace(seed=5)
    train(other, cache_dir=tmp_path)
    # a folder copied under the wrong hash (or a hash collision) must not be served
    shutil.copytree(tmp_path / other.config_hash, tmp_path / TINY.config_hash)
    with pytest.raises(CheckpointError, match="holds resnet8-bs32-s5"):
        train(TINY, cache_dir=tmp_path)
    with pytest.raises(CheckpointError, match="holds resnet8-bs32-s5"):
        load_trained(TINY, cache_dir=tmp_path)


def test_checkpoint_of_another_config_is_refused(tmp_path):
    result = train(TINY, cache_dir=tmp_path)
    folder = result.path
    swapped = torch.load(folder / "epoch-0002.pt", weights_only=True)
    swapped["config"] = TINY.replace(seed=9).to_dict()
    torch.save(swapped, folder / "epoch-0002.pt")
    with pytest.raises(CheckpointError, match="not the end of resnet8-bs32-s0"):
        load_trained(TINY, cache_dir=tmp_path)


def test_untrained_config_gets_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="not trained.*python -m lossbench train"):
        load_trained(TINY, cache_dir=tmp_path)


def test_resume_after_interrupt_equals_an_uninterrupted_run(tmp_path):
    cfg = TINY.replace(epochs=3)
    whole = train(cfg, cache_dir=tmp_path / "whole")

    def interrupt(epoch, row):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, cache_dir=tmp_path / "cut", on_epoch_end=interrupt)
    folder = tmp_path / "cut" / cfg.config_hash
    assert (folder / "resume.pt").exists() and not (folder / "final.json").exists()
    resumed = train(cfg, cache_dir=tmp_path / "cut")
    assert not resumed.from_cache
    assert states_equal(whole.model.state_dict(), resumed.model.state_dict())
    assert [r["train_loss"] for r in whole.history] == [r["train_loss"] for r in resumed.history]
    assert not (folder / "resume.pt").exists()


def _train_in_process(cache_dir, queue):
    result = train(TINY, cache_dir=cache_dir)
    queue.put((result.from_cache, result.final["train_loss"]))


def test_two_processes_training_one_config_train_it_once(tmp_path):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_train_in_process, args=(tmp_path, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    outcomes = sorted(queue.get(timeout=5) for _ in procs)
    assert [from_cache for from_cache, _ in outcomes] == [False, True]
    assert outcomes[0][1] == outcomes[1][1]
    final = json.loads((tmp_path / TINY.config_hash / "final.json").read_text())
    assert final["config_id"] == TINY.config_id


def test_corrupt_checkpoint_is_named(tmp_path):
    bad = tmp_path / "epoch-0001.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*epoch-0001.pt"):
        load_checkpoint(bad)


def test_trained_weights_do_not_depend_on_the_callers_thread_count(tmp_path):
    """Training pins its intra-op threads (TRAIN_THREADS), so the weights are a function of the config:
    the same config trained from a 1-thread and a 2-thread caller hashes the same, and the caller's
    setting is restored afterwards."""
    import torch

    from lossbench.config import SCALES
    from lossbench.reference_nets import state_sha256
    from lossbench.train import TRAIN_THREADS, train

    config = SCALES["ci"].configs[0].replace(epochs=1, n_train=256, n_test=64)
    before = torch.get_num_threads()
    hashes = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            result = train(config, cache_dir=tmp_path / f"t{threads}")
            assert torch.get_num_threads() == threads
            hashes.append(state_sha256(result.model.state_dict()))
            final = (tmp_path / f"t{threads}" / config.config_hash / "final.json").read_text()
            assert f'"threads": {TRAIN_THREADS}' in final and '"cpu_isa"' in final
    finally:
        torch.set_num_threads(before)
    assert hashes[0] == hashes[1]


def test_training_several_configs_in_parallel_gives_the_same_weights(tmp_path):
    """train_many: one single-threaded process per core; the weights equal those trained one by one."""
    from lossbench.config import SCALES
    from lossbench.reference_nets import state_sha256
    from lossbench.train import load_trained, train, train_many

    configs = [c.replace(epochs=1, n_train=256, n_test=64) for c in SCALES["ci"].configs[:2]]
    trained = train_many(configs, cache_dir=tmp_path / "parallel", workers=2)
    assert sorted(trained) == sorted(c.config_id for c in configs)
    assert train_many(configs, cache_dir=tmp_path / "parallel", workers=2) == []  # all cached now
    for c in configs:
        alone = train(c, cache_dir=tmp_path / "serial")
        together = load_trained(c, cache_dir=tmp_path / "parallel")
        assert state_sha256(together.model.state_dict()) == state_sha256(alone.model.state_dict())


def test_channels_last_is_an_opt_in_config_of_its_own(tmp_path):
    """Training in NHWC (issue "Speed where users run it") uses other convolution kernels, so other
    weights: it must be a separate config (own id, own hash, own cache entry) that leaves the
    existing configs' hashes alone, is deterministic itself, resumes in its layout, and hands back
    weights in the usual layout."""
    from lossbench.baselines import load_baseline
    from lossbench.config import SCALES
    from lossbench.reference_nets import state_sha256

    # the existing configs' dicts and hashes are those their baselines were made with
    for config in SCALES["ci"].configs[:2]:
        stored = load_baseline(f"baselines/ci/{config.config_id}.json")
        assert "channels_last" not in config.to_dict() and config.config_hash == stored["config_hash"]
    cl = TINY.replace(channels_last=True, epochs=3)
    assert cl.config_id == TINY.config_id + "-cl" and cl.config_hash != TINY.replace(epochs=3).config_hash
    assert RunConfig.from_dict(cl.to_dict()) == cl

    def interrupt(epoch, row):
        if epoch == 1:
            raise KeyboardInterrupt

    whole = train(cl, cache_dir=tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        train(cl, cache_dir=tmp_path / "cut", on_epoch_end=interrupt)
    resumed = train(cl, cache_dir=tmp_path / "cut")
    assert state_sha256(whole.model.state_dict()) == state_sha256(resumed.model.state_dict())
    default = train(TINY.replace(epochs=3), cache_dir=tmp_path / "default")
    assert not states_equal(whole.model.state_dict(), default.model.state_dict())
    weights = [t for t in whole.model.state_dict().values() if t.dim() == 4]
    assert weights and all(t.is_contiguous() for t in weights)
    _, saved, _ = load_checkpoint(whole.checkpoint(3))
    assert all(t.is_contiguous() for t in saved.values())


def _authors_init_params(net: torch.nn.Module, generator: torch.Generator) -> None:
    """The authors' ``init_params`` (``cifar10/main.py``), re-stated with an explicit generator."""
    from torch.nn import init

    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            init.kaiming_normal_(m.weight, mode="fan_in", generator=generator)  # their default: a=0, leaky_relu
            if m.bias is not None:
                init.constant_(m.bias, 0)
        elif isinstance(m, torch.nn.BatchNorm2d):
            init.constant_(m.weight, 1)
            init.constant_(m.bias, 0)
        elif isinstance(m, torch.nn.Linear):
            init.normal_(m.weight, std=1e-3, generator=generator)
            if m.bias is not None:
                init.constant_(m.bias, 0)


@pytest.mark.parametrize("shortcut", [True, False])
def test_paper_recipe_init_is_the_authors_init_params(shortcut):
    from lossbench.config import paper_recipe
    from lossbench.train import init_weights_, make_model

    config = paper_recipe(depth=56, shortcut=shortcut, batch_size=128, dataset="synthetic", image_size=16)
    ours, theirs = make_model(config), make_model(config)
    init_weights_(ours, config.init, generator=torch.Generator().manual_seed(3))
    _authors_init_params(theirs, torch.Generator().manual_seed(3))
    assert states_equal(ours.state_dict(), theirs.state_dict())
    # and the distributions they state: conv N(0, 2 / fan_in), linear N(0, 1e-3^2)
    convs = [m for m in ours.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) >= 55
    w = convs[len(convs) // 2].weight
    fan_in = w[0].numel()
    assert abs(float(w.detach().std()) / (2 / fan_in) ** 0.5 - 1) < 0.05
    (linear,) = [m for m in ours.modules() if isinstance(m, torch.nn.Linear)]
    assert abs(float(linear.weight.detach().std()) / 1e-3 - 1) < 0.15


def test_an_unknown_init_is_refused_naming_the_choices():
    from lossbench.train import init_weights_, make_model

    with pytest.raises(ValueError, match="he_normal, normal, authors, default"):
        init_weights_(make_model(TINY), "he-normal", generator=torch.Generator())


def _history(accs, first=1):
    return [{"epoch": first + i, "train_acc": a} for i, a in enumerate(accs)]


def test_a_fall_is_a_net_losing_most_of_what_it_learnt_within_a_few_epochs():
    from lossbench.train import falls

    # learns, falls to chance in one epoch, is below 0.55 of its best for four, climbs back, falls again
    accs = [0.1, 0.3, 0.5, 0.7, 0.72, 0.12, 0.10, 0.11, 0.3, 0.6, 0.7, 0.71, 0.2]
    assert falls(_history(accs)) == [(6, 9), (13, 13)]
    # the usual wobble of a learning net (0.9 to 0.65 and back), a slow slide over more than the window,
    # and a net that never learnt (0.35 to 0.1) are not falls
    assert falls(_history([0.5, 0.8, 0.9, 0.65, 0.85, 0.9])) == []
    assert falls(_history([0.8 - 0.03 * i for i in range(16)])) == []  # 0.80 to 0.35 in 15 epochs
    assert falls(_history([0.1, 0.2, 0.35, 0.1, 0.1])) == []
    # the bound: at most 0.55 of the best before it
    assert falls(_history([0.8, 0.43])) == [(2, 2)]
    assert falls(_history([0.8, 0.45])) == []
    with pytest.raises(ValueError, match="ratio"):
        falls(_history(accs), ratio=1.5)


def test_the_shipped_plain_resnet56_runs_show_the_falls_benchmarks_results_describes():
    """RESULTS.md: seed 5 of the authors'-recipe plain ResNet-56 fell once, in epoch 60 as the warm-up
    ended, and never came back; seed 4 fell in epoch 85; the ResNet-56 with shortcuts never fell."""
    from pathlib import Path

    from lossbench.train import falls

    nets = Path(__file__).resolve().parents[1] / "baselines" / "small" / "retired" / "seed-nets"

    def history(config_id):
        return json.loads((nets / f"{config_id}.json").read_text())["history"]

    assert [f[0] for f in falls(history("resnet56-noshort-sgd-wd0.0005-authors-bs128-s5"))] == [60]
    assert 86 in [f[0] for f in falls(history("resnet56-noshort-sgd-wd0.0005-authors-bs128-s4"))]
    assert falls(history("resnet56-sgd-wd0.0005-authors-bs128-s1")) == []
