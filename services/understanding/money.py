"""Amounts of money as people write and say them, in the conventions of several countries.

- Thousands separators: comma ("1,500"), dot ("1.500") or a space, no-break space or
  narrow no-break space ("2 000"); the decimal separator is the other mark ("1.500,50",
  "1 500,50", "$1,500.50"). A single dot or comma followed by exactly three digits groups
  thousands ("15.000€" is fifteen thousand), unless a multiplier follows ("1.500k" is 1.5k);
  followed by one, two or four or more digits it is a decimal mark ("12.50", "1,5k").
- Multipliers: k, thousand, mil, mille (1,000), hundred, million / mn, and m after a
  currency ("$2m"); number words before them ("two thousand", "a hundred").
- Currencies: $, US$, USD, dollars, bucks; €, EUR, euros; £, GBP, pounds; before or
  after the number. An amount without one is read (`amounts`) but has no currency.
- Ranges ("5-10k", "$5,000 to $10,000", "between 2 and 3 thousand euros"): the multiplier
  and currency of one end apply to the other, and the amount is the **upper bound**, the
  most the speaker says they would spend ("under $1,500" is 1,500 as well).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

# Small numbers as people say them (counts and amounts); digits are handled as digits.
NUMBER_WORDS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "a dozen": 12,
    "fifteen": 15,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "a hundred": 100,
    "hundred": 100,
}
_SCALES = {
    "k": 1_000,
    "thousand": 1_000,
    "thousands": 1_000,
    "mil": 1_000,
    "mille": 1_000,
    "hundred": 100,
    "million": 1_000_000,
    "millions": 1_000_000,
    "mn": 1_000_000,
    "m": 1_000_000,
}
_CURRENCIES = {
    "$": "USD",
    "us$": "USD",
    "usd": "USD",
    "dollar": "USD",
    "dollars": "USD",
    "buck": "USD",
    "bucks": "USD",
    "€": "EUR",
    "eur": "EUR",
    "euro": "EUR",
    "euros": "EUR",
    "£": "GBP",
    "gbp": "GBP",
    "pound": "GBP",
    "pounds": "GBP",
}
_SPACES = " \u00a0\u202f"  # space, no-break space, narrow no-break space

_NUMBER = (
    rf"\d{{1,3}}(?:[{_SPACES}]\d{{3}})+(?![\d])(?:[.,]\d+)?"  # 2 000, 1 500,50
    r"|\d+(?:[.,]\d+)*"  # 1500, 1,500.50, 1.500,50, 15.000, 1.5
)
_WORD = r"|".join(sorted(NUMBER_WORDS, key=len, reverse=True))


def _amount(n: str) -> str:
    before = r"(?:(?P<pre{n}>us\$|\$|€|£)\s?|(?P<precode{n}>usd|eur|gbp)\s)?"
    number = rf"(?:(?P<num{n}>{_NUMBER})|(?P<word{n}>\b(?:{_WORD})))"
    # "2 one thousand": how Apertium puts Spanish "2 mil"
    scale = r"(?:\s?(?P<scale{n}>k|(?:(?:one|a)\s)?thousands?|mil|mille|hundred|millions?|mn|m)\b)?"
    after = (
        r"(?:\s?(?P<post{n}>\$|€|£|"
        r"(?:us\$|usd|dollars?|bucks?|eur|euros?|gbp|pounds?)\b))?"
    )
    return (before + number + scale + after).replace("{n}", n)


# Not inside a word, nor a part of a phone number, date, time or version ("415-555-0134",
# "12/05", "10:30", "1.2.3").
_MONEY = re.compile(
    rf"(?:(?=[$€£])|(?<![\w.,/:+-])){_amount('1')}"
    rf"(?:(?:\s?(?:-|\u2013|\u2014|to)\s?|\s+and\s+){_amount('2')})?"  # -, en/em dash
    r"(?![\w]|[-/:.,+]?\d)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Amount:
    value: Decimal
    currency: str  # ISO 4217, or "" when the text names none
    scaled: bool  # a multiplier was said ("2k", "two thousand")
    start: int
    end: int
    text: str

    @property
    def normalized(self) -> str:
        return f"{self.value:.2f} {self.currency or 'USD'}"


def amounts(text: str) -> list[Amount]:
    """Every amount in the text, in order; `currency` is "" where none is named."""
    found = []
    for m in _MONEY.finditer(text):
        amount = _read(m)
        if amount is not None:
            found.append(amount)
    return found


def money(text: str) -> list[Amount]:
    """The amounts that name a currency: money for sure."""
    return [a for a in amounts(text) if a.currency]


_End = tuple[Decimal, Decimal, bool, str]  # number, multiplier, one was said, currency


def _read(m: re.Match[str]) -> Amount | None:
    high = _end(m, "2", alone=True, priced=_priced(m, "1")) if _said(m, "2") else None
    low = _end(m, "1", alone=high is None, priced=_priced(m, "2"))
    if low is None:
        return None
    if high is None:  # one amount ("$500 to ten people": the rest is no amount)
        return _single(m, low)
    top = high[0] * high[1]
    bottom = low[0] * (low[1] if low[2] else high[1])  # "5-10k": 5k to 10k
    if not low[2] and bottom >= top:
        bottom = low[0]
    if bottom >= top or (low[3] and high[3] and low[3] != high[3]):
        return _single(m, low)  # "$500 and 2": no range
    scaled = low[2] or high[2]
    return Amount(top, high[3] or low[3], scaled, m.start(), m.end(), m.group(0))


def _said(m: re.Match[str], n: str) -> bool:
    return m.group(f"num{n}") is not None or m.group(f"word{n}") is not None


def _priced(m: re.Match[str], n: str) -> bool:
    return bool(m.group(f"pre{n}") or m.group(f"precode{n}") or m.group(f"post{n}"))


def _end(m: re.Match[str], n: str, *, alone: bool, priced: bool) -> _End | None:
    """One end of the match (`n` is 1 or 2), or None when it is no amount. A number word
    needs a multiplier or a currency, unless a range's other end has them ("two to three
    thousand"); "m" is million where a currency is named ("$5-10m"), at this end or the
    other (`priced`)."""
    pre = m.group(f"pre{n}") or m.group(f"precode{n}")
    post = m.group(f"post{n}")
    currency = _CURRENCIES[(pre or post or "").lower()] if (pre or post) else ""
    said = (m.group(f"scale{n}") or "").lower().split()  # "one thousand": its last word
    scale_word = said[-1] if said else ""
    if scale_word == "m" and not (pre or post or priced):
        return None  # "5 m" is five metres; "$5m" five million
    word = m.group(f"word{n}")
    if word is not None:
        if word.lower() in ("a", "an") and not scale_word:
            return None  # "a pound" of flour
        if alone and not (scale_word or post):
            return None  # a number word alone is no amount
        number: Decimal | None = Decimal(NUMBER_WORDS[word.lower()])
    else:
        number = _number(m.group(f"num{n}"), scaled=bool(scale_word))
    if number is None:
        return None
    return number, Decimal(_SCALES.get(scale_word, 1)), bool(scale_word), currency


def _single(m: re.Match[str], end: _End) -> Amount:
    """The first end alone, when the match is no range."""
    if m.group("post1"):
        stop = m.end("post1")
    elif m.group("scale1"):
        stop = m.end("scale1")
    else:
        stop = m.end("num1") if m.group("num1") is not None else m.end("word1")
    text = m.string[m.start() : stop]
    return Amount(end[0] * end[1], end[3], end[2], m.start(), stop, text)


def _number(text: str, *, scaled: bool) -> Decimal | None:
    """The digits as a number, the separators read as explained above; None when they
    follow no convention ("1.2.3")."""
    if any(c in text for c in _SPACES):
        whole = re.sub(f"[{_SPACES}]", "", text)
        return _decimal(whole.replace(",", "."))
    marks = [c for c in text if c in ".,"]
    if not marks:
        return _decimal(text)
    if len(set(marks)) == 2:  # the last mark is the decimal one: 1,500.50 and 1.500,50
        point = marks[-1]
        if marks.count(point) > 1:
            return None
        whole, cents = text.rsplit(point, 1)
        groups = re.split(r"[.,]", whole)
        if not all(len(g) == 3 for g in groups[1:]) or len(groups[0]) > 3:
            return None
        return _decimal("".join(groups) + "." + cents)
    groups = re.split(r"[.,]", text)
    if len(groups) > 2:  # 1,500,000 / 1.500.000
        if len(groups[0]) > 3 or not all(len(g) == 3 for g in groups[1:]):
            return None
        return _decimal("".join(groups))
    whole, part = groups
    if len(part) == 3 and len(whole) <= 3 and whole != "0" and not scaled:
        return _decimal(whole + part)  # 1,500 / 15.000
    return _decimal(f"{whole}.{part}")


def _decimal(text: str) -> Decimal | None:
    try:
        return Decimal(text)
    except InvalidOperation:
        return None
