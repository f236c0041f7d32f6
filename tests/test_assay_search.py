# The window search's own rules on drawn cassettes and row levels: where a window ends, which box of a
# rim's nest is the membrane, a fragment refused, and a sample well never confirmed as a window.
import cv2
import numpy as np
import pytest

from station.assay.extent import bridge_lines, grow_ends, inside_frame, membrane_goes_on, trim_ends
from station.assay.search import confirm_window
from station.assay.window import Upright, Window

W, L, M = 120, 400, 12          # cassette width and length, margin (px)


def _levels(n=90, membrane=183.0, seed=0):
    rng = np.random.default_rng(seed)
    level = membrane + rng.normal(0, 0.3, n)
    for centre in (0.3 * n, 0.65 * n):      # two lines
        level -= 40 * np.exp(-0.5 * ((np.arange(n) - centre) / 2.0) ** 2)
    return level


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_print_and_a_bright_plastic_gap_at_an_end_are_trimmed_a_brightening_end_is_not(seed):
    """A darker membrane's side steps can run on past its end over a strip of plastic (4-6 % brighter) and
    the print beyond it: those rows go; the membrane itself brightening 2 % towards its other end stays."""
    level = _levels(seed=seed)
    level[:6] = 171.0                      # the analyte label, printed just past the window's end
    level[6:14] = 193.0                    # the plastic between label and membrane
    level[-12:] += np.linspace(0, 3.7, 12)  # the membrane brightening towards its other end
    r0, r1 = trim_ends(level, 0, len(level) - 1)
    assert r0 == 14
    assert r1 == len(level) - 1


def test_a_dark_rim_at_an_end_is_trimmed_and_lines_inside_are_kept():
    level = _levels()
    level[-5:] = 160.0                     # the rim's end rows, darker than the membrane
    assert trim_ends(level, 0, len(level) - 1) == (0, len(level) - 6)


# Row levels across a small window (90 rows), measured on a brand's reference photograph: membrane, its C line
# from row 17 to 31, membrane, T, membrane darkening a little towards the well end.
SMALL_WINDOW_ROWS = np.array([
    194.1, 194.1, 193.6, 193.1, 193.3, 193.6, 193.7, 193.7, 193.4, 193.2, 193.1, 192.9, 193.0, 193.0, 193.5,
    193.1, 192.2, 190.7, 187.0, 180.6, 171.9, 160.9, 149.0, 141.8, 138.8, 141.2, 148.8, 159.5, 171.2, 180.2,
    186.2, 189.2, 191.5, 192.4, 192.3, 192.4, 192.1, 191.8, 191.8, 191.8, 191.7, 191.9, 191.8, 191.9, 192.0,
    191.7, 191.2, 190.9, 190.4, 188.9, 184.7, 177.8, 166.7, 154.4, 143.3, 135.4, 135.0, 140.9, 151.5, 164.5,
    175.1, 182.9, 188.1, 189.5, 190.6, 190.6, 190.6, 190.8, 190.4, 190.1, 190.5, 190.5, 190.2, 190.4, 190.3,
    190.0, 190.0, 190.0, 190.3, 190.1, 189.9, 189.9, 190.0, 189.9, 189.4, 189.7, 189.5, 189.2, 189.5, 193.3])


def test_a_line_filling_the_rows_an_end_is_judged_by_does_not_trim_the_membrane_before_it():
    """A small window, its C line a fifth of the window from the end: the rows that end is judged against
    are mostly line. Judged by their upper quartile (a line's flank) the membrane before the line looked too
    bright and was trimmed off, C left at the window's very end (the reference refused: 1 of 2 lines)."""
    r0, r1 = trim_ends(SMALL_WINDOW_ROWS, 0, len(SMALL_WINDOW_ROWS) - 1)
    assert r0 == 0 and r1 >= len(SMALL_WINDOW_ROWS) - 2


def test_a_strong_line_s_uneven_rows_are_bridged_a_label_on_the_plastic_past_the_end_is_not():
    level = np.full(90, 206.0)                           # membrane, lighter than the plastic ...
    level[:24] = 187.0                                   # ... that runs on past its end, flat
    level[10:17] = 165.0                                 # the analyte label printed on that plastic
    level[44:56] = 206.0 - 40 * np.exp(-0.5 * ((np.arange(44, 56) - 50) / 2.0) ** 2)    # a line
    ok = np.ones(90, bool)
    ok[10:17] = ok[48:53] = False                        # the rows that are not flat across
    got = bridge_lines(ok, level, float(np.median(level)), 7)
    assert got[48:53].all() and not got[10:17].any()


def _window_body(top=40, bottom=90, plastic=205.0, membrane=193.0) -> tuple[np.ndarray, np.ndarray]:
    grey = _body(plastic)
    grey[top:bottom + 1, 40:100] = membrane
    grey[58:62, 40:100] = membrane - 20                  # a line
    grey = cv2.GaussianBlur(grey, (0, 0), 0.8) + np.random.default_rng(2).normal(0, 0.4, grey.shape)
    return grey.astype(np.float32), _steps(grey.astype(np.float32))


def test_a_box_short_of_the_membrane_s_ends_is_carried_on_to_them():
    """Side steps fading near the ends of a small window left the box 6-7 rows short at each end: the
    lines read off their places (T taken where there was none: a false positive)."""
    grey, gx = _window_body()
    ya, yb = grow_ends(grey, gx, 39, 99, 47, 84, L)
    assert abs(ya - 40) <= 1 and abs(yb - 90) <= 1


def test_plastic_of_the_membrane_s_tone_past_its_end_is_not_grown_into():
    grey, gx = _window_body(plastic=195.0)               # 1 % from the membrane's tone, no rim
    grey[:, 39:41] = grey[:, 99:101] = 195.0             # ... and no side steps past the membrane's ends
    grey[40:91, 39:41] = grey[40:91, 99:101] = 160.0     # the recess wall's shade along the sides only
    gx = _steps(grey)
    ya, yb = grow_ends(grey, gx, 40, 99, 47, 84, L)
    assert abs(ya - 40) <= 1 and abs(yb - 90) <= 1


def test_frame_takes_the_inner_sides_and_where_one_end_was_trimmed_the_outer_ends():
    outer = (20, 100, 50, 200)
    assert inside_frame(outer, (28, 92, 58, 192), W, L) == (28, 92, 58, 192)       # the same frame all round
    assert inside_frame(outer, (28, 92, 60, 200), W, L) == (28, 92, 50, 200)       # one end already trimmed
    assert inside_frame(outer, (28, 80, 58, 192), W, L) is None                    # uneven sides: no frame
    assert inside_frame(outer, (28, 92, 90, 200), W, L) is None                    # far too long an end
    assert inside_frame(outer, (25, 95, 68, 182), W, L) is None                    # ends far deeper than the sides


def _body(plastic=200.0) -> np.ndarray:
    return np.full((L + 2 * M, W + 2 * M), plastic, np.float32)


def _steps(grey: np.ndarray) -> np.ndarray:
    return np.abs(np.diff(cv2.GaussianBlur(grey, (0, 0), 1.0), axis=1))


def test_a_box_whose_membrane_goes_on_past_its_end_is_a_fragment():
    grey = _body()
    grey[60:300, 40:100] = 185.0                         # the membrane, only 4 % darker than the plastic
    grey[100:106, 40:100] = 150.0                        # a line in the part the box missed
    gx = _steps(grey)
    assert membrane_goes_on(grey, gx, 39, 99, 150, 298, L)  # the box: from below that line
    assert not membrane_goes_on(grey, gx, 39, 99, 61, 298, L)


def test_plastic_of_nearly_the_membrane_s_tone_past_the_end_is_not_more_membrane():
    """Past a true end the plastic may differ from the membrane by only 2.5 %: it has no side steps."""
    grey = _body(181.0)
    grey[60:300, 40:100] = 185.6
    grey[56:60, 36:104] = 155.0                          # the recess edge's shadow at the end
    assert not membrane_goes_on(grey, _steps(grey), 39, 99, 61, 298, L)


def test_a_box_inside_the_membrane_past_a_recess_wall_is_not_taken_for_a_fragment():
    """Our own cassette: a box a little inside the membrane has no edges at its columns to follow, and past
    the dark recess wall at its end lies plastic of nearly the membrane's tone."""
    grey = _body(189.0)
    grey[52:308, 32:108] = 152.0                         # the recess wall
    grey[60:300, 40:100] = 192.0
    grey += np.random.default_rng(5).normal(0, 1.0, grey.shape).astype(np.float32)   # the camera's noise
    assert not membrane_goes_on(grey, _steps(grey), 48, 91, 61, 298, L)


def test_a_rim_of_the_membrane_s_tone_past_the_end_is_not_more_membrane():
    grey = _body()
    grey[50:310, 30:110] = 186.0                         # a rim (about 3 % of the length wide) ...
    grey[60:300, 40:100] = 185.0                         # ... round a membrane of nearly its tone
    assert not membrane_goes_on(grey, _steps(grey), 39, 99, 61, 298, L)


def _upright(draw) -> Upright:
    img = np.full((L + 2 * M, W + 2 * M, 3), 205, np.uint8)
    draw(img)
    img = cv2.GaussianBlur(img, (0, 0), 1.0)
    noise = np.random.default_rng(3).normal(0, 1.0, img.shape)
    img = np.clip(img + noise, 0, 255).astype(np.uint8)
    return Upright(img, np.eye(2, 3), float(W), float(L), float(M))


NEAR = Window(M + 0.30 * W, M + 0.62 * L, M + 0.70 * W, M + 0.86 * L, 0.0)


def test_a_window_where_the_learned_geometry_puts_it_is_confirmed():
    up = _upright(lambda img: cv2.rectangle(img, (int(NEAR.x0), int(NEAR.y0)), (int(NEAR.x1), int(NEAR.y1)),
                                            (175, 175, 175), -1))
    got = confirm_window(up, NEAR)
    assert got is not None
    assert abs(got.x0 - NEAR.x0) <= 2 and abs(got.y1 - NEAR.y1) <= 3


def test_an_oval_sample_well_where_the_window_would_be_is_not_confirmed():
    """Turned the wrong way round, a learned window's place can hold the oval well: its curved sides last
    the whole height and end where the window would, but they are not a moulded window's straight sides."""
    centre = (int((NEAR.x0 + NEAR.x1) / 2), int((NEAR.y0 + NEAR.y1) / 2))
    axes = (int((NEAR.x1 - NEAR.x0) / 2), int(1.15 * (NEAR.y1 - NEAR.y0) / 2))   # a little taller than the window

    def well(img):
        cv2.ellipse(img, centre, (axes[0] + 4, axes[1] + 4), 0, 0, 360, (150, 150, 150), -1)
        cv2.ellipse(img, centre, axes, 0, 0, 360, (90, 120, 110), -1)
    assert confirm_window(_upright(well), NEAR) is None
