# Third-party photographs of real rapid tests: never a crash, always a reading or a reason.
from pathlib import Path

import pytest

from station.assay import BUILTIN_STRIP_TYPES
from station.cli.score import score_file

REALWORLD = Path(__file__).resolve().parents[2] / "shared" / "realworld-rdt"
PHOTOS = sorted(p for p in REALWORLD.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


@pytest.mark.skipif(not PHOTOS, reason=f"no third-party photographs in {REALWORLD}")
@pytest.mark.parametrize("path", PHOTOS, ids=[p.name for p in PHOTOS])
def test_real_photograph_gives_a_reading_or_a_clear_reason(path):
    score, img = score_file(str(path), BUILTIN_STRIP_TYPES["pesticide-generic"], want_debug=True)
    assert img is not None and score.error is None
    j = score.to_json(image=str(path))
    if not j["strips"]:
        assert j["reason"]
    for s in j["strips"]:
        assert s["verdict"] in ("negative", "positive", "invalid", "retake")
        if s["verdict"] == "retake":
            assert s["quality"] and s["reason"] and s["tc_ratio"] is None
