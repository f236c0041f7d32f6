# `station score` and `station assay-eval` from the command line: JSON contract, errors, debug images.
import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from station.cli import score
from station.lab import assay_eval
from station.lab.photogen import random_scene, render_jpeg

SAMPLES = Path(assay_eval.__file__).resolve().parent / "samples"


def cli(argv):
    parser = argparse.ArgumentParser(prog="station")
    sub = parser.add_subparsers(required=True)
    score.add_parser(sub)
    assay_eval.add_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(77)
    data, truth = render_jpeg(random_scene(rng, n_cassettes=2, resolution=(1280, 960), tc=0.3, c_peak=0.4), rng)
    p = d / "two.jpg"
    p.write_bytes(data)
    return p, truth


def test_json_output_one_object_per_image_strips_left_to_right(photo, capsys):
    path, truth = photo
    assert cli(["score", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert isinstance(out, list) and len(out) == 1
    img = out[0]
    assert img["image"] == str(path) and img["error"] is None
    assert [s["slot"] for s in img["strips"]] == [0, 1]
    xs = [s["center"][0] for s in img["strips"]]
    assert xs == sorted(xs)
    true_xs = sorted(c["center"][0] for c in truth["cassettes"])
    assert np.allclose(xs, true_xs, atol=10)
    for s in img["strips"]:
        assert s["verdict"] == "positive" and s["control_line"] is True
        assert s["quality"] == [] and abs(s["tc_ratio"] - 0.3) < 0.08


def test_unreadable_image_gets_an_error_naming_it_and_a_nonzero_exit(photo, tmp_path, capsys):
    path, _ = photo
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg at all")
    missing = tmp_path / "missing.jpg"
    assert cli(["score", str(path), str(bad), str(missing), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out[0]["error"] is None
    assert str(bad) in out[1]["error"] and out[1]["strips"] == []
    assert str(missing) in out[2]["error"]


def test_table_output_is_readable(photo, capsys):
    path, _ = photo
    assert cli(["score", str(path)]) == 0
    text = capsys.readouterr().out
    assert "verdict" in text and "positive" in text and "{" not in text


def test_debug_dir_gets_an_annotated_image(photo, tmp_path, capsys):
    path, _ = photo
    assert cli(["score", str(path), "--debug-dir", str(tmp_path / "dbg")]) == 0
    out = tmp_path / "dbg" / "two.debug.jpg"
    img = cv2.imread(str(out))
    assert img is not None and img.shape[1] == 1280 and img.shape[0] > 960  # profile plots below the photo


def test_strip_type_option_rejects_unknown_names(photo, capsys):
    path, _ = photo
    # Names come from built-ins, a --catalog file or the station's catalog, so they are checked when run.
    assert cli(["score", str(path), "--strip-type", "no-such-card"]) == 2
    assert "'no-such-card' not in built-in; known: clenbuterol" in capsys.readouterr().err


def test_bundled_samples_read_as_labelled(capsys):
    names = ["negative", "positive", "invalid-no-control", "glare-retake", "empty-tray"]
    assert cli(["score", *[str(SAMPLES / f"{n}.jpg") for n in names], "--json"]) == 0
    out = {Path(o["image"]).stem: o for o in json.loads(capsys.readouterr().out)}
    assert out["negative"]["strips"][0]["verdict"] == "negative"
    assert out["positive"]["strips"][0]["verdict"] == "positive"
    assert out["invalid-no-control"]["strips"][0]["verdict"] == "invalid"
    assert out["glare-retake"]["strips"][0]["quality"] == ["GLARE"]
    assert out["empty-tray"]["strips"] == []
    for p in SAMPLES.glob("*.jpg"):
        assert p.stat().st_size < 250_000


def test_assay_eval_generates_and_reports_every_metric(tmp_path, capsys):
    rc = cli(["assay-eval", "--generate", "30", "--seed", "5", "--out", str(tmp_path / "set"), "--json",
              "--quiet"])
    report = json.loads(capsys.readouterr().out)
    names = [m["name"] for m in report["metrics"]]
    for key in ("detection recall", "phantom", "error, mean", "error, p95", "Pearson", "repeatability",
                "invalid", "glare", "blur", "overexposed", "empty tray"):
        assert any(key in n for n in names), key
    assert report["images"] == 30
    assert rc in (0, 1)
    assert len(list((tmp_path / "set").glob("*.json"))) == 30


def test_station_command_registers_the_lab_assay_eval():
    from station.cli import build_parser

    assert build_parser().parse_args(["assay-eval", "somewhere"]).func is assay_eval.run


def test_assay_eval_refuses_a_folder_without_labels(tmp_path, capsys):
    (tmp_path / "x.jpg").write_bytes(b"")
    assert cli(["assay-eval", str(tmp_path)]) == 2
    assert "no images with .json" in capsys.readouterr().err
