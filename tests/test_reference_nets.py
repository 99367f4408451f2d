"""Reference nets: shipping writes weights, provenance and the PCA of the path; loading verifies them;
every net shipped in baselines/ is intact and still scores what its provenance says."""

import json
from pathlib import Path

import pytest
import torch

from lossbench.config import SCALES, get_scale
from lossbench.data import load_dataset
from lossbench.errors import CheckpointError
from lossbench.evaluate import cross_entropy, evaluate, make_batches
from lossbench.reference_nets import (
    CLIP_HISTORY_KEYS,
    HISTORY_KEYS,
    evenly_spaced_epochs,
    load_reference,
    sha256_of,
    ship,
    shipped_ids,
    ships_pca_directions,
    state_sha256,
    training_runs,
)
from lossbench.reproduce import converged
from lossbench.train import TRAIN_THREADS, _intra_op_threads, train

BASELINES = Path(__file__).parent.parent / "baselines"


def test_evenly_spaced_epochs():
    assert evenly_spaced_epochs(60) == list(range(0, 61, 3)) and len(evenly_spaced_epochs(60)) == 21
    assert evenly_spaced_epochs(3) == [0, 1, 2, 3]
    assert evenly_spaced_epochs(45)[-1] == 45 and len(evenly_spaced_epochs(45)) >= 20
    with pytest.raises(ValueError, match="epochs=0"):
        evenly_spaced_epochs(0)


def test_state_sha256_sees_one_changed_bit():
    state = {"w": torch.ones(3, 3), "n": torch.tensor(7)}
    other = {"w": torch.ones(3, 3), "n": torch.tensor(7)}
    assert state_sha256(state) == state_sha256(other)
    other["w"][1, 1] = torch.nextafter(torch.tensor(1.0), torch.tensor(2.0))
    assert state_sha256(state) != state_sha256(other)


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    cache, root = tmp_path_factory.mktemp("cache"), tmp_path_factory.mktemp("baselines")
    config = SCALES["ci"].configs[0].replace(epochs=3, n_train=256, n_test=64)
    result = train(config, cache_dir=cache)
    ship(result, root, "ci", recipe="seed", commit="test", converged=converged)
    return config, result, root


def test_ship_then_load_round_trips(shipped):
    config, result, root = shipped
    assert shipped_ids(root, "ci") == [config.config_id]
    ref = load_reference(config.config_id, root, "ci")
    assert ref.config == config and ref.final == result.final
    assert state_sha256(ref.model.state_dict()) == state_sha256(result.model.state_dict()) == ref.state_sha256
    prov = json.loads(ref.path.read_text())
    assert prov["threads"] == 1 and prov["platform"]["cpu_isa"] and prov["config_hash"] == config.config_hash
    assert prov["weights_sha256"] == sha256_of(ref.path.with_name(prov["weights_file"]))
    assert all(set(e) == set(HISTORY_KEYS) for e in prov["history"])  # no clip: no clip keys


def test_shipped_pca_matches_the_checkpoints(shipped):
    from lossbench.trajectory import load_path, pca_directions

    config, result, root = shipped
    pca = load_reference(config.config_id, root, "ci").pca()
    names = [n for n, _ in result.model.named_parameters()]
    thetas, _ = load_path(result.checkpoints, names)
    full = pca_directions(thetas, {n: p.detach() for n, p in result.model.named_parameters()})
    assert pca.epochs == (0, 1, 2, 3)
    torch.testing.assert_close(torch.tensor(pca.explained_variance_ratio), torch.tensor(full.explained_variance_ratio))
    for name, d in full.delta.items():  # float16 storage: ~1e-3 of each tensor's largest entry
        torch.testing.assert_close(pca.delta[name], d.float(), atol=1e-3 * float(d.abs().max()) + 1e-12, rtol=0)
    assert 0 <= pca.random_share < 0.01


def test_a_tampered_weights_file_is_refused(shipped, tmp_path):
    import shutil

    config, _, root = shipped
    copy = tmp_path / "b"
    shutil.copytree(root, copy)
    weights = copy / "ci" / "nets" / f"{config.config_id}.pt"
    state = torch.load(weights, weights_only=True)
    state["linear.bias"] = state["linear.bias"] + 1e-3
    torch.save(state, weights)
    with pytest.raises(CheckpointError, match="the shipped file was changed"):
        load_reference(config.config_id, copy, "ci")


def test_an_unknown_net_names_what_is_shipped(shipped):
    config, _, root = shipped
    with pytest.raises(CheckpointError, match=f"shipped: {config.config_id}"):
        load_reference("resnet999-bs1-s0", root, "ci")


SHIPPED_SMALL = shipped_ids(BASELINES, "small")
#: A confident image's cross-entropy is log(1 + sum of tiny exponentials), whose float32 sum is quantised
#: to the spacing of 1.0, 2^-23: another code path of the same kernels (ATEN_CPU_CAPABILITY=avx2 sums in
#: another order) moves a mean loss of 1e-5 nats at a minimum by 4e-9, 3e-4 of it. So the losses agree to
#: rel 1e-5 or to this absolute quantum, whichever is larger.
LOSS_QUANTUM = 2.0 ** -23


@pytest.mark.skipif(not SHIPPED_SMALL, reason="no reference nets shipped in baselines/small/nets yet")
@pytest.mark.parametrize("config_id", SHIPPED_SMALL)
def test_shipped_net_is_intact_and_scores_its_provenance(config_id):
    """sha256 verified on load; the final train and test accuracy recomputed on the small data equal
    the provenance's (counts of correct images: exact), the losses to float tolerance."""
    ref = load_reference(config_id, BASELINES, "small")
    scale = get_scale("small")
    assert ref.config in scale.known_configs, f"{config_id}'s recipe is no longer the small scale's: retrain and ship"
    data = load_dataset(ref.config)
    for split in ("train", "test"):
        acc, loss = _evaluate_on_two_cores(ref.model, *data.split(split))
        assert acc == ref.final[f"{split}_acc"]
        assert loss == pytest.approx(ref.final[f"{split}_loss"], rel=1e-5, abs=LOSS_QUANTUM)
    assert ref.converged == converged(ref.final)


def _evaluate_on_two_cores(model, x, y) -> tuple[float, float]:
    """(accuracy, loss) over batches of 500 with one intra-op thread, as when training ended (so each
    image's prediction is bit for bit the provenance's), the two halves of the batches in two threads
    at once: the counts of correct images add up exactly, the loss to float rounding."""
    from concurrent.futures import ThreadPoolExecutor

    batches = make_batches(x, y, 500)
    halves = [h for h in (batches[: len(batches) // 2], batches[len(batches) // 2 :]) if h]  # one batch: one half
    with _intra_op_threads(TRAIN_THREADS), ThreadPoolExecutor(2) as pool:
        parts = list(pool.map(lambda part: evaluate(model, cross_entropy(), part), halves))
    n = sum(p.n for p in parts)
    correct = sum(round(p.acc * p.n) for p in parts)
    return correct / n, sum(p.loss * p.n for p in parts) / n


def test_a_clipped_runs_history_keeps_how_much_the_clip_acted(tmp_path):
    """The share of steps clipped per epoch is the evidence that a clip is a rare cap and not a lower lr
    (benchmarks/RESULTS.md): the shipped provenance keeps it, and a run without a clip has no such keys."""
    config = SCALES["ci"].configs[0].replace(epochs=2, n_train=256, n_test=64, clip_grad_norm=1e-3)
    result = train(config, cache_dir=tmp_path / "cache")
    ship(result, tmp_path, "ci", recipe="seed", commit="test", converged=lambda final: False)
    history = json.loads((tmp_path / "ci" / "nets" / f"{config.config_id}.json").read_text())["history"]
    assert [e["clipped"] for e in history] == [1.0, 1.0] and all(e["grad_norm_max"] > 1e-3 for e in history)
    assert history == [{k: v for k, v in e.items() if k in HISTORY_KEYS + CLIP_HISTORY_KEYS} for e in result.history]


def test_only_the_drawn_net_ships_pca_directions(tmp_path):
    """The PCA directions weigh as much as the weights: only the net whose PCA plane the suite draws
    (ResNet-20, batch 128, seed recipe, training seed 0) ships them; the others keep what the PCA claim
    needs (shares, path, hashes), and drawing their plane says how to get it."""
    from lossbench.pipeline import pca_plane_file


    config = SCALES["ci"].configs[1].replace(epochs=2, n_train=256, n_test=64)
    assert config.batch_size == 2000 and not ships_pca_directions(config)
    result = train(config, cache_dir=tmp_path / "cache")
    ship(result, tmp_path, "ci", recipe="seed", commit="test", converged=lambda final: False)
    ref = load_reference(config.config_id, tmp_path, "ci")
    pca = ref.pca()
    assert pca.delta is None and pca.eta is None and len(pca.epochs) == 3 and pca.explained_variance_ratio.sum() > 0
    with pytest.raises(ValueError, match="stored without its directions"):
        pca_plane_file(tmp_path / "plane.h5", ref.model, pca, load_dataset(config), grid=3)
    small = SCALES["small"]
    assert [c.config_id for c in small.all_configs if ships_pca_directions(c)] == ["resnet20-bs128-s0"]
    assert not ships_pca_directions(small.configs[0].replace(seed=1))


def test_ship_puts_each_kind_of_net_in_its_folder(tmp_path):
    """Seed 0 of the matrix to nets/ (weights in git), other training seeds to seed-nets/ (the spread and
    the connectivity curves; weights in git as they are shipped), a GPU-only config to gpu-nets/ (weights
    kept out of git by .gitignore)."""
    from lossbench.__main__ import main
    from lossbench.reference_nets import NET_FOLDERS

    config = SCALES["ci"].configs[0].replace(epochs=2, n_train=64, n_test=32)
    for seed in (0, 1):
        train(config.replace(seed=seed), cache_dir=tmp_path / "cache")
    assert NET_FOLDERS == ("nets", "seed-nets", "gpu-nets")
    ignored = (Path(__file__).parent.parent / ".gitignore").read_text()
    assert "baselines/*/seed-nets/*.pt" not in ignored and "baselines/*/gpu-nets/*.pt" in ignored
    import dataclasses

    short = dataclasses.replace(
        SCALES["ci"], configs=tuple(c.replace(epochs=2, n_train=64, n_test=32) for c in SCALES["ci"].configs))
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(SCALES, "ci", short)
        assert main(["ship", "--scale", "ci", "--cache-dir", str(tmp_path / "cache"), "--baselines-dir",
                     str(tmp_path / "b"), "--only", config.config_id, "--seeds", "0", "1", "--commit", "t"]) == 0
    assert shipped_ids(tmp_path / "b", "ci") == [config.config_id]
    assert shipped_ids(tmp_path / "b", "ci", "seed-nets") == [config.replace(seed=1).config_id]


def test_a_net_trained_on_another_device_is_scored_again_on_the_cpu(tmp_path):
    """A GPU-trained net's provenance records the CPU's final numbers (what the suite recomputes),
    keeps the training device's as ``final_on_training_device``, and judges convergence on the former."""
    config = SCALES["ci"].configs[0].replace(epochs=2, n_train=256, n_test=64)
    result = train(config, cache_dir=tmp_path / "cache")
    meta_path = result.path / "final.json"
    meta = json.loads(meta_path.read_text())
    device_final = {k: v + 0.25 for k, v in meta["final"].items()}  # what another device might have said
    meta.update(device="cuda:0", device_name="Some GPU", final=device_final)
    meta_path.write_text(json.dumps(meta))
    seen = []
    ship(result, tmp_path, "ci", recipe="seed", commit="test", converged=lambda final: seen.append(final) or True)
    prov = json.loads((tmp_path / "ci" / "nets" / f"{config.config_id}.json").read_text())
    data = load_dataset(config)
    with _intra_op_threads(TRAIN_THREADS):
        want = evaluate(result.model, cross_entropy(), make_batches(*data.split("test"), 500))
    assert prov["final"]["test_acc"] == want.acc and prov["final"]["test_loss"] == pytest.approx(want.loss, rel=1e-6)
    assert prov["final_on_training_device"] == device_final and prov["device_name"] == "Some GPU"
    assert seen == [prov["final"]] and prov["converged"] is True


def test_gpu_only_configs_are_named_but_not_trained_unasked():
    small = SCALES["small"]
    ids = [c.config_id for c in small.gpu_configs]
    assert ids == ["resnet110-bs128-s0", "resnet110-noshort-bs128-s0", "resnet56-w2-bs128-s0", "resnet56-w4-bs128-s0"]
    assert not set(small.gpu_configs) & set(small.all_configs)
    assert not any(ships_pca_directions(c) for c in small.gpu_configs)


def test_a_seed_net_listed_without_its_weights_says_how_to_get_them(tmp_path):
    """seed-nets/ lists every training seed's provenance; a checkout may lack some weights (they were
    committed only as needed): the error names the net and the two commands that bring it back."""
    source = BASELINES / "small" / "seed-nets" / "resnet20-bs2000-s1.json"
    folder = tmp_path / "small" / "seed-nets"
    folder.mkdir(parents=True)
    (folder / source.name).write_text(source.read_text())
    with pytest.raises(CheckpointError, match="not in this checkout") as err:
        load_reference("resnet20-bs2000-s1", tmp_path, "small", kind="seed-nets")
    assert "train --scale small --all --only resnet20-bs2000-s0 --seed 1" in str(err.value)
    assert "ship --scale small --only resnet20-bs2000-s0 --seeds 1" in str(err.value)


def test_the_cli_loads_a_shipped_seed_net_instead_of_training_it(monkeypatch):
    """`--train-seed 1` at the small scale names a net shipped in seed-nets/: loaded and verified, never
    retrained (connect --seeds 0 1 had trained seed 1 from scratch, minutes on the CPU)."""
    import lossbench.cli_inputs as cli_inputs
    import lossbench.train as train_module
    from lossbench.__main__ import build_parser

    def no_training(*args, **kwargs):
        raise AssertionError("the CLI trained a net that is shipped")

    monkeypatch.setattr(train_module, "train", no_training)
    args = build_parser().parse_args(["hessian", "--arch", "resnet20", "--scale", "small", "--train-seed", "1"])
    subject = cli_inputs.load_subject(args, torch.device("cpu"))
    assert subject.config.config_id == "resnet20-bs128-s1"
    assert subject.source["reference_net"].endswith("seed-nets/resnet20-bs128-s1.json")


def _measured_seeds(scale_dir: Path) -> list[tuple[str, str, int, str]]:
    """(baseline file, seed-0 config id, training seed, state sha256 it was measured on) for every
    training seed a stored baseline names: the seed spreads (``spread.seeds``/``weights_sha256``) and the
    mode-connecting curves' pairs (``pairs[i].seeds``/``weights_sha256``)."""
    named = []
    for path in sorted(scale_dir.rglob("*.json")):
        if path.parent.name in ("nets", "seed-nets", "gpu-nets") or path.name == "claims.json":
            continue
        doc = json.loads(path.read_text())
        config_id = path.stem  # eigmap/, spectrum/ and connect/ files are named after their seed-0 net too
        groups = [doc["spread"]] if isinstance(doc.get("spread"), dict) else []
        groups += [p for p in doc.get("pairs") or () if isinstance(p, dict) and "seeds" in p]
        for group in groups:
            named += [(str(path.relative_to(scale_dir)), config_id, int(seed), sha)
                      for seed, sha in zip(group["seeds"], group["weights_sha256"], strict=True)]
    return named


def _tracked(root: Path, paths: list[Path]) -> set[Path]:
    """The ``paths`` git tracks in ``root`` (all of them where ``root`` is no git checkout)."""
    import subprocess

    if not (root / ".git").exists():
        return set(paths)
    out = subprocess.run(["git", "ls-files", "-z", "--", *map(str, paths)], cwd=root, capture_output=True,
                         check=True).stdout.decode()
    return {root / p for p in out.split("\0") if p}


def _weight_problems(baselines_dir: Path, scale: str, root: Path) -> list[str]:
    """Every way a stored baseline's training seed cannot be recomputed by someone with this checkout:
    its provenance or weights file is missing, the weights file is not in git, its sha256 is not the
    provenance's, or the provenance's weights are not those the baseline was measured on."""
    problems, hashes, runs_of = [], {}, {}
    named = _measured_seeds(baselines_dir / scale)
    for where, config_id, seed, sha in named:
        if config_id not in runs_of:  # each net's provenance read once, not once per file naming its seeds
            runs_of[config_id] = {r["seed"]: r for r in training_runs(config_id, baselines_dir, scale)}
        runs = runs_of[config_id]
        folder = baselines_dir / scale / ("nets" if seed == 0 else "seed-nets")
        if seed not in runs:
            problems.append(f"{where}: training seed {seed} of {config_id} has no provenance in {folder}")
            continue
        prov = runs[seed]
        weights = folder / prov["weights_file"]
        if not weights.is_file():
            problems.append(f"{where}: {weights} is missing (python -m lossbench train --scale {scale} --all --only "
                            f"{config_id} --seed {seed}, then python -m lossbench ship --scale {scale} --only "
                            f"{config_id} --seeds {seed})")
            continue
        if weights not in hashes:
            hashes[weights] = sha256_of(weights)
        if hashes[weights] != prov["weights_sha256"]:
            problems.append(f"{where}: {weights}'s sha256 is not its provenance's")
        if prov["state_sha256"] != sha:
            problems.append(f"{where}: training seed {seed} of {config_id} was measured on other weights than "
                            f"those shipped; measure it again on them (python -m lossbench baselines --help)")
    untracked = sorted(set(hashes) - _tracked(root, sorted(hashes)))
    problems += [f"{w} is not in git (git add it: a baseline was measured on it)" for w in untracked]
    return problems


def test_every_training_seed_a_baseline_names_is_in_git_with_the_weights_it_was_measured_on():
    """Every .pt a stored spread (or mode-connecting pair) relies on is in git, its sha256
    is its provenance's, and the provenance's weights are those the baseline was measured on; so
    ``pytest benchmarks --lossbench-all-seeds`` can recompute every seed's numbers on a fresh clone."""
    named = _measured_seeds(BASELINES / "small")
    assert len({(c, s) for _, c, s, _ in named}) >= 30, "the small scale's spreads name its nets' seeds"
    problems = _weight_problems(BASELINES, "small", BASELINES.parent)
    assert not problems, "\n".join(problems)


def test_a_baseline_whose_seed_weights_are_missing_changed_untracked_or_other_is_named(tmp_path):
    """The check above on a copy of one config's spread and its three nets: clean, then each way it can
    break (each must be named, or the check above could pass on a checkout that cannot recompute)."""
    import shutil
    import subprocess

    source, scale_dir = BASELINES / "small", tmp_path / "small"
    names = ["resnet20-bs128-s0.json", "nets/resnet20-bs128-s0.json", "nets/resnet20-bs128-s0.pt"]
    names += [f"seed-nets/resnet20-bs128-s{s}.{ext}" for s in (1, 2) for ext in ("json", "pt")]
    for name in names:
        (scale_dir / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / name, scale_dir / name)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*git, "add", "."], cwd=tmp_path, check=True)
    assert _weight_problems(tmp_path, "small", tmp_path) == []

    subprocess.run([*git, "rm", "-q", "--cached", "small/seed-nets/resnet20-bs128-s2.pt"], cwd=tmp_path, check=True)
    assert _weight_problems(tmp_path, "small", tmp_path) == [
        f"{scale_dir}/seed-nets/resnet20-bs128-s2.pt is not in git (git add it: a baseline was measured on it)"]
    (scale_dir / "seed-nets/resnet20-bs128-s2.pt").unlink()
    assert [p.split(" (")[0] for p in _weight_problems(tmp_path, "small", tmp_path)] == [
        f"resnet20-bs128-s0.json: {scale_dir}/seed-nets/resnet20-bs128-s2.pt is missing"]
    shutil.copyfile(source / "seed-nets/resnet20-bs128-s2.pt", scale_dir / "seed-nets/resnet20-bs128-s2.pt")
    subprocess.run([*git, "add", "."], cwd=tmp_path, check=True)

    weights = scale_dir / "seed-nets/resnet20-bs128-s1.pt"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 1
    weights.write_bytes(bytes(data))
    assert _weight_problems(tmp_path, "small", tmp_path) == [
        f"resnet20-bs128-s0.json: {weights}'s sha256 is not its provenance's"]
    shutil.copyfile(source / "seed-nets/resnet20-bs128-s1.pt", weights)

    doc = json.loads((scale_dir / "resnet20-bs128-s0.json").read_text())
    doc["spread"]["weights_sha256"][0] = "0" * 64
    (scale_dir / "resnet20-bs128-s0.json").write_text(json.dumps(doc))
    assert [p.split(";")[0] for p in _weight_problems(tmp_path, "small", tmp_path)] == [
        "resnet20-bs128-s0.json: training seed 0 of resnet20-bs128-s0 was measured on other weights than those shipped"]
