# Strip-type catalog: built-ins are sane and config tables are validated strictly.
import pytest

from station.assay import BUILTIN_STRIP_TYPES, StripType, strip_type_from_dict


def test_builtins_cover_each_format_and_a_three_line_card():
    formats = {st.format for st in BUILTIN_STRIP_TYPES.values()}
    assert formats == {"competitive", "sandwich"}
    assert any(len(st.test_lines) == 3 for st in BUILTIN_STRIP_TYPES.values())
    assert "clenbuterol" in BUILTIN_STRIP_TYPES
    for st in BUILTIN_STRIP_TYPES.values():
        assert st.c_position == max(p for _, p in st.lines)


def test_from_dict_accepts_a_full_table():
    st = strip_type_from_dict({"name": "carbendazim-x", "analyte": "carbendazim", "format": "competitive",
                               "lines": [["T", 0.3], {"name": "C", "position": 0.7}], "cutoff": 0.6,
                               "incubation_s": 480}, "station.toml [[strip_types]] #1")
    assert st.lines == (("T", 0.3), ("C", 0.7))
    assert st.cutoff == 0.6 and st.incubation_s == 480


@pytest.mark.parametrize("table, words", [
    ({"name": "x", "analyte": "y", "cutof": 0.5}, ["cutof", "allowed", "cutoff"]),
    ({"name": "x", "analyte": "y", "format": "lateral"}, ["format", "competitive"]),
    ({"name": "x", "analyte": "y", "lines": [["T", 0.3]]}, ["C"]),
    ({"name": "x", "analyte": "y", "lines": [["T", 0.8], ["C", 0.5]]}, ["farthest"]),
    ({"name": "x", "analyte": "y", "lines": [["T", 0.50], ["C", 0.52]]}, ["separated"]),
    ({"name": "x", "analyte": "y", "incubation_s": "10m"}, ["incubation_s"]),
    ({"analyte": "y"}, ["name"]),
    ({"name": "x", "analyte": "y", "lines": [{"name": "C", "pos": 0.7}]}, ["pos"]),
])
def test_from_dict_rejects_bad_tables_naming_the_problem(table, words):
    with pytest.raises(ValueError) as exc:
        strip_type_from_dict(table, "cfg.toml [[strip_types]] #2")
    msg = str(exc.value)
    assert msg.startswith("cfg.toml [[strip_types]] #2")
    for w in words:
        assert w in msg


def test_strip_type_is_frozen():
    st = StripType(name="a", analyte="b")
    with pytest.raises(AttributeError):
        st.cutoff = 0.1  # type: ignore[misc]
