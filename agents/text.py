"""Text as Excalidraw 0.18 measures and wraps it, without a browser.

The editor measures text with the canvas (``measureText``) in its own fonts;
a server cannot, so this module carries the fonts' advance widths, measured
once in Chromium from the web app's canvas, and applies Excalidraw's rules
(``measureText``, ``wrapText``) with them. Within a few percent of the
editor's own measure for Latin text (the browser test checks it), so labels
sit inside their shapes as drawn; the editor re-measures a text when a
person edits it.
"""

from __future__ import annotations

import functools
import math

DEFAULT_FONT_SIZE = 20

FONT_FAMILIES = {
    "Virgil": 1,
    "Helvetica": 2,
    "Cascadia": 3,
    "Excalifont": 5,
    "Nunito": 6,
    "Lilita One": 7,
    "Comic Shanns": 8,
    "Liberation Sans": 9,
}
DEFAULT_FONT_FAMILY = FONT_FAMILIES["Excalifont"]
#: Each font's line height (Excalidraw's FONT_METADATA ``metrics.lineHeight``).
LINE_HEIGHTS = {1: 1.25, 2: 1.15, 3: 1.2, 5: 1.25, 6: 1.35, 7: 1.15, 8: 1.25, 9: 1.15}


def _widths(table: str) -> tuple[int, ...]:
    return tuple(int(w) for w in table.split())


#: Advance widths of printable ASCII (space to "~"), in thousandths of an em, of
#: Excalifont (5, also used for the old Virgil), Nunito (6, also for Helvetica and
#: Liberation Sans) and Lilita One (7), kerning left out; Comic Shanns (8) and
#: Cascadia (3) are monospaced. Other characters: CJK and emoji a full em, the
#: rest the width of an "n".
_ASCII_WIDTHS: dict[int, tuple[int, ...]] = {
    5: _widths(
        "400 314 371 783 721 928 718 218 441 402 525 550 257 411 274 561 664 427 700 608 "
        "585 618 640 558 636 629 264 298 550 550 550 466 829 676 761 629 780 707 661 780 "
        "573 545 569 613 543 766 632 767 698 768 736 622 857 730 592 786 628 564 832 472 "
        "589 497 510 670 600 576 555 504 605 537 497 555 567 244 328 533 225 663 526 600 "
        "537 539 412 543 553 548 525 693 591 530 572 504 299 544 669"
    ),
    6: _widths(
        "261 233 405 600 600 933 701 226 326 326 451 600 233 427 233 290 600 600 600 600 "
        "600 600 600 600 600 600 233 233 600 600 600 447 947 733 679 675 747 586 551 729 "
        "764 262 331 634 548 858 741 771 637 771 673 618 607 731 694 1104 655 601 593 324 "
        "290 324 600 500 361 533 587 465 587 534 340 590 572 237 241 508 301 861 572 560 "
        "587 587 365 483 358 565 518 844 530 517 466 361 270 361 600"
    ),
    7: _widths(
        "188 287 460 833 531 798 667 301 430 422 557 602 305 525 229 573 639 406 525 528 "
        "598 524 575 500 570 565 277 277 484 580 450 584 867 655 594 561 616 493 472 621 "
        "644 429 462 620 435 907 648 696 570 706 590 531 502 628 661 953 683 615 563 385 "
        "587 385 687 636 350 517 520 424 565 486 375 516 501 273 271 531 272 788 551 513 "
        "555 511 396 450 368 544 521 752 557 537 454 362 628 362 459"
    ),
}
_SAME_WIDTHS = {1: 5, 2: 6, 9: 6}
_MONOSPACED = {3: 0.586, 8: 0.55}


def char_width(char: str, font_size: float, family: int = DEFAULT_FONT_FAMILY) -> float:
    """One character's advance width in px (see ``_ASCII_WIDTHS``)."""
    family = _SAME_WIDTHS.get(family, family)
    code = ord(char)
    if code >= 0x2E80:  # CJK, emoji
        return float(font_size)
    if family in _MONOSPACED:
        return _MONOSPACED[family] * font_size
    widths = _ASCII_WIDTHS.get(family, _ASCII_WIDTHS[5])
    if 32 <= code < 127:
        return widths[code - 32] / 1000 * font_size
    return widths[ord("n") - 32] / 1000 * font_size


@functools.lru_cache(maxsize=64)
def _ascii_widths(font_size: float, family: int) -> dict[str, float]:
    """:func:`char_width` of every ASCII character at one size and font (labels are
    measured character by character, many times while wrapping)."""
    return {chr(code): char_width(chr(code), font_size, family) for code in range(128)}


def line_width(line: str, font_size: float, family: int = DEFAULT_FONT_FAMILY) -> float:
    table = _ascii_widths(font_size, family)
    if line.isascii():
        return sum(map(table.__getitem__, line))
    return sum(table[c] if c in table else char_width(c, font_size, family) for c in line)


def normalize_text(text: str) -> str:
    """Excalidraw's ``normalizeText``: one kind of line end, tabs as 8 spaces."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " " * 8)


def measure(
    text: str, font_size: float, line_height: float, family: int = DEFAULT_FONT_FAMILY
) -> tuple[float, float]:
    """``measureText``: the widest line, and lines x font size x line height."""
    lines = [line or " " for line in normalize_text(text).split("\n")]
    width = max(line_width(line, font_size, family) for line in lines)
    return width, font_size * line_height * len(lines)


def wrap(text: str, font_size: float, max_width: float, family: int = DEFAULT_FONT_FAMILY) -> str:
    """``wrapText``: break lines at spaces (words wider than a line, per character)."""
    if not math.isfinite(max_width) or max_width < 0:
        return text
    out: list[str] = []
    for original in text.split("\n"):
        if line_width(original, font_size, family) <= max_width:
            out.append(original)
            continue
        current = ""
        for word in original.split(" "):
            candidate = f"{current} {word}" if current else word
            if line_width(candidate, font_size, family) <= max_width:
                current = candidate
                continue
            if current:
                out.append(current)
            current = ""
            for char in word:
                if current and line_width(current + char, font_size, family) > max_width:
                    out.append(current)
                    current = ""
                current += char
        out.append(current)
    return "\n".join(out)
