"""Generate a date-verbalization corpus: written dates -> the words a speaker says (text normalization for TTS).

    python scripts/make_dates_data.py [--out data/dates] [--train 30000] [--seed 1]

Writes `train.tsv`, `val.tsv`, `test.tsv` (`source<TAB>target`, UTF-8), e.g.

    03/04/2021            march fourth twenty twenty one
    3rd of March, 1999    march third nineteen ninety nine
    2005-11-01            november first two thousand five

Sources are characters in many written forms (numeric US month/day/year, ISO, dotted day.month.year, month
names in full or abbreviated, ordinals, weekdays, mixed case); targets are space-separated words, so the recipe
(configs/dates.yaml) reads the source as characters and the target as words: `src_level: char`, `tgt_level: space`.
Years 1900-2099; a date and written form never occur in two splits (no leakage). Deterministic for a seed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
from pathlib import Path

MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december"]
ONES = ["", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
        "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
ORDINAL_ONES = ["", "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
                "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth", "seventeenth",
                "eighteenth", "nineteenth"]
ORDINAL_TENS = {20: "twentieth", 30: "thirtieth"}


def cardinal(n: int) -> str:
    """0 < n < 100 in words: 21 -> 'twenty one'."""
    if n < 20:
        return ONES[n]
    return TENS[n // 10] + ("" if n % 10 == 0 else " " + ONES[n % 10])


def ordinal(n: int) -> str:
    """1..31 as an ordinal: 21 -> 'twenty first'."""
    if n < 20:
        return ORDINAL_ONES[n]
    if n % 10 == 0:
        return ORDINAL_TENS[n]
    return TENS[n // 10] + " " + ORDINAL_ONES[n % 10]


def year_words(y: int) -> str:
    """As said: 1905 'nineteen oh five', 1900 'nineteen hundred', 2000 'two thousand', 2007 'two thousand seven',
    2021 'twenty twenty one'."""
    if y == 2000:
        return "two thousand"
    if 2001 <= y <= 2009:
        return "two thousand " + ONES[y - 2000]
    hi, lo = divmod(y, 100)
    if lo == 0:
        return cardinal(hi) + " hundred"
    return cardinal(hi) + " " + ("oh " + ONES[lo] if lo < 10 else cardinal(lo))


def spoken(d: dt.date) -> str:
    return f"{MONTHS[d.month - 1]} {ordinal(d.day)} {year_words(d.year)}"


def suffix(n: int) -> str:
    return "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


def written(d: dt.date, form: int) -> str:
    """One of 12 written forms of `d`."""
    month, mon = MONTHS[d.month - 1].capitalize(), MONTHS[d.month - 1][:3].capitalize()
    day_th, weekday = f"{d.day}{suffix(d.day)}", d.strftime("%A")
    forms = [
        f"{d.month:02d}/{d.day:02d}/{d.year}",  # US numeric, month first
        f"{d.month}/{d.day}/{d.year}",
        d.isoformat(),
        f"{d.day}.{d.month}.{d.year}",  # dotted: day first
        f"{month} {d.day}, {d.year}",
        f"{d.day} {month} {d.year}",
        f"{mon} {d.day} {d.year}",
        f"{day_th} of {month}, {d.year}",
        f"{month} {day_th}, {d.year}",
        f"{weekday}, {month} {d.day}, {d.year}",
        f"{d.day} {mon.upper()} {d.year}",
        f"{month.lower()} {day_th} {d.year}",
    ]
    return forms[form]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/dates"))
    parser.add_argument("--train", type=int, default=30000)
    parser.add_argument("--valid", type=int, default=1000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    start, days = dt.date(1900, 1, 1), (dt.date(2099, 12, 31) - dt.date(1900, 1, 1)).days + 1
    seen: set[str] = set()
    args.out.mkdir(parents=True, exist_ok=True)
    for split, n in (("val", args.valid), ("test", args.test), ("train", args.train)):
        lines = []
        while len(lines) < n:
            d = start + dt.timedelta(days=rng.randrange(days))
            src = written(d, rng.randrange(12))
            if src in seen:
                continue
            seen.add(src)
            lines.append(f"{src}\t{spoken(d)}\n")
        (args.out / f"{split}.tsv").write_text("".join(lines), encoding="utf-8")
        print(f"{args.out / (split + '.tsv')}: {n} pairs")


if __name__ == "__main__":
    main()
