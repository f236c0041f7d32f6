# Config loading: the template `station init` writes is valid; bad keys and values are named with file and line.
from __future__ import annotations

import pytest

from station.config import load_config, parse_config
from station.errors import ConfigError
from station.home import Home, init_home, render_config

GOOD = render_config(station="st-0001", grid="d1/t1/v1", broker="mqtt://127.0.0.1:1883", camera="folder",
                     folder="imgs", pin_factory="mock", wait=False)


def test_template_parses_to_defaults(tmp_path):
    cfg = parse_config(GOOD, path=str(tmp_path / "station.toml"), home=tmp_path)
    assert cfg.station.path == "d1/t1/v1/st-0001"
    assert cfg.station.kid == "st-0001/1"
    assert cfg.gpio.button_pin == 17
    assert cfg.camera.driver == "folder"
    assert cfg.resolve(cfg.camera.folder) == tmp_path / "imgs"
    assert cfg.strip_type.name == "pesticide-generic"


def test_unknown_key_names_file_line_and_allowed(tmp_path):
    text = GOOD.replace("debounce_ms = 50", "debounce_ms = 50\nbuton_pin = 4")
    with pytest.raises(ConfigError) as err:
        parse_config(text, path="/etc/x/station.toml", home=tmp_path)
    line = text.splitlines().index("buton_pin = 4") + 1
    msg = str(err.value)
    assert msg.startswith(f"/etc/x/station.toml:{line}: gpio.buton_pin: unknown key")
    assert "button_pin" in msg


def test_unknown_table(tmp_path):
    with pytest.raises(ConfigError, match="camara: unknown table"):
        parse_config(GOOD + "\n[camara]\nx = 1\n", path="s.toml", home=tmp_path)


@pytest.mark.parametrize(("old", "new", "expect"), [
    ("button_pin = 17", "button_pin = 99", r"gpio.button_pin: 99 out of range 0..27"),
    ("button_pin = 17", 'button_pin = "17"', r"gpio.button_pin: must be int, got str"),
    ('driver = "folder"', 'driver = "usb"', r"camera.driver: 'usb' not allowed; one of folder, v4l2"),
    ("warn_pct = 80", "warn_pct = 96", r"storage.warn_pct: 96.0 must be below refuse_pct"),
    ('id = "st-0001"', 'id = "st/0001"', r"station.id: 'st/0001' must be"),
    ('grid = "d1/t1/v1"', 'grid = "d1/t1"', r"station.grid: 'd1/t1' must be district/town/village"),
    ('strip_type = "pesticide-generic"', 'strip_type = "nope"', r"assay.strip_type: 'nope' not in the catalog"),
    ("wait_incubation = false", "wait_incubation = 0", r"assay.wait_incubation: must be bool"),
])
def test_bad_values_are_named(tmp_path, old, new, expect):
    assert old in GOOD
    with pytest.raises(ConfigError, match=expect):
        parse_config(GOOD.replace(old, new, 1), path="s.toml", home=tmp_path)


def test_bad_toml_reports_line(tmp_path):
    with pytest.raises(ConfigError, match=r"s.toml:3: not valid TOML"):
        parse_config("[station]\nid = 'a'\ngrid = \n", path="s.toml", home=tmp_path)


def test_strip_type_catalog_entry(tmp_path):
    extra = GOOD + """
[[strip_types]]
name = "carbofuran-card"
analyte = "carbofuran"
format = "competitive"
lines = [["T", 0.35], ["C", 0.7]]
cutoff = 0.75
incubation_s = 480
"""
    cfg = parse_config(extra.replace('strip_type = "pesticide-generic"', 'strip_type = "carbofuran-card"'),
                       path="s.toml", home=tmp_path)
    assert cfg.strip_type.cutoff == 0.75
    assert cfg.strip_type.analyte == "carbofuran"
    with pytest.raises(ConfigError, match=r"strip_types\[0\]"):
        parse_config(extra.replace("cutoff = 0.75", "cutof = 0.75"), path="s.toml", home=tmp_path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match=r"station.toml: no config file here; create one with `station init`"):
        load_config(tmp_path)


def test_defaults_are_the_real_devices_and_only_init_sim_asks_for_the_simulation(tmp_path):
    (tmp_path / "photos").mkdir()
    sim = init_home(Home(tmp_path / "sim"), station="st-0001", grid="d1/t1/v1", sim_images=str(tmp_path / "photos"))
    real = init_home(Home(tmp_path / "real"), station="st-0001", grid="d1/t1/v1")
    sim_cfg, real_cfg = load_config(sim.parent), load_config(real.parent)
    assert (sim_cfg.camera.driver, sim_cfg.gpio.pin_factory) == ("folder", "mock")
    assert (real_cfg.camera.driver, real_cfg.gpio.pin_factory) == ("v4l2", "lgpio")


def test_a_driver_name_the_registry_does_not_know_is_refused_with_its_line(tmp_path):
    text = GOOD.replace('driver = "folder"', 'driver = "libcamera-usb"', 1)
    line = text.splitlines().index(next(x for x in text.splitlines() if x.startswith('driver = "libcamera-usb"'))) + 1
    with pytest.raises(ConfigError) as err:
        parse_config(text, path="s.toml", home=tmp_path)
    assert str(err.value) == (f"s.toml:{line}: camera.driver: 'libcamera-usb' not allowed; one of folder, v4l2, "
                              "picamera2, fake, none")
    assert parse_config(GOOD.replace('driver = "folder"', 'driver = "fake"', 1), path="s.toml",
                        home=tmp_path).camera.driver == "fake"


# ---- issue 8, defect 2: a truncated config is refused, not filled in with simulation defaults ----------------

@pytest.mark.parametrize("cut_before", ["[broker]", "[gpio]", "[assay]", "[storage]"])
def test_a_config_cut_short_before_a_table_is_refused_naming_what_is_missing(tmp_path, cut_before):
    cut = GOOD[:GOOD.index(cut_before)]
    with pytest.raises(ConfigError) as err:
        parse_config(cut, path="/h/station.toml", home=tmp_path)
    msg = str(err.value)
    assert msg.startswith("/h/station.toml: missing table") and cut_before in msg and "cut short" in msg


def test_a_config_cut_inside_a_table_is_refused_naming_the_key(tmp_path):
    wait_line = next(x for x in GOOD.splitlines() if x.startswith("wait_incubation ="))
    cut = GOOD.replace(wait_line + "\n", "")
    line = cut.splitlines().index("[assay]") + 1
    with pytest.raises(ConfigError, match=rf"^s.toml:{line}: assay: missing required key wait_incubation"):
        parse_config(cut, path="s.toml", home=tmp_path)
    with pytest.raises(ConfigError, match=r"broker: missing required key url"):
        parse_config(GOOD.replace('url = "mqtt://127.0.0.1:1883"', "", 1), path="s.toml", home=tmp_path)


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    (tmp_path / "station.toml").write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    assert load_config(tmp_path).station.id == "st-0001"


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "+nan"])
def test_nan_and_infinity_are_refused_with_file_and_line(tmp_path, bad):
    text = GOOD.replace("refuse_pct = 95", f"refuse_pct = {bad}", 1)
    line = text.splitlines().index(next(x for x in text.splitlines() if x.startswith("refuse_pct"))) + 1
    with pytest.raises(ConfigError, match=rf"^s.toml:{line}: storage.refuse_pct: .* is not a finite number"):
        parse_config(text, path="s.toml", home=tmp_path)


def test_an_oversized_value_is_not_echoed_whole(tmp_path):
    huge = "x" * 100_000
    for old, new in (('id = "st-0001"', f'id = "{huge}"'), ('driver = "folder"', f'driver = "{huge}"'),
                     ("button_pin = 17", f'button_pin = "{huge}"'), ("debounce_ms = 50", f"{huge} = 1")):
        with pytest.raises(ConfigError) as err:
            parse_config(GOOD.replace(old, new, 1), path="s.toml", home=tmp_path)
        assert len(str(err.value)) < 400, (old, len(str(err.value)))
