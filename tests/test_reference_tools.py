"""``fasr pretrain-extractor`` and ``fasr bench reference`` end to end on small synthetic BraTS data."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import head_phantom, write_brats, write_brats_subject
from fasr.checkpoint import save_checkpoint
from fasr.cli import main
from fasr.config import RunConfig, from_dict, to_dict
from fasr.errors import FasrError
from fasr.models import build_model
from fasr.models.backbones import SHIPPED_WEIGHTS, VGG19, ResNet, load_torchvision_weights
from fasr.models.extractor import TextureExtractor

_DATA = {"kind": "brats", "target": "t2", "reference": "t1", "slice_size": 48, "patch_size": 32, "min_foreground": 0.01}


def test_pretrain_extractor_writes_a_torchvision_file_that_loads(tmp_path: Path) -> None:
    root = write_brats(tmp_path / "brats", ["a", "b", "c"])
    config = tmp_path / "pretrain.yaml"
    config.write_text(yaml.safe_dump({"data": {**_DATA, "root": str(root), "val_subjects": ["c"]}, "steps": 2,
                                      "batch_size": 2}))
    out = tmp_path / "mri.pth"
    assert main(["pretrain-extractor", "--config", str(config), "--out", str(out)]) == 0
    state = torch.load(out, weights_only=True)
    assert "features.10.weight" in state and state["features.0.weight"].dtype == torch.float16
    assert load_torchvision_weights(VGG19(last="relu3_1"), out) == []  # every key fits, nothing left over
    model = build_model(from_dict(RunConfig, {"model": {"backbone_weights": str(out), "n_feats": 8}}).model)
    assert torch.equal(model.extractor.net.features[0].weight, state["features.0.weight"].float())


def test_pretrain_extractor_also_pretrains_a_table_ii_resnet(tmp_path: Path) -> None:
    root = write_brats(tmp_path / "brats", ["a", "b", "c"])
    out = tmp_path / "mri-resnet18.pth"
    data = json.dumps({**_DATA, "root": str(root), "val_subjects": ["c"]})
    argv = ["pretrain-extractor", "--out", str(out), "--set", f"data={data}", "--set", "backbone=resnet18"]
    assert main([*argv, "--set", "steps=1", "--set", "batch_size=2"]) == 0
    state = torch.load(out, weights_only=True)
    assert "layer3.1.conv2.weight" in state and "layer4.0.conv1.weight" not in state  # through layer3 (1/4 grid)
    model = build_model(from_dict(RunConfig, {"model": {"backbone": "resnet18", "backbone_weights": str(out),
                                                        "n_feats": 8}}).model)
    assert torch.equal(model.extractor.net.layer3[1].conv2.weight, state["layer3.1.conv2.weight"].float())


def test_mri_weights_name_the_shipped_extractor_of_the_model_s_own_backbone(tmp_path: Path, monkeypatch) -> None:
    """``backbone_weights: mri`` loads mri-resnet18.pth into a ResNet-18 (Table II starts every row pretrained)."""
    state = {k: v.half() for k, v in ResNet(18).state_dict().items()}
    torch.save(state, tmp_path / "mri-resnet18.pth")
    monkeypatch.setitem(SHIPPED_WEIGHTS["mri"], "resnet18", tmp_path / "mri-resnet18.pth")
    model = build_model(from_dict(RunConfig, {"model": {"backbone": "resnet18", "n_feats": 8}}).model)
    assert torch.equal(model.extractor.net.conv1.weight, state["conv1.weight"].float())
    digest = hashlib.sha256((tmp_path / "mri-resnet18.pth").read_bytes()).hexdigest()[:12]
    assert model.extractor.initial_weights() == f"mri-resnet18.pth (sha256 {digest})"  # what train.log records
    assert TextureExtractor("resnet18", weights=None).initial_weights() == "random"
    monkeypatch.setitem(SHIPPED_WEIGHTS["mri"], "resnet34", tmp_path / "absent.pth")
    with pytest.raises(FasrError, match="pretrain-extractor.yaml --set backbone=resnet34 --out .*absent.pth"):
        build_model(from_dict(RunConfig, {"model": {"backbone": "resnet34", "n_feats": 8}}).model)
    # Taps the shipped file does not reach start random, and the warning names where the file ends.
    with pytest.warns(UserWarning, match="'mri' vgg19 ends at relu3_1"):
        TextureExtractor("vgg19", "paper", weights="mri")
    with pytest.warns(UserWarning, match="'mri' resnet18 ends at layer3"):
        TextureExtractor("resnet18", deepest="1/8", weights="mri")


@pytest.mark.parametrize("backbone", ["vgg19", "resnet18", "resnet34"])
def test_every_shipped_extractor_fills_its_backbone_to_the_quarter_grid(backbone: str) -> None:
    net = VGG19(last="relu3_1") if backbone == "vgg19" else ResNet(int(backbone[6:]), last="layer3")
    assert load_torchvision_weights(net, "mri") == []  # the shipped file, every key used, none left over
    if backbone != "vgg19":  # trained, not a random file with the right keys: 600 steps x 2 views went through
        assert int(net.bn1.num_batches_tracked) == 1200 and not torch.allclose(net.bn1.running_var, torch.ones(64))


@pytest.mark.slow
def test_bench_reference_quick_runs_and_writes_its_report(tmp_path: Path) -> None:
    root = write_brats(tmp_path / "brats", ["a", "b", "c"], shape=(48, 48, 8))
    model = {"n_feats": 8, "n_blocks": [1, 1, 1], "embed_dim": 8, "backbone_weights": None}
    cfg = from_dict(RunConfig, {"model": model,
                                "data": {**_DATA, "root": str(root), "val_subjects": ["b"], "test_subjects": ["c"]}})
    torch.manual_seed(0)
    checkpoint = save_checkpoint(tmp_path / "m.pt", {"model": build_model(cfg.model).state_dict(),
                                                    "config": to_dict(cfg)})
    out = tmp_path / "results"
    assert main(["bench", "reference", "--checkpoint", str(checkpoint), "--quick", "--out-dir", str(out),
                 "--compare", f"same={checkpoint}", "--split", "test"]) == 0
    result = json.loads((out / "reference.json").read_text())
    assert result["subjects"] == ["c"] and result["slices"] == 4
    assert result["command"].endswith(f"--quick --out-dir {out} --split test")  # the command that wrote these files
    scanner = result["scanner"]["c"]  # the whole inference job per condition, on a 4-slice slab
    assert scanner["slices"] == 4 and len(scanner["conditions"]) == 10
    for row in scanner["conditions"].values():  # untrained: bicubic, whatever the reference or its motion
        assert row["psnr"] == pytest.approx(row["cubic_psnr"], abs=1e-3)
    assert "## Scans as scanners make them" in (out / "reference.md").read_text()
    assert set(result["conditions"]) == {"true", "wrong_subject", "shuffled", "noise", "oracle"}
    assert set(result["matching_accuracy"]) == {"0", "4", "8"}
    assert 0 <= result["matching_accuracy"]["0"] <= 1
    assert set(result["misregistration_psnr"]) == {"fasr", "same"}
    # an untrained FASR-Net is exactly bicubic (zero-initialised output): no reference can change it
    assert result["conditions"]["true"]["psnr"] == pytest.approx(result["bicubic"]["psnr"], abs=1e-6)
    fit = result["network_free_fit"]  # the local linear fit alone: a registered reference of the anatomy helps
    assert result["network_free_fit_order"] == 1 and "(linear, model `guided`" in (out / "reference.md").read_text()
    assert set(fit) == set(result["conditions"])
    assert min(fit["oracle"]["psnr"], fit["true"]["psnr"]) > result["bicubic"]["psnr"] + 3 > fit["noise"]["psnr"] + 3
    assert fit["wrong_subject"]["psnr"] < fit["true"]["psnr"] - 3  # (another subject's anatomy fits badly)
    assert (out / "reference.md").read_text().startswith("# Does the reference count?")
    assert "network-free fit" in (out / "reference.md").read_text()
    assert (out / "reference.png").stat().st_size > 1000


def test_qa_threshold_is_chosen_without_the_subject_it_is_applied_to() -> None:
    """Leave-one-subject-out: subject c's true pair scores 0.35, between the others' true (>= 0.5) and wrong
    (<= 0.2) pairs; chosen on a and b alone the threshold lies in (0.2, 0.5], so c's pair is judged out of sample."""
    from fasr.bench.qa import choose_threshold, cross_validate

    def row(kind: str, subject: str, reference_subject: str, alignment: float) -> dict:
        return {"kind": kind, "subject": subject, "reference_subject": reference_subject, "alignment": alignment,
                "mutual_information": 1.0, "chance_level": 0.0}

    rows = [row("true", "a", "a", 0.6), row("true", "b", "b", 0.5), row("true", "c", "c", 0.35),
            row("other-patient", "a", "b", 0.1), row("other-patient", "b", "a", 0.2),
            row("other-patient", "c", "a", 0.3), row("shift-5mm", "c", "c", 0.1)]
    assert choose_threshold([r for r in rows if "c" not in (r["subject"], r["reference_subject"])]) == 0.21
    result = cross_validate(rows)
    assert result["thresholds_per_fold"]["c"] == 0.21  # chosen on a and b: 0.2 < t <= 0.5, the lowest such
    assert result["out_of_sample"]["true"] == {"pairs": 3, "flagged": 0, "rate": 0.0}
    assert result["out_of_sample"]["other-patient"]["flagged"] == 2  # c's other-patient pair (0.3) passes 0.21


def test_qa_threshold_counts_a_registered_shift_as_the_same_patient() -> None:
    """A shifted reference is a wrong pair only where it stays where its header put it: registered, it is the same
    patient brought back, and the threshold is chosen on true pairs against other patients alone."""
    from fasr.bench.qa import choose_threshold

    def rows(register: str) -> list[dict]:
        base = {"mutual_information": 1.0, "chance_level": 0.0, "register": register}
        return [{**base, "kind": "true", "alignment": 0.6}, {**base, "kind": "other-patient", "alignment": 0.1},
                {**base, "kind": "shift-5mm", "alignment": 0.55}]

    assert choose_threshold(rows("none")) == 0.56  # the shifted pair must be flagged too
    assert choose_threshold(rows("rigid")) == 0.11  # only the other patient


def test_qa_cross_validation_skips_a_fold_without_wrong_pairs() -> None:
    """Registered, two subjects: without a subject, the other's shifted pairs are not wrong pairs, so no threshold
    can be chosen there; that subject is left unjudged instead of the whole calibration failing."""
    from fasr.bench.qa import cross_validate

    base = {"mutual_information": 1.0, "chance_level": 0.0, "register": "rigid"}
    rows = [{**base, "kind": kind, "subject": s, "reference_subject": r, "alignment": a}
            for kind, s, r, a in [("true", "a", "a", 0.6), ("shift-5mm", "a", "a", 0.5), ("true", "b", "b", 0.7),
                                  ("other-patient", "a", "b", 0.1)]]
    result = cross_validate(rows)
    assert result["thresholds_per_fold"] == {"a": None, "b": None} and result["chosen_on_all"] == 0.11
    assert result["out_of_sample"]["true"] == {"pairs": 0, "flagged": 0, "rate": None}


def test_qa_calibration_registers_each_reference_first(tmp_path: Path) -> None:
    """``fasr bench qa --register rigid`` on two generated subjects: each reference is registered to its LR before
    the QA, so a reference shifted 5 mm is the same patient brought back (registered, passed) while the headers'
    placement of the same shift is flagged."""
    from fasr.bench.qa import calibrate

    affine = np.diag([-2.0, -2.0, 4.0, 1.0])  # 128 mm along every axis: a 10 mm shift still covers the LR
    for k, subject in enumerate(("a", "b")):
        hr = head_phantom((64, 64, 32), seed=k)
        write_brats_subject(tmp_path / "set", subject, {"t2": hr, "t1": np.sqrt(hr) * 30}, affine)
    rows = {register: calibrate(tmp_path, 4, register=register, pairings=(("t2", "t1"),))
            for register in ("rigid", "none")}
    shifted = {register: [r for r in rs if r["kind"] == "shift-5mm"] for register, rs in rows.items()}
    true = [r for r in rows["rigid"] if r["kind"] == "true"]
    assert len(shifted["rigid"]) == 6 and all(r["register"] == "rigid" for r in rows["rigid"])
    assert all(r["registration"]["applied"] and abs(r["registration"]["centre_shift_mm"] - 5) < 0.5
               for r in shifted["rigid"])
    assert min(r["alignment"] for r in shifted["rigid"]) > max(r["alignment"] for r in shifted["none"])
    assert min(r["alignment"] for r in shifted["rigid"]) > 0.8 * min(r["alignment"] for r in true)
